// Conformance of tce_table<Config>, written once and run for every configuration.
#include "table/support.hpp"

#include <iopt/notify/notifier.hpp>

#include <doctest/doctest.h>
#include <range/v3/range/conversion.hpp>
#include <range/v3/view/filter.hpp>
#include <range/v3/view/transform.hpp>

#include <functional>
#include <ranges>
#include <utility>
#include <vector>

using namespace iopt;
using namespace iopt_test;

TEST_CASE_TEMPLATE("a new table holds only what its configuration says", Config,
                   IOPT_TEST_CONFIGS) {
  using table_type = tce_table<Config>;
  using geometry = table_geometry<Config>;
  auto t = make_table<Config>();
  CHECK(t.window().first().value() == test_window<Config>::offset);
  CHECK(t.window().size() == test_window<Config>::bytes);
  CHECK(t.pages() == test_window<Config>::bytes / table_type::page_bytes);
  CHECK(t.mappings().begin() == t.mappings().end());
  CHECK(t.translate(t.window().first()).error() == status::not_found);
  CHECK(*t.get(t.window().last() - (table_type::page_bytes - 1)) == 0);

  const unsigned entries_bits = static_cast<unsigned>(std::countr_zero(t.pages()));
  const std::size_t top_bytes = (std::size_t{1} << geometry::top_bits(entries_bits)) * 8;
  if (table_traits<Config>::levels_on_demand || geometry::levels == 1)
    CHECK(t.memory_bytes() == top_bytes);
  else
    CHECK(t.memory_bytes() > top_bytes); // every level exists from the start
}

TEST_CASE_TEMPLATE("map, translate and unmap at every level boundary and window edge", Config,
                   IOPT_TEST_CONFIGS) {
  using table_type = tce_table<Config>;
  auto t = make_table<Config>();
  const std::uint64_t page = table_type::page_bytes;
  for (std::uint64_t p : boundary_pages(t)) {
    CAPTURE(p);
    const ioba at = page_address(t, p);
    const std::uint64_t target = (p + 7) * page;
    REQUIRE(t.map(at, target, permission::read) == status::ok);
    CHECK(*t.translate(at) == translation{target, permission::read});
    CHECK(*t.translate(at + (page - 1)) == translation{target + page - 1, permission::read});
    CHECK(table_type::format::permissions(*t.get(at)) == permission::read);
    CHECK(t.unmap(at) == status::ok);
    CHECK(t.translate(at).error() == status::not_found);
    CHECK(t.unmap(at) == status::not_found);
  }
  CHECK(t.mappings().begin() == t.mappings().end());
}

TEST_CASE_TEMPLATE("map_range across level boundaries is one coalesced run", Config,
                   IOPT_TEST_CONFIGS) {
  using table_type = tce_table<Config>;
  using geometry = table_geometry<Config>;
  auto t = make_table<Config>();
  const std::uint64_t page = table_type::page_bytes;
  // Start a few pages before the second block of the level above the leaves
  // (or anywhere in a flat table) and run past it.
  const std::uint64_t span = std::uint64_t{1}
                             << geometry::index_shift(geometry::levels > 1 ? 1 : 0);
  const std::uint64_t first = std::min<std::uint64_t>(span > 3 ? span - 3 : 1, t.pages() - 10);
  const std::uint64_t pages = std::min<std::uint64_t>(span + 6, t.pages() - first);
  const std::uint64_t target = std::uint64_t{1} << 40;
  REQUIRE(t.map_range(page_address(t, first), target, pages, permission::read_write) == status::ok);

  const std::vector<mapped_run> runs = take_snapshot(t).runs;
  REQUIRE(runs.size() == 1);
  CHECK(runs[0] == mapped_run{page_address(t, first), target, pages, permission::read_write});
  CHECK(t.translate(page_address(t, first + pages - 1))->target == target + (pages - 1) * page);
  CHECK(t.translate(page_address(t, first + pages)).error() == status::not_found);

  // A page with other permissions in the middle splits the run in three.
  const std::uint64_t middle = first + pages / 2;
  REQUIRE(t.map(page_address(t, middle), target + (middle - first) * page, permission::read) ==
          status::ok);
  CHECK(take_snapshot(t).runs.size() == 3);
  // A clear of the rest leaves only the odd page.
  REQUIRE(t.clear(page_address(t, first), middle - first) == status::ok);
  REQUIRE(t.clear(page_address(t, middle + 1), first + pages - middle - 1) == status::ok);
  const auto left = take_snapshot(t).runs;
  REQUIRE(left.size() == 1);
  CHECK(left[0].first == page_address(t, middle));
  CHECK(left[0].pages == 1);
  CHECK(left[0].perm == permission::read);
}

TEST_CASE_TEMPLATE("a run ends where targets stop being contiguous", Config, IOPT_TEST_CONFIGS) {
  auto t = make_table<Config>();
  const std::uint64_t page = tce_table<Config>::page_bytes;
  REQUIRE(t.map(page_address(t, 10), 100 * page, permission::read) == status::ok);
  REQUIRE(t.map(page_address(t, 11), 101 * page, permission::read) == status::ok);
  REQUIRE(t.map(page_address(t, 12), 200 * page, permission::read) == status::ok);
  REQUIRE(t.map(page_address(t, 14), 201 * page, permission::read) ==
          status::ok); // a hole before it
  const auto runs = take_snapshot(t).runs;
  REQUIRE(runs.size() == 3);
  CHECK(runs[0].pages == 2);
  CHECK(runs[1].pages == 1);
  CHECK(runs[2].first == page_address(t, 14));
}

TEST_CASE_TEMPLATE("consecutive targets across a block that is not there stay two runs", Config,
                   IOPT_TEST_CONFIGS) {
  // The last page of one block and the first page of the block after next,
  // at every level, with targets that follow each other: the block between
  // holds nothing (on-demand configurations never allocated it), so a walk
  // that skips it must still end the run there. Every way of reading runs
  // must say two.
  using table_type = tce_table<Config>;
  using geometry = table_geometry<Config>;
  constexpr std::uint64_t page = table_type::page_bytes;
  const std::uint64_t target = std::uint64_t{1} << 36;
  for (unsigned level = 1; level < geometry::levels; ++level) {
    CAPTURE(level);
    auto t = make_table<Config>();
    const std::uint64_t span = std::uint64_t{1} << geometry::index_shift(level);
    if (3 * span > t.pages())
      continue;
    const std::uint64_t before = span - 1, after = 2 * span;
    REQUIRE(t.map(page_address(t, before), target, permission::read) == status::ok);
    REQUIRE(t.map(page_address(t, after), target + page, permission::read) == status::ok);
    const std::vector<mapped_run> want{
        {page_address(t, before), target, 1, permission::read},
        {page_address(t, after), target + page, 1, permission::read}};
    reference_model<table_type> model(t);
    model.set(before, *t.get(page_address(t, before)));
    model.set(after, *t.get(page_address(t, after)));
    CHECK(model.runs() == want);
    CHECK(take_snapshot(t).runs == want);
    std::vector<mapped_run> visited, clipped, replayed;
    t.for_each_run([&](const mapped_run& r) { visited.push_back(r); });
    CHECK(visited == want);
    REQUIRE(t.for_each_run(page_address(t, 0), after + 1,
                           [&](const mapped_run& r) { clipped.push_back(r); }) == status::ok);
    CHECK(clipped == want);
    callback_notifier listener([&](const iommu_event& e) { replayed.push_back(e.run); });
    replay(t, listener);
    CHECK(replayed == want);
    CHECK(*t.next_run(before) == want[0]);
    CHECK(*t.next_run(before + 1) == want[1]);
  }
}

TEST_CASE_TEMPLATE("bad input gets a status and changes nothing", Config, IOPT_TEST_CONFIGS) {
  using table_type = tce_table<Config>;
  auto t = make_table<Config>();
  const std::uint64_t page = table_type::page_bytes;
  const ioba first = t.window().first();
  const ioba last_page = page_address(t, t.pages() - 1);
  REQUIRE(t.map_range(first + 4 * page, 0x40'0000'0000, 3, permission::read) == status::ok);
  const snapshot before = take_snapshot(t);

  const ioba below = ioba{first.value() - page}; // wraps to the top when the window starts at 0
  CHECK(t.map(below, 0, permission::read) == status::out_of_window);
  CHECK(t.map(last_page + page, 0, permission::read) == status::out_of_window);
  CHECK(t.map(first + 1, 0, permission::read) == status::not_aligned);
  CHECK(t.map(first, page / 2, permission::read) == status::not_aligned);
  CHECK(t.map(first, page + 1, permission::read) ==
        status::not_aligned); // a low bit that looks like R
  CHECK(t.map(first, 0, permission::none) == status::invalid_parameter);
  CHECK(t.map(first, 0, static_cast<permission>(4)) == status::bad_permission);
  CHECK(t.map_range(first, 0, 0, permission::read) == status::invalid_parameter);
  CHECK(t.map_range(last_page, 0, 2, permission::read) == status::out_of_window);
  CHECK(t.map_range(first, 0, t.pages() + 1, permission::read) == status::out_of_window);
  CHECK(t.map_range(first, UINT64_MAX - page + 1, 2, permission::read) == status::wraps);
  CHECK(t.map_range(first + page / 2, 0, 1, permission::read) == status::not_aligned);
  CHECK(t.clear(last_page, 2) == status::out_of_window);
  CHECK(t.clear(first, 0) == status::invalid_parameter);
  CHECK(t.clear(first + 3, 1) == status::not_aligned);
  CHECK(t.put(first, page | 0x4) == status::not_aligned);
  CHECK(t.put(first + page / 2, page | 1) == status::not_aligned);
  CHECK(t.put(ioba{UINT64_MAX}, page | 1) == status::out_of_window);
  CHECK(t.xchg(first, 0x8).error() == status::not_aligned);
  CHECK(t.get(first + 0x10).error() == status::not_aligned);
  CHECK(t.unmap(below) == status::out_of_window);
  CHECK(t.translate(below).error() == status::out_of_window);
  CHECK(t.translate(last_page + page).error() == status::out_of_window);
  std::uint64_t runs_seen = 0;
  CHECK(t.for_each_run(first, 0, [&](const mapped_run&) { ++runs_seen; }) ==
        status::invalid_parameter);
  CHECK(runs_seen == 0);

  CHECK(take_snapshot(t) == before);
}

TEST_CASE_TEMPLATE("which error wins: the bus address, then the value", Config, IOPT_TEST_CONFIGS) {
  // Calls wrong in two ways answer with the check the table makes first:
  // the page count, then the IOBA (outside the window before inside a
  // page), then the range's end, then the value (its permission, then its
  // alignment, then the format's bits).
  using table_type = tce_table<Config>;
  constexpr std::uint64_t page = table_type::page_bytes;
  auto t = make_table<Config>();
  const auto before = take_snapshot(t);
  const ioba past = page_address(t, t.pages() - 1) + page; // may wrap to 0 at 2^64
  const ioba near_end = page_address(t, t.pages() - 2);
  const ioba inside_page = page_address(t, 1) + 8;
  const auto bad_perm = static_cast<permission>(0x7f);
  const std::uint64_t stray = page | 0x40; // a bit below the page that no format has

  CHECK(t.map(past, 8, bad_perm) == status::out_of_window);
  CHECK(t.map(inside_page, 8, bad_perm) == status::not_aligned);
  CHECK(t.map(page_address(t, 1), 8, bad_perm) == status::bad_permission);
  CHECK(t.map(page_address(t, 1), 8, permission::none) == status::invalid_parameter);
  CHECK(t.put(past, stray) == status::out_of_window);
  CHECK(t.put(inside_page, stray) == status::not_aligned);
  CHECK(t.map_range(past, 8, 0, bad_perm) == status::invalid_parameter);
  CHECK(t.map_range(near_end, 8, 4, bad_perm) == status::out_of_window);
  CHECK(t.map_range(inside_page, 8, 4, bad_perm) == status::not_aligned);
  CHECK(t.fill(near_end, 4, stray) == status::out_of_window);
  CHECK(t.fill(page_address(t, 0), 0, stray) == status::invalid_parameter);
  const std::vector<std::uint64_t> bad_values(4, stray);
  CHECK(t.put_list(near_end, bad_values) == status::out_of_window);
  CHECK(t.clear(near_end, 4) == status::out_of_window);
  CHECK(take_snapshot(t) == before);
}

TEST_CASE_TEMPLATE("clearing and reading never allocate", Config, IOPT_TEST_CONFIGS) {
  auto t = make_table<Config>();
  const std::size_t bytes = t.memory_bytes();
  const ioba far = page_address(t, t.pages() - 1);
  CHECK(t.clear(t.window().first(), t.pages()) == status::ok);
  CHECK(t.put(far, 0) == status::ok);
  CHECK(*t.xchg(far, 0) == 0);
  CHECK(*t.get(far) == 0);
  CHECK(t.translate(far).error() == status::not_found);
  CHECK(t.unmap(far) == status::not_found);
  CHECK(t.memory_bytes() == bytes);
}

TEST_CASE_TEMPLATE("xchg returns what the entry held", Config, IOPT_TEST_CONFIGS) {
  using table_type = tce_table<Config>;
  auto t = make_table<Config>();
  const std::uint64_t page = table_type::page_bytes;
  const ioba at = page_address(t, t.pages() / 2);
  CHECK(*t.xchg(at, 5 * page | 1) == 0);
  CHECK(*t.xchg(at, 6 * page | 3) == (5 * page | 1));
  CHECK(*t.translate(at) == translation{6 * page, permission::read_write});
  CHECK(*t.xchg(at, 0) == (6 * page | 3));
  CHECK(t.translate(at).error() == status::not_found);
}

TEST_CASE_TEMPLATE("the mappings are a range for std::ranges and range-v3", Config,
                   IOPT_TEST_CONFIGS) {
  auto t = make_table<Config>();
  const std::uint64_t page = tce_table<Config>::page_bytes;
  for (std::uint64_t i = 0; i < 6; ++i)
    REQUIRE(t.map(page_address(t, 3 * i), (1000 + 3 * i) * page,
                  i % 2 ? permission::read : permission::read_write) == status::ok);
  auto view = t.mappings();
  static_assert(std::ranges::forward_range<decltype(view)>);
  static_assert(std::ranges::view<decltype(view)>);
  static_assert(ranges::forward_range<decltype(view)>);
  CHECK(std::ranges::distance(view) == 6);
  const auto writable =
      view | ranges::views::filter([](const mapped_run& r) { return can_write(r.perm); }) |
      ranges::views::transform([](const mapped_run& r) { return r.first; }) |
      ranges::to<std::vector>();
  CHECK(writable == std::vector<ioba>{page_address(t, 0), page_address(t, 6), page_address(t, 12)});
}

TEST_CASE_TEMPLATE("for_each_run clips to the range it is given and can stop early", Config,
                   IOPT_TEST_CONFIGS) {
  auto t = make_table<Config>();
  const std::uint64_t page = tce_table<Config>::page_bytes;
  REQUIRE(t.map_range(page_address(t, 8), 0, 16, permission::read) == status::ok);
  REQUIRE(t.map_range(page_address(t, 40), 64 * page, 4, permission::read) == status::ok);
  std::vector<mapped_run> seen;
  REQUIRE(t.for_each_run(page_address(t, 12), 30,
                         [&](const mapped_run& r) { seen.push_back(r); }) == status::ok);
  REQUIRE(seen.size() == 2);
  CHECK(seen[0] == mapped_run{page_address(t, 12), 4 * page, 12, permission::read});
  CHECK(seen[1] == mapped_run{page_address(t, 40), 64 * page, 2, permission::read});
  int calls = 0;
  t.for_each_run([&](const mapped_run&) { return ++calls < 1; });
  CHECK(calls == 1);
}

TEST_CASE_TEMPLATE("a table can be moved", Config, IOPT_TEST_CONFIGS) {
  auto t = make_table<Config>();
  REQUIRE(t.map(page_address(t, 1), 0, permission::read) == status::ok);
  const snapshot before = take_snapshot(t);
  tce_table<Config> moved(std::move(t));
  CHECK(take_snapshot(moved) == before);
  CHECK(t.pages() == 0); // NOLINT: the moved-from table has no window
  CHECK(t.map(ioba{0}, 0, permission::read) == status::out_of_window);
  t = std::move(moved);
  CHECK(take_snapshot(t) == before);
}

TEST_CASE_TEMPLATE("empty() follows every kind of write, and a failed one changes nothing", Config,
                   IOPT_TEST_CONFIGS) {
  using table_type = tce_table<Config>;
  const std::uint64_t page = table_type::page_bytes;
  const std::uint64_t value = 9 * page | 1; // read
  std::vector<std::uint64_t> list{value, value + page};
  // Each kind of write, on a new table and on one written and emptied again.
  const std::vector<std::pair<const char*, std::function<status(table_type&, ioba)>>> writes{
      {"map", [&](table_type& t, ioba at) { return t.map(at, 9 * page, permission::read); }},
      {"map_range",
       [&](table_type& t, ioba at) { return t.map_range(at, 9 * page, 2, permission::read); }},
      {"put", [&](table_type& t, ioba at) { return t.put(at, value); }},
      {"xchg", [&](table_type& t, ioba at) { return t.xchg(at, value).error(); }},
      {"put_list", [&](table_type& t, ioba at) { return t.put_list(at, list); }},
      {"fill", [&](table_type& t, ioba at) { return t.fill(at, 2, value); }},
  };
  for (const auto& named_write : writes) {
    const char* const name = named_write.first; // not a structured binding: CAPTURE takes it
    const auto& write = named_write.second;
    for (const bool emptied_before : {false, true}) {
      CAPTURE(name);
      CAPTURE(emptied_before);
      auto t = make_table<Config>();
      CHECK(t.empty());
      const ioba last_page = page_address(t, t.pages() - 1);
      if (emptied_before) {
        REQUIRE(t.map(last_page, 0, permission::read) == status::ok);
        CHECK_FALSE(t.empty());
        REQUIRE(t.unmap(last_page) == status::ok);
        CHECK(t.empty());
      }
      // Writes that set nothing leave it empty: a bad one, and zeros.
      CHECK(write(t, page_address(t, t.pages() - 1) + 1) == status::not_aligned);
      CHECK(t.put(last_page, 0) == status::ok);
      CHECK(t.fill(page_address(t, 0), 2, 0) == status::ok);
      CHECK(t.empty());
      REQUIRE(write(t, page_address(t, 1)) == status::ok);
      CHECK_FALSE(t.empty());
      table_type moved(std::move(t));
      CHECK_FALSE(moved.empty());
      CHECK(moved.clear(page_address(moved, 0), 4) == status::ok);
      CHECK(moved.empty());
    }
  }
}

// ---------------------------------------------------------------------------
// Window creation.

TEST_CASE("create refuses windows that cannot exist") {
  using table_type = tce_table<config_huge_window>;
  CHECK(table_type::create(ioba{0}, 0).error() == status::invalid_parameter);
  CHECK(table_type::create(ioba{0}, 3 << 16).error() == status::invalid_parameter);
  CHECK(table_type::create(ioba{0}, 1 << 12).error() ==
        status::invalid_parameter); // below one page
  CHECK(table_type::create(ioba{0x1000}, 1 << 20).error() == status::not_aligned);
  CHECK(table_type::create(ioba{UINT64_MAX - 0xffff}, 1 << 20).error() == status::wraps);
  CHECK(table_type::create(ioba{0}, std::uint64_t{1} << 53).error() == status::unsupported);
  CHECK(table_type::create(ioba{0}, std::uint64_t{1} << 52));
  CHECK(table_type::create(ioba{0}, 1 << 16)); // one page
  CHECK(tce_table<config_4k>::create(ioba{0}, std::uint64_t{1} << 33).error() ==
        status::unsupported);
}

namespace {
// Levels that could index more than the hardware allows.
struct config_past_hardware_limit {
  using format = hardware_tce;
  using page_size = page_64k;
  static constexpr std::array<unsigned, 4> level_bits{12, 12, 12, 11};
  static constexpr bool hardware_index_limit = true;
};
struct config_past_hardware_limit_unchecked : config_past_hardware_limit {
  static constexpr bool hardware_index_limit = false;
};
} // namespace

TEST_CASE("the hardware index limit: index bits plus page shift below 55") {
  using limited = tce_table<config_past_hardware_limit>;
  CHECK(limited::create(ioba{0}, std::uint64_t{1} << 54)); // 38 index bits + 16 = 54
  CHECK(limited::create(ioba{0}, std::uint64_t{1} << 55).error() == status::unsupported);
  CHECK(tce_table<config_past_hardware_limit_unchecked>::create(ioba{0}, std::uint64_t{1} << 55));
}

TEST_CASE_TEMPLATE("a window whose end is the top of the 64-bit space", Config, IOPT_TEST_CONFIGS) {
  using table_type = tce_table<Config>;
  const std::uint64_t size = test_window<Config>::bytes;
  auto made = table_type::create(ioba{0 - size}, size);
  REQUIRE(made);
  table_type& t = *made;
  const std::uint64_t page = table_type::page_bytes;
  const ioba last = ioba{0 - page};
  CHECK(t.window().reaches_top());
  REQUIRE(t.map(last, UINT64_MAX - page + 1, permission::read) == status::ok);
  CHECK(t.translate(ioba{UINT64_MAX})->target == UINT64_MAX);
  REQUIRE(t.map(last - page, UINT64_MAX - 2 * page + 1, permission::read) == status::ok);
  // Two pages at the very top of both address spaces: one run, nothing wraps.
  const auto runs = take_snapshot(t).runs;
  REQUIRE(runs.size() == 1);
  CHECK(runs[0].pages == 2);
  // A page mapping target 0 right after a page mapping the last target is no continuation.
  REQUIRE(t.clear(last - page, 2) == status::ok);
  REQUIRE(t.map(last - page, UINT64_MAX - page + 1, permission::read) == status::ok);
  REQUIRE(t.map(last, 0, permission::read) == status::ok);
  CHECK(take_snapshot(t).runs.size() == 2);
  CHECK(t.map_range(last, 0, 2, permission::read) == status::out_of_window);
  CHECK(t.map_range(last - page, UINT64_MAX - page + 1, 2, permission::read) == status::wraps);
  REQUIRE(t.map_range(last - 3 * page, 0, 4, permission::read_write) == status::ok);
  CHECK(t.clear(last - 3 * page, 4) == status::ok);
  CHECK(t.mappings().begin() == t.mappings().end());
  CHECK(t.translate(ioba{0}).error() == status::out_of_window);
}

// ---------------------------------------------------------------------------
// Format-specific behaviour.

TEST_CASE("a hardware table stores write as read-write, big-endian") {
  auto t = make_table<config_4k>();
  REQUIRE(t.put(ioba{0x5000}, 0x7000 | 0x2) == status::ok);
  CHECK(*t.get(ioba{0x5000}) == (0x7000 | 0x3));
  CHECK(t.translate(ioba{0x5000})->perm == permission::read_write);
  REQUIRE(t.map(ioba{0x6000}, 0x8000, permission::write) == status::ok);
  CHECK(*t.get(ioba{0x6000}) == (0x8000 | 0x3));
}

TEST_CASE("a guest table keeps the guest's value verbatim") {
  auto t = make_table<config_guest_4k>();
  const ioba at = t.window().first() + 0x5000;
  REQUIRE(t.put(at, 0x7000 | 0x2) == status::ok);
  CHECK(*t.get(at) == (0x7000 | 0x2));
  CHECK(t.translate(at)->perm == permission::write);
  // A value with an address but no permission is kept, and is not a mapping.
  REQUIRE(t.put(at, 0x9000) == status::ok);
  CHECK(*t.get(at) == 0x9000);
  CHECK(t.translate(at).error() == status::not_found);
  CHECK(t.mappings().begin() == t.mappings().end());
  CHECK(t.unmap(at) == status::not_found);
}

TEST_CASE("free_empty_levels gives back the blocks a clear empties") {
  auto t = make_table<config_small_blocks>();
  const std::size_t empty_bytes = t.memory_bytes();
  REQUIRE(t.map_range(page_address(t, 5), 0, 300, permission::read) == status::ok);
  REQUIRE(t.map(page_address(t, 4000), 0, permission::read) == status::ok);
  const std::size_t full = t.memory_bytes();
  CHECK(full > empty_bytes);
  REQUIRE(t.clear(page_address(t, 5), 150) == status::ok);
  CHECK(t.memory_bytes() < full); // the first leaves went back
  CHECK(t.memory_bytes() > empty_bytes);
  REQUIRE(t.clear(page_address(t, 155), 150) == status::ok);
  REQUIRE(t.unmap(page_address(t, 4000)) == status::ok);
  CHECK(t.memory_bytes() > empty_bytes); // unmap never frees: a later clear does
  REQUIRE(t.clear(t.window().first(), t.pages()) == status::ok);
  CHECK(t.memory_bytes() == empty_bytes);
  CHECK(t.allocator().plan().live_bytes == static_cast<std::int64_t>(empty_bytes));
  REQUIRE(t.map(page_address(t, 7), 0, permission::read) == status::ok); // and levels come back
  CHECK(t.translate(page_address(t, 7)));
}

TEST_CASE("install cannot fail after a clear empties a level the reservation counted on") {
  // Leaves of 8 entries; with free_empty_levels a clear gives an emptied leaf
  // back. A reservation counts the leaves that exist when it is made, so a
  // clear in between must not free one of them.
  auto t = make_table<config_small_blocks>();
  const std::size_t empty_bytes = t.memory_bytes();
  REQUIRE(t.map(page_address(t, 7), 0x7000, permission::read) == status::ok); // the last of leaf 0
  {
    auto r = t.reserve(page_address(t, 0), 20); // leaf 0 present, two leaves missing
    REQUIRE(r);
    REQUIRE(t.clear(page_address(t, 7), 1) == status::ok); // leaf 0 now empty
    t.install(r);
  }
  // Every level of the reserved range exists: writing needs no allocation.
  REQUIRE(t.map_range(page_address(t, 0), 0x40000, 20, permission::read_write,
                      allocation::forbidden) == status::ok);
  CHECK(t.translate(page_address(t, 7))->target == 0x47000);
  CHECK(t.allocator().plan().live_bytes == static_cast<std::int64_t>(t.memory_bytes()));
  // A reservation dropped without install leaks nothing, and the level it
  // kept alive goes back with the next clear.
  REQUIRE(t.clear(page_address(t, 0), 20) == status::ok);
  CHECK(t.memory_bytes() == empty_bytes);
  REQUIRE(t.map(page_address(t, 7), 0x7000, permission::read) == status::ok);
  {
    auto r = t.reserve(page_address(t, 0), 20);
    REQUIRE(r);
    REQUIRE(t.clear(page_address(t, 7), 1) == status::ok);
    CHECK(t.memory_bytes() > empty_bytes); // kept while the reservation lives
  }
  CHECK(t.allocator().plan().live_bytes == static_cast<std::int64_t>(t.memory_bytes()));
  REQUIRE(t.clear(page_address(t, 0), 8) == status::ok);
  CHECK(t.memory_bytes() == empty_bytes);
  CHECK(t.allocator().plan().live_bytes == static_cast<std::int64_t>(empty_bytes));
}

TEST_CASE_TEMPLATE("next_run from inside a run gives the rest of it, else the next run", Config,
                   IOPT_TEST_CONFIGS) {
  auto t = make_table<Config>();
  constexpr std::uint64_t page = tce_table<Config>::page_bytes;
  const std::uint64_t target = std::uint64_t{1} << 36;
  REQUIRE(t.map_range(page_address(t, 10), target, 10, permission::read) == status::ok);
  REQUIRE(t.map(page_address(t, 30), target, permission::read_write) == status::ok);
  const auto run_at = [&](std::uint64_t from) { return t.next_run(from); };
  // Before the run, at its first page: the whole run.
  for (const std::uint64_t from : {std::uint64_t{0}, std::uint64_t{9}, std::uint64_t{10}}) {
    CAPTURE(from);
    REQUIRE(run_at(from));
    CHECK(*run_at(from) == mapped_run{page_address(t, 10), target, 10, permission::read});
  }
  // Inside it and at its last page: the rest of it.
  CHECK(*run_at(15) == mapped_run{page_address(t, 15), target + 5 * page, 5, permission::read});
  CHECK(*run_at(19) == mapped_run{page_address(t, 19), target + 9 * page, 1, permission::read});
  // Just past it: the next run; past every run: none.
  CHECK(*run_at(20) == mapped_run{page_address(t, 30), target, 1, permission::read_write});
  CHECK(!run_at(31));
  CHECK(!run_at(t.pages()));
}

TEST_CASE_TEMPLATE("a list that maps nothing allocates nothing, even on the fast path", Config,
                   IOPT_TEST_CONFIGS) {
  auto t = make_table<Config>();
  constexpr std::uint64_t page = tce_table<Config>::page_bytes;
  const std::size_t before = t.memory_bytes();
  const std::uint64_t at = t.pages() - 512; // where no level exists yet
  // 512 values that map nothing, over levels that do not exist.
  const std::vector<std::uint64_t> zeros(512, 0);
  CHECK(t.put_list(page_address(t, at), zeros, allocation::forbidden) == status::ok);
  CHECK(t.memory_bytes() == before);
  CHECK(t.mappings().begin() == t.mappings().end());
  // A list that maps one page in the middle needs that page's levels only,
  // and clears the rest, present levels or not.
  REQUIRE(t.map(page_address(t, at), page, permission::read) == status::ok);
  std::vector<std::uint64_t> one(512, 0);
  one[300] = 5 * page | 1;
  REQUIRE(t.put_list(page_address(t, at), one) == status::ok);
  CHECK(t.translate(page_address(t, at)).error() == status::not_found);
  CHECK(t.translate(page_address(t, at + 300))->target == 5 * page);
  CHECK(std::distance(t.mappings().begin(), t.mappings().end()) == 1);
}

TEST_CASE("1 GiB mapped in a 128 TiB window costs at most 1.05x its leaf blocks") {
  auto t = make_table<config_huge_window>();
  const std::uint64_t pages = (std::uint64_t{1} << 30) >> 16;
  REQUIRE(t.map_range(t.window().first() + (std::uint64_t{1} << 40), std::uint64_t{1} << 44, pages,
                      permission::read_write) == status::ok);
  const double leaf_bytes = static_cast<double>(pages * 8);
  CHECK(static_cast<double>(t.memory_bytes()) <= 1.05 * leaf_bytes);
  CHECK(t.memory_bytes() == 128 * 1024 + 4096 + 2048);
}

// ---------------------------------------------------------------------------
// The operations a hypervisor's fast path uses.

TEST_CASE_TEMPLATE("with allocation forbidden a missing level is too hard and changes nothing",
                   Config, IOPT_TEST_CONFIGS) {
  using table_type = tce_table<Config>;
  auto t = make_table<Config>();
  const std::uint64_t page = table_type::page_bytes;
  const ioba at = page_address(t, t.pages() - 3);
  const snapshot empty = take_snapshot(t);
  const std::uint64_t list[] = {5 * page | 1, 6 * page | 3, 7 * page | 2};
  const bool has_lazy_levels =
      table_geometry<Config>::levels > 1 && table_traits<Config>::levels_on_demand;
  const status expected = has_lazy_levels ? status::too_hard : status::ok;
  CHECK(t.map(at, 0, permission::read, allocation::forbidden) == expected);
  CHECK(t.put(at, page | 1, allocation::forbidden) == expected);
  CHECK(t.put_list(at, list, allocation::forbidden) == expected);
  CHECK(t.fill(at, 3, page, allocation::forbidden) == expected);
  CHECK(t.map_range(at, 0, 3, permission::read, allocation::forbidden) == expected);
  if (has_lazy_levels) {
    CHECK(take_snapshot(t) == empty);
    CHECK(t.xchg(at, page | 1, allocation::forbidden).error() == status::too_hard);
    // Clearing never needs a level.
    CHECK(t.fill(at, 3, 0, allocation::forbidden) == status::ok);
    CHECK(t.put(at, 0, allocation::forbidden) == status::ok);
    CHECK(take_snapshot(t) == empty);
    // Once the slow path made the levels, the fast path finishes.
    REQUIRE(t.put_list(at, list) == status::ok);
    CHECK(t.put_list(at, list, allocation::forbidden) == status::ok);
    CHECK(*t.get(at + page) == table_type::format::normalize(6 * page | 3));
  } else {
    CHECK(t.translate(at + page)->target == page); // the last call, map_range, won
  }
}

TEST_CASE_TEMPLATE("put_list applies every value or none", Config, IOPT_TEST_CONFIGS) {
  using table_type = tce_table<Config>;
  auto t = make_table<Config>();
  const std::uint64_t page = table_type::page_bytes;
  const ioba at = page_address(t, 1);
  std::vector<std::uint64_t> list;
  for (std::uint64_t i = 0; i < 40; ++i)
    list.push_back((100 + i) * page | 1);
  const snapshot before = take_snapshot(t);
  list[37] |= 0x4; // one bad entry near the end
  CHECK(t.put_list(at, list) == status::not_aligned);
  CHECK(take_snapshot(t) == before);
  list[37] &= ~std::uint64_t{0x4};
  CHECK(t.put_list(page_address(t, t.pages() - 39), list) == status::out_of_window);
  CHECK(t.put_list(at, std::span<const std::uint64_t>{}) == status::invalid_parameter);
  CHECK(take_snapshot(t) == before);
  REQUIRE(t.put_list(at, list) == status::ok);
  const auto runs = take_snapshot(t).runs;
  REQUIRE(runs.size() == 1);
  CHECK(runs[0] == mapped_run{at, 100 * page, 40, permission::read});
}

TEST_CASE_TEMPLATE("fill writes one value; zero is a clear", Config, IOPT_TEST_CONFIGS) {
  using table_type = tce_table<Config>;
  auto t = make_table<Config>();
  const std::uint64_t page = table_type::page_bytes;
  REQUIRE(t.map_range(page_address(t, 0), 0, 20, permission::read) == status::ok);
  REQUIRE(t.fill(page_address(t, 5), 10, 0) == status::ok);
  CHECK(take_snapshot(t).runs.size() == 2);
  REQUIRE(t.fill(page_address(t, 5), 3, 9 * page | 1) == status::ok); // one target, three pages
  CHECK(t.translate(page_address(t, 7))->target == 9 * page);
  CHECK(t.fill(page_address(t, 5), 3, 9 * page | 0x10) == status::not_aligned);
  CHECK(t.fill(page_address(t, 5), 0, 0) == status::invalid_parameter);
  CHECK(t.fill(page_address(t, t.pages() - 1), 2, 0) == status::out_of_window);
}
