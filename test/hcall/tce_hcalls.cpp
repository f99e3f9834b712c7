// The guest hypercall front end: bad input, a reference model for every
// configuration, and fast-then-slow equals slow.
#include "hcall/support.hpp"
#include "soak.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <functional>
#include <random>
#include <thread>

using namespace iopt;
using namespace iopt_test;

namespace {

// Guest RAM as buffer_guest_memory, of which the accessor vouches for only
// a part in bulk: Known is how many eighths of the RAM known_ram() covers,
// from 4 KiB in (so neither end is aligned to a larger page), or -1 for an
// accessor without known_ram() at all. Targets outside it go to is_ram.
// InPlace false: an accessor that can only copy (no view()).
template <int Known, bool InPlace = true>
class partly_known_memory : public buffer_guest_memory {
public:
  using buffer_guest_memory::buffer_guest_memory;
  // Hides the base's; with Known == -1 the constraint removes it, so the
  // front end sees an accessor without one.
  gpa_range known_ram() const noexcept requires(Known >= 0) {
    const gpa_range all = buffer_guest_memory::known_ram();
    if (Known == 0)
      return {};
    return *gpa_range::make(all.first() + 4096, all.size() / 8 * Known - 4096);
  }
  // The same for the view.
  const std::byte* view(gpa from, std::uint64_t bytes,
                        hcall_path path) const noexcept requires InPlace {
    return buffer_guest_memory::view(from, bytes, path);
  }
};
template <class Memory>
concept shows_in_place = requires(const Memory& m) {
  m.view(gpa{0}, 8, hcall_path::fast);
};
static_assert(shows_in_place<partly_known_memory<0>> &&
              !shows_in_place<partly_known_memory<0, false>>);

template <class Config, class Memory = buffer_guest_memory>
struct guest {
  using table_type = tce_table<Config>;
  using hcalls_type = tce_hcalls<Memory, Config>;
  static constexpr std::uint64_t page = table_type::page_bytes;

  std::uint64_t ram_bytes;
  Memory memory;
  table_type window = make_table<Config>();
  change_log log;
  std::vector<change>& changes = log.changes;
  hcalls_type hcalls{memory};

  // `ram`: guest RAM from 0; one that is no whole number of IOMMU pages has
  // a last page that starts in RAM and ends outside it.
  explicit guest(hcall_options options = {}, std::uint64_t ram = guest_ram_bytes<Config>)
      : ram_bytes(ram), memory(gpa{0}, ram), hcalls(memory, options) {
    hcalls.set_change_hook(log.hook());
    REQUIRE(hcalls.attach(test_liobn, window) == status::ok);
  }
  std::uint64_t bus(std::uint64_t page_index) const {
    return window.window().first().value() + page_index * page;
  }
  // Pages wholly in RAM.
  std::uint64_t ram_pages() const { return ram_bytes / page; }
};

} // namespace

TEST_CASE("H_PUT_TCE_INDIRECT of a list that maps nothing stays on the fast path") {
  // A guest clearing 512 entries where no level was ever allocated: nothing
  // to write, so nothing to allocate, as H_PUT_TCE(0) and H_STUFF_TCE(0).
  guest<config_huge_window> g;
  const std::size_t before = g.window.memory_bytes();
  const std::uint64_t list = list_area<config_huge_window>;
  REQUIRE(g.memory.write_tce_list(gpa{list}, std::vector<std::uint64_t>(512, 0)) == status::ok);
  const std::uint64_t far = g.window.pages() - 512; // under no level yet
  CHECK(g.hcalls.put_tce_indirect(test_liobn, g.bus(far), list, 512, hcall_path::fast) ==
        status::ok);
  CHECK(g.window.memory_bytes() == before);
  CHECK(g.changes == std::vector<change>{{test_liobn, ioba{g.bus(far)}, 512}});
  // One mapping among the zeros needs its level: too hard on the fast path,
  // done on the slow one.
  std::vector<std::uint64_t> one(512, 0);
  one[7] = guest<config_huge_window>::page | 1;
  REQUIRE(g.memory.write_tce_list(gpa{list}, one) == status::ok);
  CHECK(g.hcalls.put_tce_indirect(test_liobn, g.bus(far), list, 512, hcall_path::fast) ==
        status::too_hard);
  CHECK(g.window.memory_bytes() == before);
  CHECK(g.hcalls.put_tce_indirect(test_liobn, g.bus(far), list, 512, hcall_path::slow) ==
        status::ok);
  CHECK(g.window.translate(ioba{g.bus(far + 7)})->target == guest<config_huge_window>::page);
}

TEST_CASE("a list read in place is written as it was checked, while the guest rewrites it") {
  // Another vCPU keeps pointing one value of a buffer's list outside RAM and
  // mending it, while this one sends the list again and again: each call
  // either writes the whole buffer or refuses it with nothing written,
  // never a value that was not checked.
  using config = config_4k;
  constexpr std::uint64_t page = tce_table<config>::page_bytes;
  constexpr std::uint64_t pages = 512;
  guest<config> g;
  const std::uint64_t list = list_area<config>;
  std::vector<std::uint64_t> buffer(pages);
  for (std::uint64_t i = 0; i < pages; ++i)
    buffer[i] = (i + 1) * page | 3;
  REQUIRE(g.memory.write_tce_list(gpa{list}, buffer) == status::ok);
  const std::uint64_t outside = (g.ram_pages() + 1) * page | 3;

  std::atomic<bool> stop{false};
  std::thread other_vcpu([&] {
    std::mt19937_64 rng(1);
    while (!stop.load(std::memory_order_relaxed)) {
      const std::uint64_t k = rng() % pages;
      (void)g.memory.write_tce_list(gpa{list + 8 * k}, std::span(&outside, 1));
      (void)g.memory.write_tce_list(gpa{list + 8 * k}, std::span(&buffer[k], 1));
    }
  });
  const std::vector<mapped_run> whole{{ioba{g.bus(0)}, page, pages, permission::read_write}};
  int written = 0, refused = 0;
  for (int call = 0; call < 3000; ++call) {
    CAPTURE(call);
    REQUIRE(g.hcalls.stuff_tce(test_liobn, g.bus(0), 0, pages, hcall_path::fast) == status::ok);
    const status s = g.hcalls.put_tce_indirect(test_liobn, g.bus(0), list, pages, hcall_path::fast);
    if (s == status::ok) {
      ++written;
      REQUIRE(take_snapshot(g.window).runs == whole);
    } else {
      ++refused;
      REQUIRE(s == status::not_permitted);
      REQUIRE(g.window.empty());
    }
  }
  stop = true;
  other_vcpu.join();
  MESSAGE(written << " calls wrote the buffer, " << refused << " saw a value outside RAM");
}

TEST_CASE("routing by LIOBN") {
  guest<config_huge_window> g;
  CHECK(g.hcalls.attach(test_liobn, g.window) == status::exists);
  CHECK(g.hcalls.detach(test_liobn + 1) == status::not_found);
  CHECK(g.hcalls.put_tce(test_liobn, g.bus(0), 0x10000 | 1, hcall_path::slow) == status::ok);
  REQUIRE(g.hcalls.detach(test_liobn) == status::ok);
  CHECK(g.hcalls.put_tce(test_liobn, g.bus(0), 0x10000 | 1, hcall_path::slow) == status::not_found);
  CHECK(to_hcall(status::not_found) == hcall_return::H_PARAMETER);
}

TEST_CASE("windows of different configurations behind one front end") {
  buffer_guest_memory memory{gpa{0}, std::uint64_t{1} << 26};
  auto default_window = make_table<config_4k>();
  auto huge = make_table<config_huge_window>();
  tce_hcalls<buffer_guest_memory, config_4k, config_huge_window> hcalls(memory);
  REQUIRE(hcalls.attach(1, default_window) == status::ok);
  REQUIRE(hcalls.attach(2, huge) == status::ok);
  CHECK(hcalls.put_tce(1, 0x3000, 0x5000 | 3, hcall_path::slow) == status::ok);
  CHECK(hcalls.put_tce(2, huge_window_bus_offset + 0x30000, 0x50000 | 1, hcall_path::slow) ==
        status::ok);
  CHECK(hcalls.put_tce(2, huge_window_bus_offset + 0x31000, 0x50000 | 1, hcall_path::slow) ==
        status::not_aligned);
  CHECK(default_window.translate(ioba{0x3123})->target == 0x5123);
  CHECK(huge.translate(ioba{huge_window_bus_offset + 0x30001})->target == 0x50001);
}

TEST_CASE("which error wins: the LIOBN, the request's shape, the bus range, then the values") {
  // Calls that are wrong in two ways answer with the check the front end
  // promises first (tce_hcalls.hpp), as KVM orders them. Each pair differs
  // from a call with one fault only in the fault that must lose.
  using config = config_huge_window;
  constexpr std::uint64_t page = tce_table<config>::page_bytes;
  constexpr std::uint64_t list = list_area<config>;
  constexpr std::uint64_t liobn = test_liobn;
  guest<config> g;
  const std::uint64_t past = g.bus(g.window.pages());        // first IOBA past the window
  const std::uint64_t not_ram = guest_ram_bytes<config> | 1; // maps memory that is no RAM
  const std::uint64_t stray = page | 4;                      // a bit that is no permission
  std::vector<std::uint64_t> bad_list(8, page | 1);
  bad_list[7] = stray;
  REQUIRE(g.memory.write_tce_list(gpa{list}, bad_list) == status::ok);
  const auto before = take_snapshot(g.window);
  const hcall_path slow = hcall_path::slow;

  // The LIOBN first.
  CHECK(g.hcalls.put_tce(7, past, stray, slow) == status::not_found);
  CHECK(g.hcalls.put_tce_indirect(7, past, list + 8, 0, slow) == status::not_found);
  CHECK(g.hcalls.stuff_tce(7, past, stray, 0, slow) == status::not_found);
  // H_PUT_TCE: the IOBA before the TCE; the TCE's format before its RAM.
  CHECK(g.hcalls.put_tce(liobn, past, stray, slow) == status::out_of_window);
  CHECK(g.hcalls.put_tce(liobn, g.bus(3) + 0x1000, not_ram, slow) == status::not_aligned);
  CHECK(g.hcalls.put_tce(liobn, g.bus(3), not_ram | 4, slow) == status::not_aligned);
  // H_PUT_TCE_INDIRECT: the count, then the list's alignment, then the bus
  // range, then the list's contents.
  CHECK(g.hcalls.put_tce_indirect(liobn, past, list + 8, 0, slow) == status::invalid_parameter);
  CHECK(g.hcalls.put_tce_indirect(liobn, past, list + 8, 513, slow) == status::invalid_parameter);
  CHECK(g.hcalls.put_tce_indirect(liobn, past, list + 8, 8, slow) == status::not_aligned);
  CHECK(g.hcalls.put_tce_indirect(liobn, g.bus(g.window.pages() - 4), list, 8, slow) ==
        status::out_of_window); // and its last TCE has a stray bit
  CHECK(g.hcalls.put_tce_indirect(liobn, past, guest_ram_bytes<config>, 8, slow) ==
        status::out_of_window); // and the list is not in guest memory
  // H_STUFF_TCE: the count, then the bus range, then the value.
  CHECK(g.hcalls.stuff_tce(liobn, past, stray, 0, slow) == status::invalid_parameter);
  CHECK(g.hcalls.stuff_tce(liobn, g.bus(g.window.pages() - 4), stray, 8, slow) ==
        status::out_of_window);
  CHECK(g.hcalls.stuff_tce(liobn, g.bus(3) + 0x1000, stray, 8, slow) == status::not_aligned);
  CHECK(take_snapshot(g.window) == before);
  CHECK(g.changes.empty());
}

TEST_CASE("bad input: status, PAPR code, and nothing changed") {
  using config = config_huge_window;
  constexpr std::uint64_t page = tce_table<config>::page_bytes;
  constexpr std::uint64_t list = list_area<config>;
  constexpr std::uint64_t liobn = test_liobn;

  struct bad_call {
    const char* what;
    std::function<status(guest<config>&)> call;
    status expected;
  };
  const std::vector<bad_call> cases = {
      {"put: unknown LIOBN",
       [](auto& g) { return g.hcalls.put_tce(7, g.bus(0), page | 1, hcall_path::slow); },
       status::not_found},
      {"indirect: unknown LIOBN",
       [](auto& g) { return g.hcalls.put_tce_indirect(7, g.bus(0), list, 1, hcall_path::slow); },
       status::not_found},
      {"stuff: unknown LIOBN",
       [](auto& g) { return g.hcalls.stuff_tce(7, g.bus(0), 0, 1, hcall_path::slow); },
       status::not_found},
      {"put: IOBA below the window",
       [](auto& g) { return g.hcalls.put_tce(liobn, g.bus(0) - page, page | 1, hcall_path::slow); },
       status::out_of_window},
      {"put: IOBA past the window",
       [](auto& g) {
         return g.hcalls.put_tce(liobn, g.bus(g.window.pages()), page | 1, hcall_path::slow);
       },
       status::out_of_window},
      {"put: IOBA at 2^64 - 1",
       [](auto& g) { return g.hcalls.put_tce(liobn, UINT64_MAX, page | 1, hcall_path::slow); },
       status::out_of_window},
      {"put: IOBA not page aligned",
       [](auto& g) {
         return g.hcalls.put_tce(liobn, g.bus(3) + 0x1000, page | 1, hcall_path::slow);
       },
       status::not_aligned},
      {"put: target not page aligned",
       [](auto& g) {
         return g.hcalls.put_tce(liobn, g.bus(3), page + 0x1000 + 1, hcall_path::slow);
       },
       status::not_aligned},
      {"put: a bit that is no permission",
       [](auto& g) { return g.hcalls.put_tce(liobn, g.bus(3), page | 0x4, hcall_path::slow); },
       status::not_aligned},
      {"put: target outside guest RAM",
       [](auto& g) {
         return g.hcalls.put_tce(liobn, g.bus(3), guest_ram_bytes<config> | 1, hcall_path::slow);
       },
       status::not_permitted},
      {"indirect: zero pages",
       [](auto& g) {
         return g.hcalls.put_tce_indirect(liobn, g.bus(0), list, 0, hcall_path::slow);
       },
       status::invalid_parameter},
      {"indirect: 513 pages",
       [](auto& g) {
         return g.hcalls.put_tce_indirect(liobn, g.bus(0), list, 513, hcall_path::slow);
       },
       status::invalid_parameter},
      {"indirect: list not 4K aligned",
       [](auto& g) {
         return g.hcalls.put_tce_indirect(liobn, g.bus(0), list + 8, 2, hcall_path::slow);
       },
       status::not_aligned},
      {"indirect: list outside guest memory",
       [](auto& g) {
         return g.hcalls.put_tce_indirect(liobn, g.bus(0), guest_ram_bytes<config>, 2,
                                          hcall_path::slow);
       },
       status::fault},
      {"indirect: list page that faults",
       [](auto& g) {
         g.memory.make_faulting(gpa{list});
         return g.hcalls.put_tce_indirect(liobn, g.bus(0), list, 2, hcall_path::slow);
       },
       status::fault},
      {"indirect: IOBA not page aligned",
       [](auto& g) {
         return g.hcalls.put_tce_indirect(liobn, g.bus(0) + 8, list, 2, hcall_path::slow);
       },
       status::not_aligned},
      {"indirect: first page inside, last page outside",
       [](auto& g) {
         return g.hcalls.put_tce_indirect(liobn, g.bus(g.window.pages() - 2), list, 3,
                                          hcall_path::slow);
       },
       status::out_of_window},
      {"indirect: IOBA below the window",
       [](auto& g) {
         return g.hcalls.put_tce_indirect(liobn, g.bus(0) - page, list, 1, hcall_path::slow);
       },
       status::out_of_window},
      {"indirect: the last TCE has a stray bit",
       [](auto& g) {
         std::vector<std::uint64_t> tces(64, page | 1);
         tces.back() |= 0x8;
         REQUIRE(g.memory.write_tce_list(gpa{list}, tces) == status::ok);
         return g.hcalls.put_tce_indirect(liobn, g.bus(10), list, 64, hcall_path::slow);
       },
       status::not_aligned},
      {"indirect: one TCE in the middle outside guest RAM",
       [](auto& g) {
         std::vector<std::uint64_t> tces(512, 2 * page | 3);
         tces[300] = guest_ram_bytes<config> | 3;
         REQUIRE(g.memory.write_tce_list(gpa{list}, tces) == status::ok);
         return g.hcalls.put_tce_indirect(liobn, g.bus(100), list, 512, hcall_path::slow);
       },
       status::not_permitted},
      {"stuff: a mapping, without the QEMU option",
       [](auto& g) { return g.hcalls.stuff_tce(liobn, g.bus(0), page | 1, 4, hcall_path::slow); },
       status::invalid_parameter},
      {"stuff: zero pages",
       [](auto& g) { return g.hcalls.stuff_tce(liobn, g.bus(0), 0, 0, hcall_path::slow); },
       status::invalid_parameter},
      {"stuff: past the window",
       [](auto& g) {
         return g.hcalls.stuff_tce(liobn, g.bus(g.window.pages() - 4), 0, 5, hcall_path::slow);
       },
       status::out_of_window},
      {"stuff: a stray bit",
       [](auto& g) { return g.hcalls.stuff_tce(liobn, g.bus(0), 0x10, 4, hcall_path::slow); },
       status::not_aligned},
      {"stuff: IOBA not page aligned",
       [](auto& g) { return g.hcalls.stuff_tce(liobn, g.bus(0) + 0x800, 0, 4, hcall_path::slow); },
       status::not_aligned},
      {"stuff: npages that wraps the bus address",
       [](auto& g) { return g.hcalls.stuff_tce(liobn, g.bus(1), 0, UINT64_MAX, hcall_path::slow); },
       status::out_of_window},
      {"fast path: put needs a level",
       [](auto& g) { return g.hcalls.put_tce(liobn, g.bus(1 << 20), page | 1, hcall_path::fast); },
       status::too_hard},
      {"fast path: list page not resident",
       [](auto& g) {
         REQUIRE(g.memory.write_tce_list(gpa{list}, std::vector<std::uint64_t>(4, page | 1)) ==
                 status::ok);
         g.memory.make_slow_only(gpa{list});
         return g.hcalls.put_tce_indirect(liobn, g.bus(0), list, 4, hcall_path::fast);
       },
       status::too_hard},
  };
  REQUIRE(cases.size() >= 20);
  for (const bad_call& c : cases) {
    CAPTURE(c.what);
    guest<config> g;
    // Something mapped already, so "unchanged" is not just "empty".
    REQUIRE(g.hcalls.put_tce(liobn, g.bus(0), 5 * page | 3, hcall_path::slow) == status::ok);
    REQUIRE(g.hcalls.put_tce(liobn, g.bus(1), 6 * page | 1, hcall_path::slow) == status::ok);
    g.changes.clear();
    const snapshot before = take_snapshot(g.window);
    const status s = c.call(g);
    CHECK(s == c.expected);
    CHECK(to_hcall(s) ==
          (s == status::too_hard ? hcall_return::H_TOO_HARD : hcall_return::H_PARAMETER));
    CHECK(take_snapshot(g.window) == before);
    CHECK(g.changes.empty());
  }
  MESSAGE(cases.size() << " bad inputs checked");
}

TEST_CASE("stuff accepts a mapping when asked to, as QEMU does") {
  guest<config_huge_window> g(hcall_options{.stuff_accepts_mappings = true});
  REQUIRE(g.hcalls.stuff_tce(test_liobn, g.bus(4), 0x30000 | 1, 3, hcall_path::slow) == status::ok);
  CHECK(g.window.translate(ioba{g.bus(6)})->target == 0x30000);
  CHECK(g.changes == std::vector<change>{{test_liobn, ioba{g.bus(4)}, 3}});
}

TEST_CASE("a TCE without permissions is kept verbatim and maps nothing") {
  using config = config_guest_4k;
  guest<config> g;
  REQUIRE(g.hcalls.put_tce(test_liobn, g.bus(2), 0x7000 | 3, hcall_path::slow) == status::ok);
  REQUIRE(g.hcalls.put_tce(test_liobn, g.bus(2), 0x9000, hcall_path::slow) == status::ok);
  CHECK(*g.window.get(ioba{g.bus(2)}) == 0x9000);
  CHECK(g.window.translate(ioba{g.bus(2)}).error() == status::not_found);
  // A target outside RAM is fine when nothing is mapped.
  CHECK(g.hcalls.put_tce(test_liobn, g.bus(2), guest_ram_bytes<config>, hcall_path::slow) ==
        status::ok);
}

TEST_CASE("stuffing zeros over levels that do not exist allocates nothing") {
  guest<config_huge_window> g;
  const std::size_t bytes = g.window.memory_bytes();
  REQUIRE(g.hcalls.stuff_tce(test_liobn, g.bus(0), 0, g.window.pages(), hcall_path::fast) ==
          status::ok);
  CHECK(g.window.memory_bytes() == bytes);
}

// ---------------------------------------------------------------------------
// Random calls: against a model, and fast-then-slow against slow alone.

namespace {

template <class Config>
struct random_calls {
  using table_type = tce_table<Config>;
  static constexpr std::uint64_t page = table_type::page_bytes;
  std::mt19937_64 rng;
  std::uint64_t window_pages, ram_pages;

  std::uint64_t next(std::uint64_t bound) {
    return std::uniform_int_distribution<std::uint64_t>(0, bound - 1)(rng);
  }
  std::uint64_t tce() {
    switch (next(9)) {
    case 0: return 0;
    case 1: return next(ram_pages) * page;     // no permission
    case 2: return (ram_pages + 1) * page | 1; // not RAM
    case 3: return ram_pages * page | 2;       // starts in RAM or just past it
    case 4: return next(ram_pages) * page | 4; // stray bit
    default: return next(ram_pages) * page | (1 + next(3));
    }
  }
  std::uint64_t page_index() {
    // Clustered so that calls overlap, with some near the window's end.
    return next(4) == 0 ? window_pages - 1 - next(600) : next(1 << 15);
  }
};

template <class Config, class Memory>
status issue_random_call(guest<Config, Memory>& g, random_calls<Config>& r, hcall_path path,
                         std::vector<std::uint64_t>& list_used, std::uint64_t& first,
                         std::uint64_t& pages, int& kind, std::uint64_t& value) {
  first = r.page_index();
  kind = static_cast<int>(r.next(3));
  if (kind == 0) {
    pages = 1;
    value = r.tce();
    return g.hcalls.put_tce(test_liobn, g.bus(first), value, path);
  }
  if (kind == 1) {
    pages = 1 + r.next(512);
    list_used.resize(pages);
    for (auto& t : list_used)
      t = r.next(40) == 0 ? r.tce() : r.next(g.ram_pages()) * guest<Config>::page | (1 + r.next(3));
    if (const std::uint64_t shape = r.next(6); shape == 0) {
      // Consecutive pages, as a guest sends for one buffer, that run from
      // RAM up to or past its end: a check of the run's first page alone
      // passes them.
      const std::uint64_t start = g.ram_pages() - std::min(g.ram_pages(), r.next(pages + 4));
      for (std::uint64_t i = 0; i < pages; ++i)
        list_used[i] = (start + i) * guest<Config>::page | 3;
    } else if (shape == 1 && pages <= g.ram_pages()) {
      // One buffer inside RAM (what an accessor with a view takes in
      // place), or one value that maps nothing, repeated; now and then
      // broken at one place.
      const std::uint64_t start = r.next(g.ram_pages() - pages + 1);
      const bool maps = r.next(4) != 0;
      const std::uint64_t bits = maps ? 1 + r.next(3) : 0;
      for (std::uint64_t i = 0; i < pages; ++i)
        list_used[i] = (start + (maps ? i : 0)) * guest<Config>::page | bits;
      if (r.next(4) == 0)
        list_used[r.next(pages)] = r.tce();
    }
    REQUIRE(g.memory.write_tce_list(gpa{list_area<Config>}, list_used) == status::ok);
    return g.hcalls.put_tce_indirect(test_liobn, g.bus(first), list_area<Config>, pages, path);
  }
  pages = 1 + r.next(2000);
  value = r.next(4) == 0 ? r.next(g.ram_pages()) * guest<Config>::page : 0;
  return g.hcalls.stuff_tce(test_liobn, g.bus(first), value, pages, path);
}

} // namespace

namespace {
template <class Config, class Memory = buffer_guest_memory>
void random_hypercalls_against_model(std::uint64_t ram, std::uint64_t steps) {
  using table_type = tce_table<Config>;
  using format = typename table_type::format;
  constexpr std::uint64_t page = table_type::page_bytes;
  guest<Config, Memory> g({}, ram);
  reference_model<table_type> model(g.window);
  random_calls<Config> r{std::mt19937_64(42 + table_type::page_shift + ram), g.window.pages(),
                         g.ram_pages()};
  std::vector<std::uint64_t> list;
  std::uint64_t ok_calls = 0;
  for (std::uint64_t step = 0; step < steps; ++step) {
    CAPTURE(step);
    std::uint64_t first = 0, pages = 0, value = 0;
    int kind = 0;
    const status s = issue_random_call(g, r, hcall_path::slow, list, first, pages, kind, value);
    // What the model says the answer must be.
    status expected = status::ok;
    // PAPR: a TCE may only point at guest RAM, all of its page.
    auto check_tce = [&](std::uint64_t tce) {
      if (format::check(tce, table_type::page_shift) != status::ok)
        return format::check(tce, table_type::page_shift);
      if (format::is_present(tce) && format::target(tce, table_type::page_shift) + page > ram)
        return status::not_permitted;
      return status::ok;
    };
    if (first + pages > g.window.pages())
      expected = status::out_of_window;
    else if (kind == 0)
      expected = check_tce(value);
    else if (kind == 1)
      for (std::uint64_t tce : list)
        if (expected == status::ok)
          expected = check_tce(tce);
    REQUIRE(s == expected);
    if (s == status::ok) {
      ++ok_calls;
      for (std::uint64_t i = 0; i < pages; ++i)
        model.set(first + i, format::normalize(kind == 1 ? list[i] : value));
      REQUIRE(g.changes.back() == change{test_liobn, ioba{g.bus(first)}, pages});
    }
    if (step % 500 == 0)
      REQUIRE(take_snapshot(g.window).runs == model.runs());
  }
  CHECK(take_snapshot(g.window).runs == model.runs());
  CHECK(ok_calls > steps / 4);
}
} // namespace

TEST_CASE_TEMPLATE("random hypercalls agree with a reference model", Config,
                   IOPT_NAMED_CONFIGS(IOPT_TEST_CONFIG_ITEM) iopt_test::config_guest_4k) {
  // RAM of whole IOMMU pages; then RAM whose last page is cut 4 KiB in,
  // which for pages above 4 KiB leaves a page that starts in RAM and ends
  // outside it. An operation is one hypercall; the two RAM sizes share a
  // configuration's operations.
  const std::uint64_t operations = soak_operations(2 * 4000);
  const std::uint64_t steps = share_of(operations, 2);
  for (const std::uint64_t tail : {std::uint64_t{0}, std::uint64_t{4096}}) {
    CAPTURE(tail);
    random_hypercalls_against_model<Config>(guest_ram_bytes<Config> + tail, steps);
  }
  MESSAGE((2 * steps) << " hypercalls, " << steps << " for each size of RAM");
}

TEST_CASE_TEMPLATE("lists are checked the same whatever part of RAM the accessor vouches for",
                   Config, IOPT_NAMED_CONFIGS(IOPT_TEST_CONFIG_ITEM) iopt_test::config_guest_4k) {
  // None (no known_ram, or an empty one), or a part that starts 4 KiB in:
  // targets outside it are RAM all the same, found by is_ram.
  // Each with and without a view, so that lists that are one run go both
  // in place and copied.
  const std::uint64_t steps = soak_operations(6 * 1000) / 6;
  const std::uint64_t ram = guest_ram_bytes<Config> + 4096;
  random_hypercalls_against_model<Config, partly_known_memory<-1>>(ram, steps);
  random_hypercalls_against_model<Config, partly_known_memory<0>>(ram, steps);
  random_hypercalls_against_model<Config, partly_known_memory<5>>(ram, steps);
  random_hypercalls_against_model<Config, partly_known_memory<-1, false>>(ram, steps);
  random_hypercalls_against_model<Config, partly_known_memory<0, false>>(ram, steps);
  random_hypercalls_against_model<Config, partly_known_memory<5, false>>(ram, steps);
}

TEST_CASE_TEMPLATE("fast path then slow path gives what the slow path alone gives", Config,
                   IOPT_NAMED_CONFIGS(IOPT_TEST_CONFIG_ITEM) iopt_test::config_guest_4k) {
  guest<Config> fast_then_slow;
  guest<Config> slow_only;
  random_calls<Config> r1{std::mt19937_64(7), fast_then_slow.window.pages(),
                          fast_then_slow.ram_pages()};
  random_calls<Config> r2 = r1;
  std::vector<std::uint64_t> list;
  int handed_over = 0;
  for (int step = 0; step < 3000; ++step) {
    CAPTURE(step);
    if (step % 97 == 0) { // some list pages need faulting in
      const gpa page{list_area<Config>};
      fast_then_slow.memory.make_slow_only(page);
    }
    std::uint64_t first = 0, pages = 0, value = 0;
    int kind = 0;
    random_calls<Config> replay = r1;
    const snapshot before = take_snapshot(fast_then_slow.window);
    status s =
        issue_random_call(fast_then_slow, r1, hcall_path::fast, list, first, pages, kind, value);
    if (s == status::too_hard) {
      ++handed_over;
      CHECK(take_snapshot(fast_then_slow.window) == before); // the fast path left nothing behind
      r1 = replay;
      s = issue_random_call(fast_then_slow, r1, hcall_path::slow, list, first, pages, kind, value);
    }
    const status slow =
        issue_random_call(slow_only, r2, hcall_path::slow, list, first, pages, kind, value);
    REQUIRE(s == slow);
    if (step % 300 == 0)
      REQUIRE(take_snapshot(fast_then_slow.window) == take_snapshot(slow_only.window));
  }
  CHECK(take_snapshot(fast_then_slow.window) == take_snapshot(slow_only.window));
  MESSAGE(handed_over << " calls went from the fast path to the slow path");
  if (table_traits<Config>::levels_on_demand && table_geometry<Config>::levels > 1)
    CHECK(handed_over > 0);
}
