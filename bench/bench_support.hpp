// Helpers shared by the benchmarks.
#pragma once

#include <benchmark/benchmark.h>
#include <iopt/configs.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

namespace iopt_bench {

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

// Items are entries; bytes are the 8 bytes of each, so a benchmark's bytes per
// second compares directly with memset and the scan of the same count.
inline void set_entry_counters(benchmark::State& state, std::size_t entries_per_iteration) {
  const auto n = static_cast<std::int64_t>(entries_per_iteration);
  state.SetItemsProcessed(state.iterations() * n);
  state.SetBytesProcessed(state.iterations() * n * 8);
}

} // namespace iopt_bench

// Registers the benchmark template bm for every named configuration, with
// the same options (..., e.g. ->Arg(512)) for each.
#define IOPT_BENCH_ALL_CONFIGS(bm, ...)                                                            \
  BENCHMARK_TEMPLATE(bm, iopt::config_4k) __VA_ARGS__;                                             \
  BENCHMARK_TEMPLATE(bm, iopt::config_64k) __VA_ARGS__;                                            \
  BENCHMARK_TEMPLATE(bm, iopt::config_huge_window) __VA_ARGS__;                                    \
  BENCHMARK_TEMPLATE(bm, iopt::config_16m) __VA_ARGS__
