// Two vCPUs issuing hypercalls at once, on disjoint and on overlapping ranges,
// racing to create the same table levels. Run under ThreadSanitizer by the
// tsan preset; checked here for the result.
#include "hcall/support.hpp"
#include "soak.hpp"

#include <doctest/doctest.h>

#include <thread>

using namespace iopt;
using namespace iopt_test;

namespace {
using config = config_huge_window;
constexpr std::uint64_t page = tce_table<config>::page_bytes;

// A trial's hypercalls: the two vCPUs put the interleaved pages of a leaf and
// stuff zeros over the first of them, then each puts every page of a range
// they share.
constexpr std::uint64_t put_pages = 4096, stuffed_pages = 512, overlapping_pages = 2048;
constexpr std::uint64_t calls_per_trial = put_pages + stuffed_pages + 2 * overlapping_pages;

// Every call as a vCPU would make it: fast path first, slow path on too_hard.
template <class Hcalls>
status put(Hcalls& h, std::uint64_t bus, std::uint64_t tce) {
  const status s = h.put_tce(test_liobn, bus, tce, hcall_path::fast);
  return s == status::too_hard ? h.put_tce(test_liobn, bus, tce, hcall_path::slow) : s;
}
template <class Hcalls>
status stuff(Hcalls& h, std::uint64_t bus, std::uint64_t pages) {
  const status s = h.stuff_tce(test_liobn, bus, 0, pages, hcall_path::fast);
  return s == status::too_hard ? h.stuff_tce(test_liobn, bus, 0, pages, hcall_path::slow) : s;
}
} // namespace

TEST_CASE("two vCPUs: disjoint ranges equal the sequential result, overlapping ones stay whole") {
  // The soak asks for IOPT_SOAK_OPERATIONS hypercalls in all: whole trials.
  const std::uint64_t trials = share_of(soak_operations(20 * calls_per_trial), calls_per_trial);
  buffer_guest_memory memory(gpa{0}, guest_ram_bytes<config>);
  for (std::uint64_t trial = 0; trial < trials; ++trial) {
    auto window = make_table<config>();
    tce_hcalls<buffer_guest_memory, config> hcalls(memory);
    REQUIRE(hcalls.attach(test_liobn, window) == status::ok);
    const std::uint64_t base = window.window().first().value();
    const std::size_t empty = window.memory_bytes();

    // Interleaved pages of the same leaf: both race to create its levels.
    auto vcpu = [&](std::uint64_t parity) {
      for (std::uint64_t i = parity; i < put_pages; i += 2)
        REQUIRE(put(hcalls, base + i * page, (i % 512) * page | 3) == status::ok);
      for (std::uint64_t i = parity; i < stuffed_pages; i += 2)
        REQUIRE(stuff(hcalls, base + i * page, 1) == status::ok);
    };
    std::thread a(vcpu, 0), b(vcpu, 1);
    a.join();
    b.join();
    CHECK(window.memory_bytes() == empty + 4096 + 128 * 1024); // one middle block, one leaf
    const auto runs = take_snapshot(window).runs;
    REQUIRE(runs.size() == 7); // pages 512..4095: seven runs of 512 contiguous targets
    CHECK(runs[0].first == ioba{base + 512 * page});

    // Overlapping: both write the same pages with different values; each
    // entry ends as one of the two whole values.
    auto writer = [&](std::uint64_t perm) {
      for (std::uint64_t i = 0; i < overlapping_pages; ++i)
        REQUIRE(put(hcalls, base + (1u << 20) * page + i * page, (i % 256) * page | perm) ==
                status::ok);
    };
    std::thread c(writer, 1), d(writer, 3);
    c.join();
    d.join();
    for (std::uint64_t i = 0; i < overlapping_pages; ++i) {
      const std::uint64_t v = *window.get(ioba{base + (1u << 20) * page + i * page});
      REQUIRE((v == ((i % 256) * page | 1) || v == ((i % 256) * page | 3)));
    }
  }
  MESSAGE((trials * calls_per_trial) << " hypercalls in " << trials << " trials");
}
