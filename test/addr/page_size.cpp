#include <iopt/addr/page_size.hpp>

#include <doctest/doctest.h>

using namespace iopt;

template <class P, unsigned Shift>
constexpr bool named_size_is() {
  return P::shift() == Shift && P::size() == (std::uint64_t{1} << Shift) &&
         P::mask() == P::size() - 1 && page_size_policy<P>;
}
static_assert(named_size_is<page_4k, 12>());
static_assert(named_size_is<page_64k, 16>());
static_assert(named_size_is<page_2m, 21>());
static_assert(named_size_is<page_16m, 24>());
static_assert(named_size_is<page_256m, 28>());
static_assert(named_size_is<page_1g, 30>());
static_assert(named_size_is<page_16g, 34>());
static_assert(page_16g::size() == 16ULL * 1024 * 1024 * 1024);

struct not_a_page_size {
  int shift() const { return 12; }
};
static_assert(!page_size_policy<not_a_page_size>);
static_assert(!page_size_policy<int>);

TEST_CASE("runtime page size validates its shift once") {
  CHECK(runtime_page_size::make(11).error() == status::unsupported);
  CHECK(runtime_page_size::make(63).error() == status::unsupported);
  for (unsigned shift = min_page_shift; shift <= max_page_shift; ++shift) {
    const auto p = runtime_page_size::make(shift);
    REQUIRE(p);
    CHECK(p->shift() == shift);
    CHECK(p->size() == (std::uint64_t{1} << shift));
    CHECK(p->mask() == p->size() - 1);
  }
  const runtime_page_size from_static = page_64k{};
  CHECK(from_static.shift() == 16);
  CHECK(runtime_page_size{}.shift() == 12);
}
