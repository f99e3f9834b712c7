// Helpers shared by the benchmarks.
#pragma once

#include <benchmark/benchmark.h>
#include <iopt/configs.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

namespace iopt_bench {

// The names of the named configurations, in the order of IOPT_NAMED_CONFIGS.
#define IOPT_BENCH_CONFIG_NAME(config) #config,
inline constexpr const char* named_config_names[] = {IOPT_NAMED_CONFIGS(IOPT_BENCH_CONFIG_NAME)};

// Calls f.template operator()<C>(name) for each configuration C of the list
// (which starts with a void placeholder), in order, with its name.
template <class Placeholder, class... Configs, class F>
void for_each_named_config(F&& f) {
  std::size_t i = 0;
  (f.template operator()<Configs>(named_config_names[i++]), ...);
}

// A page-aligned, pre-faulted buffer of 8-byte entries.
class entry_buffer {
public:
  explicit entry_buffer(std::size_t entries)
      : bytes_(entries * sizeof(std::uint64_t)),
        data_(static_cast<std::uint64_t*>(::operator new (bytes_, std::align_val_t{4096}))) {
    std::memset(data_, 1, bytes_);
  }
  ~entry_buffer() { ::operator delete (data_, std::align_val_t{4096}); }
  entry_buffer(const entry_buffer&) = delete;
  entry_buffer& operator=(const entry_buffer&) = delete;
  std::uint64_t* data() noexcept { return data_; }

private:
  std::size_t bytes_;
  std::uint64_t* data_;
};

// The scan limit: reads every byte of n entries as memchr does, looking
// for the byte 0xa5 and going on after each hit; returns the hits, so the
// reads cannot be dropped (0 over a buffer that holds no such byte).
inline std::size_t scan_entries(const std::uint64_t* entries, std::size_t n) {
  const auto* at = reinterpret_cast<const unsigned char*>(entries);
  const auto* const end = at + n * sizeof(std::uint64_t);
  std::size_t hits = 0;
  while (const void* found = std::memchr(at, 0xa5, static_cast<std::size_t>(end - at))) {
    at = static_cast<const unsigned char*>(found) + 1;
    ++hits;
  }
  return hits;
}

// Items are entries; bytes are the 8 bytes of each, so a benchmark's bytes per
// second compares directly with memset and the scan of the same count.
inline void set_entry_counters(benchmark::State& state, std::size_t entries_per_iteration) {
  const auto n = static_cast<std::int64_t>(entries_per_iteration);
  state.SetItemsProcessed(state.iterations() * n);
  state.SetBytesProcessed(state.iterations() * n * 8);
}

// Adds the least and the greatest of the repetitions to the aggregates (as
// "min" and "max"): the report's pictures draw them as the spread.
inline void with_spread(benchmark::internal::Benchmark* b) {
  b->ComputeStatistics(
      "min", [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); });
  b->ComputeStatistics(
      "max", [](const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); });
}

// The run lengths of the map_range picture (pages in one call): 512 (one
// leaf block) to 2^21 (16 MiB of entries, past every cache), and the 65536
// of the summary table.
inline constexpr std::int64_t map_range_run_lengths[] = {512,   2048,   8192,   32768,
                                                         65536, 131072, 524288, 2097152};

// Paired timing, for a ratio on a shared machine: each iteration times the
// measured operation and its baseline back to back, so both see the same
// machine, and the median of the per-iteration ratios (baseline time over
// measured time) goes into the counter `paired_ratio`. The report prefers it
// to the ratio of two medians taken at different moments.
class paired_ratio {
public:
  void add(double measured_seconds, double baseline_seconds) {
    if (measured_seconds > 0)
      ratios_.push_back(baseline_seconds / measured_seconds);
  }
  void publish(benchmark::State& state) {
    if (ratios_.empty())
      return;
    const auto middle = ratios_.begin() + static_cast<std::ptrdiff_t>(ratios_.size() / 2);
    std::nth_element(ratios_.begin(), middle, ratios_.end());
    state.counters["paired_ratio"] = *middle;
  }

private:
  std::vector<double> ratios_;
};

} // namespace iopt_bench

// Registers the benchmark template bm for every named configuration
// (IOPT_NAMED_CONFIGS in configs.hpp), as bm<iopt::config_...>, with the same
// options (..., e.g. ->Arg(512)) for each.
#define IOPT_BENCH_ONE_CONFIG(config) , iopt::config
#define IOPT_BENCH_ALL_CONFIGS(bm, ...)                                                            \
  [[maybe_unused]] static const bool bm##_registered = [] {                                        \
    iopt_bench::for_each_named_config<void IOPT_NAMED_CONFIGS(IOPT_BENCH_ONE_CONFIG)>(             \
        []<class C>(const char* name) {                                                            \
          benchmark::RegisterBenchmark((std::string(#bm "<iopt::") + name + ">").c_str(), bm<C>)   \
              __VA_ARGS__;                                                                         \
        });                                                                                        \
    return true;                                                                                   \
  }()
