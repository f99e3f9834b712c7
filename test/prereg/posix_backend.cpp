// The posix backend on real memory.
#include <iopt/prereg/accounting.hpp>
#include <iopt/prereg/posix_backend.hpp>
#include <iopt/prereg/registry.hpp>

#include <doctest/doctest.h>

#include <sys/mman.h>

#include <cstdio>
#include <cstring>
#include <set>

using namespace iopt;

namespace {
// AddressSanitizer replaces mlock and munlock with no-ops, so under it
// nothing can be seen locked; the other builds check it.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool mlock_is_real = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool mlock_is_real = false;
#else
constexpr bool mlock_is_real = true;
#endif
#else
constexpr bool mlock_is_real = true;
#endif

// VmLck from /proc/self/status, in KiB.
std::uint64_t locked_kib() {
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
} // namespace

TEST_CASE("pinned pages show as locked in the process, and translate when allowed") {
  posix_backend backend;
  unlimited_accounting accounting;
  const std::uint64_t page = std::uint64_t{1} << backend.host_page_shift();
  const std::uint64_t bytes = 64 * page;
  void* memory = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(memory != MAP_FAILED);
  std::memset(memory, 0x5a, bytes);
  const ua first{reinterpret_cast<std::uintptr_t>(memory)};

  const std::uint64_t before = locked_kib();
  {
    prereg_registry<posix_backend, unlimited_accounting> registry(backend, accounting);
    const status s = registry.register_region(first, bytes);
    if (s == status::not_permitted || s == status::no_memory) {
      MESSAGE("mlock refused here (" << to_string(s) << "): skipped the locked-memory check");
    } else {
      REQUIRE(s == status::ok);
      if (mlock_is_real)
        CHECK(locked_kib() == before + bytes / 1024);
      else
        MESSAGE("AddressSanitizer makes mlock a no-op: skipped the locked-memory check");
      CHECK(registry.lookup(first, bytes)->max_page_shift >= backend.host_page_shift());

      auto held = registry.acquire(first, bytes);
      REQUIRE(held);
      std::set<std::uint64_t> frames;
      bool translated = true;
      for (std::uint64_t i = 0; i < 64 && translated; ++i) {
        const auto a = registry.translate(**held, first + i * page, backend.host_page_shift());
        if (a.error() == status::not_permitted) {
          translated = false;
          break;
        }
        REQUIRE(a);
        CHECK(is_aligned(*a, backend.host_page_shift()));
        CHECK(registry.translate(**held, first + i * page, backend.host_page_shift())->value() ==
              a->value());
        frames.insert(a->value());
      }
      if (translated)
        CHECK(frames.size() == 64); // distinct pages, distinct frames
      else
        MESSAGE("no CAP_SYS_ADMIN: frame numbers are hidden, skipped the translation checks");
      registry.release(*held);
      REQUIRE(registry.unregister_region(first, bytes) == status::ok);
      if (mlock_is_real)
        CHECK(locked_kib() == before);
    }
  }
  CHECK(accounting.charged() == 0);
  ::munmap(memory, bytes);
}

TEST_CASE("pinning memory that is not mapped fails cleanly") {
  posix_backend backend;
  const std::uint64_t page = std::uint64_t{1} << backend.host_page_shift();
  void* memory =
      ::mmap(nullptr, 4 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(memory != MAP_FAILED);
  ::munmap(memory, 4 * page);
  const status s = backend.pin(ua{reinterpret_cast<std::uintptr_t>(memory)}, 4 * page);
  if (mlock_is_real)
    CHECK(s != status::ok);
  else
    MESSAGE("AddressSanitizer makes mlock a no-op: skipped");
}
