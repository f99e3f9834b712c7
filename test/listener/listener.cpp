// One listener template, two granularities, two sinks.
#include <iopt/listener/listener.hpp>
#include <iopt/listener/sinks.hpp>
#include <iopt/prereg/registry.hpp>

#include <doctest/doctest.h>

using namespace iopt;

namespace {
constexpr std::uint64_t k4 = 0x1000, k64 = 0x10000;

// A sink that records what it is told, for checking the listener itself.
struct recording_sink {
  struct range {
    std::uint64_t first, host, size;
    friend bool operator==(const range&, const range&) = default;
  };
  std::vector<range> added, removed;
  std::vector<unaligned_event> fragments;
  std::vector<iopt::sink_failure> failures;
  bool wants(region_kind k) const { return k == region_kind::ram; }
  status add_range(gpa f, ua h, std::uint64_t n) {
    added.push_back({f.value(), h.value(), n});
    return status::ok;
  }
  status remove_range(gpa f, ua h, std::uint64_t n) {
    removed.push_back({f.value(), h.value(), n});
    return status::ok;
  }
  void unaligned(const unaligned_event& e) { fragments.push_back(e); }
  void failed(const iopt::sink_failure& f) { failures.push_back(f); }
};

memory_region ram(std::uint64_t id, std::uint64_t first, std::uint64_t size, std::uint64_t host,
                  std::uint64_t backing = 1) {
  return memory_region{id, gpa{first}, size, 0, region_kind::ram, ua{host}, backing};
}
} // namespace

TEST_CASE("trimmed heads and tails are reported with their exact ranges") {
  memory_map map;
  recording_sink sink;
  memory_listener<page_64k, recording_sink> listener(page_64k{}, sink);
  map.attach(listener);
  REQUIRE(map.add_region(ram(1, 0x1'0000'3000, 3 * k64, 0x7000'0000'3000)) == status::ok);
  REQUIRE(sink.added.size() == 1);
  CHECK(sink.added[0] == recording_sink::range{0x1'0001'0000, 0x7000'0001'0000, 2 * k64});
  REQUIRE(sink.fragments.size() == 2);
  CHECK(sink.fragments[0] ==
        unaligned_event{gpa{0x1'0000'3000}, k64 - 0x3000, unaligned_part::head, 1});
  CHECK(sink.fragments[1] == unaligned_event{gpa{0x1'0003'0000}, 0x3000, unaligned_part::tail, 1});
  // Less than a granule, and guest/host offsets that disagree.
  REQUIRE(map.add_region(ram(2, 0x2'0000'0000, k4, 0x7100'0000'0000)) == status::ok);
  REQUIRE(map.add_region(ram(3, 0x3'0000'0000, 4 * k64, 0x7200'0000'1000)) == status::ok);
  CHECK(sink.fragments[2].part == unaligned_part::whole);
  CHECK(sink.fragments[3] ==
        unaligned_event{gpa{0x3'0000'0000}, 4 * k64, unaligned_part::offset_mismatch, 3});
  CHECK(sink.added.size() == 1);
  // Removal undoes the addition, and only that.
  REQUIRE(map.remove_region(1) == status::ok);
  CHECK(sink.removed == std::vector<recording_sink::range>{sink.added[0]});
  CHECK(listener.ranges().empty());
}

TEST_CASE("adjacent sections of one backing merge; removing one part takes only that part") {
  memory_map map;
  recording_sink sink;
  memory_listener<page_64k, recording_sink> listener(page_64k{}, sink);
  map.attach(listener);
  {
    memory_map::batch b(map);
    REQUIRE(map.add_region(ram(1, 0x0000'0000, 4 * k64, 0x7000'0000'0000)) == status::ok);
    REQUIRE(map.add_region(ram(2, 0x0004'0000, 4 * k64, 0x7000'0004'0000)) ==
            status::ok); // contiguous host
    REQUIRE(map.add_region(ram(3, 0x0008'0000, 4 * k64, 0x7000'0009'0000)) ==
            status::ok); // host not contiguous
    REQUIRE(map.add_region(ram(4, 0x000c'0000, 4 * k64, 0x7000'000c'0000, 2)) ==
            status::ok); // other backing
  }
  REQUIRE(sink.added.size() == 3);
  CHECK(sink.added[0] == recording_sink::range{0, 0x7000'0000'0000, 8 * k64});
  CHECK(listener.ranges().size() == 3);
  // Removing region 1 removes its part of the merged range, and nothing else:
  // region 2's part is neither removed nor added again.
  REQUIRE(map.remove_region(1) == status::ok);
  CHECK(sink.removed == std::vector<recording_sink::range>{{0, 0x7000'0000'0000, 4 * k64}});
  CHECK(sink.added.size() == 3);
  CHECK(listener.ranges().begin()->second.first == gpa{0x4'0000});
  // Every byte added is removed at the end.
  for (std::uint64_t id : {std::uint64_t{2}, std::uint64_t{3}, std::uint64_t{4}})
    REQUIRE(map.remove_region(id) == status::ok);
  std::uint64_t added = 0, removed = 0;
  for (const auto& r : sink.added)
    added += r.size;
  for (const auto& r : sink.removed)
    removed += r.size;
  CHECK(added == removed);
  CHECK(listener.ranges().empty());
}

TEST_CASE("a section aligned to 4K but not to 64K: two listeners, two explicit outcomes") {
  memory_map map;
  recording_sink at_4k, at_64k;
  memory_listener<page_4k, recording_sink> dma_listener(page_4k{}, at_4k);
  memory_listener<runtime_page_size, recording_sink> prereg_listener(*runtime_page_size::make(16),
                                                                     at_64k);
  map.attach(dma_listener);
  map.attach(prereg_listener);
  // 0x10000 .. 0x37000: 4K aligned at both ends, 64K aligned only at the start.
  REQUIRE(map.add_region(ram(1, 0x10000, 0x27000, 0x7000'0001'0000)) == status::ok);
  CHECK(at_4k.added == std::vector<recording_sink::range>{{0x10000, 0x7000'0001'0000, 0x27000}});
  CHECK(at_4k.fragments.empty());
  CHECK(at_64k.added == std::vector<recording_sink::range>{{0x10000, 0x7000'0001'0000, 0x20000}});
  CHECK(at_64k.fragments ==
        std::vector<unaligned_event>{{gpa{0x30000}, 0x7000, unaligned_part::tail, 1}});
}

TEST_CASE("the preregistration sink registers RAM at the host page size and reports failures") {
  simulated_backend backend{16};
  unlimited_accounting accounting;
  prereg_registry<simulated_backend, unlimited_accounting> registry(backend, accounting);
  prereg_sink<decltype(registry)> sink(registry);
  memory_listener<page_64k, decltype(sink)> listener(page_64k{}, sink);
  memory_map map;
  map.attach(listener);
  REQUIRE(map.add_region(ram(1, 0, 16 * k64, 0x7000'0000'0000)) == status::ok);
  REQUIRE(map.add_region(memory_region{2, gpa{0x100'0000}, k64, 0, region_kind::device_ram,
                                       ua{0x7100'0000'0000}, 9}) == status::ok);
  CHECK(registry.region_count() == 1); // device RAM is not registered
  CHECK(registry.lookup(ua{0x7000'0000'0000}, 16 * k64));
  // Registering memory already registered (another user did) fails visibly.
  REQUIRE(registry.register_region(ua{0x7200'0000'0000}, k64) == status::ok);
  REQUIRE(map.add_region(ram(3, 0x200'0000, k64, 0x7200'0000'0000, 3)) == status::ok);
  REQUIRE(sink.log.failures.size() == 1);
  CHECK(sink.log.failures[0] ==
        sink_failure{gpa{0x200'0000}, ua{0x7200'0000'0000}, k64, status::exists, false});
  // A region still mapped by TCEs cannot go: the failure is reported, not hidden.
  auto held = registry.acquire(ua{0x7000'0000'0000}, k64);
  REQUIRE(held);
  REQUIRE(map.remove_region(1) == status::ok);
  CHECK(sink.log.failures.back() ==
        sink_failure{gpa{0}, ua{0x7000'0000'0000}, 16 * k64, status::busy, true});
  CHECK(listener.ranges().count(1) == 1); // still held: retry() removes it once it can go
  registry.release(*held);
  listener.retry();
  CHECK(listener.ranges().count(1) == 0);
  CHECK(registry.lookup(ua{0x7000'0000'0000}, k64).error() == status::not_found);
  // The log is bounded and drainable; a failure is reported once, not again
  // at every later change.
  // (exists, busy, and exists again from retry(), which tried region 3 too).
  CHECK(sink.log.take_failures().size() == 3);
  CHECK(sink.log.failures.empty());
  sink.log.limit = 1;
  REQUIRE(registry.register_region(ua{0x7300'0000'0000}, k64) == status::ok);
  REQUIRE(map.add_region(ram(4, 0x300'0000, k64, 0x7300'0000'0000, 4)) == status::ok);
  REQUIRE(map.add_region(ram(5, 0x400'0000, 2 * k64, 0x7300'0000'0000, 4)) == status::ok);
  CHECK(sink.log.failures.size() == 1);
  CHECK(sink.log.dropped == 1);
}
