// tce_table hot paths, for every named configuration. Each figure has its
// divisor in the same run: BM_memset_entries / BM_scan_entries of the same
// number of entries (physical_limit.cpp), and for map_range the per-entry
// walk-from-the-root baseline (baselines/per_entry_walk.hpp).
#include "baselines/per_entry_walk.hpp"
#include "bench_support.hpp"

#include <iopt/configs.hpp>
#include <iopt/table/tce_table.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

using namespace iopt;

// The window each configuration is measured in: the 64-bit huge window for
// the on-demand configurations, a 2 GiB window for the others.
template <class Config>
struct bench_window {
  static constexpr std::uint64_t offset = 0;
  static constexpr std::uint64_t bytes = std::uint64_t{1} << 31;
};
template <>
struct bench_window<config_64k> { // 2^20 pages, so a run of 65536 fits
  static constexpr std::uint64_t offset = 0;
  static constexpr std::uint64_t bytes = std::uint64_t{1} << 36;
};
template <>
struct bench_window<config_huge_window> {
  static constexpr std::uint64_t offset = huge_window_bus_offset;
  static constexpr std::uint64_t bytes = std::uint64_t{1} << 47;
};
template <>
struct bench_window<config_16m> {
  static constexpr std::uint64_t offset = huge_window_bus_offset;
  static constexpr std::uint64_t bytes = std::uint64_t{1} << 50;
};
template <>
struct bench_window<config_16m_flat> { // 2^16 pages, so a run of 65536 fits
  static constexpr std::uint64_t offset = huge_window_bus_offset;
  static constexpr std::uint64_t bytes = std::uint64_t{1} << 40;
};

template <class Config>
tce_table<Config> make_table(std::uint64_t bytes = bench_window<Config>::bytes) {
  auto made = tce_table<Config>::create(ioba{bench_window<Config>::offset}, bytes);
  if (!made) {
    std::fprintf(stderr, "cannot create the benchmark window: %s\n",
                 to_string(made.error()).data());
    std::abort();
  }
  return std::move(made).value();
}

template <class Config>
ioba at_page(const tce_table<Config>& t, std::uint64_t page) {
  return t.window().first() + (page << tce_table<Config>::page_shift);
}

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "benchmark setup failed: %s\n", what);
    std::abort();
  }
}

// 1. One page on an existing leaf.
template <class Config>
void BM_map_one(benchmark::State& state) {
  auto t = make_table<Config>();
  constexpr std::uint64_t page = tce_table<Config>::page_bytes;
  require(t.map_range(at_page(t, 0), 0, 256, permission::read) == status::ok, "prefault");
  const ioba base = at_page(t, 0); // found once, as the flat array's base
  std::uint64_t i = 0;
  for (auto _ : state) {
    const std::uint64_t slot = i++ & 255;
    benchmark::DoNotOptimize(t.map(base + slot * page, slot * page, permission::read_write));
  }
  state.SetItemsProcessed(state.iterations());
}

template <class Config>
void BM_translate_one(benchmark::State& state) {
  auto t = make_table<Config>();
  require(t.map_range(at_page(t, 0), 0, 256, permission::read) == status::ok, "prefault");
  const ioba base = at_page(t, 0);
  std::uint64_t i = 0;
  for (auto _ : state) {
    const auto r = t.translate(base + ((i++ & 255) << tce_table<Config>::page_shift) + 0x123);
    // What a caller reads of it, each in a register, as the flat load's
    // value is (a whole result would be forced out to memory).
    const translation found = r.value_or(translation{});
    benchmark::DoNotOptimize(r.error());
    benchmark::DoNotOptimize(found.target);
    benchmark::DoNotOptimize(found.perm);
  }
  state.SetItemsProcessed(state.iterations());
}

// Their limit: a store to and a load from a flat array of entries in the
// table's memory form, at the same index, found from the same bus address
// (what a single-level table with no checks would do).
template <class Config>
void BM_flat_array_store(benchmark::State& state) {
  using format = typename tce_table<Config>::format;
  constexpr unsigned shift = tce_table<Config>::page_shift;
  iopt_bench::entry_buffer entries(256);
  const std::uint64_t base = bench_window<Config>::offset;
  std::uint64_t i = 0;
  for (auto _ : state) {
    const std::uint64_t slot = i++ & 255;
    const std::uint64_t bus = base + (slot << shift);
    benchmark::DoNotOptimize(entries.data()[(bus - base) >> shift] = format::to_memory(
                                 format::make(slot << shift, permission::read_write)));
  }
  state.SetItemsProcessed(state.iterations());
}

template <class Config>
void BM_flat_array_load(benchmark::State& state) {
  using format = typename tce_table<Config>::format;
  constexpr unsigned shift = tce_table<Config>::page_shift;
  iopt_bench::entry_buffer entries(256);
  for (std::uint64_t slot = 0; slot < 256; ++slot)
    entries.data()[slot] = format::to_memory(format::make(slot << shift, permission::read));
  const std::uint64_t base = bench_window<Config>::offset;
  std::uint64_t i = 0;
  for (auto _ : state) {
    const std::uint64_t bus = base + ((i++ & 255) << shift) + 0x123;
    const std::uint64_t value = format::from_memory(entries.data()[(bus - base) >> shift]);
    benchmark::DoNotOptimize(format::target(value, shift) | (bus & ((1u << shift) - 1)));
  }
  state.SetItemsProcessed(state.iterations());
}

// 2. A contiguous run, rewritten in place (levels exist: the steady state).
template <class Config>
void BM_map_range(benchmark::State& state) {
  const auto pages = static_cast<std::uint64_t>(state.range(0));
  auto t = make_table<Config>();
  require(t.map_range(at_page(t, 0), 0, pages, permission::read) == status::ok, "prefault");
  std::uint64_t target = 0;
  for (auto _ : state) {
    target ^= std::uint64_t{1} << 40;
    benchmark::DoNotOptimize(t.map_range(at_page(t, 0), target, pages, permission::read_write));
    benchmark::ClobberMemory();
  }
  iopt_bench::set_entry_counters(state, pages);
}

template <class Config>
void BM_baseline_per_entry_walk(benchmark::State& state) {
  using geometry = table_geometry<Config>;
  const auto pages = static_cast<std::uint64_t>(state.range(0));
  std::vector<unsigned> bits(Config::level_bits.begin(), Config::level_bits.end());
  iopt_baseline::per_entry_walk_table t(bits, geometry::page_shift,
                                        bench_window<Config>::bytes >> geometry::page_shift);
  t.build(0, pages, 0, 1);
  std::uint64_t target = 0;
  for (auto _ : state) {
    target ^= std::uint64_t{1} << 40;
    t.build(0, pages, target, 3);
    benchmark::ClobberMemory();
  }
  iopt_bench::set_entry_counters(state, pages);
}

// 3. Clear of a whole 2 GiB window, every entry set. Manual time: only the
// clear is timed (pausing the library's timer around the refill costs
// microseconds, as much as the clear of a window of 64 KiB pages).
template <class Config>
void BM_clear_2g_window(benchmark::State& state) {
  auto t = make_table<Config>(std::uint64_t{1} << 31);
  for (auto _ : state) {
    require(t.map_range(t.window().first(), 0, t.pages(), permission::read) == status::ok, "fill");
    const auto start = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(t.clear(t.window().first(), t.pages()));
    benchmark::ClobberMemory();
    state.SetIterationTime(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  iopt_bench::set_entry_counters(state, t.pages());
}

// 4. Iterating the runs of a huge window with state.range(0) MiB mapped in
// 64 KiB pages, in pieces of 1 MiB whose targets are not contiguous (so the
// number of runs grows with what is mapped). Reports the table's memory next
// to the leaf entries strictly needed.
template <class Config>
void BM_iterate_mapped(benchmark::State& state) {
  constexpr unsigned shift = tce_table<Config>::page_shift;
  const auto mib = static_cast<std::uint64_t>(state.range(0));
  auto t = make_table<Config>();
  const std::uint64_t pages_per_mib = std::uint64_t{1} << (20 - shift);
  for (std::uint64_t m = 0; m < mib; ++m)
    require(t.map_range(at_page(t, (std::uint64_t{1} << 24) + m * pages_per_mib), (2 * m) << 20,
                        pages_per_mib, permission::read_write) == status::ok,
            "map");
  std::uint64_t runs = 0;
  for (auto _ : state) {
    runs = 0;
    t.for_each_run([&](const mapped_run& r) { runs += r.pages; });
    benchmark::DoNotOptimize(runs);
  }
  const std::uint64_t mapped = mib * pages_per_mib;
  iopt_bench::set_entry_counters(state, mapped);
  state.counters["table_bytes"] = static_cast<double>(t.memory_bytes());
  state.counters["leaf_bytes_needed"] = static_cast<double>(mapped * 8);
  state.counters["memory_ratio"] =
      static_cast<double>(t.memory_bytes()) / static_cast<double>(mapped * 8);
}

// The same with 1 GiB mapped contiguously: one run.
template <class Config>
void BM_iterate_1g_contiguous(benchmark::State& state) {
  constexpr unsigned shift = tce_table<Config>::page_shift;
  const std::uint64_t pages = (std::uint64_t{1} << 30) >> shift;
  auto t = make_table<Config>();
  require(t.map_range(at_page(t, std::uint64_t{1} << 24), std::uint64_t{1} << 44, pages,
                      permission::read_write) == status::ok,
          "map");
  std::uint64_t runs = 0;
  for (auto _ : state) {
    runs = 0;
    t.for_each_run([&](const mapped_run&) { ++runs; });
    benchmark::DoNotOptimize(runs);
  }
  iopt_bench::set_entry_counters(state, pages);
  state.counters["runs"] = static_cast<double>(runs);
  state.counters["table_bytes"] = static_cast<double>(t.memory_bytes());
  state.counters["memory_ratio"] =
      static_cast<double>(t.memory_bytes()) / static_cast<double>(pages * 8);
}

} // namespace

IOPT_BENCH_ALL_CONFIGS(BM_map_one);
IOPT_BENCH_ALL_CONFIGS(BM_translate_one);
IOPT_BENCH_ALL_CONFIGS(BM_flat_array_store);
IOPT_BENCH_ALL_CONFIGS(BM_flat_array_load);
namespace {
// The picture's run lengths that fit the configuration's benchmark window.
template <class Config>
void map_range_sweep(benchmark::internal::Benchmark* b) {
  const std::uint64_t pages = bench_window<Config>::bytes >> table_geometry<Config>::page_shift;
  for (const std::int64_t n : iopt_bench::map_range_run_lengths)
    if (static_cast<std::uint64_t>(n) <= pages)
      b->Arg(n);
  iopt_bench::with_spread(b);
}
} // namespace

IOPT_BENCH_ALL_CONFIGS(BM_map_range, ->Apply(map_range_sweep<C>));
IOPT_BENCH_ALL_CONFIGS(BM_baseline_per_entry_walk, ->Apply(map_range_sweep<C>));
IOPT_BENCH_ALL_CONFIGS(BM_clear_2g_window, ->UseManualTime()->Unit(benchmark::kMicrosecond));
BENCHMARK_TEMPLATE(BM_iterate_mapped, iopt::config_huge_window)->Arg(64)->Arg(256)->Arg(1024);
BENCHMARK_TEMPLATE(BM_iterate_1g_contiguous, iopt::config_huge_window);
