// The long soak's one knob for the randomized tests. Each differential and
// stress test runs its short CI count of operations, unless the environment
// sets IOPT_SOAK_OPERATIONS: then it runs at least that many operations for
// each of its configurations (test/soak/run.sh sets 10^7). What counts as an
// operation, and as a configuration, is said where each test asks.
#pragma once

#include <doctest/doctest.h>

#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <system_error>

namespace iopt_test {

// `ci_count` when IOPT_SOAK_OPERATIONS is unset, else its value. A value that
// is not a whole number above zero stops the test instead of running none.
inline std::uint64_t soak_operations(std::uint64_t ci_count) {
  const char* text = std::getenv("IOPT_SOAK_OPERATIONS");
  if (text == nullptr)
    return ci_count;
  const char* end = text + std::strlen(text);
  std::uint64_t operations = 0;
  const auto [stop, error] = std::from_chars(text, end, operations);
  REQUIRE_MESSAGE((error == std::errc{} && stop == end && operations > 0),
                  "IOPT_SOAK_OPERATIONS='" << std::string(text)
                                           << "' is not a whole number of operations above zero");
  return operations;
}

// Whether the soak is running (IOPT_SOAK_OPERATIONS is set).
inline bool soaking() { return std::getenv("IOPT_SOAK_OPERATIONS") != nullptr; }

// `operations` shared out over `parts` runs: each run's share, rounded up.
constexpr std::uint64_t share_of(std::uint64_t operations, std::uint64_t parts) {
  return operations / parts + (operations % parts != 0 ? 1 : 0);
}

} // namespace iopt_test
