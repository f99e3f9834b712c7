// The physical limits every table benchmark is divided by: writing N 8-byte
// entries with memset, and reading them back in a scan. Same binary, same
// run, same buffer sizes as the operations they bound.
#include "bench_support.hpp"

#include <cstring>

namespace {

void BM_memset_entries(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  iopt_bench::entry_buffer buffer(n);
  for (auto _ : state) {
    std::memset(buffer.data(), 0, n * sizeof(std::uint64_t));
    benchmark::DoNotOptimize(buffer.data());
    benchmark::ClobberMemory();
  }
  iopt_bench::set_entry_counters(state, n);
}

void BM_scan_entries(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  iopt_bench::entry_buffer buffer(n);
  for (std::size_t i = 0; i < n; ++i)
    buffer.data()[i] = i * 0x10000;
  for (auto _ : state) {
    std::uint64_t any = 0;
    const std::uint64_t* p = buffer.data();
    for (std::size_t i = 0; i < n; ++i)
      any |= p[i];
    benchmark::DoNotOptimize(any);
  }
  iopt_bench::set_entry_counters(state, n);
}

} // namespace

BENCHMARK(BM_memset_entries)->RangeMultiplier(2)->Range(1 << 9, 1 << 24);
BENCHMARK(BM_scan_entries)->RangeMultiplier(2)->Range(1 << 9, 1 << 24);
