// Threads racing on one table: to create the same level, and readers against
// writers. Under the tsan preset ThreadSanitizer checks the accesses; here
// the results are checked: one block per level, no leak, no torn entry.
#include "soak.hpp"
#include "table/support.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <random>
#include <thread>
#include <vector>

using namespace iopt;
using namespace iopt_test;

TEST_CASE("two threads racing to create the same levels end with one of each") {
  for (int trial = 0; trial < 200; ++trial) {
    auto made =
        tce_table<config_huge_window>::create(ioba{huge_window_bus_offset}, std::uint64_t{1} << 47);
    REQUIRE(made);
    auto& t = *made;
    const std::size_t empty = t.memory_bytes();
    std::atomic<int> ready{0};
    auto writer = [&](std::uint64_t first_page) {
      ready.fetch_add(1);
      while (ready.load() < 2) {
      }
      for (std::uint64_t i = 0; i < 64; ++i)
        REQUIRE(t.map(page_address(t, first_page + 2 * i), (first_page + 2 * i) << 16,
                      permission::read) == status::ok);
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
      REQUIRE(t.map_range(page_address(t, first + i), (first + i) << 16, 100,
                          permission::read_write) == status::ok);
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

// The stress test: two threads, 10^6 mixed operations each (put, stuff,
// xchg, translate, and a replay of their own range now and then), on
// disjoint halves of the same leaf blocks, so that first touches race to
// allocate the same levels. Each thread checks every read against its own
// model: a torn entry or a lost write or level shows at once. At the end
// the table equals the one a sequential run of both streams builds.
namespace {
struct stress_stream {
  std::uint64_t seed;
  std::uint64_t parity; // the thread's pages: parity, parity + 2, ...
};

template <class Table>
std::uint64_t run_stream(Table& t, const stress_stream& s, std::uint64_t operations, bool check) {
  constexpr std::uint64_t page = Table::page_bytes;
  constexpr std::uint64_t span = 1 << 17; // pages 0 .. 2^17: several leaves and middle blocks
  std::mt19937_64 rng(s.seed);
  std::vector<std::uint64_t> model(span / 2, 0);
  std::uint64_t failures = 0;
  auto bus = [&](std::uint64_t slot) { return page_address(t, 2 * slot + s.parity); };
  for (std::uint64_t i = 0; i < operations; ++i) {
    const std::uint64_t r = rng();
    const std::uint64_t slot = (r >> 8) % (span / 2);
    const std::uint64_t value = ((r >> 32) % 4096) * page | (1 + (r & 1));
    switch (r % 8) {
    case 0:
    case 1:
    case 2:
      if (t.put(bus(slot), value) != status::ok)
        ++failures;
      model[slot] = value;
      break;
    case 3: { // stuff (what H_STUFF_TCE does): one value into this thread's entry,
              // a clear half of the time; the other thread's entries sit in between
      const std::uint64_t stuffed = (r & 0x100) ? 0 : value;
      if (t.fill(bus(slot), 1, stuffed) != status::ok)
        ++failures;
      model[slot] = stuffed;
      break;
    }
    case 4: {
      const auto old = t.xchg(bus(slot), value);
      if (!old || (check && *old != Table::format::normalize(model[slot])))
        ++failures;
      model[slot] = value;
      break;
    }
    case 5:
    case 6: {
      const auto got = t.get(bus(slot));
      if (!got || (check && *got != Table::format::normalize(model[slot])))
        ++failures;
      break;
    }
    default: {
      if (i % 4096 == 7) { // a replay of part of the window, concurrent with the other writer
        std::uint64_t runs = 0;
        (void)t.for_each_run(page_address(t, 0), 4096, [&](const mapped_run&) { ++runs; });
        (void)runs;
      } else {
        const auto tr = t.translate(bus(slot));
        const bool mapped = model[slot] != 0;
        if (check && tr.has_value() != mapped)
          ++failures;
      }
    }
    }
  }
  return failures;
}
} // namespace

TEST_CASE("stress: two threads, 10^6 mixed operations each, equal to the sequential result") {
  // The soak asks for IOPT_SOAK_OPERATIONS in all, shared by the two threads.
  const std::uint64_t operations = share_of(soak_operations(2 * 1'000'000), 2);
  auto parallel = make_table<config_huge_window>();
  const stress_stream a{11, 0}, b{22, 1};
  std::uint64_t failures_a = 0, failures_b = 0;
  std::thread ta([&] { failures_a = run_stream(parallel, a, operations, true); });
  std::thread tb([&] { failures_b = run_stream(parallel, b, operations, true); });
  ta.join();
  tb.join();
  CHECK(failures_a == 0);
  CHECK(failures_b == 0);
  auto sequential = make_table<config_huge_window>();
  CHECK(run_stream(sequential, a, operations, true) == 0);
  CHECK(run_stream(sequential, b, operations, true) == 0);
  CHECK(take_snapshot(parallel) == take_snapshot(sequential)); // runs and memory: no lost level
  MESSAGE((2 * operations) << " operations checked (" << operations << " in each thread)");
}
