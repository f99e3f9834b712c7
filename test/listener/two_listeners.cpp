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
//
// A configuration is an attach order; an operation is one step of a
// sequence. Each order runs four sequences (seeds), which share its
// operations (IOPT_SOAK_OPERATIONS of them in the soak). At CI's count the
// whole state is compared after every step; in the soak, the range a step
// changed after every step and the whole state every 1000 steps (a whole
// comparison renders all 16384 granules, too slow for 10^7 steps).
#include "soak.hpp"

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
  std::vector<mapped_run> unmapped, mapped;
  static void record(void* self, bool mapped, const mapped_run& run) noexcept {
    auto* log = static_cast<unmap_log*>(self);
    (mapped ? log->mapped : log->unmapped).push_back(run);
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
  std::vector<memory_region> layers;              // the regions in that order

  void add(const memory_region& r) {
    regions[r.id] = r;
    order.push_back(r.id);
    layers.push_back(r);
  }
  void remove(std::uint64_t id) {
    regions.erase(id);
    order.erase(std::find(order.begin(), order.end(), id));
    layers.erase(std::find_if(layers.begin(), layers.end(),
                              [id](const memory_region& r) { return r.id == id; }));
  }
  void clear() {
    regions.clear();
    order.clear();
    layers.clear();
  }

  // The winning region at `g`, or 0: the highest priority, the latest added
  // among equals.
  std::uint64_t at(std::uint64_t g) const {
    std::uint64_t winner = 0;
    int best = -1;
    for (const memory_region& r : layers) {
      if (g >= r.first.value() && g - r.first.value() < r.size && r.priority >= best) {
        best = r.priority;
        winner = r.id;
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
  w.unmaps.mapped.clear();
  CHECK(w.prereg.log.failures.empty());
  CHECK(w.dma.log.failures.empty());
}

// The model rendered granule by granule, kept up to date over the range each
// step changes, with what the incremental checks need: how many granules
// each RAM region shows in, and the registrations those make.
struct rendering {
  std::vector<std::uint64_t> top = std::vector<std::uint64_t>(space / k4, 0); // winner per granule
  std::map<std::uint64_t, std::uint64_t> shown; // RAM region id -> granules it shows in
  std::uint64_t registered_bytes = 0, registered = 0;

  // The host address granule `g` maps to under `id`, or 0 for none.
  static std::uint64_t host_of(const model& m, std::uint64_t id, std::uint64_t g) {
    if (id == 0)
      return 0;
    const memory_region& r = m.regions.at(id);
    return r.kind == region_kind::ram ? r.host.value() + (g - r.first.value()) : 0;
  }
  // Renders [first, last) again; `gone` is a region just removed from the
  // model (its size is needed to update the registrations), or null.
  void update(const model& m, std::uint64_t first, std::uint64_t last, const memory_region* gone,
              std::set<std::uint64_t>& touched) {
    for (std::uint64_t g = first; g < last; g += k4) {
      const std::uint64_t was = top[g / k4], is = m.at(g);
      if (was == is)
        continue;
      top[g / k4] = is;
      if (was != 0 &&
          (m.regions.count(was) == 0 ? gone->kind : m.regions.at(was).kind) == region_kind::ram) {
        touched.insert(was);
        if (--shown[was] == 0) {
          shown.erase(was);
          --registered;
          registered_bytes -= m.regions.count(was) == 0 ? gone->size : m.regions.at(was).size;
        }
      }
      if (is != 0 && m.regions.at(is).kind == region_kind::ram) {
        touched.insert(is);
        if (shown[is]++ == 0) {
          ++registered;
          registered_bytes += m.regions.at(is).size;
        }
      }
    }
  }
};

// What a step must leave, checked over the range it changed: translations
// there, map and unmap events only there and never an unmap of a survivor,
// and the counts of registrations, charges and pins everywhere.
void check_step(world& w, const model& m, const rendering& now, std::uint64_t first,
                std::uint64_t last, const std::vector<std::uint64_t>& before_hosts,
                const std::set<std::uint64_t>& touched) {
  // One check for the range (a check per granule would cost more than the
  // step), naming the first granule that is wrong.
  std::uint64_t wrong = 0, first_wrong = 0;
  for (std::uint64_t g = first; g < last; g += k4) {
    const std::uint64_t host = rendering::host_of(m, now.top[g / k4], g);
    const auto t = w.container.translate(ioba{g});
    const bool right =
        host == 0 ? !t.has_value() : t && t->target == w.backend.translate(ua{host})->value();
    first_wrong = wrong == 0 && !right ? g : first_wrong;
    wrong += right ? 0 : 1;
  }
  CHECK_MESSAGE(wrong == 0, "granule ", first_wrong, " and ", wrong - 1, " more map wrongly");
  // New mappings only where the step changed the map (and mapped there, as
  // the translations just said).
  for (const mapped_run& run : w.unmaps.mapped)
    CHECK_MESSAGE((run.first.value() >= first && run.first.value() + run.pages * k4 <= last),
                  "a mapping outside the changed range at ", run.first.value());
  w.unmaps.mapped.clear();
  for (const mapped_run& run : w.unmaps.unmapped)
    for (std::uint64_t k = 0; k < run.pages; ++k) {
      const std::uint64_t g = run.first.value() + k * k4;
      const bool inside = g >= first && g < last;
      const std::uint64_t was =
          inside ? before_hosts[(g - first) / k4] : rendering::host_of(m, now.top[g / k4], g);
      const bool survived = was != 0 && was == rendering::host_of(m, now.top[g / k4], g);
      CHECK_MESSAGE(!survived, "a surviving mapping was unmapped at ", g);
    }
  w.unmaps.unmapped.clear();
  CHECK(w.registry.region_count() == now.registered);
  CHECK(w.pins.charged() == now.registered_bytes);
  CHECK(w.backend.pinned_pages() == now.registered_bytes / k64);
  for (const std::uint64_t id : touched) {
    const auto shown = now.shown.find(id);
    if (shown == now.shown.end())
      continue; // no longer registered: the counts above say so
    const memory_region& r = m.regions.at(id);
    auto held = w.registry.acquire(r.host, r.size);
    REQUIRE(held);
    CHECK((*held)->mappings() - 1 == shown->second);
    w.registry.release(*held);
  }
  CHECK(w.prereg.log.failures.empty());
  CHECK(w.dma.log.failures.empty());
}

// One random sequence. Every step is checked over the range it changed;
// every `full_every` steps (every step at CI's count) the whole state is
// rendered from scratch and compared as well.
void run(bool prereg_first, std::uint32_t seed, std::uint64_t steps, std::uint64_t full_every) {
  CAPTURE(prereg_first);
  CAPTURE(seed);
  world w(prereg_first);
  model m;
  rendering now;
  std::mt19937_64 rng(seed);
  auto below = [&](std::uint64_t n) { return rng() % n; };
  std::map<std::uint64_t, std::uint64_t> before;
  std::vector<std::uint64_t> before_hosts;
  std::uint64_t next_id = 1;
  for (std::uint64_t step = 0; step < steps; ++step) {
    CAPTURE(step);
    const bool full = step % full_every == 0;
    if (full) {
      before.clear();
      for (std::uint64_t g = 0; g < space; g += k4)
        if (const std::uint64_t host = rendering::host_of(m, now.top[g / k4], g); host != 0)
          before[g] = host;
    }
    // The step changes the guest addresses of one region: [first, last).
    const auto op = below(10);
    memory_region changed{};
    bool removed = false;
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
      changed = memory_region{next_id++, gpa{slot * 4 * mib}, size,
                              0,         region_kind::ram,    ua{host_base + slot * 4 * mib},
                              below(2)};
    } else if (op < 6) {
      // An overlay: MMIO, or RAM from elsewhere, over whatever is there.
      const std::uint64_t first = below(space / k64) * k64;
      const std::uint64_t size = (1 + below(32)) * k64;
      const bool ram = below(3) == 0;
      changed = memory_region{next_id,
                              gpa{first},
                              std::min(size, space - first),
                              ram ? 2 : 1,
                              ram ? region_kind::ram : region_kind::mmio,
                              ua{host_base + (std::uint64_t{1} << 36) + next_id * 64 * mib},
                              100 + next_id};
      ++next_id;
    } else {
      // Unplug / remove an overlay.
      changed = m.regions.at(m.order[below(m.order.size())]);
      removed = true;
    }
    const std::uint64_t first = changed.first.value(), last = first + changed.size;
    before_hosts.clear();
    for (std::uint64_t g = first; g < last; g += k4)
      before_hosts.push_back(rendering::host_of(m, now.top[g / k4], g));
    if (removed) {
      REQUIRE(w.map.remove_region(changed.id) == status::ok);
      m.remove(changed.id);
    } else {
      REQUIRE(w.map.add_region(changed) == status::ok);
      m.add(changed);
    }
    std::set<std::uint64_t> touched;
    now.update(m, first, last, &changed, touched);
    if (full) {
      // The unmap events are judged against the whole map here.
      check(w, m, before);
      for (std::uint64_t g = 0; g < space; g += k4)
        REQUIRE(now.top[g / k4] == m.at(g)); // the rendering kept up
    }
    check_step(w, m, now, first, last, before_hosts, touched);
  }
  // Everything goes, in a batch now and then.
  {
    memory_map::batch b(w.map);
    for (std::uint64_t id : m.order)
      REQUIRE(w.map.remove_region(id) == status::ok);
  }
  m.clear();
  check(w, m, {});
  CHECK(w.registry.region_count() == 0);
  CHECK(w.pins.charged() == 0);
  CHECK(w.backend.pinned_pages() == 0);
  CHECK(w.prereg_listener.ranges().empty());
  CHECK(w.dma_listener.ranges().empty());
}
} // namespace

TEST_CASE("prereg and DMA listeners on one map, both attach orders, against a model") {
  constexpr std::uint32_t seeds = 4;
  const std::uint64_t steps = iopt_test::share_of(iopt_test::soak_operations(seeds * 120), seeds);
  // At CI's count everything is compared after every step; in the soak, the
  // whole state every 1000 steps and the changed range after each.
  const std::uint64_t full_every = iopt_test::soaking() ? 1000 : 1;
  for (std::uint32_t seed = 1; seed <= seeds; ++seed) {
    run(true, seed, steps, full_every);
    run(false, seed, steps, full_every);
  }
  MESSAGE((seeds * steps) << " operations for each attach order (" << steps << " for each seed)");
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
