// Preregistration: lookup against the kernel's linked list, and real
// registration through mlock against plain mlock/munlock of the same memory.
#include "baselines/linked_list_registry.hpp"
#include "bench_support.hpp"

#include <iopt/prereg/posix_backend.hpp>
#include <iopt/prereg/registry.hpp>

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

namespace {

using namespace iopt;

constexpr unsigned host_shift = 16;
constexpr std::uint64_t region_bytes = std::uint64_t{1} << 24; // 16 MiB each
constexpr std::uint64_t region_stride = std::uint64_t{1} << 25;

// The regions looked up, in a random order fixed for both benchmarks.
std::vector<std::uint64_t> lookup_order(std::uint64_t regions) {
  std::vector<std::uint64_t> order(4096);
  std::mt19937_64 rng(1);
  for (auto& o : order)
    o = 0x100'0000'0000 + (rng() % regions) * region_stride + (rng() % 200) * (1 << host_shift);
  return order;
}

void BM_prereg_lookup(benchmark::State& state) {
  const auto regions = static_cast<std::uint64_t>(state.range(0));
  simulated_backend backend(host_shift);
  unlimited_accounting accounting;
  prereg_registry<simulated_backend, unlimited_accounting> registry(backend, accounting);
  // Registered in a shuffled order so the index is built by real inserts.
  std::vector<std::uint64_t> ids(regions);
  for (std::uint64_t i = 0; i < regions; ++i)
    ids[i] = i;
  std::shuffle(ids.begin(), ids.end(), std::mt19937_64(2));
  for (std::uint64_t i : ids)
    if (registry.register_region(ua{0x100'0000'0000 + i * region_stride}, region_bytes) !=
        status::ok)
      std::abort();
  const auto order = lookup_order(regions);
  std::size_t i = 0;
  for (auto _ : state) {
    const auto r = registry.lookup(ua{order[i++ & 4095]}, 1 << host_shift);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_baseline_linked_list_lookup(benchmark::State& state) {
  const auto regions = static_cast<std::uint64_t>(state.range(0));
  iopt_baseline::linked_list_registry list(host_shift);
  std::vector<std::uint64_t> ids(regions);
  for (std::uint64_t i = 0; i < regions; ++i)
    ids[i] = i;
  std::shuffle(ids.begin(), ids.end(), std::mt19937_64(2));
  for (std::uint64_t i : ids)
    list.add(0x100'0000'0000 + i * region_stride, region_bytes);
  const auto order = lookup_order(regions);
  std::size_t i = 0;
  for (auto _ : state) {
    const auto* r = list.lookup(order[i++ & 4095], 1 << host_shift);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations());
}

// 1 GiB of real memory, faulted in once.
struct gib_of_memory {
  static constexpr std::uint64_t bytes = std::uint64_t{1} << 30;
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  gib_of_memory() {
    if (p == MAP_FAILED)
      std::abort();
    std::memset(p, 1, bytes);
  }
  ~gib_of_memory() { ::munmap(p, bytes); }
};

void BM_prereg_register_unregister_1g_posix(benchmark::State& state) {
  gib_of_memory memory;
  posix_backend backend;
  unlimited_accounting accounting;
  prereg_registry<posix_backend, unlimited_accounting> registry(backend, accounting);
  const ua first{reinterpret_cast<std::uintptr_t>(memory.p)};
  for (auto _ : state) {
    if (registry.register_region(first, memory.bytes) != status::ok) {
      state.SkipWithError("mlock refused (RLIMIT_MEMLOCK or privileges)");
      break;
    }
    benchmark::DoNotOptimize(registry.unregister_region(first, memory.bytes));
  }
  state.SetItemsProcessed(state.iterations() *
                          static_cast<std::int64_t>(memory.bytes >> backend.host_page_shift()));
  state.counters["pages"] = static_cast<double>(memory.bytes >> backend.host_page_shift());
}

void BM_baseline_mlock_munlock_1g(benchmark::State& state) {
  gib_of_memory memory;
  for (auto _ : state) {
    if (::mlock(memory.p, memory.bytes) != 0) {
      state.SkipWithError("mlock refused");
      break;
    }
    ::munlock(memory.p, memory.bytes);
  }
  const std::uint64_t pages = memory.bytes / static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(pages));
}

} // namespace

BENCHMARK(BM_prereg_lookup)->Arg(1)->Arg(16)->Arg(256)->Arg(4096);
BENCHMARK(BM_baseline_linked_list_lookup)->Arg(1)->Arg(16)->Arg(256)->Arg(4096);
BENCHMARK(BM_prereg_register_unregister_1g_posix)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_baseline_mlock_munlock_1g)->Unit(benchmark::kMillisecond);
