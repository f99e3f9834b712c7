// The container: window creation; map_dma, unmap_dma and window teardown of
// 1 GiB in v2 and v1, over contiguous and scattered frames, against the same
// memory in page-sized calls and against memset of the TCE bytes (16384
// entries: BM_memset_entries/16384).
#include "bench_support.hpp"

#include <iopt/configs.hpp>
#include <iopt/window/container.hpp>

#include <chrono>
#include <cstdlib>
#include <string>
#include <utility>

namespace {

using namespace iopt;

constexpr std::uint64_t host_page = 1 << 16;
constexpr std::uint64_t gib = std::uint64_t{1} << 30;
constexpr std::uint64_t entries = gib / host_page;
constexpr ua memory{0x100'0000'0000};

using registry_type = prereg_registry<simulated_backend, unlimited_accounting>;
using v2_strategy = preregistered<registry_type>;
using v1_strategy = pin_on_map<simulated_backend, unlimited_accounting>;

template <class Strategy>
struct bench_container {
  using container_type =
      dma_container<Strategy, unlimited_accounting, config_4k, config_huge_window, config_16m>;
  simulated_backend backend;
  unlimited_accounting pins, tables;
  registry_type registry{backend, pins};
  Strategy strategy = make_strategy();
  container_type container{strategy, tables};

  explicit bench_container(frame_layout layout) : backend(16, layout) {
    if constexpr (Strategy::model == memory_model::v2_preregistered) {
      if (container.register_memory(memory, gib) != status::ok)
        std::abort();
    } else if (container.enable() != status::ok) {
      std::abort();
    }
    if (!container.create_window(16, 47))
      std::abort();
  }
  Strategy make_strategy() {
    if constexpr (Strategy::model == memory_model::v2_preregistered)
      return Strategy(registry);
    else
      return Strategy(backend, pins);
  }
  void map_all() {
    if (container.map_dma(ioba{huge_window_bus_offset}, memory, gib, permission::read_write) !=
        status::ok)
      std::abort();
  }
};

using clock_type = std::chrono::steady_clock;
double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

// Mapping 1 GiB in one call. Timed by hand (the unmap between iterations is
// left out without the cost of pausing the timer).
template <class Strategy>
void BM_map_dma_1g_one_call(benchmark::State& state, frame_layout layout) {
  bench_container<Strategy> b(layout);
  const ioba bus{huge_window_bus_offset};
  b.map_all(); // the levels exist from the first iteration on, as in a VMM's steady state
  (void)b.container.unmap_dma(bus, gib);
  for (auto _ : state) {
    const auto start = clock_type::now();
    const status s = b.container.map_dma(bus, memory, gib, permission::read_write);
    state.SetIterationTime(seconds_since(start));
    if (s != status::ok)
      std::abort();
    (void)b.container.unmap_dma(bus, gib);
  }
  iopt_bench::set_entry_counters(state, entries);
}

// The baseline: the same gigabyte as 16384 calls of one page each. Each
// iteration also maps it in one call (untimed here), for the paired ratio of
// the two.
template <class Strategy>
void BM_map_dma_1g_page_calls(benchmark::State& state, frame_layout layout) {
  bench_container<Strategy> b(layout);
  const ioba bus{huge_window_bus_offset};
  b.map_all(); // the levels exist, as for the one-call benchmark
  (void)b.container.unmap_dma(bus, gib);
  iopt_bench::paired_ratio paired;
  for (auto _ : state) {
    auto start = clock_type::now();
    for (std::uint64_t off = 0; off < gib; off += host_page)
      benchmark::DoNotOptimize(
          b.container.map_dma(bus + off, memory + off, host_page, permission::read_write));
    const double page_calls = seconds_since(start);
    state.SetIterationTime(page_calls);
    (void)b.container.unmap_dma(bus, gib);
    start = clock_type::now();
    const status s = b.container.map_dma(bus, memory, gib, permission::read_write);
    paired.add(seconds_since(start), page_calls);
    if (s != status::ok)
      std::abort();
    (void)b.container.unmap_dma(bus, gib);
  }
  paired.publish(state);
  iopt_bench::set_entry_counters(state, entries);
}

// Times op(container) with the gigabyte mapped before each iteration;
// restore(container) then runs untimed. Both must return true.
template <class Strategy, class Op, class Restore>
void time_with_gib_mapped(benchmark::State& state, frame_layout layout, Op op, Restore restore) {
  bench_container<Strategy> b(layout);
  for (auto _ : state) {
    b.map_all();
    const auto start = clock_type::now();
    const bool done = op(b.container);
    state.SetIterationTime(seconds_since(start));
    if (!done || !restore(b.container))
      std::abort();
  }
  iopt_bench::set_entry_counters(state, entries);
}

// Unmapping the gigabyte in one call.
template <class Strategy>
void BM_unmap_dma_1g(benchmark::State& state, frame_layout layout) {
  time_with_gib_mapped<Strategy>(
      state, layout,
      [](auto& container) {
        const auto unmapped = container.unmap_dma(ioba{huge_window_bus_offset}, gib);
        return unmapped && *unmapped == gib;
      },
      [](auto&) { return true; });
}

// Removing a window with 1 GiB mapped: every mapping is released. The
// window is made again, untimed, for the next round.
template <class Strategy>
void BM_teardown_window_1g_mapped(benchmark::State& state, frame_layout layout) {
  time_with_gib_mapped<Strategy>(
      state, layout,
      [](auto& container) {
        return container.remove_window(ioba{huge_window_bus_offset}) == status::ok;
      },
      [](auto& container) {
        const auto again = container.create_window(16, 47);
        return again && *again == ioba{huge_window_bus_offset};
      });
}

void BM_create_remove_128t_window(benchmark::State& state) {
  bench_container<v2_strategy> b(frame_layout::contiguous);
  if (b.container.remove_window(ioba{huge_window_bus_offset}) != status::ok)
    std::abort();
  for (auto _ : state) {
    const auto start = b.container.create_window(16, 47);
    benchmark::DoNotOptimize(start);
    benchmark::DoNotOptimize(b.container.remove_window(*start));
  }
  state.SetItemsProcessed(state.iterations());
}

} // namespace

BENCHMARK(BM_create_remove_128t_window)->Unit(benchmark::kMicrosecond);

namespace {
// Each operation in v2 and v1, over contiguous and over scattered frames:
// BM_map_dma_1g_one_call/v2_contiguous and so on.
template <class Strategy>
void register_dma_benchmarks(const std::string& model) {
  for (const auto& [layout, layout_name] : {std::pair{frame_layout::contiguous, "contiguous"},
                                            std::pair{frame_layout::scattered, "scattered"}}) {
    const std::string suffix = "/" + model + "_" + layout_name;
    for (const auto& [name, fn] :
         {std::pair{"BM_map_dma_1g_one_call", &BM_map_dma_1g_one_call<Strategy>},
          std::pair{"BM_map_dma_1g_page_calls", &BM_map_dma_1g_page_calls<Strategy>},
          std::pair{"BM_unmap_dma_1g", &BM_unmap_dma_1g<Strategy>},
          std::pair{"BM_teardown_window_1g_mapped", &BM_teardown_window_1g_mapped<Strategy>}})
      benchmark::RegisterBenchmark((name + suffix).c_str(), fn, layout)
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
  }
}
const bool registered = [] {
  register_dma_benchmarks<v2_strategy>("v2");
  register_dma_benchmarks<v1_strategy>("v1");
  return true;
}();
} // namespace
