// The guest hypercall front end's hot paths, for every named configuration.
// Divisors in the same run: 512 single H_PUT_TCE calls for the indirect call,
// BM_memset_entries/1048576 (physical_limit.cpp) for H_STUFF_TCE.
#include "bench_support.hpp"

#include <iopt/configs.hpp>
#include <iopt/hcall/tce_hcalls.hpp>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

namespace {

using namespace iopt;

constexpr std::uint64_t liobn = 0x8000'0001;
constexpr std::uint64_t guest_ram = std::uint64_t{1} << 26;
constexpr std::uint64_t list_gpa = guest_ram - 4096;

// Windows of 2^20 pages or more, so a stuff of 2^20 entries fits.
template <class Config>
constexpr std::uint64_t window_bytes = std::uint64_t{1} << (20 + Config::page_size::page_shift);
template <>
constexpr std::uint64_t window_bytes<config_huge_window> = std::uint64_t{1} << 47;

template <class Config>
struct bench_guest {
  using table_type = tce_table<Config>;
  static constexpr std::uint64_t page = table_type::page_bytes;

  buffer_guest_memory memory{gpa{0}, guest_ram + (std::uint64_t{1} << 24)};
  table_type window;
  tce_hcalls<buffer_guest_memory, no_change_sink, Config> hcalls{memory};

  bench_guest() : window(make()) {
    if (hcalls.attach(liobn, window) != status::ok)
      std::abort();
  }
  static table_type make() {
    auto made = table_type::create(ioba{huge_window_bus_offset}, window_bytes<Config>);
    if (!made)
      std::abort();
    return std::move(made).value();
  }
  std::uint64_t bus(std::uint64_t page_index) const {
    return huge_window_bus_offset + page_index * page;
  }
  // Targets inside guest RAM for any page size.
  static std::uint64_t tce(std::uint64_t i) { return ((i * page) % guest_ram) | 3; }
};

template <class Config>
void BM_h_put_tce_fast(benchmark::State& state) {
  bench_guest<Config> g;
  // Levels exist: the fast path's steady state.
  if (g.window.map_range(ioba{g.bus(0)}, 0, 512, permission::read) != status::ok)
    std::abort();
  std::uint64_t i = 0;
  for (auto _ : state) {
    const std::uint64_t slot = i++ & 511;
    benchmark::DoNotOptimize(g.hcalls.put_tce(liobn, g.bus(slot), g.tce(slot), hcall_path::fast));
  }
  state.SetItemsProcessed(state.iterations());
}

template <class Config>
void BM_h_put_tce_indirect_512(benchmark::State& state) {
  bench_guest<Config> g;
  std::vector<std::uint64_t> tces(512);
  for (std::uint64_t i = 0; i < 512; ++i)
    tces[i] = g.tce(i);
  g.memory.write_tce_list(gpa{list_gpa}, tces);
  if (g.hcalls.put_tce_indirect(liobn, g.bus(0), list_gpa, 512, hcall_path::slow) != status::ok)
    std::abort();
  for (auto _ : state)
    benchmark::DoNotOptimize(
        g.hcalls.put_tce_indirect(liobn, g.bus(0), list_gpa, 512, hcall_path::fast));
  iopt_bench::set_entry_counters(state, 512);
}

// The baseline: the same 512 entries as 512 H_PUT_TCE calls.
template <class Config>
void BM_h_put_tce_512_singles(benchmark::State& state) {
  bench_guest<Config> g;
  if (g.window.map_range(ioba{g.bus(0)}, 0, 512, permission::read) != status::ok)
    std::abort();
  for (auto _ : state)
    for (std::uint64_t i = 0; i < 512; ++i)
      benchmark::DoNotOptimize(g.hcalls.put_tce(liobn, g.bus(i), g.tce(i), hcall_path::fast));
  iopt_bench::set_entry_counters(state, 512);
}

// Clearing 2^20 entries that are all set.
template <class Config>
void BM_h_stuff_tce_clear_1m(benchmark::State& state) {
  constexpr std::uint64_t pages = std::uint64_t{1} << 20;
  bench_guest<Config> g;
  for (auto _ : state) {
    state.PauseTiming();
    if (g.window.map_range(ioba{g.bus(0)}, 0, pages, permission::read) != status::ok)
      std::abort();
    state.ResumeTiming();
    benchmark::DoNotOptimize(g.hcalls.stuff_tce(liobn, g.bus(0), 0, pages, hcall_path::fast));
    benchmark::ClobberMemory();
  }
  iopt_bench::set_entry_counters(state, pages);
}

} // namespace

#define IOPT_HCALL_BENCH(bm, ...)                                                                  \
  BENCHMARK_TEMPLATE(bm, iopt::config_4k) __VA_ARGS__;                                             \
  BENCHMARK_TEMPLATE(bm, iopt::config_64k) __VA_ARGS__;                                            \
  BENCHMARK_TEMPLATE(bm, iopt::config_huge_window) __VA_ARGS__;                                    \
  BENCHMARK_TEMPLATE(bm, iopt::config_16m) __VA_ARGS__

IOPT_HCALL_BENCH(BM_h_put_tce_fast);
IOPT_HCALL_BENCH(BM_h_put_tce_indirect_512);
IOPT_HCALL_BENCH(BM_h_put_tce_512_singles);
IOPT_HCALL_BENCH(BM_h_stuff_tce_clear_1m, ->Unit(benchmark::kMicrosecond));
