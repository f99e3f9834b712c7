#include <iopt/format/byte_order.hpp>
#include <iopt/format/example_format.hpp>
#include <iopt/format/guest_tce.hpp>
#include <iopt/format/hardware_tce.hpp>
#include <iopt/format/traits.hpp>

#include <doctest/doctest.h>

#include <cstring>

using namespace iopt;

using hw = format_traits<hardware_tce>;
using guest = format_traits<guest_tce>;
using example = format_traits<example_format>;

TEST_CASE("hardware TCEs are stored big-endian") {
  const std::uint64_t value = hw::make(0x0123'4567'89ab'c000, permission::read);
  CHECK(value == 0x0123'4567'89ab'c001);
  const std::uint64_t stored = hw::to_memory(value);
  unsigned char bytes[8];
  std::memcpy(bytes, &stored, sizeof bytes);
  CHECK(bytes[0] == 0x01); // most significant byte first, whatever the host order
  CHECK(bytes[7] == 0x01);
  CHECK(bytes[6] == 0xc0);
  CHECK(hw::from_memory(stored) == value);
}

TEST_CASE("on hardware a write permission implies read") {
  CHECK(hw::make(0x10000, permission::write) == 0x10003);
  CHECK(hw::permissions(hw::make(0x10000, permission::write)) == permission::read_write);
  CHECK(hw::normalize(0x10002) == 0x10003);
  CHECK(hw::normalize(0x10001) == 0x10001);
}

TEST_CASE("guest TCEs are native-endian and kept verbatim") {
  CHECK(guest::make(0x10000, permission::write) == 0x10002);
  CHECK(guest::permissions(0x10002) == permission::write);
  CHECK(guest::to_memory(0x10002) == 0x10002);
  CHECK(guest::normalize(0xdead'0000) == 0xdead'0000);
}

TEST_CASE("presence and target") {
  CHECK_FALSE(hw::is_present(0));
  CHECK_FALSE(hw::is_present(0x10000)); // address but no permission: empty
  CHECK(hw::is_present(0x10001));
  CHECK(hw::target(0x12345'0003, 16) == 0x12345'0000);
  CHECK(hw::target(0xffff'ffff'ffff'f003, 12) == 0xffff'ffff'ffff'f000);
}

TEST_CASE("check refuses misaligned targets and undefined bits") {
  CHECK(hw::check(0x10003, 16) == status::ok);
  CHECK(hw::check(0x11003, 16) == status::not_aligned); // target not on a 64K page
  CHECK(hw::check(0x10004, 12) ==
        status::not_aligned); // a bit below the page that is no permission
  CHECK(hw::check(0xffff'ffff'ffff'f003, 12) == status::ok);
  CHECK(hw::check(0, 12) == status::ok);
  CHECK(hw::check(0x10003, 34) == status::not_aligned);
}

TEST_CASE("traits fill in the optional hooks") {
  static_assert(guest::address_mask == ~std::uint64_t{0}); // default
  static_assert(example::address_mask == (std::uint64_t{1} << 52) - 1);
  static_assert(example::permission_bits == 0xc);
  CHECK(example::make(0x1000, permission::write) == 0x100c);
  CHECK(example::permissions(0x1004) == permission::read);
  CHECK(example::check(0x1000 | 0x4, 12) == status::ok);
  CHECK(example::check(0x1000 | 0x1, 12) == status::not_aligned); // 0x1 is no permission here
  CHECK(example::check((std::uint64_t{1} << 52) | 0x4, 12) == status::bad_permission);
  CHECK(example::from_memory(example::to_memory(0x1234'5000)) == 0x1234'5000);
}

TEST_CASE("big-endian helpers put the most significant byte first and undo themselves") {
  const std::uint64_t stored = to_big_endian(0x0102'0304'0506'0708);
  unsigned char bytes[8];
  std::memcpy(bytes, &stored, sizeof bytes);
  CHECK(bytes[0] == 0x01);
  CHECK(bytes[7] == 0x08);
  static_assert(from_big_endian(to_big_endian(0xdead'beef'0000'1234)) == 0xdead'beef'0000'1234);
}
