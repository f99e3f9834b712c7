// The container: window creation, map_dma in one call against page-sized
// calls, and teardown of a window with mappings.
#include "bench_support.hpp"

#include <iopt/window/container.hpp>

#include <cstdlib>

namespace {

using namespace iopt;

constexpr std::uint64_t host_page = 1 << 16;
constexpr std::uint64_t gib = std::uint64_t{1} << 30;
constexpr ua memory{0x100'0000'0000};

using registry_type = prereg_registry<simulated_backend, unlimited_accounting>;
using strategy_type = preregistered<registry_type>;
using container_type =
    dma_container<strategy_type, unlimited_accounting, config_4k, config_huge_window, config_16m>;

struct bench_container {
  simulated_backend backend{16};
  unlimited_accounting pins, tables;
  registry_type registry{backend, pins};
  strategy_type strategy{registry};
  container_type container{strategy, tables};

  bench_container() {
    if (container.register_memory(memory, gib) != status::ok || !container.create_window(16, 47))
      std::abort();
  }
};

void BM_create_remove_128t_window(benchmark::State& state) {
  bench_container b;
  if (b.container.remove_window(ioba{huge_window_bus_offset}) != status::ok)
    std::abort();
  for (auto _ : state) {
    const auto start = b.container.create_window(16, 47);
    benchmark::DoNotOptimize(start);
    benchmark::DoNotOptimize(b.container.remove_window(*start));
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_map_dma_1g_one_call(benchmark::State& state) {
  bench_container b;
  const ioba bus{huge_window_bus_offset};
  for (auto _ : state) {
    benchmark::DoNotOptimize(b.container.map_dma(bus, memory, gib, permission::read_write));
    state.PauseTiming();
    (void)b.container.unmap_dma(bus, gib);
    state.ResumeTiming();
  }
  iopt_bench::set_entry_counters(state, gib / host_page);
}

// The baseline: the same gigabyte as 16384 calls of one page each.
void BM_map_dma_1g_page_calls(benchmark::State& state) {
  bench_container b;
  const ioba bus{huge_window_bus_offset};
  for (auto _ : state) {
    for (std::uint64_t off = 0; off < gib; off += host_page)
      benchmark::DoNotOptimize(
          b.container.map_dma(bus + off, memory + off, host_page, permission::read_write));
    state.PauseTiming();
    (void)b.container.unmap_dma(bus, gib);
    state.ResumeTiming();
  }
  iopt_bench::set_entry_counters(state, gib / host_page);
}

// Removing a window with 1 GiB mapped: every mapping count is released.
void BM_teardown_window_1g_mapped(benchmark::State& state) {
  bench_container b;
  if (b.container.remove_window(ioba{huge_window_bus_offset}) != status::ok)
    std::abort();
  for (auto _ : state) {
    state.PauseTiming();
    const auto start = b.container.create_window(16, 47);
    if (!start || b.container.map_dma(*start, memory, gib, permission::read_write) != status::ok)
      std::abort();
    state.ResumeTiming();
    benchmark::DoNotOptimize(b.container.remove_window(*start));
  }
  iopt_bench::set_entry_counters(state, gib / host_page);
}

} // namespace

BENCHMARK(BM_create_remove_128t_window)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_map_dma_1g_one_call)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_map_dma_1g_page_calls)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_teardown_window_1g_mapped)->Unit(benchmark::kMicrosecond);
