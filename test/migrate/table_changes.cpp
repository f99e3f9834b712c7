// Incremental pre-copy of TCE tables: the rounds of changes, applied on top
// of the full snapshot, give the source table exactly, for every
// configuration, with random writes and hypercalls between the rounds; an
// increment names the pages that changed and no others when the tracker
// could allocate; bad streams of changes and failed allocations leave the
// receiver as it was; the tracker itself against a set of pages.
#include "hcall/support.hpp"
#include "migrate/support.hpp"

#include <iopt/table/change_tracker.hpp>
#include <iopt/testing/fault_injecting_allocator.hpp>

#include <doctest/doctest.h>

#include <random>
#include <set>
#include <vector>

using namespace iopt;
using namespace iopt_test;

namespace {

template <class Table>
std::vector<std::byte> changes_of(Table& t) {
  byte_sink sink;
  REQUIRE(snapshot_changes(t, sink) == status::ok);
  return std::move(sink.bytes);
}

// The pages a stream of changes covers, read from the format's description
// (little-endian words; records of first page, kind << 62 | count, values).
std::set<std::uint64_t> pages_covered(const std::vector<std::byte>& b) {
  std::set<std::uint64_t> pages;
  REQUIRE(b.size() % 8 == 0);
  CHECK(le_word(b, 1) == (std::uint64_t{1} << 32 | 1)); // version 1, kind "changes"
  std::size_t w = 8;
  std::uint64_t covered = 0;
  while (le_word(b, w) != 0x646e652d74706f69) {
    const std::uint64_t first = le_word(b, w), kind = le_word(b, w + 1) >> 62,
                        count = le_word(b, w + 1) & ((std::uint64_t{1} << 62) - 1);
    REQUIRE(kind <= 2);
    for (std::uint64_t k = 0; k < count; ++k)
      REQUIRE(pages.insert(first + k).second);
    covered += count;
    w += 2 + (kind == 0 ? 1 : kind == 1 ? static_cast<std::size_t>(count) : 0);
  }
  CHECK(le_word(b, w + 1) == covered);
  return pages;
}

} // namespace

TEST_CASE_TEMPLATE("pre-copy: a full snapshot and rounds of changes give the source exactly",
                   Config, IOPT_TEST_CONFIGS) {
  using table_type = tce_table<Config>;
  for (const std::uint64_t seed : {5u, 6u}) {
    CAPTURE(seed);
    std::mt19937_64 rng(seed * 1000 + table_type::page_shift);
    auto source = make_table<Config>();
    reference_model<table_type> model(source);
    random_writes(source, model, rng, 30);
    REQUIRE(source.start_tracking() == status::ok);
    CHECK(source.start_tracking() == status::busy);
    // The full pass, while the source goes on changing.
    auto copy = empty_like(source);
    REQUIRE(restore(copy, stream_of(source)) == status::ok);
    random_writes(source, model, rng, 20);
    for (int round = 0; round < 6; ++round) {
      CAPTURE(round);
      const auto increment = changes_of(source);
      REQUIRE(apply_changes(copy, increment) == status::ok);
      CHECK(take_snapshot(copy).runs == model.runs());
      random_writes(source, model, rng, round == 5 ? 0 : 1 + static_cast<int>(rng() % 25));
    }
    // A round with nothing changed is a header and a trailer.
    CHECK(changes_of(source).size() == (8 + 2) * 8);
    source.stop_tracking();
    CHECK(!source.tracking());
    CHECK(source.tracking_bytes() == 0);
    byte_sink none;
    CHECK(snapshot_changes(source, none) == status::not_permitted);
    CHECK(none.bytes.empty());
  }
}

TEST_CASE_TEMPLATE("an increment names exactly the pages that changed", Config, IOPT_TEST_CONFIGS) {
  using table_type = tce_table<Config>;
  std::mt19937_64 rng(table_type::page_shift);
  auto source = make_table<Config>();
  reference_model<table_type> model(source);
  random_writes(source, model, rng, 20);
  REQUIRE(source.start_tracking() == status::ok);
  for (int round = 0; round < 20; ++round) {
    // A few scattered changes of one page or a short stretch.
    std::set<std::uint64_t> touched, changed;
    for (int i = 0; i < 5; ++i) {
      const std::uint64_t p = rng() % source.pages();
      const std::uint64_t n = std::min<std::uint64_t>(1 + rng() % 3, source.pages() - p);
      for (std::uint64_t k = 0; k < n; ++k)
        touched.insert(p + k);
      if (rng() % 3 == 0) {
        for (std::uint64_t k = 0; k < n; ++k)
          if (model.get(p + k) != 0)
            changed.insert(p + k);
        REQUIRE(source.clear(page_address(source, p), n) == status::ok);
        model.clear(p, n);
      } else {
        const std::uint64_t to = (rng() % (std::uint64_t{1} << 20)) << table_type::page_shift;
        REQUIRE(source.map_range(page_address(source, p), to, n, permission::read) == status::ok);
        for (std::uint64_t k = 0; k < n; ++k) {
          changed.insert(p + k);
          model.set(p + k, table_type::format::normalize(table_type::format::make(
                               to + (k << table_type::page_shift), permission::read)));
        }
      }
    }
    // Every page that changed, and none that no write went over.
    const std::set<std::uint64_t> covered = pages_covered(changes_of(source));
    for (const std::uint64_t p : changed)
      CHECK(covered.count(p) == 1);
    for (const std::uint64_t p : covered)
      CHECK(touched.count(p) == 1);
  }
}

TEST_CASE("hypercalls between rounds, the fast path included") {
  using table_type = tce_table<config_huge_window>;
  constexpr std::uint64_t page = table_type::page_bytes;
  buffer_guest_memory memory(gpa{0}, guest_ram_bytes<config_huge_window>);
  auto source = make_table<config_huge_window>();
  tce_hcalls<buffer_guest_memory, config_huge_window> hcalls(memory);
  REQUIRE(hcalls.attach(test_liobn, source) == status::ok);
  const std::uint64_t base = source.window().first().value();
  const std::uint64_t ram_pages = guest_ram_bytes<config_huge_window> / page - 8;
  std::mt19937_64 rng(42);
  // The fast path first (no allocation: the tracker marks coarsely where it
  // lacks nodes), the slow path when the fast one says too_hard.
  auto call = [&](auto&& hcall) {
    const status s = hcall(hcall_path::fast);
    return s == status::too_hard ? hcall(hcall_path::slow) : s;
  };
  auto some_calls = [&](int n) {
    for (int i = 0; i < n; ++i) {
      const std::uint64_t at = base + (rng() % source.pages()) / 512 * 512 * page;
      const std::uint64_t tce = (rng() % ram_pages) * page | 3;
      switch (rng() % 3) {
      case 0:
        REQUIRE(call([&](hcall_path p) { return hcalls.put_tce(test_liobn, at, tce, p); }) ==
                status::ok);
        break;
      case 1: {
        std::vector<std::uint64_t> list(1 + rng() % 512);
        for (std::uint64_t& v : list)
          v = rng() % 4 == 0 ? 0 : (rng() % ram_pages) * page | (1 + rng() % 3);
        REQUIRE(memory.write_tce_list(gpa{list_area<config_huge_window>}, list) == status::ok);
        REQUIRE(call([&](hcall_path p) {
                  return hcalls.put_tce_indirect(test_liobn, at, list_area<config_huge_window>,
                                                 list.size(), p);
                }) == status::ok);
        break;
      }
      default: { // H_STUFF_TCE clears (PAPR)
        const std::uint64_t count = 1 + rng() % 600;
        REQUIRE(call([&](hcall_path p) { return hcalls.stuff_tce(test_liobn, at, 0, count, p); }) ==
                status::ok);
      }
      }
    }
  };
  some_calls(50);
  REQUIRE(source.start_tracking() == status::ok);
  auto copy = empty_like(source);
  REQUIRE(restore(copy, stream_of(source)) == status::ok);
  for (int round = 0; round < 8; ++round) {
    some_calls(1 + static_cast<int>(rng() % 40));
    REQUIRE(apply_changes(copy, changes_of(source)) == status::ok);
    CHECK(take_snapshot(copy).runs == take_snapshot(source).runs);
  }
}

TEST_CASE("bad streams of changes: each gets its status and leaves the receiver as it was") {
  auto source = make_table<config_small_blocks>();
  REQUIRE(source.map_range(page_address(source, 10), 0x10'0000, 5, permission::read) == status::ok);
  REQUIRE(source.start_tracking() == status::ok);
  REQUIRE(source.clear(page_address(source, 12), 1) == status::ok);
  REQUIRE(source.map(page_address(source, 40), 0x70'0000, permission::write) == status::ok);
  const std::vector<std::byte> good = changes_of(source);
  // Words: 0-7 header; 8, 9 the clear of page 12; 10, 11, 12 the list of
  // page 40; 13 the end marker; 14 the count (2).
  REQUIRE(good.size() == 15 * 8);
  REQUIRE(le_word(good, 9) == (std::uint64_t{2} << 62 | 1));

  auto receiver = make_table<config_small_blocks>();
  REQUIRE(receiver.map_range(page_address(receiver, 10), 0x10'0000, 5, permission::read) ==
          status::ok);
  auto try_stream = [&](const std::vector<std::byte>& bytes, status expected) {
    const auto before = take_snapshot(receiver);
    CHECK(apply_changes(receiver, bytes) == expected);
    CHECK(take_snapshot(receiver) == before);
  };
  auto word_set = [&](std::size_t word, std::uint64_t v) {
    auto b = good;
    for (std::size_t i = 0; i < 8; ++i)
      b.at(word * 8 + i) = static_cast<std::byte>(v >> (8 * i));
    return b;
  };
  for (std::size_t cut = 0; cut < good.size(); cut += 4) {
    CAPTURE(cut);
    try_stream(std::vector<std::byte>(good.begin(), good.begin() + static_cast<long>(cut)),
               status::stream_truncated);
  }
  try_stream(word_set(1, 1), status::stream_mismatch);                          // a whole table
  try_stream(word_set(1, std::uint64_t{2} << 32 | 1), status::stream_mismatch); // a container's
  try_stream(word_set(9, std::uint64_t{3} << 62 | 1), status::stream_corrupt);  // no such kind
  try_stream(word_set(9, std::uint64_t{2} << 62), status::stream_corrupt);      // clears nothing
  try_stream(word_set(10, 12), status::stream_corrupt);                         // overlaps
  try_stream(word_set(14, 1), status::stream_corrupt); // the count leaves out the clear
  try_stream(word_set(12, 0), status::stream_corrupt); // a list value that maps nothing
  // A full snapshot is not a stream of changes, nor the other way round.
  try_stream(stream_of(source), status::stream_mismatch);
  auto empty = make_table<config_small_blocks>();
  CHECK(restore(empty, good) == status::stream_mismatch);
  CHECK(!empty.next_run(0));
  // The good stream is good, and gives the source.
  REQUIRE(apply_changes(receiver, good) == status::ok);
  CHECK(take_snapshot(receiver).runs == take_snapshot(source).runs);
}

TEST_CASE("every allocation of applying changes can fail: the receiver stays as it was") {
  using table_type = tce_table<config_small_blocks>;
  fault_plan plan;
  auto make = [&] {
    auto made = table_type::create(ioba{test_window<config_small_blocks>::offset},
                                   test_window<config_small_blocks>::bytes,
                                   fault_injecting_allocator(plan));
    REQUIRE(made);
    return std::move(made).value();
  };
  auto source = make();
  reference_model<table_type> model(source);
  std::mt19937_64 rng(7);
  random_writes(source, model, rng, 10);
  REQUIRE(source.start_tracking() == status::ok);
  const auto full = stream_of(source);
  random_writes(source, model, rng, 30); // writes into levels the receiver lacks
  const auto increment = changes_of(source);
  std::uint64_t points = 0;
  {
    auto receiver = make();
    REQUIRE(restore(receiver, full) == status::ok);
    plan.reset_counts();
    REQUIRE(apply_changes(receiver, increment) == status::ok);
    points = plan.points;
    CHECK(take_snapshot(receiver).runs == model.runs());
  }
  REQUIRE(points >= 2);
  for (std::uint64_t n = 1; n <= points; ++n) {
    CAPTURE(n);
    auto receiver = make();
    REQUIRE(restore(receiver, full) == status::ok);
    const auto before = take_snapshot(receiver);
    const std::int64_t live = plan.live_bytes;
    plan.fail_nth(n);
    CHECK(apply_changes(receiver, increment) == status::no_memory);
    plan.never_fail();
    CHECK(take_snapshot(receiver) == before);
    CHECK(plan.live_bytes == live);
  }
}

TEST_CASE("the tracker against a set of pages: exact when it can allocate, more never less "
          "when it cannot") {
  fault_plan plan;
  for (const unsigned entries_bits : {5u, 12u, 13u, 19u, 31u}) {
    CAPTURE(entries_bits);
    const std::uint64_t pages = std::uint64_t{1} << entries_bits;
    change_tracker<fault_injecting_allocator> tracker{fault_injecting_allocator(plan)};
    REQUIRE(tracker.start(entries_bits) == status::ok);
    std::mt19937_64 rng(entries_bits);
    for (int round = 0; round < 30; ++round) {
      std::set<std::uint64_t> marked; // the pages marked this round
      bool exact = true;
      for (int i = 0; i < 40; ++i) {
        const std::uint64_t first = rng() % pages;
        const std::uint64_t n = std::min<std::uint64_t>(
            rng() % 4 == 0 ? 1 + rng() % 70000 : 1 + rng() % 100, pages - first);
        const int how = static_cast<int>(rng() % 10);
        if (how == 0)
          plan.fail_nth(1 + rng() % 3); // a node cannot be had
        tracker.mark(first, first + n - 1, how != 1);
        if (plan.failures != 0 || how == 1)
          exact = false; // it may have marked more
        plan.never_fail();
        plan.failures = 0;
        for (std::uint64_t k = 0; k < n && k < 5000; ++k)
          marked.insert(first + k);
        if (n > 5000)
          for (std::uint64_t k = n - 100; k < n; ++k)
            marked.insert(first + k);
        if (n > 5000)
          exact = false; // the model keeps only both ends of a long range
      }
      std::uint64_t previous_last = 0;
      bool any = false, in_order = true;
      std::set<std::uint64_t> taken;
      std::uint64_t taken_pages = 0;
      tracker.take([&](std::uint64_t first, std::uint64_t last) {
        in_order = in_order && first <= last && last < pages &&
                   (!any || first > previous_last + 1); // ascending, apart, joined
        any = true;
        previous_last = last;
        taken_pages += last - first + 1;
        for (auto it = marked.lower_bound(first); it != marked.end() && *it <= last; ++it)
          taken.insert(*it);
      });
      CHECK(in_order);
      CHECK(taken == marked); // nothing marked was missed
      if (exact)
        CHECK(taken_pages == marked.size());
      // Taken means cleared.
      bool again = false;
      tracker.take([&](std::uint64_t, std::uint64_t) { again = true; });
      CHECK(!again);
    }
    CHECK(tracker.bytes() > 0);
    tracker.stop();
    CHECK(tracker.bytes() == 0);
    CHECK(plan.live_bytes == 0);
  }
}
