// What the tests of the posix backend need to know about the process: whether
// mlock really locks here, and how much memory is locked.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <cstdio>

namespace iopt_test {

// AddressSanitizer replaces mlock and munlock with no-ops, so under it
// nothing can be seen locked; the other builds check it.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool mlock_is_real = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool mlock_is_real = false;
#else
inline constexpr bool mlock_is_real = true;
#endif
#else
inline constexpr bool mlock_is_real = true;
#endif

// VmLck from /proc/self/status, in KiB.
inline std::uint64_t locked_kib() {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  REQUIRE(f != nullptr);
  char line[256];
  std::uint64_t kib = 0;
  while (std::fgets(line, sizeof line, f) != nullptr)
    if (std::sscanf(line, "VmLck: %lu kB", &kib) == 1)
      break;
  std::fclose(f);
  return kib;
}

} // namespace iopt_test
