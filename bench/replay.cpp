// Replay and listeners. Divisors in the same run: the naive per-page replay
// (baselines/naive_replay.hpp) and BM_scan_entries of the leaf entries
// replay reads (physical_limit.cpp).
#include "baselines/naive_replay.hpp"
#include "bench_support.hpp"

#include <iopt/configs.hpp>
#include <iopt/listener/listener.hpp>
#include <iopt/notify/notifier.hpp>
#include <iopt/table/tce_table.hpp>

#include <cstdlib>

namespace {

using namespace iopt;
using table_type = tce_table<config_huge_window>;

table_type make_window(unsigned pages_log2) {
  auto t = table_type::create(ioba{huge_window_bus_offset}, std::uint64_t{1} << (pages_log2 + 16));
  if (!t)
    std::abort();
  return std::move(t).value();
}

struct counting_notifier final : iommu_notifier {
  std::uint64_t events = 0, pages = 0;
  void notify(const iommu_event& e) noexcept override {
    ++events;
    pages += e.run.pages;
  }
};

// iopt's replay of an empty window of 2^range(0) pages.
void BM_replay_empty_window(benchmark::State& state) {
  const auto log2 = static_cast<unsigned>(state.range(0));
  const auto t = make_window(log2);
  counting_notifier n;
  for (auto _ : state) {
    replay(t, n);
    benchmark::DoNotOptimize(n.events);
  }
  state.counters["window_pages_log2"] = log2;
}

// The naive replay: every page of the window, one translate each.
void BM_baseline_naive_replay_empty(benchmark::State& state) {
  const auto log2 = static_cast<unsigned>(state.range(0));
  const auto t = make_window(log2);
  counting_notifier n;
  for (auto _ : state) {
    iopt_baseline::naive_replay(t, n);
    benchmark::DoNotOptimize(n.events);
  }
  state.SetItemsProcessed(state.iterations() * (std::int64_t{1} << log2));
  state.counters["window_pages_log2"] = log2;
}

// 1 GiB mapped contiguously: iopt sends one event after reading the leaf.
void BM_replay_1g_mapped(benchmark::State& state) {
  auto t = make_window(31);
  if (t.map_range(ioba{huge_window_bus_offset + (std::uint64_t{1} << 40)}, std::uint64_t{1} << 44,
                  16384, permission::read_write) != status::ok)
    std::abort();
  counting_notifier n;
  for (auto _ : state) {
    n.events = 0;
    replay(t, n);
    benchmark::DoNotOptimize(n.events);
  }
  iopt_bench::set_entry_counters(state, 16384); // the leaf entries read
  state.counters["events"] = static_cast<double>(n.events);
}

// The same gigabyte replayed page by page (over its range only): 16384 events.
void BM_baseline_naive_replay_1g_range(benchmark::State& state) {
  auto t = make_window(31);
  const ioba first{huge_window_bus_offset + (std::uint64_t{1} << 40)};
  if (t.map_range(first, std::uint64_t{1} << 44, 16384, permission::read_write) != status::ok)
    std::abort();
  counting_notifier n;
  for (auto _ : state) {
    n.events = 0;
    iopt_baseline::naive_replay(t, n, first, 16384);
    benchmark::DoNotOptimize(n.events);
  }
  iopt_bench::set_entry_counters(state, 16384);
  state.counters["events"] = static_cast<double>(n.events);
}

// Listener throughput: a section added and removed, with 64 others present.
struct counting_sink {
  std::uint64_t ranges = 0, fragments = 0;
  bool wants(region_kind k) const { return k == region_kind::ram; }
  status add_range(gpa, ua, std::uint64_t) {
    ++ranges;
    return status::ok;
  }
  status remove_range(gpa, ua, std::uint64_t) {
    --ranges;
    return status::ok;
  }
  void unaligned(const unaligned_event&) { ++fragments; }
  void failed(const sink_failure&) {}
};

void BM_listener_add_remove_events(benchmark::State& state) {
  constexpr std::uint64_t events = 100'000;
  memory_map map;
  counting_sink sink;
  memory_listener<page_64k, counting_sink> listener(page_64k{}, sink);
  map.attach(listener);
  for (std::uint64_t i = 0; i < 64; ++i)
    if (map.add_region({i + 1, gpa{i << 30}, std::uint64_t{1} << 28, 0, region_kind::ram,
                        ua{0x7000'0000'0000 + (i << 30)}, i}) != status::ok)
      std::abort();
  for (auto _ : state) {
    for (std::uint64_t e = 0; e < events / 2; ++e) {
      const std::uint64_t at = (std::uint64_t{100} << 30) + (e % 64) * (std::uint64_t{1} << 24);
      if (map.add_region({1000, gpa{at}, std::uint64_t{1} << 24, 0, region_kind::ram, ua{at},
                          99}) != status::ok ||
          map.remove_region(1000) != status::ok)
        std::abort();
    }
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(events));
}

} // namespace

BENCHMARK(BM_replay_empty_window)->DenseRange(16, 31, 5);
BENCHMARK(BM_baseline_naive_replay_empty)->DenseRange(12, 24, 4)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_replay_1g_mapped);
BENCHMARK(BM_baseline_naive_replay_1g_range)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_listener_add_remove_events)->Unit(benchmark::kMillisecond);
