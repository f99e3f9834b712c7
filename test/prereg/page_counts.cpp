// page_counts against a map of page -> count, over random ranges that start
// and end inside chunks, cover chunks whole, and nest.
#include "soak.hpp"

#include <iopt/prereg/page_counts.hpp>
#include <iopt/testing/fault_injecting_allocator.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <random>
#include <vector>

using namespace iopt;

TEST_CASE("page_counts matches a per-page model over random nested ranges") {
  // An operation is one raise or lower. Past CI's count (in the soak) the
  // operations come in rounds of CI's size, each with a new seed and ending
  // with every count lowered to zero: ranges are raised more often than
  // lowered, so one long sequence would hold ever more ranges and counts.
  constexpr std::uint64_t steps_per_round = 3000;
  const std::uint64_t operations = iopt_test::soak_operations(steps_per_round);
  page_counts<> counts;
  std::map<std::uint64_t, std::uint64_t> model;
  struct held {
    std::uint64_t first, pages, by;
  };
  std::vector<held> raised;
  std::uint64_t rounds = 0;
  for (std::uint64_t done = 0; done < operations; done += steps_per_round, ++rounds) {
    CAPTURE(rounds);
    std::mt19937_64 rng(7 + rounds);
    const std::uint64_t steps = std::min(steps_per_round, operations - done);
    for (std::uint64_t step = 0; step < steps; ++step) {
      if (raised.empty() || rng() % 3 != 0) {
        // Ranges near a few chunk boundaries (1024 pages a chunk), some whole chunks.
        const std::uint64_t first = (rng() % 4) * 1024 + (rng() % 2 == 0 ? 0 : rng() % 1500);
        const std::uint64_t pages = rng() % 4 == 0 ? 1024 * (1 + rng() % 2) : 1 + rng() % 1300;
        const std::uint64_t by = 1 + rng() % 3;
        std::uint64_t zeros = 0;
        for (std::uint64_t p = first; p < first + pages; ++p)
          zeros += model[p] == 0 ? 1u : 0u;
        CHECK(counts.uncounted(first, pages) == zeros);
        REQUIRE(counts.reserve(first, pages));
        CHECK(counts.raise(first, pages, by) == zeros);
        for (std::uint64_t p = first; p < first + pages; ++p)
          model[p] += by;
        raised.push_back({first, pages, by});
      } else {
        const std::size_t i = rng() % raised.size();
        const held h = raised[i];
        raised.erase(raised.begin() + static_cast<long>(i));
        std::uint64_t gone = 0;
        for (std::uint64_t p = h.first; p < h.first + h.pages; ++p)
          gone += (model[p] -= h.by) == 0 ? 1u : 0u;
        CHECK(counts.lower(h.first, h.pages, h.by) == gone);
      }
      if (step % 50 == 0) {
        std::size_t distinct = 0;
        for (const auto& [page, n] : model) {
          CHECK(counts.count(page) == n);
          distinct += n != 0 ? 1 : 0;
        }
        CHECK(counts.size() == distinct);
        // Runs of counted pages in a window that crosses chunks.
        std::uint64_t in_runs = 0;
        counts.for_each_run(900, 2500, true, [&](std::uint64_t first, std::uint64_t pages) {
          for (std::uint64_t p = first; p < first + pages; ++p)
            CHECK(model[p] != 0);
          in_runs += pages;
        });
        std::uint64_t expected = 0;
        for (std::uint64_t p = 900; p < 3400; ++p)
          expected += model.count(p) != 0 && model[p] != 0 ? 1u : 0u;
        CHECK(in_runs == expected);
      }
    }
    for (const held& h : raised)
      counts.lower(h.first, h.pages, h.by);
    CHECK(counts.size() == 0);
    raised.clear();
    model.clear();
  }
  MESSAGE(operations << " operations, in rounds of at most " << steps_per_round);
}

TEST_CASE("page_counts: a failed reservation changes no count, and nothing leaks") {
  fault_plan plan;
  {
    page_counts<fault_injecting_allocator> counts{fault_injecting_allocator(plan)};
    REQUIRE(counts.reserve(0, 10));
    counts.raise(0, 10);
    plan.fail_nth(2); // the second allocation of a range over three chunks
    CHECK_FALSE(counts.reserve(1000, 2100));
    plan.never_fail();
    CHECK(counts.count(5) == 1);
    CHECK(counts.count(1500) == 0);
    CHECK(counts.size() == 10);
    CHECK(counts.uncounted(1000, 2100) == 2100);
    REQUIRE(counts.reserve(5000, 3000));
    counts.trim(5000, 3000); // emptied chunks are kept for reuse, not counted
    CHECK(counts.size() == 10);
    counts.lower(0, 10);
    CHECK(counts.size() == 0);
  }
  CHECK(plan.live_bytes == 0); // the spare chunks and the directory went with it
}
