// Failing each allocation point in turn: the table is left exactly as it
// was (entries, levels, memory) and nothing leaks. Runs under the asan preset
// too, where LeakSanitizer checks the last claim independently.
#include "table/support.hpp"

#include <doctest/doctest.h>

using namespace iopt;
using namespace iopt_test;

namespace {

// The same geometries as the named configurations, with the fault-injecting allocator.
template <class Config>
struct with_faults : Config {
  using allocator = fault_injecting_allocator;
};

template <class Config>
tce_table<with_faults<Config>> make_faulty_table(fault_plan& plan) {
  auto made = tce_table<with_faults<Config>>::create(ioba{test_window<Config>::offset},
                                                     test_window<Config>::bytes,
                                                     fault_injecting_allocator(plan));
  REQUIRE(made);
  return std::move(made).value();
}

} // namespace

TEST_CASE_TEMPLATE("every allocation point of map and map_range can fail cleanly", Config,
                   iopt::config_huge_window, iopt::config_16m, iopt_test::config_guest_4k,
                   iopt_test::config_small_blocks) {
  using table_type = tce_table<with_faults<Config>>;
  using geometry = table_geometry<Config>;
  fault_plan plan;
  // A range that crosses blocks at every level, next to one existing mapping.
  const std::uint64_t span = std::uint64_t{1} << geometry::index_shift(geometry::top);
  const std::uint64_t first = span > 2 ? span - 2 : 1;
  const std::uint64_t pages = std::min<std::uint64_t>(
      (std::uint64_t{1} << geometry::index_shift(1)) * 3, table_type::max_window_bytes);

  // Two operations in a row; each must succeed, or fail with no_memory and
  // change nothing.
  using operation = status (*)(table_type&, std::uint64_t, std::uint64_t);
  const operation operations[] = {
      [](table_type& t, std::uint64_t from, std::uint64_t n) {
        return t.map_range(page_address(t, from), 0, std::min(n, t.pages() - from),
                           permission::read);
      },
      [](table_type& t, std::uint64_t, std::uint64_t) {
        return t.map(page_address(t, t.pages() - 1), 0, permission::write);
      }};

  // Count the allocation points.
  std::uint64_t points = 0;
  {
    auto t = make_faulty_table<Config>(plan);
    REQUIRE(t.map(page_address(t, 0), 0, permission::read) == status::ok);
    plan.reset_counts();
    for (operation op : operations)
      REQUIRE(op(t, first, pages) == status::ok);
    points = plan.points;
  }
  REQUIRE(points >= 3);
  CHECK(plan.live_blocks == 0);
  MESSAGE(points << " allocation points");

  for (std::uint64_t n = 1; n <= points; ++n) {
    CAPTURE(n);
    auto t = make_faulty_table<Config>(plan);
    REQUIRE(t.map(page_address(t, 0), 0, permission::read) == status::ok);
    plan.fail_nth(n);
    int failed = 0;
    for (operation op : operations) {
      const snapshot before = take_snapshot(t);
      const std::int64_t live_before = plan.live_blocks;
      const status s = op(t, first, pages);
      if (s == status::no_memory) {
        ++failed;
        CHECK(take_snapshot(t) == before);
        CHECK(plan.live_blocks == live_before);
      } else {
        CHECK(s == status::ok);
      }
    }
    CHECK(failed == 1);
    CHECK(plan.failures == 1);
    plan.never_fail();
  }
  CHECK(plan.live_blocks == 0);
}

TEST_CASE("a table whose eager levels cannot all be allocated is not made") {
  struct eager_small : iopt::config_64k {
    using allocator = fault_injecting_allocator;
  };
  fault_plan plan;
  std::uint64_t points = 0;
  {
    auto t = tce_table<eager_small>::create(ioba{0}, std::uint64_t{1} << 32,
                                            fault_injecting_allocator(plan));
    REQUIRE(t);
    points = plan.points;
  }
  REQUIRE(points == 1 + 8); // the top level and eight leaves
  for (std::uint64_t n = 1; n <= points; ++n) {
    plan.fail_nth(n);
    CHECK(tce_table<eager_small>::create(ioba{0}, std::uint64_t{1} << 32,
                                         fault_injecting_allocator(plan))
              .error() == status::no_memory);
    CHECK(plan.live_blocks == 0);
  }
}

TEST_CASE("failing allocations in every order: map of one page on an empty huge window") {
  fault_plan plan;
  auto t = make_faulty_table<config_huge_window>(plan);
  const snapshot empty = take_snapshot(t);
  const ioba at = page_address(t, t.pages() - 1);
  for (std::uint64_t n = 1; n <= 2; ++n) { // the middle block and the leaf
    plan.fail_nth(n, true);
    CHECK(t.map(at, 0, permission::read) == status::no_memory);
    CHECK(t.xchg(at, 0x10001).error() == status::no_memory);
    CHECK(take_snapshot(t) == empty);
  }
  plan.never_fail();
  CHECK(t.map(at, 0, permission::read) == status::ok);
  CHECK(t.memory_bytes() == empty.memory_bytes + 4096 + 128 * 1024);
}
