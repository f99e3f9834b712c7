// The target log against a model of what it promises: the pages it holds are
// the range's first ones, whole runs of them, with their targets; long runs
// come back as ranges and short ones as lists; it keeps runs as long as its
// limit allows (the model counts list entries and pieces from the rule, not
// from the log), and an owner that records at most room() pages gets them
// all back whatever the limit.
#include <iopt/prereg/target_log.hpp>

#include <doctest/doctest.h>

#include <cstdint>
#include <random>
#include <vector>

using namespace iopt;

namespace {

constexpr unsigned shift = 16;

struct model_run {
  std::uint64_t target;
  std::uint64_t pages;
};

// How many of `runs` a log with room for `limit` list entries and `limit`
// pieces keeps: a long run is one piece; consecutive short runs share one
// piece and take a list entry per page.
std::size_t runs_kept(const std::vector<model_run>& runs, std::size_t limit) {
  std::size_t pieces = 0, listed = 0;
  bool in_list = false;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const bool is_short = runs[i].pages < target_log::long_run;
    const std::size_t more_pieces = is_short && in_list ? 0 : 1;
    const std::size_t more_listed = is_short ? runs[i].pages : 0;
    if (pieces + more_pieces > limit || listed + more_listed > limit)
      return i;
    pieces += more_pieces;
    listed += more_listed;
    in_list = is_short;
  }
  return runs.size();
}

// The targets the log gives back, page by page, and a check of its pieces.
std::vector<std::uint64_t> replayed(const target_log& log) {
  std::vector<std::uint64_t> pages;
  log.replay(
      [&](std::uint64_t page, hpa target, std::uint64_t n) {
        CHECK(page == pages.size());
        CHECK(n >= target_log::long_run);
        for (std::uint64_t k = 0; k < n; ++k)
          pages.push_back(target.value() + (k << shift));
      },
      [&](std::uint64_t page, std::span<const std::uint64_t> targets) {
        CHECK(page == pages.size());
        CHECK(!targets.empty());
        pages.insert(pages.end(), targets.begin(), targets.end());
      });
  return pages;
}

std::vector<model_run> random_runs(std::mt19937_64& rng, std::size_t count) {
  std::vector<model_run> runs;
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint64_t pages = rng() % 4 == 0 ? 8 + rng() % 40 : 1 + rng() % 7;
    runs.push_back({(rng() % (std::uint64_t{1} << 30)) << shift, pages});
  }
  return runs;
}

std::vector<std::uint64_t> pages_of(const std::vector<model_run>& runs, std::size_t count) {
  std::vector<std::uint64_t> pages;
  for (std::size_t i = 0; i < count; ++i)
    for (std::uint64_t k = 0; k < runs[i].pages; ++k)
      pages.push_back(runs[i].target + (k << shift));
  return pages;
}

} // namespace

TEST_CASE("the log keeps the longest prefix of whole runs its limit allows") {
  std::mt19937_64 rng(7);
  for (const std::size_t limit :
       {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{8}, std::size_t{100},
        std::size_t{512}, std::size_t{513}, std::size_t{3000}, target_log::default_limit}) {
    CAPTURE(limit);
    target_log log(limit);
    for (int round = 0; round < 20; ++round) {
      CAPTURE(round);
      const auto runs = random_runs(rng, 1 + rng() % 2000);
      log.restart(shift);
      for (const model_run& r : runs)
        log.record(hpa{r.target}, r.pages);
      const std::size_t kept = runs_kept(runs, limit);
      const auto want = pages_of(runs, kept);
      CHECK(log.recorded_pages() == want.size());
      CHECK(replayed(log) == want);
    }
  }
}

TEST_CASE("an owner that records at most room() pages gets them all, whatever the limit") {
  std::mt19937_64 rng(11);
  target_log log(0);
  CHECK(log.room() >= target_log::inline_pages);
  for (int round = 0; round < 50; ++round) {
    std::vector<model_run> runs;
    std::uint64_t total = 0;
    for (const model_run& r : random_runs(rng, 400)) {
      if (total + r.pages > log.room())
        break;
      runs.push_back(r);
      total += r.pages;
    }
    log.restart_within_room(shift);
    for (const model_run& r : runs)
      log.record(hpa{r.target}, r.pages);
    CHECK(log.recorded_pages() == total);
    CHECK(replayed(log) == pages_of(runs, runs.size()));
  }
}

TEST_CASE("restart forgets the last range, grown or not; highest is what was set") {
  target_log log;
  log.restart(shift);
  for (std::uint64_t i = 0; i < 5000; ++i) // scattered: the list outgrows its inline room
    log.record(hpa{(i * 7919 % 100000) << shift}, 1);
  CHECK(log.recorded_pages() == 5000);
  log.set_highest(hpa{0x1234'ffff});
  CHECK(log.highest() == hpa{0x1234'ffff});

  log.restart(shift);
  CHECK(log.recorded_pages() == 0);
  CHECK(log.highest() == hpa{});
  CHECK(replayed(log).empty());
  log.record(hpa{0x10000}, 3);
  log.record(hpa{0x80000}, 9);
  log.record(hpa{0x200000}, 1);
  const std::vector<std::uint64_t> want = {0x10000, 0x20000,  0x30000, 0x80000, 0x90000,
                                           0xa0000, 0xb0000,  0xc0000, 0xd0000, 0xe0000,
                                           0xf0000, 0x100000, 0x200000};
  CHECK(replayed(log) == want);
}
