// The container's dirty log against a reference model written from its
// definition: a host page is dirty when it overlaps a page mapped writable
// in any window now, or a writable mapping unmapped since its last report.
// The model keeps every mapped IOMMU page (its user address and permission)
// and a set of host page numbers unmapped writable since their last report;
// a report is computed from those alone, page by page.
//
// Random sequences of map_dma, unmap_dma, create_window, remove_window,
// reset and dirty_pages (over the whole memory and over random sub-ranges,
// some reaching outside it) run over every host page size x IOMMU page size
// of the matrix, in v1 and v2. A log too small for what is unmapped may
// report more pages, never fewer: checked with a tiny capacity. Every bad
// request gets its status and changes nothing, not even the bitmap.
#include "soak.hpp"
#include "window/support.hpp"

#include <iopt/configs.hpp>
#include <iopt/window/container.hpp>
#include <iopt/window/dirty_log.hpp>

#include <doctest/doctest.h>

#include <array>
#include <bit>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <vector>

using namespace iopt;
using namespace iopt_test;

namespace {

constexpr std::uint64_t one = 1;
constexpr std::uint64_t slot1_start = huge_window_bus_offset;

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

// The user memory the tests map from: 2 GiB backed by 256 MiB pages, so
// that IOMMU pages of every size map in v1 (one huge page under each) and
// in v2 (the region backs pages up to 256 MiB).
constexpr std::uint64_t memory_first = one << 36;
constexpr std::uint64_t memory_bytes = one << 31;

template <bool V2>
struct world {
  using strategy_type = strategy_for<V2>;
  using container_type =
      container_of<strategy_type, config_4k, config_64k_flat, cfg_2m, config_16m, cfg_256m>;

  simulated_backend backend{16};
  counted_accounting pins{one << 50};
  counted_accounting tables{one << 40};
  registry_type registry{backend, pins};
  strategy_type strategy = make_strategy();
  container_type container;

  explicit world(std::size_t log_ranges = 1024)
      : container(
            strategy, tables,
            container_options{.restore_default_window = false, .dirty_log_ranges = log_ranges}) {
    backend.back_with_huge_pages(ua{memory_first}, memory_bytes, 28);
    if constexpr (V2)
      REQUIRE(container.register_memory(ua{memory_first}, memory_bytes) == status::ok);
    else
      REQUIRE(container.enable() == status::ok);
    (void)container.query(); // the default window: 1 GiB of 4 KiB pages at 0
  }
  strategy_type make_strategy() {
    if constexpr (V2)
      return strategy_type(registry);
    else
      return strategy_type(backend, pins);
  }
  ~world() {
    (void)container.reset();
    if constexpr (V2)
      CHECK(container.unregister_memory(ua{memory_first}, memory_bytes) == status::ok);
  }
};

// ---- the model -----------------------------------------------------------

struct model_page {
  std::uint64_t ua;
  permission perm;
};
struct model_window {
  std::uint64_t start = 0, bytes = 0;
  unsigned shift = 0;
  std::map<std::uint64_t, model_page> pages; // page index -> what it maps
};

struct model {
  unsigned host_shift;
  std::array<std::optional<model_window>, 2> windows{};
  std::set<std::uint64_t> unmapped; // host pages unmapped writable, not yet reported

  // The host pages a page of 2^shift bytes at `ua` touches.
  template <class Fn>
  void host_pages_of(std::uint64_t ua, unsigned shift, Fn&& fn) const {
    for (std::uint64_t p = ua >> host_shift; p <= (ua + ((one << shift) - 1)) >> host_shift; ++p)
      fn(p);
  }
  void drop(const model_window& w, const model_page& p) {
    if (can_write(p.perm))
      host_pages_of(p.ua, w.shift, [&](std::uint64_t h) { unmapped.insert(h); });
  }
  void reset_to_default() {
    for (auto& w : windows)
      if (w)
        for (const auto& [index, p] : w->pages)
          drop(*w, p);
    windows = {};
    windows[0] = model_window{0, one << 30, 12, {}};
  }
  // The report of [first, first + size): one bit per host page.
  std::vector<std::uint64_t> report(std::uint64_t first, std::uint64_t size) {
    const std::uint64_t pages = size >> host_shift;
    std::vector<std::uint64_t> bits((pages + 63) / 64);
    const std::uint64_t first_page = first >> host_shift;
    auto set = [&](std::uint64_t h) {
      if (h >= first_page && h - first_page < pages)
        bits[(h - first_page) / 64] |= one << ((h - first_page) % 64);
    };
    for (const auto& w : windows)
      if (w)
        for (const auto& [index, p] : w->pages)
          if (can_write(p.perm))
            host_pages_of(p.ua, w->shift, set);
    for (auto it = unmapped.lower_bound(first_page);
         it != unmapped.end() && *it - first_page < pages;) {
      set(*it);
      it = unmapped.erase(it);
    }
    return bits;
  }
};

// Asks the container for the report of [first, first + size) in a bitmap
// with two spare words after the ones it needs, every word filled with a
// pattern first: the needed words must be overwritten, the spare ones left.
template <class Container>
std::vector<std::uint64_t> ask(Container& c, std::uint64_t first, std::uint64_t size,
                               unsigned host_shift) {
  constexpr std::uint64_t pattern = 0xa5a5'5a5a'0ff0'f00f;
  const std::uint64_t pages = size >> host_shift;
  const std::size_t words = static_cast<std::size_t>((pages + 63) / 64);
  std::vector<std::uint64_t> bitmap(words + 2, pattern);
  REQUIRE(c.dirty_pages(ua{first}, size, host_shift, bitmap) == status::ok);
  CHECK(bitmap[words] == pattern);
  CHECK(bitmap[words + 1] == pattern);
  bitmap.resize(words);
  if (pages % 64 != 0)
    CHECK((bitmap.back() >> (pages % 64)) == 0); // nothing past the range
  return bitmap;
}

// The first host page whose bit differs, or -1: a readable failure.
std::int64_t first_difference(const std::vector<std::uint64_t>& a,
                              const std::vector<std::uint64_t>& b) {
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i])
      return static_cast<std::int64_t>(i * 64) + std::countr_zero(a[i] ^ b[i]);
  return -1;
}
// Whether every bit of `wanted` is set in `got`.
bool covers(const std::vector<std::uint64_t>& got, const std::vector<std::uint64_t>& wanted) {
  for (std::size_t i = 0; i < got.size(); ++i)
    if ((wanted[i] & ~got[i]) != 0)
      return false;
  return true;
}

unsigned window_shift_for(unsigned shift) {
  return shift == 12 ? 30 : shift == 16 ? 32 : shift <= 24 ? 36 : 40;
}

// One random sequence. `exact`: the log has room for every range, so the
// report must equal the model's; otherwise it must cover it.
template <bool V2>
void run(unsigned host_shift, unsigned iommu_shift, std::uint64_t seed, std::uint64_t steps,
         std::size_t log_ranges, bool exact) {
  CAPTURE(host_shift);
  CAPTURE(iommu_shift);
  CAPTURE(seed);
  world<V2> w(log_ranges);
  model m{host_shift, {}, {}};
  m.reset_to_default();
  std::mt19937_64 rng(seed);
  auto below = [&](std::uint64_t n) { return n == 0 ? 0 : rng() % n; };
  REQUIRE(w.container.start_dirty_log() == status::ok);
  const std::uint64_t host_page = one << host_shift;

  auto create = [&](unsigned shift) {
    const auto made = w.container.create_window(shift, window_shift_for(shift));
    REQUIRE(made);
    const unsigned slot = made->value() == 0 ? 0 : 1;
    REQUIRE(!m.windows[slot]);
    m.windows[slot] = model_window{made->value(), one << window_shift_for(shift), shift, {}};
  };
  // Most sequences start with the default window replaced by one of the
  // matrix's page size, and a second window of it.
  if (below(4) != 0) {
    REQUIRE(w.container.remove_window(ioba{0}) == status::ok);
    m.windows[0].reset();
    create(iommu_shift);
  }
  create(iommu_shift);

  // Where maps take memory from: a small area, so that mappings share host
  // pages and memory is mapped through both windows at once.
  auto area_for = [](unsigned shift) {
    return std::min(memory_bytes, std::max(one << 26, one << (shift + 2)));
  };
  auto query_and_compare = [&] {
    std::uint64_t first = memory_first, size = memory_bytes;
    if (below(3) != 0) { // a sub-range, now and then reaching below the memory
      const std::uint64_t span = area_for(iommu_shift) + 4 * host_page;
      first = memory_first - 2 * host_page + (below(span >> host_shift) << host_shift);
      size = (1 + below(span >> host_shift)) << host_shift;
    }
    CAPTURE(first);
    CAPTURE(size);
    const auto wanted = m.report(first, size);
    const auto got = ask(w.container, first, size, host_shift);
    if (exact)
      CHECK(first_difference(got, wanted) == -1);
    else
      CHECK(covers(got, wanted));
  };

  for (std::uint64_t step = 0; step < steps; ++step) {
    CAPTURE(step);
    const unsigned slot = static_cast<unsigned>(below(2));
    switch (below(12)) {
    case 0:
    case 1:
    case 2:
    case 3: { // map
      if (!m.windows[slot])
        break;
      model_window& win = *m.windows[slot];
      const std::uint64_t window_pages = win.bytes >> win.shift;
      const std::uint64_t pages = 1 + below(win.shift >= 24 ? 2 : 6);
      const std::uint64_t index =
          below(3) == 0 ? window_pages - pages - below(2) : below(32); // the far end, or near
      const std::uint64_t ua =
          memory_first + (below(area_for(win.shift) >> win.shift) << win.shift);
      if (ua + (pages << win.shift) > memory_first + memory_bytes)
        break;
      const permission perm =
          std::array{permission::read, permission::write, permission::read_write}[below(3)];
      const status s = w.container.map_dma(ioba{win.start + (index << win.shift)}, iopt::ua{ua},
                                           pages << win.shift, perm);
      bool free = true;
      for (std::uint64_t k = 0; k < pages; ++k)
        free = free && win.pages.count(index + k) == 0;
      CHECK(s == (free ? status::ok : status::exists));
      if (s == status::ok)
        for (std::uint64_t k = 0; k < pages; ++k)
          win.pages[index + k] = model_page{ua + (k << win.shift), perm};
      break;
    }
    case 4:
    case 5: { // unmap
      if (!m.windows[slot])
        break;
      model_window& win = *m.windows[slot];
      const std::uint64_t window_pages = win.bytes >> win.shift;
      const std::uint64_t pages = 1 + below(8);
      const std::uint64_t index = below(3) == 0 ? window_pages - pages : below(32);
      std::uint64_t mapped = 0;
      for (auto it = win.pages.lower_bound(index);
           it != win.pages.end() && it->first < index + pages;) {
        m.drop(win, it->second);
        ++mapped;
        it = win.pages.erase(it);
      }
      const auto got =
          w.container.unmap_dma(ioba{win.start + (index << win.shift)}, pages << win.shift);
      REQUIRE(got);
      CHECK(*got == mapped << win.shift);
      break;
    }
    case 6: { // remove a window, or make one where a slot is free
      if (m.windows[slot] && below(2) == 0) {
        for (const auto& [index, p] : m.windows[slot]->pages)
          m.drop(*m.windows[slot], p);
        REQUIRE(w.container.remove_window(ioba{m.windows[slot]->start}) == status::ok);
        m.windows[slot].reset();
      } else if (!m.windows[0] || !m.windows[1]) {
        create(below(2) == 0 ? iommu_shift : 12);
      }
      break;
    }
    case 7: { // now and then, back to the default window alone
      if (below(4) != 0)
        break;
      m.reset_to_default();
      REQUIRE(w.container.reset() == status::ok);
      break;
    }
    default: // a report; sometimes two in a row
      query_and_compare();
      if (below(4) == 0)
        query_and_compare();
      break;
    }
  }
  // The whole memory reported twice: the second time only what is mapped
  // writable is left.
  for (int round = 0; round < 2; ++round) {
    const auto wanted = m.report(memory_first, memory_bytes);
    const auto got = ask(w.container, memory_first, memory_bytes, host_shift);
    if (exact)
      CHECK(first_difference(got, wanted) == -1);
    else
      CHECK(covers(got, wanted));
  }
}

constexpr unsigned host_shifts[] = {12, 16, 21, 24};
constexpr unsigned iommu_shifts[] = {12, 16, 21, 24, 28};

template <bool V2>
void run_matrix(std::uint64_t first_seed, std::size_t log_ranges, bool exact) {
  constexpr std::uint64_t sequences = std::size(host_shifts) * std::size(iommu_shifts);
  const std::uint64_t steps = share_of(soak_operations(sequences * 150), sequences);
  std::uint64_t seed = first_seed;
  for (const unsigned host_shift : host_shifts)
    for (const unsigned iommu_shift : iommu_shifts)
      run<V2>(host_shift, iommu_shift, seed++, steps, log_ranges, exact);
}

} // namespace

TEST_CASE("dirty log against the model, v2: every host page size x IOMMU page size") {
  run_matrix<true>(1, 1024, true);
}

TEST_CASE("dirty log against the model, v1: every host page size x IOMMU page size") {
  run_matrix<false>(100, 1024, true);
}

TEST_CASE("a log with room for 3 ranges, or 1, reports more pages, never fewer") {
  run_matrix<true>(200, 3, false);
  run_matrix<false>(300, 1, false);
}

TEST_CASE("a full log merges a new range into its nearest neighbour") {
  world<true> w(2);
  constexpr std::uint64_t page = 4096;
  const std::uint64_t a = memory_first, b = memory_first + 64 * page, c = memory_first + 80 * page;
  for (const std::uint64_t at : {a, b, c})
    REQUIRE(w.container.map_dma(ioba{at - memory_first}, ua{at}, page, permission::write) ==
            status::ok);
  REQUIRE(w.container.start_dirty_log() == status::ok);
  for (const std::uint64_t at : {a, b, c})
    REQUIRE(w.container.unmap_dma(ioba{at - memory_first}, page));
  // a and b took the two slots; c is 16 pages from b, 80 from a: it joins b.
  const auto got = ask(w.container, memory_first, 128 * page, 12);
  std::vector<std::uint64_t> wanted(2);
  wanted[0] = 1;               // a
  wanted[1] = (one << 17) - 1; // b (page 64) to c (page 80)
  CHECK(first_difference(got, wanted) == -1);
  CHECK(first_difference(ask(w.container, memory_first, 128 * page, 12), {0, 0}) == -1);
}

TEST_CASE("a report inside one recorded range splits it, or keeps it whole when the log is full") {
  constexpr std::uint64_t page = 4096;
  for (const std::size_t room : {std::size_t{1}, std::size_t{2}}) {
    CAPTURE(room);
    world<true> w(room);
    REQUIRE(w.container.map_dma(ioba{0}, ua{memory_first}, 64 * page, permission::read_write) ==
            status::ok);
    REQUIRE(w.container.start_dirty_log() == status::ok);
    REQUIRE(w.container.unmap_dma(ioba{0}, 64 * page));
    // The middle 16 pages: reported.
    CHECK(first_difference(ask(w.container, memory_first + 16 * page, 16 * page, 12), {0xffff}) ==
          -1);
    // The whole range again: with room for the far part, the middle is gone;
    // with none the range stayed whole and the middle comes again.
    const std::uint64_t middle = room == 1 ? 0 : 0xffff'0000;
    CHECK(first_difference(ask(w.container, memory_first, 64 * page, 12),
                           {~std::uint64_t{0} & ~middle}) == -1);
    CHECK(first_difference(ask(w.container, memory_first, 64 * page, 12), {0}) == -1);
  }
}

TEST_CASE("what counts as dirty: writable mappings while mapped, unmaps, removed windows, reset") {
  world<true> w;
  constexpr std::uint64_t page = 1 << 16;
  REQUIRE(w.container.create_window(16, 32));
  const ioba huge{slot1_start};
  REQUIRE(w.container.map_dma(huge, ua{memory_first}, page, permission::read) == status::ok);
  REQUIRE(w.container.map_dma(huge + page, ua{memory_first + page}, page, permission::write) ==
          status::ok);
  REQUIRE(w.container.map_dma(ioba{0}, ua{memory_first + 2 * page}, 4096, permission::read_write) ==
          status::ok);
  auto report = [&] { return ask(w.container, memory_first, 4 * page, 16); };
  // Before logging starts, nothing can be asked.
  std::vector<std::uint64_t> bitmap(1, 7);
  CHECK(w.container.dirty_pages(ua{memory_first}, 4 * page, 16, bitmap) == status::not_permitted);
  CHECK(bitmap[0] == 7);
  CHECK(!w.container.dirty_logging());
  REQUIRE(w.container.start_dirty_log() == status::ok);
  CHECK(w.container.dirty_logging());
  CHECK(w.container.start_dirty_log() == status::busy);
  // Read-only: never dirty. Write-only, and a 4K page inside a 64K host page:
  // dirty while mapped, report after report.
  CHECK(first_difference(report(), {0b110}) == -1);
  CHECK(first_difference(report(), {0b110}) == -1);
  // The 64K window goes: its writable page is dirty once more, then only the
  // 4K mapping is left.
  REQUIRE(w.container.remove_window(huge) == status::ok);
  CHECK(first_difference(report(), {0b110}) == -1);
  CHECK(first_difference(report(), {0b100}) == -1);
  // reset unmaps the 4K page: reported once.
  REQUIRE(w.container.reset() == status::ok);
  CHECK(first_difference(report(), {0b100}) == -1);
  CHECK(first_difference(report(), {0}) == -1);
  // Stopping forgets what was recorded; a new start begins empty.
  REQUIRE(w.container.map_dma(ioba{0}, ua{memory_first}, 4096, permission::write) == status::ok);
  REQUIRE(w.container.unmap_dma(ioba{0}, 4096));
  CHECK(w.container.stop_dirty_log() == status::ok);
  CHECK(w.container.stop_dirty_log() == status::ok);
  CHECK(!w.container.dirty_logging());
  REQUIRE(w.container.start_dirty_log() == status::ok);
  CHECK(first_difference(report(), {0}) == -1);
}

TEST_CASE("a host page larger than the IOMMU page, and one smaller") {
  world<false> w;
  REQUIRE(w.container.start_dirty_log() == status::ok);
  REQUIRE(w.container.create_window(24, 36));
  // One 16M IOMMU page at 16M dirties 256 host pages of 64K (pages 256 to
  // 511; the report below stops at 319), 8 of 2M, one of 16M.
  REQUIRE(w.container.map_dma(ioba{slot1_start}, ua{memory_first + (one << 24)}, one << 24,
                              permission::write) == status::ok);
  CHECK(first_difference(ask(w.container, memory_first, 320 * (one << 16), 16),
                         {0, 0, 0, 0, ~std::uint64_t{0}}) == -1);
  CHECK(first_difference(ask(w.container, memory_first, one << 25, 21), {0xff00}) == -1);
  CHECK(first_difference(ask(w.container, memory_first, one << 26, 24), {0b10}) == -1);
  // A 4K page dirties the whole 64K, 2M, 16M and 16G host page around it.
  REQUIRE(w.container.map_dma(ioba{0x5000}, ua{memory_first + 0x5000}, 4096,
                              permission::read_write) == status::ok);
  CHECK(first_difference(ask(w.container, memory_first, one << 20, 16), {1}) == -1);
  CHECK(first_difference(ask(w.container, memory_first, one << 22, 21), {1}) == -1);
  CHECK(first_difference(ask(w.container, memory_first, one << 34, 34), {1}) == -1);
}

TEST_CASE("dirty_pages: every bad request gets its status and changes nothing") {
  world<true> w;
  constexpr std::uint64_t page = 4096;
  REQUIRE(w.container.start_dirty_log() == status::ok);
  // Recorded: page 3 of the memory, unmapped; mapped: page 5.
  REQUIRE(w.container.map_dma(ioba{0}, ua{memory_first + 3 * page}, page, permission::write) ==
          status::ok);
  REQUIRE(w.container.unmap_dma(ioba{0}, page));
  REQUIRE(w.container.map_dma(ioba{0}, ua{memory_first + 5 * page}, page, permission::write) ==
          status::ok);

  struct bad_request {
    const char* what;
    std::uint64_t first, size;
    unsigned shift;
    std::size_t words;
    status expected;
  };
  const std::uint64_t top = 0 - 4 * page;
  const bad_request requests[] = {
      {"size 0", memory_first, 0, 12, 1, status::invalid_parameter},
      {"host page below 4K", memory_first, 64 * page, 11, 2, status::invalid_parameter},
      {"host page above 16G", memory_first, one << 35, 35, 1, status::invalid_parameter},
      {"first not aligned", memory_first + 512, 64 * page, 12, 1, status::not_aligned},
      {"size not aligned", memory_first, 64 * page + 512, 12, 2, status::not_aligned},
      {"first not aligned to a 64K host page", memory_first + page, 16 * page, 16, 1,
       status::not_aligned},
      {"past 2^64", top, 8 * page, 12, 1, status::wraps},
      {"a bitmap a word short", memory_first, 65 * page, 12, 1, status::invalid_parameter},
      {"no bitmap", memory_first, page, 12, 0, status::invalid_parameter},
      // Two things wrong: the first check wins.
      {"size 0 and not aligned", memory_first + 1, 0, 12, 1, status::invalid_parameter},
      {"bad shift and not aligned", memory_first + 1, page, 40, 1, status::invalid_parameter},
      {"not aligned and past 2^64", top + 1, 8 * page, 12, 1, status::not_aligned},
      {"past 2^64 and no bitmap", top, 8 * page, 12, 0, status::wraps},
  };
  for (const bad_request& r : requests) {
    CAPTURE(r.what);
    std::vector<std::uint64_t> bitmap(r.words, 0x1234);
    CHECK(w.container.dirty_pages(ua{r.first}, r.size, r.shift, bitmap) == r.expected);
    CHECK(bitmap == std::vector<std::uint64_t>(r.words, 0x1234));
  }
  // Logging off wins over everything.
  REQUIRE(w.container.stop_dirty_log() == status::ok);
  std::vector<std::uint64_t> none;
  CHECK(w.container.dirty_pages(ua{1}, 0, 99, none) == status::not_permitted);
  // A range that ends at 2^64 exactly is fine; the log saw nothing there.
  REQUIRE(w.container.start_dirty_log() == status::ok);
  CHECK(first_difference(ask(w.container, top, 4 * page, 12), {0}) == -1);
  // The recorded and mapped pages are reported as if no bad request had come.
  REQUIRE(w.container.map_dma(ioba{page}, ua{memory_first + 3 * page}, page, permission::write) ==
          status::ok);
  REQUIRE(w.container.unmap_dma(ioba{page}, page));
  for (const bad_request& r : requests) {
    std::vector<std::uint64_t> bitmap(r.words, 0x1234);
    CHECK(w.container.dirty_pages(ua{r.first}, r.size, r.shift, bitmap) == r.expected);
  }
  CHECK(first_difference(ask(w.container, memory_first, 64 * page, 12), {0b101000}) == -1);
  CHECK(first_difference(ask(w.container, memory_first, 64 * page, 12), {0b100000}) == -1);
}

TEST_CASE("start_dirty_log with no room configured: invalid_parameter, logging stays off") {
  world<true> w(0);
  CHECK(w.container.start_dirty_log() == status::invalid_parameter);
  CHECK(!w.container.dirty_logging());
}

TEST_CASE("dirty_range_log: merges, cuts and the nearest neighbour") {
  dirty_range_log log;
  using range = dirty_range_log::range;
  auto ranges = [&] { return std::vector<range>(log.ranges().begin(), log.ranges().end()); };
  log.record(ua{100}, 10); // inactive: nothing
  REQUIRE(log.start(3) == status::ok);
  CHECK(log.start(3) == status::busy);
  log.record(ua{100}, 10);
  log.record(ua{200}, 10);
  log.record(ua{110}, 5); // touches the first
  CHECK(ranges() == std::vector<range>{{100, 114}, {200, 209}});
  log.record(ua{50}, 1);
  log.record(ua{UINT64_MAX - 9}, 10); // full: joins its nearest neighbour, [200, 209]
  CHECK(ranges() == std::vector<range>{{50, 50}, {100, 114}, {200, UINT64_MAX}});
  log.record(ua{51}, 49); // fills the gap: three become one
  CHECK(ranges() == std::vector<range>{{50, 114}, {200, UINT64_MAX}});
  log.forget(60, 69); // a split, with a slot free
  CHECK(ranges() == std::vector<range>{{50, 59}, {70, 114}, {200, UINT64_MAX}});
  log.forget(80, 89); // a split with none: kept
  CHECK(ranges() == std::vector<range>{{50, 59}, {70, 114}, {200, UINT64_MAX}});
  log.forget(55, 300); // cuts the first and the last, drops the middle
  CHECK(ranges() == std::vector<range>{{50, 54}, {301, UINT64_MAX}});
  log.forget(0, UINT64_MAX);
  CHECK(ranges().empty());
  log.stop();
  CHECK(!log.active());
}
