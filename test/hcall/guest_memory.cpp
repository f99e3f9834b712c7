#include <iopt/hcall/guest_memory.hpp>

#include <doctest/doctest.h>

#include <array>
#include <cstring>

using namespace iopt;

struct no_ram_check {
  status read(gpa, std::span<std::byte>, hcall_path) noexcept { return status::ok; }
};
static_assert(!guest_memory<no_ram_check>);

TEST_CASE("the buffer-backed guest memory reads, faults and defers like a guest's") {
  buffer_guest_memory m(gpa{0x10000}, 0x4000);
  CHECK(m.is_ram(gpa{0x10000}, 0x4000));
  CHECK_FALSE(m.is_ram(gpa{0x10000}, 0x4001));
  CHECK_FALSE(m.is_ram(gpa{0xf000}, 0x1000));
  CHECK_FALSE(m.is_ram(gpa{UINT64_MAX}, 2)); // would wrap

  const std::uint64_t tces[] = {0x1122'3344'5566'7788, 3};
  REQUIRE(m.write_tce_list(gpa{0x11000}, tces) == status::ok);
  CHECK(m.write_tce_list(gpa{0x13ff8}, tces) ==
        status::fault); // would run past RAM: nothing written
  std::array<std::uint64_t, 2> back{};
  REQUIRE(m.read(gpa{0x11000}, std::as_writable_bytes(std::span(back)), hcall_path::fast) ==
          status::ok);
  CHECK(from_big_endian(back[0]) == tces[0]); // stored big-endian, as PAPR says
  CHECK(from_big_endian(back[1]) == 3);

  CHECK(m.read(gpa{0x13ff8}, std::as_writable_bytes(std::span(back)), hcall_path::slow) ==
        status::fault);
  m.make_slow_only(gpa{0x12000});
  CHECK(m.read(gpa{0x12000}, std::as_writable_bytes(std::span(back)), hcall_path::fast) ==
        status::too_hard);
  CHECK(m.read(gpa{0x12000}, std::as_writable_bytes(std::span(back)), hcall_path::slow) ==
        status::ok);
  m.make_faulting(gpa{0x12000});
  CHECK(m.read(gpa{0x12000}, std::as_writable_bytes(std::span(back)), hcall_path::slow) ==
        status::fault);
}

TEST_CASE("the buffer-backed guest memory shows in place what it would copy, and nothing else") {
  buffer_guest_memory m(gpa{0x10000}, 0x4000);
  const std::uint64_t tces[] = {0x1122'3344'5566'7788, 3};
  REQUIRE(m.write_tce_list(gpa{0x11ff8}, tces) == status::ok); // across two pages
  const std::byte* seen = m.view(gpa{0x11ff8}, 16, hcall_path::fast);
  REQUIRE(seen != nullptr);
  CHECK(reinterpret_cast<std::uintptr_t>(seen) % 8 == 0); // aligned as the guest address is
  std::array<std::uint64_t, 2> copied{};
  REQUIRE(m.read(gpa{0x11ff8}, std::as_writable_bytes(std::span(copied)), hcall_path::fast) ==
          status::ok);
  CHECK(std::memcmp(seen, copied.data(), 16) == 0);
  CHECK(m.view(gpa{0x10000}, 0x4000, hcall_path::fast) != nullptr); // all of the RAM
  // Where read() fails, there is no view: past the RAM, wrapping, a page
  // that needs the slow path (on the fast path only), a faulting page.
  CHECK(m.view(gpa{0x13ff8}, 16, hcall_path::slow) == nullptr);
  CHECK(m.view(gpa{0xfff8}, 16, hcall_path::slow) == nullptr);
  CHECK(m.view(gpa{UINT64_MAX - 7}, 16, hcall_path::slow) == nullptr);
  m.make_slow_only(gpa{0x12000});
  CHECK(m.view(gpa{0x11ff8}, 16, hcall_path::fast) == nullptr);
  CHECK(m.view(gpa{0x11ff8}, 8, hcall_path::fast) == seen); // the page before it alone
  CHECK(m.view(gpa{0x11ff8}, 16, hcall_path::slow) == seen);
  m.make_faulting(gpa{0x12000});
  CHECK(m.view(gpa{0x11ff8}, 16, hcall_path::slow) == nullptr);
}
