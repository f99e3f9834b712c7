#include <iopt/configs.hpp>
#include <iopt/hcall/tce_hcalls.hpp>
#include <iopt/notify/notifier.hpp>
#include <iopt/window/container.hpp>

#include <doctest/doctest.h>

#include <vector>

using namespace iopt;

namespace {
using table_type = tce_table<config_huge_window>;
constexpr std::uint64_t page = table_type::page_bytes;

table_type make_huge(std::uint64_t offset = huge_window_bus_offset,
                     std::uint64_t bytes = std::uint64_t{1} << 47) {
  auto t = table_type::create(ioba{offset}, bytes);
  REQUIRE(t);
  return std::move(t).value();
}

struct event_log {
  std::vector<iommu_event> events;
  auto callback() {
    return [this](const iommu_event& e) { events.push_back(e); };
  }
};
} // namespace

TEST_CASE("attaching replays the window's mappings as coalesced runs") {
  auto t = make_huge();
  const ioba at{huge_window_bus_offset + (std::uint64_t{1} << 40)};
  REQUIRE(t.map_range(at, std::uint64_t{1} << 44, 16384, permission::read_write) ==
          status::ok); // 1 GiB
  REQUIRE(t.map(at + 20000 * page, 0x10000, permission::read) == status::ok);
  notifier_list list;
  event_log log;
  callback_notifier n(log.callback());
  list.attach(n, t);
  REQUIRE(log.events.size() == 2); // the gigabyte is one event, not 16384
  CHECK(log.events[0] ==
        iommu_event{iommu_event::kind::map,
                    mapped_run{at, std::uint64_t{1} << 44, 16384, permission::read_write}});
  CHECK(log.events[1].run.pages == 1);
}

TEST_CASE("an empty 128 TiB window replays nothing") {
  auto t = make_huge();
  notifier_list list;
  event_log log;
  callback_notifier n(log.callback());
  list.attach(n, t);
  CHECK(log.events.empty());
  CHECK(n.attached());
}

TEST_CASE("replay is safe at the top of the 64-bit space") {
  const std::uint64_t size = std::uint64_t{1} << 40;
  auto t = make_huge(0 - size, size);
  REQUIRE(t.map_range(ioba{0 - 3 * page}, UINT64_MAX - 3 * page + 1, 3, permission::read) ==
          status::ok);
  event_log log;
  callback_notifier n(log.callback());
  replay(t, n);
  REQUIRE(log.events.size() == 1);
  CHECK(log.events[0].run.pages == 3);
  CHECK(log.events[0].run.first == ioba{0 - 3 * page});
}

TEST_CASE("notifiers leave their list when destroyed; a list detaches its notifiers when it goes") {
  auto t = make_huge();
  event_log log;
  callback_notifier keeper(log.callback());
  {
    notifier_list list;
    {
      callback_notifier brief([](const iommu_event&) { FAIL("a destroyed notifier was called"); });
      list.attach(brief, t);
      list.attach(keeper, t);
    }
    list.notify(iommu_event{iommu_event::kind::unmap, mapped_run{ioba{0}, 0, 1, permission::none}});
    CHECK(log.events.size() == 1);
    CHECK(keeper.attached());
  }
  CHECK_FALSE(keeper.attached());
}

TEST_CASE("the hypercall front end reports through notifiers: one event per run, not per page") {
  buffer_guest_memory memory(gpa{0}, std::uint64_t{1} << 26);
  auto t = make_huge();
  notifier_list list;
  event_log log;
  callback_notifier n(log.callback());
  list.attach(n, t);
  guest_window_notifier<table_type> to_list(7, t, list);
  tce_hcalls<buffer_guest_memory, config_huge_window> hcalls(memory);
  hcalls.set_change_hook(to_list.hook());
  REQUIRE(hcalls.attach(7, t) == status::ok);
  std::vector<std::uint64_t> tces(512);
  for (std::uint64_t i = 0; i < 512; ++i)
    tces[i] = (i * page) | 3;
  REQUIRE(memory.write_tce_list(gpa{0x100000}, tces) == status::ok);
  REQUIRE(hcalls.put_tce_indirect(7, huge_window_bus_offset, 0x100000, 512, hcall_path::slow) ==
          status::ok);
  REQUIRE(log.events.size() == 2); // unmap of the range, then one map run of 512 pages
  CHECK(log.events[1].run.pages == 512);
  REQUIRE(hcalls.stuff_tce(7, huge_window_bus_offset, 0, std::uint64_t{1} << 20,
                           hcall_path::slow) == status::ok);
  REQUIRE(log.events.size() == 3); // one unmap for 2^20 entries
  CHECK(log.events[2].type == iommu_event::kind::unmap);
  CHECK(log.events[2].run.pages == std::uint64_t{1} << 20);
}

namespace {
// A v2 container over simulated memory.
struct container_world {
  simulated_backend backend{16};
  unlimited_accounting pins, tables;
  prereg_registry<simulated_backend, unlimited_accounting> registry{backend, pins};
  preregistered<prereg_registry<simulated_backend, unlimited_accounting>> strategy{registry};
  dma_container<decltype(strategy), unlimited_accounting, config_4k, config_huge_window> container{
      strategy, tables};
};
} // namespace

TEST_CASE("the container reports through notifiers") {
  container_world w;
  auto& [backend, pins, tables, registry, strategy, container] = w;
  notifier_list list;
  event_log log;
  callback_notifier n(log.callback());
  container.set_change_hook(list.container_hook());
  list.attach(n, make_huge()); // nothing to replay from an empty window
  const ua memory{0x40'0000'0000};
  REQUIRE(container.register_memory(memory, std::uint64_t{1} << 30) == status::ok);
  REQUIRE(container.create_window(16, 47));
  REQUIRE(container.map_dma(ioba{huge_window_bus_offset}, memory, std::uint64_t{1} << 30,
                            permission::read) == status::ok);
  REQUIRE(log.events.size() == 1); // a contiguous gigabyte: one event
  CHECK(log.events[0].run.pages == 16384);
  CHECK(*container.unmap_dma(ioba{huge_window_bus_offset}, std::uint64_t{1} << 30) ==
        std::uint64_t{1} << 30);
  REQUIRE(log.events.size() == 2);
  CHECK(log.events[1].type == iommu_event::kind::unmap);
  CHECK(registry.unregister_region(memory, std::uint64_t{1} << 30) == status::ok);
}

TEST_CASE("a notifier that comes late gets a replay of a container window") {
  container_world w;
  auto& container = w.container;
  auto& backend = w.backend;
  const ua memory{0x40'0000'0000};
  REQUIRE(container.register_memory(memory, std::uint64_t{1} << 24) == status::ok);
  REQUIRE(container.create_window(16, 47));
  const ioba huge{huge_window_bus_offset};
  REQUIRE(container.map_dma(huge, memory, 16 * page, permission::read) == status::ok);
  REQUIRE(container.map_dma(huge + 100 * page, memory + 32 * page, 4 * page,
                            permission::read_write) == status::ok);
  REQUIRE(container.map_dma(ioba{0x1000}, memory, 0x1000, permission::write) == status::ok);
  event_log log;
  callback_notifier late(log.callback());
  REQUIRE(replay_window(container, huge, late) == status::ok);
  REQUIRE(log.events.size() == 2); // two runs, the default window's mapping not among them
  CHECK(log.events[0].run ==
        mapped_run{huge, backend.translate(memory)->value(), 16, permission::read});
  CHECK(log.events[1].run == mapped_run{huge + 100 * page,
                                        backend.translate(memory + 32 * page)->value(), 4,
                                        permission::read_write});
  CHECK(replay_window(container, ioba{0}, late) == status::ok);
  CHECK(log.events.size() == 3);
  CHECK(replay_window(container, ioba{0x1000}, late) == status::not_found);
  (void)container.reset();
}
