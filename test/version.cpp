#include <iopt/version.hpp>

#include <doctest/doctest.h>

TEST_CASE("the version is written once and agrees with itself") {
  static_assert(iopt::version.major == IOPT_VERSION_MAJOR);
  static_assert(iopt::version.minor == IOPT_VERSION_MINOR);
  static_assert(iopt::version.patch == IOPT_VERSION_PATCH);
  CHECK(IOPT_VERSION == IOPT_VERSION_MAJOR * 10000 + IOPT_VERSION_MINOR * 100 + IOPT_VERSION_PATCH);
}
