// The VFIO-style container: every status of every call, the scenario a
// user-space driver runs on sPAPR in v2 and v1, and counters at zero after.
#include "window/support.hpp"

#include <iopt/configs.hpp>
#include <iopt/testing/fault_injecting_allocator.hpp>
#include <iopt/window/container.hpp>

#include <doctest/doctest.h>

#include <vector>

using namespace iopt;
using namespace iopt_test;

namespace {

constexpr std::uint64_t host_page = 1 << 16;
constexpr std::uint64_t kib = 1024, mib = kib * kib, gib = kib * mib;

template <class Strategy>
using container_type =
    container_of<Strategy, config_4k, config_64k_flat, config_huge_window, config_16m>;

struct v2_fixture {
  simulated_backend backend{16};
  counted_accounting pins{std::uint64_t{1} << 40};   // pinned memory
  counted_accounting tables{std::uint64_t{1} << 30}; // table memory
  registry_type registry{backend, pins};
  v2_strategy strategy{registry};
  container_type<v2_strategy> container{strategy, tables};

  struct counters {
    std::uint64_t pinned_pages, pin_charge, regions, table_charge;
    friend bool operator==(const counters&, const counters&) = default;
  };
  counters now() const {
    return {backend.pinned_pages(), pins.charged(), registry.region_count(), tables.charged()};
  }
  std::uint64_t mappings_of(ua at) const {
    auto r = const_cast<registry_type&>(registry).acquire(at, host_page);
    if (!r)
      return 0;
    const std::uint64_t n = (*r)->mappings() - 1;
    const_cast<registry_type&>(registry).release(*r);
    return n;
  }
};

} // namespace

TEST_CASE("the default window appears on first use; info and query describe the container") {
  v2_fixture f;
  CHECK(f.container.window_count() == 0);
  const container_info info = f.container.info();
  CHECK(info.default_window_start == ioba{0});
  CHECK(info.default_window_bytes == gib);
  CHECK(info.page_size_mask == ((1u << 12) | (1u << 16) | (1u << 24)));
  CHECK(info.max_windows == 2);
  CHECK(info.max_levels == 3);
  const window_query q = f.container.query();
  CHECK(f.container.window_count() == 1);
  CHECK(q.free_windows == 1);
  CHECK(q.page_size_mask == info.page_size_mask);
  CHECK(q.max_window_shift == 54);
  CHECK(f.tables.charged() == f.container.table_bytes()); // charged for what the tables hold
}

TEST_CASE("create_window: every status") {
  v2_fixture f;
  (void)f.container.query();
  const auto before = f.now();
  CHECK(f.container.create_window(21, 40).error() ==
        status::invalid_parameter); // 2M: not supported
  CHECK(f.container.create_window(16, 15).error() == status::invalid_parameter); // below one page
  CHECK(f.container.create_window(64, 70).error() ==
        status::invalid_parameter); // no such page size
  CHECK(f.container.create_window(16, 64).error() == status::invalid_parameter); // no such window
  CHECK(f.container.create_window(12, 40).error() == status::unsupported); // 4K: flat only, too big
  CHECK(f.container.create_window(16, 47, 2).error() ==
        status::unsupported); // no 2-level 64K config here
  CHECK(f.container.create_window(16, 60).error() ==
        status::unsupported); // larger than any level set
  CHECK(f.now() == before);
  const auto huge = f.container.create_window(16, 47);
  REQUIRE(huge);
  CHECK(*huge == ioba{huge_window_bus_offset});
  CHECK(f.container.create_window(16, 30).error() == status::busy); // both windows exist
  CHECK(f.container.remove_window(ioba{12345}) == status::not_found);
}

TEST_CASE("automatic levels: the fewest whose blocks fit the largest allocation") {
  v2_fixture f;
  container_type<v2_strategy> small_blocks{f.strategy, f.tables,
                                           container_options{.default_page_shift = 16,
                                                             .default_window_bytes = 256 * mib,
                                                             .max_block_bytes = 512 * kib}};
  (void)small_blocks.query();
  const std::size_t default_bytes = small_blocks.table_bytes(); // the default window's
  // 1 GiB of 64K pages: a flat table of 128 KiB fits under 512 KiB.
  REQUIRE(small_blocks.create_window(16, 30));
  CHECK(small_blocks.table_bytes() - default_bytes == 2 * 128 * kib); // table and shadow
  REQUIRE(small_blocks.remove_window(ioba{huge_window_bus_offset}) == status::ok);
  // 4 GiB of 64K pages: flat would be 512 KiB... still fits; 8 GiB (1 MiB) does not: three levels.
  REQUIRE(small_blocks.create_window(16, 33));
  CHECK(small_blocks.table_bytes() - default_bytes < 64); // two one-entry top levels
  // Explicit levels are taken as asked, whatever the block size.
  REQUIRE(small_blocks.remove_window(ioba{huge_window_bus_offset}) == status::ok);
  REQUIRE(small_blocks.create_window(16, 33, 1));
  CHECK(small_blocks.table_bytes() - default_bytes == 2 * mib);
  // A default window (4K pages, 1 GiB) that cannot be flat under 512 KiB,
  // with no other 4K configuration: every call says so.
  container_type<v2_strategy> no_default{f.strategy, f.tables,
                                         container_options{.max_block_bytes = 512 * kib}};
  CHECK(no_default.create_window(16, 30).error() == status::unsupported);
  CHECK(no_default.map_dma(ioba{0}, ua{0}, 4096, permission::read) == status::unsupported);
  CHECK(no_default.window_count() == 0);
}

TEST_CASE("a default window that is not a power of two is refused, not rounded") {
  v2_fixture f;
  container_type<v2_strategy> odd{f.strategy, f.tables,
                                  container_options{.default_window_bytes = 3 * gib}};
  CHECK(odd.map_dma(ioba{0}, ua{0}, 4096, permission::read) == status::invalid_parameter);
  CHECK(odd.window_count() == 0);
}

TEST_CASE("a 128 TiB window costs its top levels only") {
  v2_fixture f;
  (void)f.container.query();
  const std::uint64_t before = f.tables.charged();
  REQUIRE(f.container.create_window(16, 47));
  CHECK(f.tables.charged() - before ==
        2 * 2 * kib); // 2 KiB top level, for the table and its shadow
  REQUIRE(f.container.remove_window(ioba{huge_window_bus_offset}) == status::ok);
  CHECK(f.tables.charged() == before);
}

TEST_CASE("map_dma and unmap_dma: every status, and nothing changed on failure") {
  v2_fixture f;
  REQUIRE(f.container.register_memory(ua{0x1000'0000}, 16 * host_page) == status::ok);
  REQUIRE(f.container.create_window(16, 40));
  const ioba huge{huge_window_bus_offset};
  REQUIRE(f.container.map_dma(huge, ua{0x1000'0000}, 4 * host_page, permission::read) ==
          status::ok);
  const auto before = f.now();
  const std::uint64_t maps_before = f.mappings_of(ua{0x1000'0000});

  CHECK(f.container.map_dma(huge + 16 * host_page, ua{0x1000'0000}, host_page,
                            static_cast<permission>(7)) == status::bad_permission);
  CHECK(f.container.map_dma(huge + 16 * host_page, ua{0x1000'0000}, host_page, permission::none) ==
        status::invalid_parameter);
  CHECK(f.container.map_dma(huge + 16 * host_page, ua{0x1000'0000}, 0, permission::read) ==
        status::invalid_parameter);
  CHECK(f.container.map_dma(ioba{gib * 4}, ua{0x1000'0000}, host_page, permission::read) ==
        status::out_of_window); // between windows
  CHECK(f.container.map_dma(huge + 0x1000, ua{0x1000'0000}, host_page, permission::read) ==
        status::not_aligned);
  CHECK(f.container.map_dma(huge + 16 * host_page, ua{0x1000'1000}, host_page, permission::read) ==
        status::not_aligned);
  CHECK(f.container.map_dma(huge + 16 * host_page, ua{0x1000'0000}, 0x1000, permission::read) ==
        status::not_aligned);
  CHECK(f.container.map_dma(ioba{huge_window_bus_offset + (std::uint64_t{1} << 40) - host_page},
                            ua{0x1000'0000}, 2 * host_page,
                            permission::read) == status::out_of_window); // past the window's end
  CHECK(f.container.map_dma(huge + 16 * host_page, ua{0 - host_page}, 2 * host_page,
                            permission::read) == status::wraps);
  CHECK(f.container.map_dma(huge + 2 * host_page, ua{0x1000'0000 + 8 * host_page}, 4 * host_page,
                            permission::read) == status::exists);
  CHECK(f.container.map_dma(huge + 16 * host_page, ua{0x2000'0000}, host_page, permission::read) ==
        status::not_found); // not registered
  // Runs off the end of the registered region after 2 pages: the first two are undone.
  CHECK(f.container.map_dma(huge + 16 * host_page, ua{0x1000'0000 + 14 * host_page}, 4 * host_page,
                            permission::read) == status::not_found);
  CHECK(f.container.translate(huge + 16 * host_page).error() == status::not_found);
  CHECK(f.now() == before);
  CHECK(f.mappings_of(ua{0x1000'0000}) == maps_before);

  CHECK(f.container.unmap_dma(huge, 0).error() == status::invalid_parameter);
  CHECK(f.container.unmap_dma(ioba{gib * 4}, host_page).error() == status::out_of_window);
  CHECK(f.container.unmap_dma(huge + 0x1000, host_page).error() == status::not_aligned);
  CHECK(*f.container.unmap_dma(huge, 8 * host_page) == 4 * host_page); // unmaps what is mapped
  CHECK(*f.container.unmap_dma(huge, 8 * host_page) == 0);
  CHECK(f.mappings_of(ua{0x1000'0000}) == 0);
}

TEST_CASE("v2: what a user-space driver does on sPAPR, with counters back at zero") {
  v2_fixture f;
  CHECK(f.container.enable() == status::unsupported); // v1 only (ENOTTY)
  CHECK(f.container.disable() == status::unsupported);
  // Guest memory backed by 16 MiB hugepages.
  const ua memory{0x40'0000'0000};
  const std::uint64_t bytes = 256 * mib;
  f.backend.back_with_huge_pages(memory, bytes, 24);

  REQUIRE(f.container.remove_window(ioba{0}) == status::ok); // the default window goes
  const auto start = f.container.create_window(24, 34);      // 16 GiB of 16M pages covers it all
  REQUIRE(start);
  CHECK(*start == ioba{0}); // the first free slot is at bus address 0
  REQUIRE(f.container.register_memory(memory, bytes) == status::ok);
  REQUIRE(f.container.map_dma(*start, memory, bytes, permission::read_write) == status::ok);
  const auto t = f.container.translate(*start + 0x123'4567);
  REQUIRE(t);
  CHECK(t->perm == permission::read_write);
  CHECK(f.mappings_of(memory) == 16);
  CHECK(f.container.unregister_memory(memory, bytes) == status::busy);
  CHECK(*f.container.unmap_dma(*start, bytes) == bytes);
  REQUIRE(f.container.unregister_memory(memory, bytes) == status::ok);
  const std::uint64_t before_removal = f.tables.charged();
  REQUIRE(f.container.remove_window(*start) == status::ok);
  // The last window went, and it was not the default: the default comes back,
  // as QEMU's ibm,remove-pe-dma-window gives it.
  CHECK(f.container.window_count() == 1);
  CHECK(f.container.translate(ioba{gib - 4096}).error() == status::not_found);
  CHECK(f.tables.charged() != before_removal);
  REQUIRE(f.container.remove_window(ioba{0}) == status::ok); // the default goes for good
  CHECK(f.container.window_count() == 0);
  CHECK(f.now() == v2_fixture::counters{0, 0, 0, 0});
}

TEST_CASE("removing a window with live mappings releases every count") {
  v2_fixture f;
  REQUIRE(f.container.register_memory(ua{0x1000'0000}, 64 * host_page) == status::ok);
  REQUIRE(f.container.create_window(16, 47));
  REQUIRE(f.container.map_dma(ioba{huge_window_bus_offset}, ua{0x1000'0000}, 64 * host_page,
                              permission::write) == status::ok);
  // The same memory in 4K pages through the default window, too.
  REQUIRE(f.container.map_dma(ioba{0}, ua{0x1000'0000}, 16 * 4096, permission::read) == status::ok);
  CHECK(f.mappings_of(ua{0x1000'0000}) == 64 + 16);
  CHECK(f.container.unregister_memory(ua{0x1000'0000}, 64 * host_page) == status::busy);
  REQUIRE(f.container.remove_window(ioba{huge_window_bus_offset}) == status::ok);
  REQUIRE(f.container.reset() == status::ok); // and the default window's mappings go with it
  CHECK(f.container.window_count() == 1);
  CHECK(f.mappings_of(ua{0x1000'0000}) == 0);
  CHECK(f.container.unregister_memory(ua{0x1000'0000}, 64 * host_page) == status::ok);
  CHECK(f.backend.pinned_pages() == 0);
  CHECK(f.pins.charged() == 0);
}

TEST_CASE("v1: enable, each map pins and charges per page, counters back at zero") {
  simulated_backend backend{16};
  counted_accounting pins{64 * host_page};
  counted_accounting tables{std::uint64_t{1} << 30};
  v1_strategy strategy{backend, pins};
  {
    container_type<v1_strategy> container{strategy, tables};
    CHECK(container.register_memory(ua{0x1000'0000}, host_page) == status::unsupported);
    CHECK(container.map_dma(ioba{0}, ua{0x1000'0000}, host_page, permission::read) ==
          status::not_permitted);
    REQUIRE(container.enable() == status::ok);
    REQUIRE(container.create_window(16, 40));
    const ioba huge{huge_window_bus_offset};
    REQUIRE(container.map_dma(huge, ua{0x1000'0000}, 8 * host_page, permission::read_write) ==
            status::ok);
    CHECK(backend.pinned_pages() == 8);
    CHECK(pins.charged() == 8 * host_page);
    // Over the locked-memory limit half way: everything the call did is undone.
    CHECK(container.map_dma(huge + 8 * host_page, ua{0x2000'0000}, 60 * host_page,
                            permission::read) == status::no_memory);
    CHECK(backend.pinned_pages() == 8);
    CHECK(pins.charged() == 8 * host_page);
    REQUIRE(container.enable() == status::busy); // already enabled
    // Disable keeps the mappings; unmapping waits for the next enable.
    CHECK(container.disable() == status::ok);
    CHECK(container.unmap_dma(huge, 8 * host_page).error() == status::not_permitted);
    CHECK(container.map_dma(huge, ua{0x1000'0000}, host_page, permission::read) ==
          status::not_permitted);
    CHECK(backend.pinned_pages() == 8);
    REQUIRE(container.enable() == status::ok);
    CHECK(*container.unmap_dma(huge, 8 * host_page) == 8 * host_page);
    CHECK(backend.pinned_pages() == 0);
    CHECK(container.disable() == status::ok);
    // Mappings left at teardown are released by the container's destructor.
    REQUIRE(container.enable() == status::ok);
    REQUIRE(container.map_dma(huge, ua{0x1000'0000}, 2 * host_page, permission::read) ==
            status::ok);
  }
  CHECK(backend.pinned_pages() == 0);
  CHECK(pins.charged() == 0);
  CHECK(tables.charged() == 0);
}

TEST_CASE("a long map writes what the log kept and lists the rest again: same table at any limit") {
  // 3000 pages of 64 KiB: the first half over scattered frames (a list of
  // one-page runs), the second over 2 MiB huge pages (runs of 32 pages).
  constexpr ua first{0x4000'0000};
  constexpr std::uint64_t pages = 3000;
  constexpr std::uint64_t bytes = pages * host_page;
  for (const bool v2 : {false, true})
    for (const std::size_t limit : {std::size_t{0}, std::size_t{5}, std::size_t{700},
                                    std::size_t{1500}, target_log::default_limit}) {
      CAPTURE(v2);
      CAPTURE(limit);
      simulated_backend backend{16, frame_layout::scattered};
      backend.back_with_huge_pages(ua{first.value() + bytes / 2}, bytes / 2, 21);
      counted_accounting pins{std::uint64_t{1} << 40}, tables{std::uint64_t{1} << 30};
      registry_type registry{backend, pins};
      v1_strategy pin_on_map{backend, pins};
      v2_strategy prereg{registry};
      const container_options options{.target_log_limit = limit};
      container_type<v1_strategy> c1{pin_on_map, tables, options};
      container_type<v2_strategy> c2{prereg, tables, options};
      auto check = [&](auto& container) {
        REQUIRE(container.create_window(16, 40));
        const ioba bus{huge_window_bus_offset};
        REQUIRE(container.map_dma(bus, first, bytes, permission::read_write) == status::ok);
        for (std::uint64_t p = 0; p < pages; ++p) {
          const auto t = container.translate(bus + p * host_page);
          REQUIRE(t);
          const auto want = backend.translate(ua{first.value() + p * host_page});
          REQUIRE(want);
          CHECK(t->target == want->value());
          CHECK(t->perm == permission::read_write);
        }
        CHECK(!container.translate(bus + bytes));
        CHECK(*container.unmap_dma(bus, bytes) == bytes);
      };
      if (v2) {
        REQUIRE(c2.register_memory(first, bytes) == status::ok);
        check(c2);
        REQUIRE(c2.unregister_memory(first, bytes) == status::ok);
      } else {
        REQUIRE(c1.enable() == status::ok);
        check(c1);
      }
      CHECK(backend.pinned_pages() == 0);
      CHECK(pins.charged() == 0);
    }
}

namespace {
// TCEs that hold targets below 2^48 only. The simulated backend's frames of
// user addresses below 2^48 lie above it, those from 2^48 on below it.
struct tce_48_bits : hardware_tce {
  static constexpr std::uint64_t address_mask = (std::uint64_t{1} << 48) - 1;
};
struct config_48_bits : config_4k {
  using format = tce_48_bits;
};
constexpr ua fits{(std::uint64_t{1} << 48) + 0x1000'0000};
constexpr ua too_high{0x2000'0000};
} // namespace

TEST_CASE("a target past the TCE format's address bits: hardware_error, the call undone") {
  simulated_backend backend{16};
  REQUIRE(backend.translate(fits)->value() < std::uint64_t{1} << 48);
  REQUIRE(backend.translate(too_high)->value() >= std::uint64_t{1} << 48);
  counted_accounting pins{std::uint64_t{1} << 40};
  counted_accounting tables{std::uint64_t{1} << 30};
  auto state = [&](auto& container) {
    std::vector<std::uint64_t> s{backend.pinned_pages(), pins.charged(), tables.charged()};
    for (std::uint64_t k = 0; k < 64; ++k)
      if (const auto t = container.translate(ioba{k * 4 * kib}))
        s.push_back(t->target);
    return s;
  };
  SUBCASE("v1") {
    v1_strategy strategy{backend, pins};
    container_of<v1_strategy, config_48_bits> container{strategy, tables};
    REQUIRE(container.enable() == status::ok);
    REQUIRE(container.map_dma(ioba{0}, fits, 16 * 4 * kib, permission::read) == status::ok);
    const auto before = state(container);
    CHECK(container.map_dma(ioba{16 * 4 * kib}, too_high, 32 * 4 * kib, permission::read) ==
          status::hardware_error);
    CHECK(state(container) == before);
    CHECK(backend.pin_count(too_high) == 0);
    CHECK(*container.unmap_dma(ioba{0}, 64 * 4 * kib) == 16 * 4 * kib);
  }
  SUBCASE("v2") {
    registry_type registry{backend, pins};
    v2_strategy strategy{registry};
    container_of<v2_strategy, config_48_bits> container{strategy, tables};
    REQUIRE(container.register_memory(fits, host_page) == status::ok);
    REQUIRE(container.register_memory(too_high, host_page) == status::ok);
    REQUIRE(container.map_dma(ioba{0}, fits, 16 * 4 * kib, permission::read) == status::ok);
    const auto before = state(container);
    CHECK(container.map_dma(ioba{16 * 4 * kib}, too_high, 16 * 4 * kib, permission::read) ==
          status::hardware_error);
    CHECK(state(container) == before);
    // The failed call holds no use of its region: it unregisters at once.
    CHECK(container.unregister_memory(too_high, host_page) == status::ok);
    CHECK(*container.unmap_dma(ioba{0}, 64 * 4 * kib) == 16 * 4 * kib);
    CHECK(container.unregister_memory(fits, host_page) == status::ok);
  }
  CHECK(backend.pinned_pages() == 0);
}

TEST_CASE(
    "charging_allocator: a refused charge allocates nothing, a failed allocation is uncharged") {
  fault_plan plan;
  counted_accounting tables{3 * 4096};
  charging_allocator<counted_accounting, fault_injecting_allocator> alloc(
      tables, fault_injecting_allocator(plan));
  void* a = alloc.allocate(2 * 4096, 4096);
  REQUIRE(a != nullptr);
  CHECK(tables.charged() == 2 * 4096);
  CHECK(alloc.allocate(2 * 4096, 4096) == nullptr); // past the limit: not even tried
  CHECK(plan.points == 1);
  CHECK(tables.charged() == 2 * 4096);
  plan.fail_nth(1);
  CHECK(alloc.allocate(4096, 4096) == nullptr); // charged, then the memory is not there
  CHECK(plan.failures == 1);
  CHECK(tables.charged() == 2 * 4096);
  alloc.deallocate(a, 2 * 4096, 4096);
  CHECK(tables.charged() == 0);
  CHECK(plan.live_blocks == 0);
}
