// The container against a model of the Linux sPAPR VFIO driver, over the
// matrix real machines produce: host pages of 4K and 64K, with memory backed
// by those or by 2M and 16M huge pages, under IOMMU pages of 4K, 64K, 2M, 16M
// and 256M, in v1 (pin on map) and v2 (preregistered), with one or two
// windows, and random register / map / unmap / unregister / create / remove
// sequences with overlapping and repeated requests.
//
// The model is written from the driver's semantics (vfio_iommu_spapr_tce.c,
// book3s64/iommu_api.c), not from iopt:
//   - an IOMMU page smaller than the host page targets the host page's frame
//     plus the IOMMU page's offset in it;
//   - a larger IOMMU page needs one huge page at least as large behind it
//     (v1: the compound page, else EPERM; v2: the region's page shift, the
//     natural alignment of its start and size reduced to its hugetlb page
//     size, else EINVAL), and then targets that huge page's frame;
//   - v2 needs the whole IOMMU page inside one registered region (EINVAL);
//   - v1 pins every host page under a mapping, per mapping (the pins nest);
//   - windows: the default window (4K pages, 1 GiB at 0) is made lazily by
//     the first map, unmap or create, and removing it before then cancels
//     it; a window goes into the first free slot (0 at bus 0, 1 at 1 << 59);
//     both slots used is ENOSPC.
// iopt's deliberate differences are modelled as test/BAD_INPUTS.md states
// them: every page of a range is checked (ENXIO past the window's end), a
// map over a mapping is EBUSY, an unaligned IOVA is EINVAL, a v1 charge
// follows the distinct host pages pinned.
//
// The physical truth (which frame backs a host page, which ranges are huge
// pages) is the machine's: the simulated backend with scattered frames, so
// no two host pages are contiguous unless one huge page holds both. The model
// asks it only for the frame of a host page's first byte (page_to_phys).
//
// After every step: every mapped IOBA translates as the model says and
// nothing else is mapped; every host page's pin count, the pinned page count,
// the charge, the registrations and their mapping counts equal the model's.
// After teardown, all of it is zero.
//
// A configuration is a memory model (v1 or v2); an operation is one step of a
// sequence. Each model runs one sequence for each host page case, IOMMU page
// size and target-log limit (75), and those share its operations equally
// (IOPT_SOAK_OPERATIONS of them in the soak, about 133000 a sequence at
// 10^7).
#include "soak.hpp"
#include "window/support.hpp"

#include <iopt/configs.hpp>
#include <iopt/window/container.hpp>
#include <iopt/window/vfio_errno.hpp>

#include <doctest/doctest.h>

#include <bit>
#include <map>
#include <random>
#include <vector>

using namespace iopt;
using namespace iopt_test;

namespace {

// Configurations for every IOMMU page size of the matrix, small windows and
// large ones, levels on demand.
struct cfg_4k_multi {
  using format = hardware_tce;
  using page_size = page_4k;
  static constexpr std::array<unsigned, 3> level_bits{9, 9, 9};
};
struct cfg_2m {
  using format = hardware_tce;
  using page_size = page_2m;
  static constexpr std::array<unsigned, 2> level_bits{9, 9};
};
struct cfg_256m {
  using format = hardware_tce;
  using page_size = page_256m;
  static constexpr std::array<unsigned, 1> level_bits{12};
};

constexpr std::uint64_t one = 1;
constexpr std::uint64_t gib = one << 30;
constexpr std::uint64_t slot1_start = huge_window_bus_offset;

// Guest memory the test works in: area 0 backed by huge pages (when the host
// case has them), area 1 by ordinary pages, area 2 small and oddly placed.
struct area {
  std::uint64_t first, bytes;
};
constexpr area areas[] = {
    {0x10'0000'0000, 512ull << 20}, // 2^36 aligned
    {0x20'0000'0000, 64ull << 20},
    {0x30'0003'0000, 0x50000}, // 64K aligned, 5 x 64K
};

struct host_case {
  unsigned base_shift; // the system page size
  unsigned huge_shift; // what backs area 0 (== base_shift: ordinary pages)
};

// ---- the model -----------------------------------------------------------

struct model_entry {
  std::uint64_t ua, hpa;
  permission perm;
};
struct model_window {
  std::uint64_t start = 0, bytes = 0;
  unsigned shift = 0;
  bool exists = false;
  std::map<std::uint64_t, model_entry> entries; // IOBA -> entry
  bool holds(std::uint64_t iova) const { return exists && iova >= start && iova - start < bytes; }
};
struct model_region {
  std::uint64_t size;
  unsigned page_shift;
  std::uint64_t mappings = 0;
};

template <bool V2>
struct model {
  host_case host;
  simulated_backend* machine; // physical truth only
  bool default_pending = true;
  bool enabled = false; // v1
  model_window windows[2];
  std::map<std::uint64_t, model_region> regions; // v2, by first byte
  std::map<std::uint64_t, std::uint64_t> pins;   // v1: host page number -> mappings over it

  std::uint64_t base() const { return one << host.base_shift; }

  // Backing page shift of the machine at `ua` (what the test set up).
  unsigned backing_at(std::uint64_t ua) const {
    const area& a = areas[0];
    if (host.huge_shift > host.base_shift && ua >= a.first && ua - a.first < a.bytes)
      return host.huge_shift;
    return host.base_shift;
  }
  std::uint64_t frame(std::uint64_t host_page_first) const {
    return machine->translate(ua{host_page_first})->value();
  }

  void materialize_default() {
    if (!default_pending)
      return;
    default_pending = false;
    windows[0] = model_window{0, gib, 12, true, {}};
  }
  int window_of(std::uint64_t iova) const {
    for (int i = 0; i < 2; ++i)
      if (windows[i].holds(iova))
        return i;
    return -1;
  }

  int reg(std::uint64_t first, std::uint64_t size) {
    if (size == 0 || first % base() != 0 || size % base() != 0 || first + size < first)
      return EINVAL;
    for (const auto& [f, r] : regions) {
      if (f == first && r.size == size)
        return EBUSY;
      if (first < f + r.size && f < first + size)
        return EINVAL;
    }
    unsigned shift = static_cast<unsigned>(std::countr_zero(first | size));
    // The kernel's rule: hugetlb pages raise it up to their size; an
    // ordinary page keeps it at the host page size.
    unsigned smallest = 63;
    for (std::uint64_t p = first; p < first + size; p += base())
      smallest = std::min(smallest, backing_at(p));
    regions[first] = model_region{size, std::min(shift, smallest), 0};
    return 0;
  }
  int unreg(std::uint64_t first, std::uint64_t size) {
    if (first % base() != 0 || size % base() != 0)
      return EINVAL;
    const auto it = regions.find(first);
    if (it == regions.end() || it->second.size != size)
      return ENOENT;
    if (it->second.mappings != 0)
      return EBUSY;
    regions.erase(it);
    return 0;
  }

  // Where the IOMMU page of 2^shift at `ua` points, or the errno refusing it.
  int target_of(std::uint64_t ua, unsigned shift, std::uint64_t& hpa, model_region*& region) {
    const std::uint64_t bytes = one << shift;
    if constexpr (V2) {
      region = nullptr;
      for (auto& [f, r] : regions)
        if (ua >= f && ua - f <= r.size - bytes && bytes <= r.size)
          region = &r;
      if (region == nullptr || shift > region->page_shift)
        return EINVAL;
    } else {
      if (shift > host.base_shift &&
          !(backing_at(ua) >= shift && backing_at(ua + bytes - 1) >= shift))
        return EPERM;
    }
    const std::uint64_t host_page = ua & ~(base() - 1);
    hpa = frame(host_page) + (ua - host_page);
    if (shift > host.base_shift) // one huge page: contiguous behind its first frame
      for (std::uint64_t off = 0; off < bytes; off += base())
        REQUIRE(frame(ua + off) == hpa + off);
    return 0;
  }

  // The window that holds all of [iova, iova + size), or the errno refusing
  // the range (the default window is made first, as the driver does).
  int locate(std::uint64_t iova, std::uint64_t size, model_window*& found) {
    materialize_default();
    const int w = window_of(iova);
    if (w < 0)
      return ENXIO;
    found = &windows[w];
    const std::uint64_t page = one << found->shift;
    if (iova % page != 0 || size % page != 0)
      return EINVAL;
    if (size - 1 > found->start + found->bytes - 1 - iova)
      return ENXIO; // past the window's end (iopt checks every page)
    return 0;
  }

  int map(std::uint64_t iova, std::uint64_t ua, std::uint64_t size, permission perm) {
    if (!V2 && !enabled)
      return EPERM;
    if (size == 0)
      return EINVAL;
    model_window* found = nullptr;
    if (const int e = locate(iova, size, found); e != 0)
      return e;
    model_window& win = *found;
    const std::uint64_t page = one << win.shift;
    if (ua % page != 0)
      return EINVAL;
    for (std::uint64_t off = 0; off < size; off += page)
      if (win.entries.count(iova + off) != 0)
        return EBUSY;
    std::vector<std::pair<std::uint64_t, model_entry>> made;
    std::vector<model_region*> used;
    for (std::uint64_t off = 0; off < size; off += page) {
      std::uint64_t hpa = 0;
      model_region* region = nullptr;
      if (const int e = target_of(ua + off, win.shift, hpa, region); e != 0)
        return e;
      const permission stored = can_write(perm) ? permission::read_write : perm;
      made.emplace_back(iova + off, model_entry{ua + off, hpa, stored});
      used.push_back(region);
    }
    for (std::size_t i = 0; i < made.size(); ++i) {
      win.entries.insert(made[i]);
      if constexpr (V2)
        ++used[i]->mappings;
      else
        pin(made[i].second.ua, win.shift, +1);
    }
    return 0;
  }

  int unmap(std::uint64_t iova, std::uint64_t size, std::uint64_t& unmapped) {
    unmapped = 0;
    if (!V2 && !enabled)
      return EPERM;
    if (size == 0)
      return EINVAL;
    model_window* found = nullptr;
    if (const int e = locate(iova, size, found); e != 0)
      return e;
    model_window& win = *found;
    const std::uint64_t page = one << win.shift;
    for (auto it = win.entries.lower_bound(iova);
         it != win.entries.end() && it->first - iova < size;) {
      release(it->second, win.shift);
      unmapped += page;
      it = win.entries.erase(it);
    }
    return 0;
  }

  void release(const model_entry& e, unsigned shift) {
    if constexpr (V2) {
      for (auto& [f, r] : regions)
        if (e.ua >= f && e.ua - f < r.size)
          --r.mappings;
    } else {
      pin(e.ua, shift, -1);
    }
  }
  void pin(std::uint64_t ua, unsigned shift, int delta) {
    const std::uint64_t first = ua >> host.base_shift;
    const std::uint64_t pages = shift > host.base_shift ? one << (shift - host.base_shift) : 1;
    for (std::uint64_t p = first; p < first + pages; ++p)
      if (delta > 0)
        ++pins[p];
      else if (--pins[p] == 0)
        pins.erase(p);
  }

  int create(unsigned shift, unsigned window_shift, std::uint64_t& start) {
    materialize_default();
    int slot = -1;
    for (int i = 1; i >= 0; --i)
      if (!windows[i].exists)
        slot = i;
    if (slot < 0)
      return ENOSPC;
    start = slot == 0 ? 0 : slot1_start;
    windows[slot] = model_window{start, one << window_shift, shift, true, {}};
    return 0;
  }
  int remove(std::uint64_t start) {
    if (default_pending && start == 0) {
      default_pending = false;
      return 0;
    }
    for (model_window& w : windows)
      if (w.exists && w.start == start) {
        for (const auto& [iova, e] : w.entries)
          release(e, w.shift);
        w = model_window{};
        return 0;
      }
    return EINVAL;
  }

  std::uint64_t charged() const {
    if constexpr (V2) {
      std::uint64_t bytes = 0;
      for (const auto& [f, r] : regions)
        bytes += r.size;
      return bytes;
    } else {
      return pins.size() << host.base_shift;
    }
  }
};

// ---- the system under test -----------------------------------------------

template <bool V2>
struct world {
  using strategy_type = strategy_for<V2>;
  using container_type = container_of<strategy_type, config_4k, cfg_4k_multi, config_64k_flat,
                                      config_huge_window, cfg_2m, config_16m, cfg_256m>;

  simulated_backend backend;
  counted_accounting pins{one << 50};
  counted_accounting tables{one << 40};
  registry_type registry{backend, pins};
  strategy_type strategy = make_strategy();
  container_type container;

  // log_limit: how many targets a map keeps between pinning and writing
  // (fewer than a map has sends the rest through the second translation).
  explicit world(host_case h, std::size_t log_limit = target_log::default_limit)
      : backend(h.base_shift, frame_layout::scattered), container{
                                                            strategy, tables,
                                                            container_options{
                                                                .restore_default_window = false,
                                                                .target_log_limit = log_limit}} {
    if (h.huge_shift > h.base_shift)
      backend.back_with_huge_pages(ua{areas[0].first}, areas[0].bytes, h.huge_shift);
  }
  strategy_type make_strategy() {
    if constexpr (V2)
      return strategy_type(registry);
    else
      return strategy_type(backend, pins);
  }
};

template <bool V2>
void compare(world<V2>& w, model<V2>& m) {
  // Translations: every model entry, and nothing else mapped.
  for (const model_window& win : m.windows) {
    if (!win.exists)
      continue;
    for (const auto& [iova, e] : win.entries) {
      const auto t = w.container.translate(ioba{iova});
      REQUIRE(t);
      CHECK(t->target == e.hpa);
      CHECK(t->perm == e.perm);
    }
    std::uint64_t pages = 0;
    REQUIRE(w.container.for_each_run(ioba{win.start},
                                     [&](const mapped_run& r) { pages += r.pages; }) == status::ok);
    CHECK(pages == win.entries.size());
  }
  CHECK(w.container.window_count() ==
        static_cast<unsigned>(m.windows[0].exists) + static_cast<unsigned>(m.windows[1].exists));
  CHECK(w.pins.charged() == m.charged());
  if constexpr (V2) {
    CHECK(w.registry.region_count() == m.regions.size());
    std::uint64_t pages = 0;
    for (const auto& [first, r] : m.regions) {
      pages += r.size >> m.host.base_shift;
      const auto found = w.registry.lookup(ua{first}, r.size);
      REQUIRE(found);
      CHECK(found->max_page_shift == r.page_shift);
      auto held = w.registry.acquire(ua{first}, r.size);
      REQUIRE(held);
      CHECK((*held)->mappings() - 1 == r.mappings);
      w.registry.release(*held);
      CHECK(w.backend.pin_count(ua{first}) == 1);
      CHECK(w.backend.pin_count(ua{first + r.size - 1}) == 1);
    }
    CHECK(w.backend.pinned_pages() == pages);
  } else {
    for (const auto& [page, count] : m.pins) {
      CHECK(w.strategy.pin_count(ua{page << m.host.base_shift}) == count);
      CHECK(w.backend.pin_count(ua{page << m.host.base_shift}) == count);
    }
    CHECK(w.strategy.pinned_pages() == m.pins.size());
    CHECK(w.backend.pinned_pages() == m.pins.size());
  }
}

template <bool V2>
void run(host_case h, unsigned iommu_shift, std::uint32_t seed, std::uint64_t steps,
         std::size_t log_limit) {
  CAPTURE(h.base_shift);
  CAPTURE(h.huge_shift);
  CAPTURE(iommu_shift);
  CAPTURE(seed);
  world<V2> w(h, log_limit);
  model<V2> m{h, &w.backend, true, false, {}, {}, {}};
  std::mt19937_64 rng(seed);
  auto below = [&](std::uint64_t n) { return n == 0 ? 0 : rng() % n; };
  const unsigned shifts[] = {iommu_shift, iommu_shift, 12, 16};
  auto window_shift_for = [](unsigned shift) {
    return shift <= 16 ? 32u : shift <= 24 ? 36u : 40u;
  };

  if (!V2) {
    CHECK(vfio_errno(vfio_ioctl::map_dma,
                     w.container.map_dma(ioba{0}, ua{areas[1].first}, 4096, permission::read)) ==
          EPERM); // before enable
    REQUIRE(w.container.enable() == status::ok);
    m.enabled = true;
  }
  // Most runs start as DPDK and QEMU do: the default window goes and a
  // window of the IOMMU page size takes its place at bus address 0.
  if (below(4) != 0) {
    REQUIRE(w.container.remove_window(ioba{0}) == status::ok);
    REQUIRE(m.remove(0) == 0);
    std::uint64_t start = 0;
    REQUIRE(m.create(iommu_shift, window_shift_for(iommu_shift), start) == 0);
    const auto made = w.container.create_window(iommu_shift, window_shift_for(iommu_shift));
    REQUIRE(made);
    CHECK(made->value() == start);
  }

  // An address to map from: somewhere in an area (aligned to a random page
  // size, so that some requests are misaligned), or just outside one.
  auto pick_ua = [&]() -> std::uint64_t {
    const area& a = areas[below(3)];
    const unsigned align = std::vector<unsigned>{12, 16, 21, 24, 28}[below(5)];
    std::uint64_t ua = a.first + (below(a.bytes) & ~((one << align) - 1));
    if (ua < a.first)
      ua = a.first;
    return ua;
  };
  auto pick_iova = [&](const model_window& win) -> std::uint64_t {
    if (!win.exists)
      return below(2) == 0 ? 0 : slot1_start;
    const std::uint64_t page = one << win.shift;
    // Mostly within the first few pages, so that maps overlap and repeat.
    std::uint64_t iova = win.start + below(64) * page;
    if (below(8) == 0)
      iova = win.start + win.bytes - page * (1 + below(2)); // the window's last pages
    if (below(16) == 0)
      iova += 4096; // not aligned to a larger page
    return iova;
  };

  for (std::uint64_t step = 0; step < steps; ++step) {
    CAPTURE(step);
    const model_window& win = m.windows[below(2)];
    const unsigned wshift = win.exists ? win.shift : 12;
    switch (below(V2 ? 10 : 9)) {
    case 0:
    case 1:
    case 2: { // map
      const std::uint64_t iova = pick_iova(win);
      const std::uint64_t ua = pick_ua();
      // Mostly a few pages; now and then a long range, which crosses host
      // pages, huge pages and (in v2) adjacent regions in one call.
      const std::uint64_t size = (below(6) == 0 ? 1 + below(96) : 1 + below(4)) << wshift;
      const permission perm = std::vector<permission>{permission::read, permission::write,
                                                      permission::read_write}[below(3)];
      const int want = m.map(iova, ua, size, perm);
      CHECK(vfio_errno(vfio_ioctl::map_dma,
                       w.container.map_dma(ioba{iova}, iopt::ua{ua}, size, perm)) == want);
      break;
    }
    case 3:
    case 4: { // unmap
      const std::uint64_t iova = pick_iova(win);
      const std::uint64_t size = (1 + below(6)) << wshift;
      std::uint64_t unmapped = 0;
      const int want = m.unmap(iova, size, unmapped);
      const auto got = w.container.unmap_dma(ioba{iova}, size);
      CHECK(vfio_errno(vfio_ioctl::unmap_dma, got ? status::ok : got.error()) == want);
      if (got)
        CHECK(*got == unmapped);
      break;
    }
    case 5: { // create a window
      const unsigned shift = shifts[below(4)];
      std::uint64_t start = 0;
      const int want = m.create(shift, window_shift_for(shift), start);
      const auto made = w.container.create_window(shift, window_shift_for(shift));
      CHECK(vfio_errno(vfio_ioctl::create_window, made ? status::ok : made.error()) == want);
      if (made)
        CHECK(made->value() == start);
      break;
    }
    case 6: { // remove a window (now and then an address that starts none)
      if (below(3) != 0)
        break;
      const std::uint64_t start = below(8) == 0 ? 0x1000 : below(2) == 0 ? 0 : slot1_start;
      CHECK(vfio_errno(vfio_ioctl::remove_window, w.container.remove_window(ioba{start})) ==
            m.remove(start));
      break;
    }
    case 7:
    case 8: {
      if constexpr (V2) { // register, mostly whole areas or pieces of them
        const area& a = areas[below(3)];
        std::uint64_t first = a.first, size = a.bytes;
        if (below(2) == 0) {
          first = a.first + (below(a.bytes) & ~(m.base() - 1));
          size = std::min<std::uint64_t>((1 + below(64)) << 16, a.first + a.bytes - first);
          size &= ~(m.base() - 1);
        }
        CHECK(vfio_errno(vfio_ioctl::register_memory,
                         w.container.register_memory(ua{first}, size)) == m.reg(first, size));
      } else { // v1: disable and enable again now and then
        if (below(4) == 0) {
          REQUIRE(w.container.disable() == status::ok);
          m.enabled = false;
        } else {
          CHECK(vfio_errno(vfio_ioctl::enable, w.container.enable()) == (m.enabled ? EBUSY : 0));
          m.enabled = true;
        }
      }
      break;
    }
    case 9: { // unregister (v2): an existing region, or a piece of one
      if (m.regions.empty())
        break;
      auto it = std::next(m.regions.begin(), static_cast<long>(below(m.regions.size())));
      std::uint64_t first = it->first, size = it->second.size;
      if (below(4) == 0)
        size = size > m.base() ? size - m.base() : size + m.base();
      CHECK(vfio_errno(vfio_ioctl::unregister_memory,
                       w.container.unregister_memory(ua{first}, size)) == m.unreg(first, size));
      break;
    }
    }
    compare(w, m);
  }

  // Teardown: unmap everything, unregister, remove the windows.
  if (!V2 && !m.enabled)
    REQUIRE(w.container.enable() == status::ok);
  for (model_window& win : m.windows)
    if (win.exists) {
      const auto got = w.container.unmap_dma(ioba{win.start}, win.bytes);
      REQUIRE(got);
      CHECK(*got == win.entries.size() << win.shift);
      std::uint64_t ignored = 0;
      m.enabled = true;
      REQUIRE(m.unmap(win.start, win.bytes, ignored) == 0);
    }
  compare(w, m);
  if constexpr (V2)
    for (const auto& [first, r] : m.regions)
      REQUIRE(w.container.unregister_memory(ua{first}, r.size) == status::ok);
  for (const std::uint64_t start : {std::uint64_t{0}, slot1_start})
    (void)w.container.remove_window(ioba{start});
  CHECK(w.container.window_count() == 0);
  CHECK(w.pins.charged() == 0);
  CHECK(w.tables.charged() == 0);
  CHECK(w.backend.pinned_pages() == 0);
  CHECK(w.registry.region_count() == 0);
}

constexpr host_case host_cases[] = {
    {12, 12}, // 4K pages
    {16, 16}, // 64K pages (POWER's usual)
    {12, 21}, // 4K pages, 2M huge pages
    {16, 21}, // 64K pages, 2M huge pages (radix THP size, here hugetlb)
    {16, 24}, // 64K pages, 16M huge pages (hash MMU hugetlb)
};
constexpr unsigned iommu_shifts[] = {12, 16, 21, 24, 28};
// Maps keep all their targets, none (every page translated twice), or a
// few (a map longer than that writes part from the log, part listed again).
constexpr std::size_t log_limits[] = {target_log::default_limit, 0, 3};

// Every host page case x IOMMU page size x log limit, one sequence each, the
// seeds counted up from `first_seed`.
template <bool V2>
void run_every_configuration(std::uint32_t first_seed) {
  constexpr std::uint64_t sequences =
      std::size(host_cases) * std::size(iommu_shifts) * std::size(log_limits);
  const std::uint64_t steps = share_of(soak_operations(sequences * 300), sequences);
  std::uint32_t seed = first_seed;
  for (const host_case& h : host_cases)
    for (unsigned shift : iommu_shifts)
      for (const std::size_t log_limit : log_limits)
        run<V2>(h, shift, seed++, steps, log_limit);
  MESSAGE((sequences * steps) << " operations in " << sequences << " sequences of " << steps);
}

} // namespace

TEST_CASE("v2 container against the driver's model: every host page size x IOMMU page size") {
  run_every_configuration<true>(1);
}

TEST_CASE("v1 container against the driver's model: every host page size x IOMMU page size") {
  run_every_configuration<false>(1000);
}

TEST_CASE("the model's targets: sub-host-page IOMMU pages keep their offset") {
  // 4 KiB IOMMU pages over one 64 KiB host page: 16 distinct targets, each the
  // host page's frame plus its offset (the issue that started this suite).
  world<true> w(host_case{16, 16});
  REQUIRE(w.container.register_memory(ua{areas[1].first}, one << 16) == status::ok);
  REQUIRE(w.container.map_dma(ioba{0}, ua{areas[1].first}, one << 16, permission::read) ==
          status::ok);
  const std::uint64_t frame = w.backend.translate(ua{areas[1].first})->value();
  for (std::uint64_t k = 0; k < 16; ++k)
    CHECK(w.container.translate(ioba{k << 12})->target == frame + (k << 12));
  world<false> v1(host_case{16, 16});
  REQUIRE(v1.container.enable() == status::ok);
  REQUIRE(v1.container.map_dma(ioba{0}, ua{areas[1].first}, one << 16, permission::read) ==
          status::ok);
  CHECK(v1.strategy.pin_count(ua{areas[1].first}) == 16); // one pin per IOMMU page, nested
  CHECK(v1.backend.pin_count(ua{areas[1].first}) == 16);
  CHECK(v1.backend.pinned_pages() == 1);
  CHECK(v1.pins.charged() == one << 16);
  for (std::uint64_t k = 0; k < 16; ++k)
    CHECK(v1.container.translate(ioba{k << 12})->target == frame + (k << 12));
}
