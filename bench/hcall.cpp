// The guest hypercall front end's hot paths, for every named configuration.
// Divisors in the same run: 512 single H_PUT_TCE calls for the indirect call
// (with the same 512 TCEs: a contiguous buffer's pages, as a Linux guest
// sends them, and 512 scattered pages, the worst case for runs),
// BM_memset_entries/1048576 (physical_limit.cpp) for H_STUFF_TCE.
#include "bench_support.hpp"

#include <iopt/configs.hpp>
#include <iopt/hcall/tce_hcalls.hpp>

#include <array>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

namespace {

using namespace iopt;

constexpr std::uint64_t liobn = 0x8000'0001;
constexpr std::uint64_t list_gpa = 0x10'0000;

// Windows of 2^20 pages or more, so a stuff of 2^20 entries fits.
template <class Config>
constexpr std::uint64_t window_bytes = std::uint64_t{1} << (20 + Config::page_size::page_shift);
template <>
constexpr std::uint64_t window_bytes<config_huge_window> = std::uint64_t{1} << 47;

// A guest with 1 TiB of RAM of which only the page holding the TCE list is
// backed: 512 contiguous pages of any size are RAM without allocating them.
// Reads outside that page fault. InPlace: the accessor shows the list page
// in place (view), as a hypervisor with guest RAM mapped can; otherwise it
// only copies.
template <bool InPlace>
class list_page_memory {
public:
  static constexpr std::uint64_t ram_bytes = std::uint64_t{1} << 40;

  status read(gpa from, std::span<std::byte> to, hcall_path) const noexcept {
    const std::uint64_t offset = from.value() - list_gpa;
    if (from.value() < list_gpa || offset > sizeof(list_) || to.size() > sizeof(list_) - offset)
      return status::fault;
    std::memcpy(to.data(), reinterpret_cast<const std::byte*>(list_.data()) + offset, to.size());
    return status::ok;
  }
  const std::byte* view(gpa from, std::uint64_t bytes, hcall_path) const noexcept requires InPlace {
    const std::uint64_t offset = from.value() - list_gpa;
    if (from.value() < list_gpa || offset > sizeof(list_) || bytes > sizeof(list_) - offset)
      return nullptr;
    return reinterpret_cast<const std::byte*>(list_.data()) + offset;
  }
  bool is_ram(gpa first, std::uint64_t bytes) const noexcept {
    return first.value() < ram_bytes && bytes <= ram_bytes - first.value();
  }
  // The RAM has no holes, as a guest's boot memory.
  gpa_range known_ram() const noexcept { return *gpa_range::make(gpa{0}, ram_bytes); }
  void write_list(const std::vector<std::uint64_t>& tces) {
    for (std::size_t i = 0; i < tces.size(); ++i)
      list_[i] = to_big_endian(tces[i]); // PAPR lists are big-endian
  }

private:
  alignas(4096) std::array<std::uint64_t, max_indirect_tces> list_{};
};
static_assert(guest_memory<list_page_memory<true>> && guest_memory<list_page_memory<false>>);

template <class Config, bool InPlace = true>
struct bench_guest {
  using table_type = tce_table<Config>;
  static constexpr std::uint64_t page = table_type::page_bytes;

  list_page_memory<InPlace> memory;
  table_type window;
  tce_hcalls<list_page_memory<InPlace>, Config> hcalls{memory};

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
  // Page i of a contiguous buffer, the list a Linux guest builds for one
  // mapping; or page i of 512 scattered over 2^16 pages (runs of one).
  static std::uint64_t tce(std::uint64_t i) { return (i * page) | 3; }
  static std::uint64_t scattered_tce(std::uint64_t i) { return (((i * 40503) % 65536) * page) | 3; }
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

template <class Config, bool Scattered, bool InPlace = true>
void indirect_512(benchmark::State& state) {
  bench_guest<Config, InPlace> g;
  std::vector<std::uint64_t> tces(512);
  for (std::uint64_t i = 0; i < 512; ++i)
    tces[i] = Scattered ? g.scattered_tce(i) : g.tce(i);
  g.memory.write_list(tces);
  if (g.hcalls.put_tce_indirect(liobn, g.bus(0), list_gpa, 512, hcall_path::slow) != status::ok)
    std::abort();
  for (auto _ : state)
    benchmark::DoNotOptimize(
        g.hcalls.put_tce_indirect(liobn, g.bus(0), list_gpa, 512, hcall_path::fast));
  iopt_bench::set_entry_counters(state, 512);
}

// The baseline: the same 512 entries as 512 H_PUT_TCE calls.
template <class Config, bool Scattered>
void singles_512(benchmark::State& state) {
  bench_guest<Config> g;
  if (g.window.map_range(ioba{g.bus(0)}, 0, 512, permission::read) != status::ok)
    std::abort();
  for (auto _ : state)
    for (std::uint64_t i = 0; i < 512; ++i)
      benchmark::DoNotOptimize(g.hcalls.put_tce(
          liobn, g.bus(i), Scattered ? g.scattered_tce(i) : g.tce(i), hcall_path::fast));
  iopt_bench::set_entry_counters(state, 512);
}

template <class Config>
void BM_h_put_tce_indirect_512(benchmark::State& state) {
  indirect_512<Config, false>(state);
}
// The same list through an accessor that can only copy guest memory.
template <class Config>
void BM_h_put_tce_indirect_512_copied(benchmark::State& state) {
  indirect_512<Config, false, false>(state);
}
template <class Config>
void BM_h_put_tce_512_singles(benchmark::State& state) {
  singles_512<Config, false>(state);
}
template <class Config>
void BM_h_put_tce_indirect_512_scattered(benchmark::State& state) {
  indirect_512<Config, true>(state);
}
template <class Config>
void BM_h_put_tce_512_singles_scattered(benchmark::State& state) {
  singles_512<Config, true>(state);
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

IOPT_BENCH_ALL_CONFIGS(BM_h_put_tce_fast);
IOPT_BENCH_ALL_CONFIGS(BM_h_put_tce_indirect_512);
IOPT_BENCH_ALL_CONFIGS(BM_h_put_tce_indirect_512_copied);
IOPT_BENCH_ALL_CONFIGS(BM_h_put_tce_512_singles);
IOPT_BENCH_ALL_CONFIGS(BM_h_put_tce_indirect_512_scattered);
IOPT_BENCH_ALL_CONFIGS(BM_h_put_tce_512_singles_scattered);
IOPT_BENCH_ALL_CONFIGS(BM_h_stuff_tce_clear_1m, ->Unit(benchmark::kMicrosecond));
