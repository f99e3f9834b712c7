#include <iopt/addr/address.hpp>

#include <doctest/doctest.h>

#include <cstdint>
#include <type_traits>

using namespace iopt;

// No silent mixing of kinds: no implicit construction from integers, no
// conversion between kinds, no comparison across kinds.
static_assert(!std::is_convertible_v<std::uint64_t, ioba>);
static_assert(std::is_constructible_v<ioba, std::uint64_t>);
static_assert(!std::is_convertible_v<ioba, ua>);
static_assert(!std::is_constructible_v<hpa, ua>);
static_assert(!std::is_convertible_v<gpa, std::uint64_t>);
template <class A, class B>
concept comparable = requires(A a, B b) {
  a == b;
};
static_assert(comparable<ioba, ioba>);
static_assert(!comparable<ioba, hpa>);
static_assert(!comparable<ua, std::uint64_t>);
template <class A, class B>
concept subtractable = requires(A a, B b) {
  a - b;
};
static_assert(!subtractable<ua, hpa>);
static_assert(sizeof(ioba) == 8 && std::is_trivially_copyable_v<ioba>);

TEST_CASE("addresses at 0 and at the top of the 64-bit space") {
  constexpr ioba zero{};
  static_assert(zero.value() == 0);
  constexpr ioba top{UINT64_MAX};
  CHECK(top.value() == UINT64_MAX);
  CHECK(zero < top);
  CHECK((top - zero) == UINT64_MAX);
  CHECK((zero + 0x1000).value() == 0x1000);
  // Offset arithmetic is modular, like unsigned integers; checked forms live in align.hpp.
  CHECK((top + 1).value() == 0);
  CHECK((ua{5} - ua{2}) == 3);
}
