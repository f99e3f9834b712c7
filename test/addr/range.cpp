#include <iopt/addr/range.hpp>

#include <doctest/doctest.h>

using namespace iopt;

TEST_CASE("a range refuses to wrap past 2^64") {
  CHECK(ioba_range::make(ioba{0}, UINT64_MAX));
  CHECK(ioba_range::make(ioba{1}, UINT64_MAX));
  CHECK(ioba_range::make(ioba{2}, UINT64_MAX).error() == status::wraps);
  CHECK(ioba_range::make(ioba{UINT64_MAX}, 1));
  CHECK(ioba_range::make(ioba{UINT64_MAX}, 2).error() == status::wraps);
  CHECK(ioba_range::make(ioba{UINT64_MAX}, 0)); // empty is fine anywhere
  CHECK(ioba_range::from_inclusive(ioba{0}, ioba{UINT64_MAX}).error() == status::wraps);
  CHECK(ioba_range::from_inclusive(ioba{5}, ioba{4}).error() == status::invalid_parameter);
}

TEST_CASE("a range ending exactly at the top of the 64-bit space") {
  const std::uint64_t size = std::uint64_t{1} << 40;
  const auto window = ioba_range::make(ioba{0 - size}, size);
  REQUIRE(window);
  CHECK(window->reaches_top());
  CHECK(window->last() == ioba{UINT64_MAX});
  CHECK(window->contains(ioba{UINT64_MAX}));
  CHECK(window->contains(ioba{0 - size}));
  CHECK_FALSE(window->contains(ioba{0 - size - 1}));
  CHECK_FALSE(window->contains(ioba{0}));
  const auto tail = ioba_range::from_inclusive(ioba{UINT64_MAX - 0xfff}, ioba{UINT64_MAX});
  REQUIRE(tail);
  CHECK(window->contains(*tail));
  CHECK(tail->size() == 0x1000);
  CHECK(window->offset_of(ioba{UINT64_MAX}) == size - 1);
}

TEST_CASE("containment, overlap and intersection") {
  const auto a = *ioba_range::make(ioba{0x1000}, 0x3000);
  const auto b = *ioba_range::make(ioba{0x3000}, 0x2000);
  const auto c = *ioba_range::make(ioba{0x4000}, 0x1000);
  CHECK(a.overlaps(b));
  CHECK_FALSE(a.overlaps(c)); // a is [0x1000, 0x4000): adjacent, not overlapping
  CHECK(a.intersect(b) == *ioba_range::make(ioba{0x3000}, 0x1000));
  CHECK(a.intersect(c).empty());
  CHECK(a.contains(*ioba_range::make(ioba{0x1000}, 0x3000)));
  CHECK_FALSE(a.contains(*ioba_range::make(ioba{0x1000}, 0x3001)));
  CHECK(a.contains(*ioba_range::make(ioba{0x4000}, 0))); // empty at the end
  CHECK_FALSE(a.contains(*ioba_range::make(ioba{0x4001}, 0)));
  CHECK_FALSE(a.contains(*ioba_range::make(ioba{0x0fff}, 0)));
  // An empty range near 0 must not be found inside a huge range starting above it.
  const auto huge = *ioba_range::make(ioba{10}, UINT64_MAX - 10);
  CHECK_FALSE(huge.contains(*ioba_range::make(ioba{3}, 0)));
  CHECK_FALSE(ioba_range{}.overlaps(a));
}
