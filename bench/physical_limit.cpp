// The physical limits every table benchmark is divided by: writing N 8-byte
// entries with memset, and reading them back in a scan. Same binary, same
// run, same buffer sizes as the operations they bound. Both come from the C
// library, which picks the widest vector accesses the processor has at run
// time (as iopt's bulk entry code does), so neither limit is held back by
// the flags this binary was built with: the scan is memchr for a byte that
// is nowhere in the buffer, so it reads every byte.
#include "bench_support.hpp"

#include <cstdlib>
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
  std::memset(buffer.data(), 0x5a, n * sizeof(std::uint64_t));
  for (auto _ : state) {
    const std::size_t hits = iopt_bench::scan_entries(buffer.data(), n);
    if (hits != 0)
      std::abort();
    benchmark::DoNotOptimize(hits);
    benchmark::ClobberMemory();
  }
  iopt_bench::set_entry_counters(state, n);
}

} // namespace

BENCHMARK(BM_memset_entries)
    ->RangeMultiplier(2)
    ->Range(1 << 9, 1 << 24)
    ->Apply(iopt_bench::with_spread);
BENCHMARK(BM_scan_entries)->RangeMultiplier(2)->Range(1 << 9, 1 << 24);
