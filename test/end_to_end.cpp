// End to end, the way a VMM uses iopt for a guest with an sPAPR device:
//
//   1. the guest's RAM, including a small section that is not 64K aligned,
//      is described by a memory map;
//   2. a listener at the host page size (64 KiB) preregisters the RAM;
//   3. a 128 TiB huge window (64 KiB pages) is created for the device, and
//      the guest gets a guest-visible window of the same shape, by LIOBN;
//   4. the guest maps and clears with H_PUT_TCE_INDIRECT, H_PUT_TCE and
//      H_STUFF_TCE; a notifier on the guest window mirrors every change into
//      the host container (guest physical -> user address -> host physical);
//   5. the device's view is checked by translating bus addresses;
//   6. a second notifier attached late hears the current mappings by replay;
//   7. teardown, with every counter back at zero.
#include <iopt/iopt.hpp>

#include <doctest/doctest.h>

#include <vector>

using namespace iopt;

namespace {

constexpr std::uint64_t mib = std::uint64_t{1} << 20;
constexpr std::uint64_t page = std::uint64_t{1} << 16;
constexpr std::uint64_t liobn = 0x8000'0001;
constexpr std::uint64_t ram_bytes = 256 * mib;
constexpr ua host_ram{0x7f00'0000'0000}; // where the VMM mapped guest RAM (simulated)

// The guest-visible window: native-endian TCEs kept as the guest wrote them.
using config_guest_huge = config_huge_window_guest;

ua host_of(std::uint64_t guest_physical) { return host_ram + guest_physical; }

} // namespace

TEST_CASE("a guest with a huge window, from memory map to device translation and back") {
  // Host side: pinning backend, accounting, registry, v2 container.
  simulated_backend backend{16};
  counted_accounting locked{ram_bytes * 2};
  unlimited_accounting table_memory;
  prereg_registry<simulated_backend, counted_accounting> registry(backend, locked);
  preregistered<decltype(registry)> strategy(registry);
  dma_container<decltype(strategy), unlimited_accounting, config_4k, config_huge_window> container(
      strategy, table_memory);

  {
    // 1 and 2: guest RAM through the preregistration listener.
    memory_map guest_map;
    prereg_sink<decltype(registry)> prereg(registry);
    memory_listener<page_64k, decltype(prereg)> prereg_listener(page_64k{}, prereg);
    guest_map.attach(prereg_listener);
    REQUIRE(guest_map.add_region({1, gpa{0}, ram_bytes, 0, region_kind::ram, host_of(0), 1}) ==
            status::ok);
    REQUIRE(guest_map.add_region({2, gpa{ram_bytes + 0x3000}, 0x1000, 0, region_kind::ram,
                                  host_of(ram_bytes + 0x3000), 2}) == status::ok);
    CHECK(registry.region_count() == 1);
    REQUIRE(prereg.log.unaligned.size() == 1); // the small section is reported, not lost
    CHECK(prereg.log.unaligned[0] ==
          unaligned_event{gpa{ram_bytes + 0x3000}, 0x1000, unaligned_part::whole, 2});

    // 3: the device's huge window, and the guest's view of it.
    const auto bus = container.create_window(16, 47);
    REQUIRE(bus);
    auto guest_window = tce_table<config_guest_huge>::create(*bus, std::uint64_t{1} << 47);
    REQUIRE(guest_window);

    // 4: a notifier mirrors the guest's window into the container.
    std::vector<status> mirror_errors;
    auto mirror = [&](const iommu_event& e) {
      if (e.type == iommu_event::kind::map) {
        const status s =
            container.map_dma(e.run.first, host_of(e.run.target), e.run.pages * page, e.run.perm);
        if (s != status::ok)
          mirror_errors.push_back(s);
      } else if (!container.unmap_dma(e.run.first, e.run.pages * page)) {
        mirror_errors.push_back(status::hardware_error);
      }
    };
    callback_notifier<decltype(mirror)> to_host(mirror);
    notifier_list guest_notifiers;
    guest_notifiers.attach(to_host, *guest_window);

    buffer_guest_memory guest_memory(gpa{0}, ram_bytes);
    using window_type = tce_table<config_guest_huge>;
    guest_window_notifier<window_type> to_notifiers(liobn, *guest_window, guest_notifiers);
    tce_hcalls<buffer_guest_memory, config_guest_huge> hcalls(guest_memory);
    hcalls.set_change_hook(to_notifiers.hook());
    REQUIRE(hcalls.attach(liobn, *guest_window) == status::ok);

    // The guest maps 8 MiB of its RAM at bus offset +1 GiB with one indirect call...
    std::vector<std::uint64_t> list;
    for (std::uint64_t i = 0; i < 128; ++i)
      list.push_back((32 * mib + i * page) | 3);
    REQUIRE(guest_memory.write_tce_list(gpa{ram_bytes - 4096}, list) == status::ok);
    const std::uint64_t dma = bus->value() + (std::uint64_t{1} << 30);
    REQUIRE(hcalls.put_tce_indirect(liobn, dma, ram_bytes - 4096, 128, hcall_path::fast) ==
            status::too_hard);
    REQUIRE(hcalls.put_tce_indirect(liobn, dma, ram_bytes - 4096, 128, hcall_path::slow) ==
            status::ok);
    // ...one more page, read-only, with H_PUT_TCE...
    REQUIRE(hcalls.put_tce(liobn, dma + 200 * page, (64 * mib) | 1, hcall_path::fast) ==
            status::ok);
    CHECK(mirror_errors.empty());

    // 5: what the device sees.
    const auto t = container.translate(ioba{dma + 5 * page + 0x123});
    REQUIRE(t);
    CHECK(t->target == backend.translate(host_of(32 * mib + 5 * page))->value() + 0x123);
    CHECK(t->perm == permission::read_write);
    CHECK(container.translate(ioba{dma + 200 * page})->perm == permission::read);
    CHECK(container.translate(ioba{dma + 128 * page}).error() == status::not_found);

    // 6: a notifier attached late hears the current state by replay.
    std::vector<iommu_event> replayed;
    callback_notifier late([&](const iommu_event& e) { replayed.push_back(e); });
    guest_notifiers.attach(late, *guest_window);
    REQUIRE(replayed.size() == 2);
    CHECK(replayed[0].run == mapped_run{ioba{dma}, 32 * mib, 128, permission::read_write});
    CHECK(replayed[1].run.first == ioba{dma + 200 * page});

    // The guest clears it all with H_STUFF_TCE; the device loses access.
    REQUIRE(hcalls.stuff_tce(liobn, dma, 0, 256, hcall_path::fast) == status::ok);
    CHECK(container.translate(ioba{dma}).error() == status::not_found);
    CHECK(mirror_errors.empty());
    CHECK(locked.charged() == ram_bytes); // only the preregistration is charged

    // 7: teardown. The RAM goes from the memory map (the listener unregisters
    // it); the window goes from the container.
    REQUIRE(container.remove_window(*bus) == status::ok);
    REQUIRE(guest_map.remove_region(1) == status::ok);
    REQUIRE(guest_map.remove_region(2) == status::ok);
    CHECK(prereg.log.failures.empty());
  }
  CHECK(registry.region_count() == 0);
  CHECK(locked.charged() == 0);
  CHECK(backend.pinned_pages() == 0);
  REQUIRE(container.reset() == status::ok);
  CHECK(container.window_count() == 1);
}
