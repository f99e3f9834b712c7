// Live migration of TCE tables (migrate/table_stream.hpp). Divisors in the
// same run: the scan and the memset of the same entries
// (physical_limit.cpp), and QEMU's way of migrating a table, every entry of
// it into the stream (BM_baseline_dense_table_copy, extrapolated to the
// window's 2^31 entries as the replay baseline is).
#include "bench_support.hpp"

#include <iopt/configs.hpp>
#include <iopt/format/byte_order.hpp>
#include <iopt/migrate/table_stream.hpp>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <random>
#include <span>
#include <vector>

namespace {

using namespace iopt;
using huge_table = tce_table<config_huge_window>;

// 1 GiB of 64 KiB pages.
constexpr std::uint64_t gib_of_64k_pages = 16384;
// Where the gigabyte is mapped in the 128 TiB window, and what it maps.
constexpr std::uint64_t gib_offset = std::uint64_t{1} << 40;
constexpr std::uint64_t gib_target = std::uint64_t{1} << 44;

// A 4 KiB window of 2 GiB with its levels made on demand: what a VMM keeps
// for a guest's view of a window (leaves of 512 entries under a top of
// 1024).
struct config_4k_on_demand {
  // Big-endian TCEs.
  using format = hardware_tce;
  // 4 KiB IOMMU pages.
  using page_size = page_4k;
  // Leaves of 2^9 entries (4 KiB blocks) under a top of up to 2^11.
  static constexpr std::array<unsigned, 2> level_bits{9, 11};
};

template <class Table>
Table must(result<Table> made) {
  if (!made)
    std::abort();
  return std::move(made).value();
}
void must(status s) {
  if (s != status::ok)
    std::abort();
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// An empty 128 TiB window.
huge_table empty_huge_window() {
  return must(huge_table::create(ioba{huge_window_bus_offset}, std::uint64_t{1} << 47));
}
// A 128 TiB window with 1 GiB mapped in one run.
huge_table huge_window_with_1g() {
  auto t = empty_huge_window();
  must(t.map_range(ioba{huge_window_bus_offset + gib_offset}, gib_target, gib_of_64k_pages,
                   permission::read_write));
  return t;
}

// A sink that copies the stream into a buffer it reuses, as a VMM copies it
// into its migration channel.
struct buffer_sink {
  std::vector<std::byte> bytes = std::vector<std::byte>(std::size_t{1} << 20);
  std::size_t used = 0;
  status operator()(std::span<const std::byte> piece) noexcept {
    if (used + piece.size() > bytes.size())
      return status::no_memory; // sized for every stream measured here
    std::memcpy(bytes.data() + used, piece.data(), piece.size());
    used += piece.size();
    return status::ok;
  }
  std::span<const std::byte> stream() const noexcept { return {bytes.data(), used}; }
};

// The snapshot of a 128 TiB window with 1 GiB mapped: one run record.
void BM_snapshot_1g_in_128t(benchmark::State& state) {
  const auto t = huge_window_with_1g();
  buffer_sink sink;
  for (auto _ : state) {
    sink.used = 0;
    must(snapshot(t, sink));
    benchmark::DoNotOptimize(sink.bytes.data());
  }
  iopt_bench::set_entry_counters(state, gib_of_64k_pages); // the leaf entries read
  state.counters["stream_bytes"] = static_cast<double>(sink.used);
  state.counters["entry_bytes"] = static_cast<double>(gib_of_64k_pages * 8);
}

// QEMU's way: the table as one array of every entry, each put into the
// stream big-endian (qemu_put_be64) through a 32 KiB buffer, for a window
// of 2^range(0) entries. Faster than QEMU's per-entry calls, so the ratio
// against it is an underestimate.
void BM_baseline_dense_table_copy(benchmark::State& state) {
  const auto n = std::size_t{1} << state.range(0);
  iopt_bench::entry_buffer table(n);
  std::memset(table.data(), 0, n * 8);
  for (std::size_t i = 0; i < gib_of_64k_pages && i < n; ++i)
    table.data()[i] = (gib_target + (i << 16)) | 3;
  std::vector<std::uint64_t> buffer(4096);
  for (auto _ : state) {
    std::size_t used = 0;
    for (std::size_t i = 0; i < n; ++i) {
      buffer[used++] = to_big_endian(table.data()[i]);
      if (used == buffer.size()) {
        benchmark::DoNotOptimize(buffer.data());
        benchmark::ClobberMemory();
        used = 0;
      }
    }
  }
  iopt_bench::set_entry_counters(state, n);
}

// Restoring that stream into an empty 128 TiB window (manual time: each
// iteration restores into a new empty window, made and dropped untimed).
void BM_restore_1g_in_128t(benchmark::State& state) {
  buffer_sink sink;
  must(snapshot(huge_window_with_1g(), sink));
  for (auto _ : state) {
    auto receiver = empty_huge_window();
    const auto start = std::chrono::steady_clock::now();
    must(restore(receiver, sink.stream()));
    state.SetIterationTime(seconds_since(start));
  }
  iopt_bench::set_entry_counters(state, gib_of_64k_pages);
}

// A window of config C with 1 GiB mapped in one run: a 2 GiB window of
// 4 KiB pages, or the 128 TiB window of 64 KiB pages.
template <class C>
tce_table<C> window_with_1g() {
  using table = tce_table<C>;
  if constexpr (table::page_shift == 16) {
    auto t = must(table::create(ioba{huge_window_bus_offset}, std::uint64_t{1} << 47));
    must(t.map_range(ioba{huge_window_bus_offset + gib_offset}, gib_target, gib_of_64k_pages,
                     permission::read_write));
    return t;
  } else {
    auto t = must(table::create(ioba{0}, std::uint64_t{1} << 31));
    must(t.map_range(ioba{std::uint64_t{1} << 30}, gib_target, (std::uint64_t{1} << 30) >> 12,
                     permission::read_write));
    return t;
  }
}

// An increment after range(0) scattered single-page changes inside the
// mapped gigabyte, timed in pairs with the full snapshot of the same table
// (paired_ratio: full snapshot time over increment time). Iterations
// alternate between moving the pages away and putting them back, so the
// table stays the same from one pair of iterations to the next.
template <class C>
void BM_snapshot_changes(benchmark::State& state) {
  using table = tce_table<C>;
  constexpr unsigned shift = table::page_shift;
  auto t = window_with_1g<C>();
  must(t.start_tracking());
  const std::uint64_t gib_pages = (std::uint64_t{1} << 30) >> shift;
  const ioba gib_start{t.window().first().value() +
                       (shift == 16 ? gib_offset : std::uint64_t{1} << 30)};
  const auto changes = static_cast<std::size_t>(state.range(0));
  std::mt19937_64 rng(1);
  std::vector<std::uint64_t> pages(changes);
  buffer_sink increment, full;
  iopt_bench::paired_ratio vs_full;
  bool away = false;
  std::size_t increment_bytes = 0;
  must(snapshot_changes(t, increment)); // the setup's own marks
  for (auto _ : state) {
    if (!away)
      for (std::uint64_t& p : pages)
        p = rng() % gib_pages;
    for (const std::uint64_t p : pages) {
      const ioba at{gib_start.value() + (p << shift)};
      const std::uint64_t home = gib_target + (p << shift);
      must(t.map(at, away ? home : home ^ (std::uint64_t{1} << 40), permission::read_write));
    }
    away = !away;
    increment.used = 0;
    full.used = 0;
    const auto start = std::chrono::steady_clock::now();
    must(snapshot_changes(t, increment));
    const double seconds = seconds_since(start);
    const auto full_start = std::chrono::steady_clock::now();
    must(snapshot(t, full));
    vs_full.add(seconds, seconds_since(full_start));
    state.SetIterationTime(seconds);
    increment_bytes = increment.used;
  }
  vs_full.publish(state);
  state.SetItemsProcessed(state.iterations() * state.range(0));
  state.counters["increment_bytes"] = static_cast<double>(increment_bytes);
}

// Dense import of a 2 GiB window of 4 KiB pages (2^19 entries) holding
// 1000 scattered entries, into an empty table made untimed. Making the
// table passes its levels through the cache (4 MiB of zeros for the flat
// config_4k), which the array then has to share, so each import is paired
// with a scan of the same array right after making a table the same way:
// paired_ratio is that scan's time over the import's.
template <class C>
void BM_import_dense_2g_1000(benchmark::State& state) {
  using table = tce_table<C>;
  constexpr std::size_t entries = std::size_t{1} << 19;
  std::vector<std::uint64_t> dense(entries);
  std::mt19937_64 rng(2);
  for (int i = 0; i < 1000; ++i)
    dense[rng() % entries] = table::format::make((rng() % (1u << 20)) << 12, permission::read);
  iopt_bench::paired_ratio vs_scan;
  for (auto _ : state) {
    double scan_seconds = 0;
    {
      const auto unused = must(table::create(ioba{0}, std::uint64_t{1} << 31));
      const auto start = std::chrono::steady_clock::now();
      benchmark::DoNotOptimize(iopt_bench::scan_entries(dense.data(), dense.size()));
      scan_seconds = seconds_since(start);
    }
    auto receiver = must(table::create(ioba{0}, std::uint64_t{1} << 31));
    const auto start = std::chrono::steady_clock::now();
    must(import_dense(receiver, native_values{dense}));
    const double seconds = seconds_since(start);
    vs_scan.add(seconds, scan_seconds);
    state.SetIterationTime(seconds);
  }
  vs_scan.publish(state);
  iopt_bench::set_entry_counters(state, entries); // the array's entries read
}

} // namespace

BENCHMARK(BM_snapshot_1g_in_128t)->Apply(iopt_bench::with_spread);
BENCHMARK(BM_baseline_dense_table_copy)->Arg(24);
BENCHMARK(BM_restore_1g_in_128t)->UseManualTime()->Apply(iopt_bench::with_spread);
BENCHMARK(BM_snapshot_changes<config_huge_window>)
    ->Arg(100)
    ->Arg(1000)
    ->Arg(10000)
    ->UseManualTime();
BENCHMARK(BM_snapshot_changes<config_4k>)->Arg(100)->Arg(1000)->Arg(10000)->UseManualTime();
BENCHMARK(BM_import_dense_2g_1000<config_4k>)->UseManualTime();
BENCHMARK(BM_import_dense_2g_1000<config_4k_on_demand>)->UseManualTime();
