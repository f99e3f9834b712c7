// The preregistration listener (64 KiB host pages) and the DMA listener
// (4 KiB IOMMU pages) on one memory map, with a v2 container and registry
// behind them, in both attach orders, under random sequences of RAM plugs,
// unplugs and overlays (MMIO, or RAM of higher priority, over RAM). Checked
// after every step against a model that renders the guest map granule by
// granule on its own:
//   - every visible RAM granule is mapped at guest address = bus address,
//     to the frame of its host address, and nothing else is mapped;
//   - every RAM region with anything visible is registered whole, nothing
//     else is, and the charge and the pins are those registrations';
//   - each registration's mapping count is the granules mapped in it;
//   - a mapping that survives a step was never unmapped during it;
//   - no sink call failed;
// and at the end, with every region gone, nothing is left.
#include <iopt/configs.hpp>
#include <iopt/listener/listener.hpp>
#include <iopt/listener/sinks.hpp>
#include <iopt/window/container.hpp>

#include <doctest/doctest.h>

#include <map>
#include <random>
#include <set>
#include <vector>

using namespace iopt;

namespace {
constexpr std::uint64_t k4 = 0x1000, k64 = 0x10000, mib = 0x100000;
constexpr std::uint64_t space = 64 * mib; // guest addresses used: [0, 64 MiB)
constexpr std::uint64_t host_base = 0x7000'0000'0000;

using registry_type = prereg_registry<simulated_backend, counted_accounting>;
using strategy_type = preregistered<registry_type>;
using container_type = dma_container<strategy_type, counted_accounting, config_4k>;

struct unmap_log {
  std::vector<mapped_run> unmapped;
  static void record(void* self, bool mapped, const mapped_run& run) noexcept {
    if (!mapped)
      static_cast<unmap_log*>(self)->unmapped.push_back(run);
  }
};

struct world {
  unmap_log unmaps; // first: the container reports to it until the container goes
  simulated_backend backend{16, frame_layout::scattered};
  counted_accounting pins{std::uint64_t{1} << 40}, tables{std::uint64_t{1} << 40};
  registry_type registry{backend, pins};
  strategy_type strategy{registry};
  container_type container{strategy, tables};
  prereg_sink<registry_type> prereg{registry};
  dma_sink<container_type> dma{container};
  memory_listener<page_64k, prereg_sink<registry_type>> prereg_listener{page_64k{}, prereg, 0};
  memory_listener<page_4k, dma_sink<container_type>> dma_listener{page_4k{}, dma, 10};
  memory_map map;

  explicit world(bool prereg_first) {
    container.set_change_hook(dma_change_hook{&unmap_log::record, &unmaps});
    if (prereg_first) {
      map.attach(prereg_listener);
      map.attach(dma_listener);
    } else {
      map.attach(dma_listener);
      map.attach(prereg_listener);
    }
  }
};

// The model: which region shows at each 4 KiB granule.
struct model {
  std::map<std::uint64_t, memory_region> regions; // by id
  std::vector<std::uint64_t> order;               // ids in the order added

  // The winning region at `g`, or 0.
  std::uint64_t at(std::uint64_t g) const {
    std::uint64_t winner = 0;
    int best = -1;
    for (std::uint64_t id : order) {
      const memory_region& r = regions.at(id);
      if (g >= r.first.value() && g - r.first.value() < r.size && r.priority >= best) {
        best = r.priority;
        winner = id;
      }
    }
    return winner;
  }
};

void check(world& w, const model& m, const std::map<std::uint64_t, std::uint64_t>& before) {
  // Mapped granules: guest address -> host address.
  std::map<std::uint64_t, std::uint64_t> mapped;
  std::set<std::uint64_t> visible_ram;
  for (std::uint64_t g = 0; g < space; g += k4) {
    const std::uint64_t id = m.at(g);
    if (id == 0 || m.regions.at(id).kind != region_kind::ram)
      continue;
    const memory_region& r = m.regions.at(id);
    mapped[g] = r.host.value() + (g - r.first.value());
    visible_ram.insert(id);
  }
  std::uint64_t entries = 0;
  REQUIRE(w.container.for_each_run(ioba{0}, [&](const mapped_run& run) { entries += run.pages; }) ==
          status::ok);
  CHECK(entries == mapped.size());
  for (const auto& [g, host] : mapped) {
    const auto t = w.container.translate(ioba{g});
    REQUIRE(t);
    CHECK(t->target == w.backend.translate(ua{host})->value());
  }
  // Registrations: each visible RAM region, whole.
  std::uint64_t registered = 0, pages = 0;
  for (std::uint64_t id : visible_ram) {
    const memory_region& r = m.regions.at(id);
    registered += r.size;
    pages += r.size / k64;
    auto held = w.registry.acquire(r.host, r.size);
    REQUIRE(held);
    CHECK((*held)->first() == r.host);
    CHECK((*held)->size() == r.size);
    std::uint64_t in_region = 0;
    for (const auto& [g, host] : mapped)
      in_region += host >= r.host.value() && host - r.host.value() < r.size ? 1u : 0u;
    CHECK((*held)->mappings() - 1 == in_region);
    w.registry.release(*held);
  }
  CHECK(w.registry.region_count() == visible_ram.size());
  CHECK(w.pins.charged() == registered);
  CHECK(w.backend.pinned_pages() == pages);
  // Survivors were never unmapped.
  for (const mapped_run& run : w.unmaps.unmapped)
    for (std::uint64_t k = 0; k < run.pages; ++k) {
      const std::uint64_t g = run.first.value() + k * k4;
      const auto was = before.find(g);
      const auto is = mapped.find(g);
      const bool survived = was != before.end() && is != mapped.end() && was->second == is->second;
      CHECK_MESSAGE(!survived, "a surviving mapping was unmapped at ", g);
    }
  w.unmaps.unmapped.clear();
  CHECK(w.prereg.log.failures.empty());
  CHECK(w.dma.log.failures.empty());
}

void run(bool prereg_first, std::uint32_t seed) {
  CAPTURE(prereg_first);
  CAPTURE(seed);
  world w(prereg_first);
  model m;
  std::mt19937_64 rng(seed);
  auto below = [&](std::uint64_t n) { return rng() % n; };
  std::map<std::uint64_t, std::uint64_t> before;
  std::uint64_t next_id = 1;
  auto snapshot = [&] {
    before.clear();
    for (std::uint64_t g = 0; g < space; g += k4)
      if (const std::uint64_t id = m.at(g); id != 0 && m.regions.at(id).kind == region_kind::ram)
        before[g] = m.regions.at(id).host.value() + (g - m.regions.at(id).first.value());
  };
  for (int step = 0; step < 120; ++step) {
    CAPTURE(step);
    snapshot();
    const auto op = below(10);
    if (op < 4 || m.regions.empty()) {
      // Plug RAM into a free 4 MiB slot: host addresses follow the slot, so
      // neighbours are contiguous and, with one backing, merge.
      const std::uint64_t slot = below(space / (4 * mib));
      bool taken = false;
      for (const auto& [id, r] : m.regions)
        taken = taken || (r.priority == 0 && r.first.value() == slot * 4 * mib);
      if (taken)
        continue;
      const std::uint64_t size = (1 + below(4)) * mib;
      memory_region r{next_id++, gpa{slot * 4 * mib}, size,
                      0,         region_kind::ram,    ua{host_base + slot * 4 * mib},
                      below(2)};
      REQUIRE(w.map.add_region(r) == status::ok);
      m.regions[r.id] = r;
      m.order.push_back(r.id);
    } else if (op < 6) {
      // An overlay: MMIO, or RAM from elsewhere, over whatever is there.
      const std::uint64_t first = below(space / k64) * k64;
      const std::uint64_t size = (1 + below(32)) * k64;
      const bool ram = below(3) == 0;
      memory_region r{next_id,
                      gpa{first},
                      std::min(size, space - first),
                      ram ? 2 : 1,
                      ram ? region_kind::ram : region_kind::mmio,
                      ua{host_base + (std::uint64_t{1} << 36) + next_id * 64 * mib},
                      100 + next_id};
      ++next_id;
      REQUIRE(w.map.add_region(r) == status::ok);
      m.regions[r.id] = r;
      m.order.push_back(r.id);
    } else {
      // Unplug / remove an overlay.
      const std::uint64_t id = m.order[below(m.order.size())];
      REQUIRE(w.map.remove_region(id) == status::ok);
      m.regions.erase(id);
      m.order.erase(std::find(m.order.begin(), m.order.end(), id));
    }
    check(w, m, before);
  }
  // Everything goes, in a batch now and then.
  {
    memory_map::batch b(w.map);
    for (std::uint64_t id : m.order)
      REQUIRE(w.map.remove_region(id) == status::ok);
  }
  m.regions.clear();
  m.order.clear();
  check(w, m, {});
  CHECK(w.registry.region_count() == 0);
  CHECK(w.pins.charged() == 0);
  CHECK(w.backend.pinned_pages() == 0);
  CHECK(w.prereg_listener.ranges().empty());
  CHECK(w.dma_listener.ranges().empty());
}
} // namespace

TEST_CASE("prereg and DMA listeners on one map, both attach orders, against a model") {
  for (std::uint32_t seed = 1; seed <= 4; ++seed) {
    run(true, seed);
    run(false, seed);
  }
}

TEST_CASE("unplugging one of two merged neighbours leaves the other mapped and registered") {
  for (bool prereg_first : {true, false}) {
    world w(prereg_first);
    const memory_region a{1, gpa{0}, 4 * mib, 0, region_kind::ram, ua{host_base}, 7};
    const memory_region b{2, gpa{4 * mib}, 4 * mib, 0, region_kind::ram, ua{host_base + 4 * mib},
                          7};
    REQUIRE(w.map.add_region(a) == status::ok);
    REQUIRE(w.map.add_region(b) == status::ok);
    CHECK(w.dma_listener.ranges().size() == 1); // one mapping for both
    CHECK(w.registry.region_count() == 2);      // two registrations
    const auto target = w.container.translate(ioba{4 * mib + 0x5000});
    REQUIRE(w.map.remove_region(1) == status::ok);
    std::uint64_t unmapped = 0; // in runs of contiguous frames, all of them in region 1
    for (const mapped_run& run : w.unmaps.unmapped) {
      CHECK(run.first.value() + run.pages * k4 <= 4 * mib);
      unmapped += run.pages;
    }
    CHECK(unmapped == 4 * mib / k4);
    CHECK(w.container.translate(ioba{4 * mib + 0x5000})->target == target->target);
    CHECK(w.container.translate(ioba{0}).error() == status::not_found);
    CHECK(w.registry.region_count() == 1);
    CHECK(w.pins.charged() == 4 * mib); // the unplugged memory is no longer pinned or charged
    CHECK(w.prereg.log.failures.empty());
    CHECK(w.dma.log.failures.empty());
    REQUIRE(w.map.remove_region(2) == status::ok);
    CHECK(w.pins.charged() == 0);
  }
}

TEST_CASE("without priorities, one attach order cannot work: the map runs them as told") {
  // Both listeners at priority 0, DMA attached first: additions reach DMA
  // first, before the memory is registered. The failure is reported with
  // what is needed to retry, and retry() completes it.
  world w(false);
  memory_listener<page_64k, prereg_sink<registry_type>> prereg_listener{page_64k{}, w.prereg, 0};
  memory_listener<page_4k, dma_sink<container_type>> dma_listener{page_4k{}, w.dma, 0};
  w.prereg_listener.detach();
  w.dma_listener.detach();
  w.map.attach(dma_listener);
  w.map.attach(prereg_listener);
  REQUIRE(w.map.add_region({1, gpa{0}, mib, 0, region_kind::ram, ua{host_base}, 1}) == status::ok);
  REQUIRE(w.dma.log.failures.size() == 1);
  CHECK(w.dma.log.failures[0] ==
        sink_failure{gpa{0}, ua{host_base}, mib, status::not_found, false});
  dma_listener.retry();
  CHECK(w.container.translate(ioba{0x3000}));
  CHECK(dma_listener.ranges().size() == 1);
}
