// Preregistration: lookup against the kernel's linked list, and real
// registration through mlock against plain mlock/munlock of the same memory.
#include "baselines/linked_list_registry.hpp"
#include "bench_support.hpp"

#include <iopt/configs.hpp>
#include <iopt/prereg/posix_backend.hpp>
#include <iopt/prereg/registry.hpp>
#include <iopt/window/container.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
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

using clock_type = std::chrono::steady_clock;
double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

// The same regions in iopt's registry and in the kernel-style list, looked
// up in the same order, in rounds of 4096 (time and items are per round).
// Where the two are close (up to 16 regions), each iteration times a round
// of both, back to back, since a lookup takes nanoseconds and the machine
// drifts by tens of percent, and both benchmarks publish the paired ratio.
// With more regions the list is so much slower that pairing would spend
// minutes on it: each side runs alone.
enum class lookup_side : std::uint8_t { iopt, list };
void lookup_rounds(benchmark::State& state, lookup_side timed) {
  const auto regions = static_cast<std::uint64_t>(state.range(0));
  simulated_backend backend(host_shift);
  unlimited_accounting accounting;
  prereg_registry<simulated_backend, unlimited_accounting> registry(backend, accounting);
  iopt_baseline::linked_list_registry list(host_shift);
  // Registered in a shuffled order so the index is built by real inserts.
  std::vector<std::uint64_t> ids(regions);
  for (std::uint64_t i = 0; i < regions; ++i)
    ids[i] = i;
  std::shuffle(ids.begin(), ids.end(), std::mt19937_64(2));
  for (std::uint64_t i : ids) {
    if (registry.register_region(ua{0x100'0000'0000 + i * region_stride}, region_bytes) !=
        status::ok)
      std::abort();
    list.add(0x100'0000'0000 + i * region_stride, region_bytes);
  }
  const auto order = lookup_order(regions);
  const bool pair = regions <= 16;
  auto round = [&](lookup_side side) {
    const auto start = clock_type::now();
    if (side == lookup_side::iopt)
      for (const std::uint64_t at : order) {
        const auto r = registry.lookup(ua{at}, 1 << host_shift);
        benchmark::DoNotOptimize(r);
      }
    else
      for (const std::uint64_t at : order) {
        const auto r = list.lookup(at, 1 << host_shift);
        benchmark::DoNotOptimize(r);
      }
    return seconds_since(start);
  };
  iopt_bench::paired_ratio paired;
  for (auto _ : state) {
    if (!pair) {
      state.SetIterationTime(round(timed));
      continue;
    }
    const double mine = round(lookup_side::iopt);
    const double theirs = round(lookup_side::list);
    state.SetIterationTime(timed == lookup_side::iopt ? mine : theirs);
    paired.add(mine, theirs);
  }
  paired.publish(state);
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(order.size()));
}

void BM_prereg_lookup(benchmark::State& state) { lookup_rounds(state, lookup_side::iopt); }
void BM_baseline_linked_list_lookup(benchmark::State& state) {
  lookup_rounds(state, lookup_side::list);
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

// 1 GiB backed by transparent huge pages where the kernel gives them: 2 MiB
// aligned, advised, and faulted in once.
struct thp_gib {
  static constexpr std::uint64_t bytes = std::uint64_t{1} << 30;
  static constexpr std::uint64_t huge = std::uint64_t{1} << 21;
  void* raw =
      ::mmap(nullptr, bytes + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  void* p = nullptr;
  thp_gib() {
    if (raw == MAP_FAILED)
      std::abort();
    p = reinterpret_cast<void*>((reinterpret_cast<std::uintptr_t>(raw) + huge - 1) & ~(huge - 1));
    ::madvise(p, bytes, MADV_HUGEPAGE);
    std::memset(p, 1, bytes);
  }
  ~thp_gib() { ::munmap(raw, bytes + huge); }
};

// Registering 1 GiB through the posix backend (mlock, and the bulk pagemap
// read that takes the region's translation) and mapping all of it into the
// default window (4 KiB IOMMU pages: a THP is treated as base pages, as the
// kernel does), against the least that pinning and translating the same
// memory costs: mlock and one read of all its pagemap entries.
//
// The kernel's cost for both depends on what ran just before (its
// per-CPU page batches, the caches), so every iteration of either benchmark
// runs both sides in the same order and times one of them.
class thp_pair {
public:
  enum class side : std::uint8_t { iopt, baseline };

  thp_pair() : pagemap_(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)) {
    (void)container_.query(); // the default window exists
  }
  ~thp_pair() { ::close(pagemap_); }

  void run(benchmark::State& state, side timed) {
    iopt_bench::paired_ratio paired;
    for (auto _ : state) {
      double seconds[2] = {};
      if (const char* error = run_iopt(seconds[0]); error != nullptr) {
        state.SkipWithError(error);
        break;
      }
      if (const char* error = run_baseline(seconds[1]); error != nullptr) {
        state.SkipWithError(error);
        break;
      }
      state.SetIterationTime(seconds[timed == side::iopt ? 0 : 1]);
      paired.add(seconds[0], seconds[1]);
    }
    paired.publish(state);
    state.counters["pages"] = static_cast<double>(memory_.bytes >> backend_.host_page_shift());
  }

private:
  using registry_type = prereg_registry<posix_backend, unlimited_accounting>;
  using strategy_type = preregistered<registry_type>;

  const char* run_iopt(double& seconds) {
    const auto start = clock_type::now();
    const status registered = container_.register_memory(first(), memory_.bytes);
    const status mapped =
        registered == status::ok
            ? container_.map_dma(ioba{0}, first(), memory_.bytes, permission::read_write)
            : registered;
    seconds = seconds_since(start);
    if (mapped != status::ok) {
      (void)container_.unregister_memory(first(), memory_.bytes);
      return mapped == status::not_permitted ? "frame numbers hidden (needs CAP_SYS_ADMIN)"
                                             : "mlock refused (RLIMIT_MEMLOCK)";
    }
    (void)container_.unmap_dma(ioba{0}, memory_.bytes);
    (void)container_.unregister_memory(first(), memory_.bytes);
    return nullptr;
  }
  const char* run_baseline(double& seconds) {
    const auto start = clock_type::now();
    const bool locked = ::mlock(memory_.p, memory_.bytes) == 0;
    const auto want = static_cast<ssize_t>(entries_.size() * sizeof(std::uint64_t));
    const bool read =
        ::pread(pagemap_, entries_.data(), static_cast<std::size_t>(want),
                static_cast<off_t>(first().value() / page_ * sizeof(std::uint64_t))) == want;
    seconds = seconds_since(start);
    ::munlock(memory_.p, memory_.bytes);
    benchmark::DoNotOptimize(entries_.data());
    return locked && read ? nullptr : "mlock or the pagemap read refused";
  }
  ua first() const { return ua{reinterpret_cast<std::uintptr_t>(memory_.p)}; }

  thp_gib memory_;
  std::uint64_t page_ = static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
  std::vector<std::uint64_t> entries_ = std::vector<std::uint64_t>(memory_.bytes / page_);
  int pagemap_;
  posix_backend backend_;
  unlimited_accounting pins_, tables_;
  registry_type registry_{backend_, pins_};
  strategy_type strategy_{registry_};
  dma_container<strategy_type, unlimited_accounting, config_4k> container_{strategy_, tables_};
};

void BM_posix_register_map_1g_thp(benchmark::State& state) {
  thp_pair().run(state, thp_pair::side::iopt);
}
void BM_baseline_mlock_pagemap_1g_thp(benchmark::State& state) {
  thp_pair().run(state, thp_pair::side::baseline);
}

} // namespace

BENCHMARK(BM_posix_register_map_1g_thp)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_baseline_mlock_pagemap_1g_thp)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_prereg_lookup)->Arg(1)->Arg(16)->Arg(256)->Arg(4096)->UseManualTime();
BENCHMARK(BM_baseline_linked_list_lookup)->Arg(1)->Arg(16)->Arg(256)->Arg(4096)->UseManualTime();
BENCHMARK(BM_prereg_register_unregister_1g_posix)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_baseline_mlock_munlock_1g)->Unit(benchmark::kMillisecond);
