// Fault-injection sweeps over composite operations. Each operation runs once
// to count its points (allocations, charges, pins: everything that consults
// the fault plan), then once per point with that point failing. Every failed
// run must leave the state exactly as a snapshot taken before it, and every
// world must end with all counters at zero. Under the asan preset,
// LeakSanitizer checks that nothing leaked as well.
#include <iopt/iopt.hpp>
#include <iopt/testing/fault_injecting_accounting.hpp>
#include <iopt/testing/fault_injecting_allocator.hpp>

#include <doctest/doctest.h>

#include "sweep.hpp"

#include <memory>
#include <vector>

using namespace iopt;
using iopt_test::sweep;

namespace {

constexpr std::uint64_t page = 1 << 16;
constexpr std::uint64_t mib = 1 << 20;
using faulty_accounting = fault_injecting_accounting<counted_accounting, fault_plan>;

// A container world: registry, strategy and container, every fallible step
// counted by one plan.
template <class Strategy, frame_layout Layout = frame_layout::contiguous>
struct container_world {
  fault_plan plan;
  simulated_backend backend{16, Layout};
  counted_accounting pin_limit{std::uint64_t{1} << 40}, table_limit{std::uint64_t{1} << 40};
  faulty_accounting pins{pin_limit, plan}, tables{table_limit, plan};
  prereg_registry<simulated_backend, faulty_accounting, fault_injecting_allocator> registry{
      backend, pins, fault_injecting_allocator(plan)};
  Strategy strategy = make_strategy();
  dma_container<Strategy, faulty_accounting, config_4k, config_huge_window> container{strategy,
                                                                                      tables};

  container_world() {
    backend.count_faults_in(plan);
    (void)container.query(); // the default window exists before the operation
    if constexpr (Strategy::model == memory_model::v1_pin_on_map)
      REQUIRE(container.enable() == status::ok);
  }
  Strategy make_strategy() {
    if constexpr (Strategy::model == memory_model::v1_pin_on_map)
      return Strategy(backend, pins, {}, fault_injecting_allocator(plan));
    else
      return Strategy(registry);
  }

  struct state {
    unsigned windows;
    std::size_t table_bytes;
    std::uint64_t pinned, pin_charge, table_charge, regions;
    std::vector<mapped_run> huge_runs;
    friend bool operator==(const state&, const state&) = default;
  };
  state snapshot() {
    state s{container.window_count(),
            container.table_bytes(),
            backend.pinned_pages(),
            pins.charged(),
            tables.charged(),
            registry.region_count(),
            {}};
    for (std::uint64_t off = 0; off < 64 * page; off += page)
      if (const auto t = container.translate(ioba{huge_window_bus_offset + off}))
        s.huge_runs.push_back(
            mapped_run{ioba{huge_window_bus_offset + off}, t->target, 1, t->perm});
    return s;
  }
  void teardown() {
    REQUIRE(container.reset() == status::ok);
    (void)container.remove_window(ioba{0});
    if (registry.region_count() != 0)
      REQUIRE(registry.unregister_region(ua{0x40'0000'0000}, 16 * mib) == status::ok);
    CHECK(backend.pinned_pages() == 0);
    CHECK(pins.charged() == 0);
    CHECK(tables.charged() == 0);
  }
};

using v2_world = container_world<preregistered<
    prereg_registry<simulated_backend, faulty_accounting, fault_injecting_allocator>>>;
using v1_world =
    container_world<pin_on_map<simulated_backend, faulty_accounting, fault_injecting_allocator>>;
using v2_scattered_world = container_world<
    preregistered<prereg_registry<simulated_backend, faulty_accounting, fault_injecting_allocator>>,
    frame_layout::scattered>;

} // namespace

TEST_CASE("sweep: create a 128 TiB window") {
  const auto points = sweep<v2_world>([](v2_world& w) {
    const auto made = w.container.create_window(16, 47);
    return made ? status::ok : made.error();
  });
  MESSAGE(points << " points"); // the top levels of the table and its shadow
}

TEST_CASE("sweep: register memory") {
  const auto points = sweep<v2_world>(
      [](v2_world& w) { return w.container.register_memory(ua{0x40'0000'0000}, 16 * mib); });
  // record, index, charge, pin, the translation (a failed pagemap read), the
  // run array of its one frame run.
  CHECK(points == 6);
}

TEST_CASE("sweep: register memory with scattered frames (the run array grows)") {
  const auto points = sweep<v2_scattered_world>([](v2_scattered_world& w) {
    return w.container.register_memory(ua{0x40'0000'0000}, 16 * mib);
  });
  // record, index, charge, pin, the translation, then 256 runs of one page:
  // the array grows from 4 runs by doubling, 7 allocations.
  CHECK(points == 12);
}

TEST_CASE("sweep: map_dma, v2") {
  struct world : v2_world {
    world() {
      REQUIRE(container.register_memory(ua{0x40'0000'0000}, 16 * mib) == status::ok);
      REQUIRE(container.create_window(16, 47));
    }
  };
  const auto points = sweep<world>([](world& w) {
    // Across a leaf boundary, so that several blocks are needed.
    return w.container.map_dma(ioba{huge_window_bus_offset + 16380 * page}, ua{0x40'0000'0000},
                               8 * page, permission::read_write);
  });
  CHECK(points == 6); // a middle block and two leaves, in the table and in its shadow
}

TEST_CASE("sweep: map_dma, v2, scattered frames, one call across two adjacent regions") {
  struct world : v2_scattered_world {
    world() {
      REQUIRE(container.register_memory(ua{0x40'0000'0000}, 8 * mib) == status::ok);
      REQUIRE(container.register_memory(ua{0x40'0080'0000}, 8 * mib) == status::ok);
      REQUIRE(container.create_window(16, 47));
    }
    void teardown() {
      REQUIRE(container.reset() == status::ok);
      REQUIRE(registry.unregister_region(ua{0x40'0000'0000}, 8 * mib) == status::ok);
      REQUIRE(registry.unregister_region(ua{0x40'0080'0000}, 8 * mib) == status::ok);
      v2_scattered_world::teardown();
    }
  };
  const auto points = sweep<world>([](world& w) {
    // 200 pages of one-page runs, 128 from the first region and 72 from the
    // second, across a leaf boundary: written as lists, all or nothing.
    return w.container.map_dma(ioba{huge_window_bus_offset + 16340 * page}, ua{0x40'0000'0000},
                               200 * page, permission::read_write);
  });
  CHECK(points == 6);
}

TEST_CASE("sweep: map_dma, v1, scattered frames") {
  using world_base =
      container_world<pin_on_map<simulated_backend, faulty_accounting, fault_injecting_allocator>,
                      frame_layout::scattered>;
  struct world : world_base {
    world() { REQUIRE(container.create_window(16, 47)); }
  };
  const auto points = sweep<world>([](world& w) {
    return w.container.map_dma(ioba{huge_window_bus_offset + 16340 * page},
                               ua{0x40'0000'0000 + 900 * page}, 300 * page, permission::read_write);
  });
  // Levels (6), the count directory and two chunks (host pages 900 to 1199
  // of a 1024-page chunk boundary: 3), one charge, one pin, one translation
  // (failing after the first page's run was reported).
  CHECK(points == 12);
}

TEST_CASE("sweep: map_dma, v1 (count room, a charge and a pin per new host page)") {
  struct world : v1_world {
    world() { REQUIRE(container.create_window(16, 47)); }
  };
  const auto points = sweep<world>([](world& w) {
    return w.container.map_dma(ioba{huge_window_bus_offset}, ua{0x40'0000'0000}, 6 * page,
                               permission::read);
  });
  // Levels of the table and its shadow (a middle block and a leaf each),
  // the count table's directory and chunk, one charge, one pin for the run,
  // one translation.
  CHECK(points == 9);
}

TEST_CASE("sweep: map_dma, v1, 4 KiB IOMMU pages sharing 64 KiB host pages") {
  // 40 IOMMU pages over 3 host pages: 8 in the first, 16 in each of the
  // others. The count table's directory and chunk, one charge, and a pin
  // for each group of host pages under the same number of IOMMU pages (the
  // first, 8 times; the other two, 16 times), one translation.
  const auto points = sweep<v1_world>([](v1_world& w) {
    return w.container.map_dma(ioba{0x10'0000}, ua{0x40'0000'8000}, 40 * 4096, permission::read);
  });
  CHECK(points == 6);
}

namespace {
struct hcall_world {
  struct config : config_huge_window {
    using allocator = fault_injecting_allocator;
  };
  fault_plan plan;
  buffer_guest_memory memory{gpa{0}, 16 * mib};
  tce_table<config> window = make();
  tce_hcalls<buffer_guest_memory, config> hcalls{memory};

  hcall_world() {
    REQUIRE(hcalls.attach(1, window) == status::ok);
    std::vector<std::uint64_t> list(512);
    for (std::uint64_t i = 0; i < 512; ++i)
      list[i] = ((i % 256) * page) | 3; // inside the 16 MiB of guest RAM
    REQUIRE(memory.write_tce_list(gpa{16 * mib - 4096}, list) == status::ok);
  }
  tce_table<config> make() {
    auto t = tce_table<config>::create(ioba{huge_window_bus_offset}, std::uint64_t{1} << 40,
                                       fault_injecting_allocator(plan));
    REQUIRE(t);
    return std::move(t).value();
  }
  struct state {
    std::size_t bytes;
    std::uint64_t mapped;
    friend bool operator==(const state&, const state&) = default;
  };
  state snapshot() {
    std::uint64_t mapped = 0;
    window.for_each_run([&](const mapped_run& r) { mapped += r.pages; });
    return {window.memory_bytes(), mapped};
  }
  void teardown() { CHECK(plan.live_bytes == static_cast<std::int64_t>(window.memory_bytes())); }
};

struct listener_world {
  fault_plan plan;
  simulated_backend backend{16};
  counted_accounting limit{std::uint64_t{1} << 40};
  faulty_accounting pins{limit, plan};
  prereg_registry<simulated_backend, faulty_accounting, fault_injecting_allocator> registry{
      backend, pins, fault_injecting_allocator(plan)};
  prereg_sink<decltype(registry)> sink{registry};
  memory_listener<page_64k, decltype(sink)> listener{page_64k{}, sink};
  memory_map map;

  listener_world() {
    backend.count_faults_in(plan);
    map.attach(listener);
  }
  struct state {
    std::size_t regions, held;
    std::uint64_t pinned, charged;
    friend bool operator==(const state&, const state&) = default;
  };
  state snapshot() {
    return {registry.region_count(), listener.ranges().size(), backend.pinned_pages(),
            pins.charged()};
  }
  void teardown() {
    (void)map.remove_region(1);
    CHECK(registry.region_count() == 0);
    CHECK(backend.pinned_pages() == 0);
    CHECK(pins.charged() == 0);
  }
};
} // namespace

TEST_CASE("sweep: H_PUT_TCE_INDIRECT on the slow path") {
  const auto points = sweep<hcall_world>([](hcall_world& w) {
    // 512 entries across a leaf boundary: a middle block and two leaves.
    return w.hcalls.put_tce_indirect(1, huge_window_bus_offset + 16000 * page, 16 * mib - 4096, 512,
                                     hcall_path::slow);
  });
  CHECK(points == 3);
}

TEST_CASE("sweep: a listener adds a section") {
  const auto points = sweep<listener_world>([](listener_world& w) {
    const std::size_t failures = w.sink.log.failures.size();
    REQUIRE(w.map.add_region({1, gpa{0}, 16 * mib, 0, region_kind::ram, ua{0x40'0000'0000}, 1}) ==
            status::ok);
    // The map always takes the region; what the sink could not do is logged.
    return w.sink.log.failures.size() == failures ? status::ok : w.sink.log.failures.back().error;
  });
  MESSAGE(points << " points");
}
