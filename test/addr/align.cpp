#include <iopt/addr/align.hpp>
#include <iopt/addr/page_size.hpp>

#include <doctest/doctest.h>

using namespace iopt;

static_assert(is_aligned(0, 12) && is_aligned(0x1000, 12) && !is_aligned(0x1001, 12));
static_assert(align_down(0x1fff, 12) == 0x1000);
static_assert(*align_up(0x1001, 12) == 0x2000);
static_assert(*align_up(0x1000, 12) == 0x1000);

TEST_CASE("alignment at address 0 and at the top of the 64-bit space") {
  CHECK(*align_up(0, 16) == 0);
  CHECK(align_down(UINT64_MAX, 12) == 0xffff'ffff'ffff'f000);
  CHECK(*align_up(0xffff'ffff'ffff'f000, 12) == 0xffff'ffff'ffff'f000);
  CHECK(align_up(0xffff'ffff'ffff'f001, 12).error() == status::wraps);
  CHECK(align_up(UINT64_MAX, 12).error() == status::wraps);
  CHECK(align_up(UINT64_MAX, 34).error() == status::wraps);
  CHECK(*align_up(UINT64_MAX, 0) == UINT64_MAX);
}

TEST_CASE("alignment for every named page size") {
  for (unsigned shift : {12u, 16u, 21u, 24u, 28u, 30u, 34u}) {
    const std::uint64_t size = std::uint64_t{1} << shift;
    CHECK(is_aligned(size * 3, shift));
    CHECK_FALSE(is_aligned(size * 3 + size / 2, shift));
    CHECK(align_down(size * 3 + 1, shift) == size * 3);
    CHECK(*align_up(size * 3 + 1, shift) == size * 4);
    CHECK(align_up(UINT64_MAX - size + 2, shift).error() == status::wraps);
  }
}

TEST_CASE("checked addition reports overflow instead of wrapping") {
  CHECK(*checked_add(UINT64_MAX - 1, 1) == UINT64_MAX);
  CHECK(checked_add(UINT64_MAX, 1).error() == status::wraps);
  CHECK(checked_add(std::uint64_t{1} << 63, std::uint64_t{1} << 63).error() == status::wraps);
  CHECK(checked_add(ioba{UINT64_MAX - 0xfff}, 0xfff)->value() == UINT64_MAX);
  CHECK(checked_add(ioba{UINT64_MAX - 0xfff}, 0x1000).error() == status::wraps);
  CHECK(align_up(ua{0x1234}, 12)->value() == 0x2000);
  CHECK(align_down(hpa{0x1234}, 12) == hpa{0x1000});
  CHECK(is_aligned(gpa{0x10000}, 16));
}
