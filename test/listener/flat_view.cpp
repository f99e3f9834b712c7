#include "soak.hpp"

#include <iopt/listener/flat_view.hpp>
#include <iopt/listener/memory_map.hpp>

#include <doctest/doctest.h>

#include <random>

using namespace iopt;

namespace {
memory_region ram(std::uint64_t id, std::uint64_t first, std::uint64_t size, int priority = 0) {
  return memory_region{
      id, gpa{first}, size, priority, region_kind::ram, ua{0x7f00'0000'0000 + first}, id};
}
} // namespace

TEST_CASE("render: higher priority wins, a later region wins a tie, gaps stay empty") {
  const std::vector<memory_region> regions = {
      ram(1, 0x0000, 0x10000),                                 // RAM 0..64K
      {2, gpa{0x4000}, 0x2000, 1, region_kind::mmio, ua{}, 0}, // MMIO hole above it
      ram(3, 0x8000, 0x10000),                                 // same priority, later: wins
      ram(4, 0x30000, 0x1000),                                 // after a gap
  };
  const flat_view v = render(regions);
  REQUIRE(v.size() == 5);
  CHECK(v[0] == flat_section{gpa{0}, 0x4000, region_kind::ram, ua{0x7f00'0000'0000}, 1, 1, gpa{0},
                             0x10000}); // part of region 1, which the MMIO hole splits
  CHECK(v[1].kind == region_kind::mmio);
  CHECK(v[1].first == gpa{0x4000});
  CHECK(v[2] == flat_section{gpa{0x6000}, 0x2000, region_kind::ram, ua{0x7f00'0000'6000}, 1, 1,
                             gpa{0}, 0x10000});
  CHECK(v[3] == flat_section{gpa{0x8000}, 0x10000, region_kind::ram, ua{0x7f00'0000'8000}, 3, 3,
                             gpa{0x8000}, 0x10000});
  CHECK(v[4].first == gpa{0x30000});
}

TEST_CASE("render: a region at the very top of the address space") {
  const std::vector<memory_region> regions = {ram(1, UINT64_MAX - 0x1fff, 0x2000),
                                              ram(2, UINT64_MAX - 0xfff, 0x1000, 5)};
  const flat_view v = render(regions);
  REQUIRE(v.size() == 2);
  CHECK(v[0].size == 0x1000);
  CHECK(v[1].last() == UINT64_MAX);
  CHECK(v[1].region == 2);
}

TEST_CASE("render agrees with a per-address reference on random maps") {
  // An operation is one random map, rendered and checked against the reference.
  const std::uint64_t trials = iopt_test::soak_operations(200);
  std::mt19937_64 rng(5);
  for (std::uint64_t trial = 0; trial < trials; ++trial) {
    std::vector<memory_region> regions;
    for (std::uint64_t i = 0; i < 1 + rng() % 8; ++i)
      regions.push_back(
          ram(i + 1, (rng() % 64) * 0x100, (1 + rng() % 32) * 0x100, static_cast<int>(rng() % 3)));
    const flat_view v = render(regions);
    for (std::uint64_t a = 0; a < 100 * 0x100; a += 0x80) {
      // Who should win at a: the highest priority, then the latest.
      std::int64_t winner = -1;
      for (std::size_t i = 0; i < regions.size(); ++i)
        if (a >= regions[i].first.value() && a - regions[i].first.value() < regions[i].size &&
            (winner < 0 ||
             regions[i].priority >= regions[static_cast<std::size_t>(winner)].priority))
          winner = static_cast<std::int64_t>(i);
      const auto s = std::find_if(v.begin(), v.end(), [&](const flat_section& x) {
        return a >= x.first.value() && a <= x.last();
      });
      if (winner < 0) {
        CHECK(s == v.end());
      } else {
        REQUIRE(s != v.end());
        CHECK(s->region == regions[static_cast<std::size_t>(winner)].id);
        CHECK(s->host.value() - s->first.value() == 0x7f00'0000'0000); // host offset preserved
      }
    }
    for (std::size_t i = 1; i < v.size(); ++i)
      CHECK(v[i - 1].last() < v[i].first.value()); // sorted, no overlap
  }
  MESSAGE(trials << " random maps rendered");
}

TEST_CASE("difference: removals first, then additions; unchanged sections are silent") {
  const flat_view before = render({ram(1, 0, 0x10000), ram(2, 0x20000, 0x10000)});
  const flat_view after =
      render({ram(1, 0, 0x10000), ram(2, 0x20000, 0x8000), ram(3, 0x40000, 0x1000)});
  const flat_view_change c = difference(before, after);
  REQUIRE(c.removed.size() == 1);
  CHECK(c.removed[0].region == 2);
  REQUIRE(c.added.size() == 2);
  CHECK(c.added[0].size == 0x8000);
  CHECK(c.added[1].region == 3);
}

namespace {
struct recording_listener final : map_listener {
  std::vector<std::string> log;
  void begin() override { log.push_back("begin"); }
  void section_removed(const flat_section& s) override {
    log.push_back("-" + std::to_string(s.region));
  }
  void section_added(const flat_section& s) override {
    log.push_back("+" + std::to_string(s.region));
  }
  void commit_removals() override { log.push_back("commit-"); }
  void commit_additions() override { log.push_back("commit+"); }
};
} // namespace

TEST_CASE(
    "the memory map publishes changes, batches them, replays to late listeners, and unlinks") {
  memory_map map;
  recording_listener early;
  map.attach(early);
  CHECK(map.add_region(ram(1, 0, 0x10000)) == status::ok);
  CHECK(map.add_region(ram(1, 0x20000, 0x10000)) == status::exists);
  CHECK(map.add_region(ram(9, 0, 0)) == status::invalid_parameter);
  CHECK(map.add_region(ram(9, UINT64_MAX - 0xfff, 0x2000)) == status::wraps);
  CHECK(map.remove_region(42) == status::not_found);
  {
    memory_map::batch b(map);
    CHECK(map.add_region(ram(2, 0x8000, 0x1000, 1)) == status::ok); // splits region 1
    CHECK(map.add_region(ram(3, 0x40000, 0x1000)) == status::ok);
  }
  CHECK(early.log == std::vector<std::string>{"begin", "commit-",
                                              "commit+", // attached to an empty map
                                              "begin", "+1", "commit-", "commit+", "begin", "-1",
                                              "+1", "+2", "+1", "+3", "commit-", "commit+"});
  recording_listener late;
  map.attach(late);
  CHECK(late.log ==
        std::vector<std::string>{"begin", "+1", "+2", "+1", "+3", "commit-", "commit+"});
  {
    recording_listener brief;
    map.attach(brief);
    CHECK(brief.attached());
  } // gone: the map must not call it again
  CHECK(map.remove_region(3) == status::ok);
  CHECK(late.log.back() == "commit+");
}
