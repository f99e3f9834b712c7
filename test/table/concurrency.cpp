// Threads racing on one table: to create the same level, and readers against
// writers. Under the tsan preset ThreadSanitizer checks the accesses; here
// the results are checked: one block per level, no leak, no torn entry.
#include "table/support.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <thread>

using namespace iopt;
using namespace iopt_test;

TEST_CASE("two threads racing to create the same levels end with one of each") {
  for (int trial = 0; trial < 200; ++trial) {
    auto made = tce_table<config_huge_window>::create(ioba{huge_window_bus_offset}, std::uint64_t{1} << 47);
    REQUIRE(made);
    auto& t = *made;
    const std::size_t empty = t.memory_bytes();
    std::atomic<int> ready{0};
    auto writer = [&](std::uint64_t first_page) {
      ready.fetch_add(1);
      while (ready.load() < 2) {
      }
      for (std::uint64_t i = 0; i < 64; ++i)
        REQUIRE(t.map(page_address(t, first_page + 2 * i), (first_page + 2 * i) << 16, permission::read) ==
                status::ok);
    };
    // Interleaved pages of one leaf: both threads need the same middle block and leaf.
    std::thread a(writer, 1000);
    std::thread b(writer, 1001);
    a.join();
    b.join();
    CHECK(t.memory_bytes() == empty + 4096 + 128 * 1024);
    const auto runs = take_snapshot(t).runs;
    REQUIRE(runs.size() == 1);
    CHECK(runs[0].pages == 128);
  }
}

TEST_CASE("a reader never sees a torn entry") {
  auto t = make_table<config_4k>();
  const ioba at{0x7000};
  constexpr std::uint64_t a = 0x1111'1111'1111'1000 | 1, b = 0x2222'2222'2222'2000 | 3;
  REQUIRE(t.put(at, a) == status::ok);
  std::atomic<bool> stop{false};
  std::thread reader([&] {
    while (!stop.load()) {
      const std::uint64_t v = *t.get(at);
      REQUIRE((v == a || v == b));
    }
  });
  for (int i = 0; i < 200'000; ++i)
    REQUIRE(t.put(at, i % 2 ? a : b) == status::ok);
  stop = true;
  reader.join();
}

TEST_CASE("disjoint ranges written concurrently equal the sequential result") {
  auto parallel = make_table<config_huge_window>();
  auto sequential = make_table<config_huge_window>();
  const std::uint64_t chunk = 20'000; // crosses a leaf boundary for each thread
  auto work = [](tce_table<config_huge_window>& t, std::uint64_t first) {
    for (std::uint64_t i = 0; i < chunk; i += 100)
      REQUIRE(t.map_range(page_address(t, first + i), (first + i) << 16, 100, permission::read_write) ==
              status::ok);
    REQUIRE(t.clear(page_address(t, first + 50), 25) == status::ok);
  };
  std::thread x([&] { work(parallel, 0); });
  std::thread y([&] { work(parallel, chunk); });
  x.join();
  y.join();
  work(sequential, 0);
  work(sequential, chunk);
  CHECK(take_snapshot(parallel) == take_snapshot(sequential));
}
