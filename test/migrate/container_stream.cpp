// Migration streams of containers: round trips in v1 and v2 with one and two
// windows of several page sizes and mappings of random shapes, checked
// against a model of what was mapped and an independent decoder of the
// stream format; a catalog of bad streams and receivers, each answered with
// its status and the receiver left as it was (windows, table memory,
// charges, pins); every allocation, charge and pin of a restore failed in
// turn, with the same check.
#include "faults/sweep.hpp"
#include "window/support.hpp"

#include <iopt/configs.hpp>
#include <iopt/migrate/container_stream.hpp>
#include <iopt/testing/fault_injecting_accounting.hpp>
#include <iopt/testing/fault_injecting_allocator.hpp>

#include <doctest/doctest.h>

#include <map>
#include <random>
#include <string>
#include <vector>

using namespace iopt;
using namespace iopt_test;

namespace {

constexpr std::uint64_t one = 1;
constexpr std::uint64_t kib = 1024, mib = kib * kib, gib = kib * mib;
constexpr std::uint64_t slot1_start = huge_window_bus_offset;

struct cfg_2m {
  using format = hardware_tce;
  using page_size = page_2m;
  static constexpr std::array<unsigned, 2> level_bits{9, 9};
};

// The user memory: 1 GiB, its first half backed by 16 MiB pages (where
// IOMMU pages larger than the 64 KiB host page map), the rest by host
// pages. Frames are scattered: no two host pages are contiguous unless a
// huge page holds both.
constexpr std::uint64_t memory_first = one << 36;
constexpr std::uint64_t memory_bytes = gib;
constexpr std::uint64_t huge_half = memory_bytes / 2;

// Sets the memory up for a container of either model: v2 registers the two
// halves (each a region of its own page size), v1 enables.
template <class Container>
void prepare_memory(simulated_backend& backend, Container& container, bool v2) {
  backend.back_with_huge_pages(ua{memory_first}, huge_half, 24);
  if (v2) {
    REQUIRE(container.register_memory(ua{memory_first}, huge_half) == status::ok);
    REQUIRE(container.register_memory(ua{memory_first + huge_half}, huge_half) == status::ok);
  } else {
    REQUIRE(container.enable() == status::ok);
  }
}

template <bool V2>
struct world {
  using strategy_type = strategy_for<V2>;
  using container_type = container_of<strategy_type, config_4k, config_64k_flat, config_huge_window,
                                      cfg_2m, config_16m>;

  simulated_backend backend{16, frame_layout::scattered};
  counted_accounting pins{one << 50};
  counted_accounting tables{one << 40};
  registry_type registry{backend, pins};
  strategy_type strategy = make_strategy();
  container_type container{strategy, tables};

  explicit world(bool with_memory = true) {
    if (with_memory)
      prepare_memory(backend, container, V2);
  }
  strategy_type make_strategy() {
    if constexpr (V2)
      return strategy_type(registry);
    else
      return strategy_type(backend, pins);
  }
  ~world() {
    if constexpr (!V2)
      (void)container.enable();
    (void)container.reset();
    if constexpr (V2)
      for (const std::uint64_t at : {memory_first, memory_first + huge_half})
        (void)container.unregister_memory(ua{at}, huge_half);
  }
  // Uses of registered memory by mappings (v2).
  std::uint64_t region_mappings() {
    std::uint64_t n = 0;
    for (const std::uint64_t at : {memory_first, memory_first + huge_half})
      if (auto r = registry.acquire(ua{at}, 4096)) {
        n += (*r)->mappings() - 1;
        registry.release(*r);
      }
    return n;
  }
};

// A sink that keeps the stream.
struct byte_sink {
  std::vector<std::byte> bytes;
  status operator()(std::span<const std::byte> piece) {
    bytes.insert(bytes.end(), piece.begin(), piece.end());
    return status::ok;
  }
};

template <class Container>
std::vector<std::byte> stream_of(const Container& c) {
  byte_sink sink;
  REQUIRE(snapshot_container(c, sink) == status::ok);
  return std::move(sink.bytes);
}

template <class Container>
std::vector<window_description> windows_of(const Container& c) {
  std::vector<window_description> all;
  c.for_each_window([&](const window_description& w) { all.push_back(w); });
  return all;
}
template <class Container>
std::vector<user_run> runs_of(const Container& c) {
  std::vector<user_run> all;
  for (const window_description& w : windows_of(c))
    REQUIRE(c.for_each_user_run(w.start, [&](const user_run& r) { all.push_back(r); }) ==
            status::ok);
  return all;
}

// ---- the model and the independent decoder --------------------------------

struct mapped_page {
  std::uint64_t ua;
  permission perm;
  friend bool operator==(const mapped_page&, const mapped_page&) = default;
};
// Window start -> page index -> what it maps.
using mapping_model = std::map<std::uint64_t, std::map<std::uint64_t, mapped_page>>;

// The records a stream of the model holds: maximal runs of pages whose user
// addresses follow one another with one permission.
std::uint64_t model_records(const mapping_model& m,
                            const std::map<std::uint64_t, unsigned>& shifts) {
  std::uint64_t records = 0;
  for (const auto& [start, pages] : m) {
    const std::uint64_t page_bytes = one << shifts.at(start);
    std::uint64_t last_index = 0;
    mapped_page last{};
    bool any = false;
    for (const auto& [index, p] : pages) {
      if (!any || index != last_index + 1 || p.ua != last.ua + page_bytes || p.perm != last.perm)
        ++records;
      any = true;
      last_index = index;
      last = p;
    }
  }
  return records;
}

std::uint64_t le_word(const std::vector<std::byte>& b, std::size_t word) {
  std::uint64_t w = 0;
  for (std::size_t i = 0; i < 8; ++i)
    w |= std::to_integer<std::uint64_t>(b.at(word * 8 + i)) << (8 * i);
  return w;
}
void put_word(std::vector<std::byte>& b, std::size_t word, std::uint64_t v) {
  for (std::size_t i = 0; i < 8; ++i)
    b.at(word * 8 + i) = static_cast<std::byte>(v >> (8 * i));
}

// The stream decoded from the format's description, not with the library.
struct decoded {
  std::uint64_t version_word = 0, window_count = 0, flags = 0;
  std::vector<window_description> windows;
  mapping_model pages;
  std::uint64_t records = 0, trailer_records = 0, trailer_pages = 0;
};
decoded decode(const std::vector<std::byte>& b) {
  constexpr std::uint64_t win = 0x6e69772d74706f69, end = 0x646e652d74706f69;
  decoded d;
  REQUIRE(b.size() % 8 == 0);
  REQUIRE(le_word(b, 0) == 0x6563742d74706f69);
  d.version_word = le_word(b, 1);
  d.window_count = le_word(b, 2);
  d.flags = le_word(b, 3);
  std::size_t w = 4;
  while (le_word(b, w) != end) {
    if (le_word(b, w) == win) {
      const std::uint64_t shape = le_word(b, w + 2);
      d.windows.push_back(window_description{
          ioba{le_word(b, w + 1)}, le_word(b, w + 3), static_cast<unsigned>(shape & 0xff),
          static_cast<unsigned>((shape >> 8) & 0xff), ((shape >> 16) & 1) != 0});
      CHECK((shape >> 17) == 0);
      d.pages[le_word(b, w + 1)];
      w += 4;
      continue;
    }
    REQUIRE(!d.windows.empty());
    const window_description& at = d.windows.back();
    const std::uint64_t first = le_word(b, w), word = le_word(b, w + 1), from = le_word(b, w + 2);
    const auto perm = static_cast<permission>(word >> 62);
    const std::uint64_t count = word & ((one << 62) - 1);
    for (std::uint64_t k = 0; k < count; ++k)
      REQUIRE(d.pages[at.start.value()]
                  .emplace(first + k, mapped_page{from + (k << at.page_shift), perm})
                  .second);
    ++d.records;
    w += 3;
  }
  d.trailer_records = le_word(b, w + 1);
  d.trailer_pages = le_word(b, w + 2);
  CHECK((w + 3) * 8 == b.size());
  return d;
}

// ---- random sources --------------------------------------------------------

// Random maps into the window at `start`: runs, single pages and maps that
// continue the previous one (so that two calls make one record), each
// recorded in the model.
template <class World>
void map_randomly(World& w, mapping_model& m, std::uint64_t start, std::mt19937_64& rng, int maps) {
  auto below = [&](std::uint64_t n) { return n == 0 ? 0 : rng() % n; };
  window_description win{};
  for (const window_description& d : windows_of(w.container))
    if (d.start == ioba{start})
      win = d;
  REQUIRE(win.bytes != 0);
  const unsigned shift = win.page_shift;
  const std::uint64_t page = one << shift, window_pages = win.bytes >> shift;
  auto& pages = m[start];
  std::uint64_t next_index = 0, next_ua = 0;
  permission next_perm = permission::read;
  bool can_continue = false;
  for (int i = 0; i < maps; ++i) {
    std::uint64_t count = 1 + below(shift >= 21 ? 3 : 12);
    std::uint64_t index = 0, from = 0;
    permission perm =
        std::array{permission::read, permission::write, permission::read_write}[below(3)];
    switch (can_continue ? below(4) : below(2)) {
    case 0: // a single page
      count = 1;
      [[fallthrough]];
    case 1: { // a run somewhere: near the start, at the end, across a boundary
      const std::uint64_t near[] = {below(64), window_pages - count - below(4),
                                    (std::uint64_t{16384} - 2 - below(4)) % window_pages};
      index = near[below(3)];
      // Memory that backs the page size: the huge half for pages larger than
      // the host page.
      const std::uint64_t area = shift > 16 ? huge_half : memory_bytes;
      from = memory_first + (below((area >> shift) - count + 1) << shift);
      break;
    }
    default: // the next pages of the last map, from the next user memory
      index = next_index;
      from = next_ua;
      perm = next_perm;
      if (index + count > window_pages ||
          from + (count << shift) > memory_first + (shift > 16 ? huge_half : memory_bytes))
        continue;
      break;
    }
    if (index + count > window_pages)
      continue;
    bool free = true;
    for (std::uint64_t k = 0; k < count; ++k)
      free = free && pages.count(index + k) == 0;
    if (!free)
      continue;
    CAPTURE(index);
    CAPTURE(from);
    CAPTURE(count);
    CAPTURE(shift);
    REQUIRE(w.container.map_dma(ioba{start + index * page}, ua{from}, count * page, perm) ==
            status::ok);
    for (std::uint64_t k = 0; k < count; ++k)
      pages[index + k] = mapped_page{from + k * page, perm};
    next_index = index + count;
    next_ua = from + count * page;
    next_perm = perm;
    can_continue = true;
  }
}

// The windows a round trip starts from.
struct window_set {
  const char* what;
  bool keep_default;    // the default window stays in slot 0
  unsigned slot0_shift; // else a window of this page size there (0: none)
  unsigned slot1_shift; // a window in slot 1 (0: none)
};
unsigned window_shift_for(unsigned shift) {
  return shift == 12 ? 31 : shift == 16 ? 40 : shift == 21 ? 38 : 44;
}

template <bool V2>
void round_trip(const window_set& set, std::uint64_t seed, bool receiver_has_windows) {
  CAPTURE(std::string(set.what));
  CAPTURE(seed);
  CAPTURE(receiver_has_windows);
  std::mt19937_64 rng(seed);
  world<V2> source;
  mapping_model model;
  std::map<std::uint64_t, unsigned> shifts;
  auto create = [&](unsigned shift, std::uint64_t start) {
    const auto made = source.container.create_window(shift, window_shift_for(shift));
    REQUIRE(made);
    REQUIRE(*made == ioba{start});
  };
  (void)source.container.query();
  if (!set.keep_default) {
    // A window takes the first free slot: slot 0 is filled (for a while, if
    // no window is to stay there) before slot 1 can be.
    REQUIRE(source.container.remove_window(ioba{0}) == status::ok);
    create(set.slot0_shift != 0 ? set.slot0_shift : 16, 0);
  }
  if (set.slot1_shift != 0)
    create(set.slot1_shift, slot1_start);
  if (!set.keep_default && set.slot0_shift == 0)
    REQUIRE(source.container.remove_window(ioba{0}) == status::ok);
  for (const window_description& d : windows_of(source.container)) {
    shifts[d.start.value()] = d.page_shift;
    map_randomly(source, model, d.start.value(), rng, 40);
  }

  const auto bytes = stream_of(source.container);
  // What the stream says, read from its description.
  const decoded d = decode(bytes);
  CHECK(d.version_word == (one | std::uint64_t{2} << 32));
  CHECK(d.window_count == windows_of(source.container).size());
  CHECK(d.flags == 0);
  CHECK(d.windows == windows_of(source.container));
  CHECK(d.pages == model);
  CHECK(d.records == model_records(model, shifts));
  CHECK(d.trailer_records == d.records);
  std::uint64_t pages = 0;
  for (const auto& [start, mapped] : model)
    pages += mapped.size();
  CHECK(d.trailer_pages == pages);

  // Restored on another host set up the same way, the container is the
  // source again: windows, what they map from, where devices land, charges.
  world<V2> dest;
  if (receiver_has_windows) {
    (void)dest.container.query();
    REQUIRE(dest.container.create_window(16, 32));
  }
  REQUIRE(restore_container(dest.container, bytes) == status::ok);
  CHECK(windows_of(dest.container) == windows_of(source.container));
  CHECK(runs_of(dest.container) == runs_of(source.container));
  CHECK(!dest.container.default_window_due());
  for (const auto& [start, mapped] : model)
    for (const auto& [index, p] : mapped) {
      const ioba at{start + (index << shifts.at(start))};
      const auto want = source.container.translate(at);
      REQUIRE(want);
      const auto got = dest.container.translate(at);
      REQUIRE(got);
      CHECK(*got == *want);
    }
  CHECK(dest.container.table_bytes() == source.container.table_bytes());
  CHECK(dest.tables.charged() == source.tables.charged());
  CHECK(dest.pins.charged() == source.pins.charged());
  CHECK(dest.backend.pinned_pages() == source.backend.pinned_pages());
  if constexpr (V2)
    CHECK(dest.region_mappings() == source.region_mappings());
  else
    CHECK(dest.strategy.pinned_pages() == source.strategy.pinned_pages());
  CHECK(stream_of(dest.container) == bytes); // and writes the same stream
}

constexpr window_set window_sets[] = {
    {"the default window alone", true, 0, 0},
    {"a 64K window in slot 0 alone", false, 16, 0},
    {"a 16M window in slot 0 alone", false, 24, 0},
    {"the default window and a 64K huge window", true, 0, 16},
    {"the default window and a 2M window", true, 0, 21},
    {"a 64K window and a 16M window", false, 16, 24},
    {"a 2M window in slot 1 alone", false, 0, 21},
};

} // namespace

TEST_CASE("container streams round trip, v2: one and two windows of several page sizes") {
  std::uint64_t seed = 1;
  for (const window_set& set : window_sets)
    for (const bool receiver_has_windows : {false, true})
      round_trip<true>(set, seed++, receiver_has_windows);
}

TEST_CASE("container streams round trip, v1: one and two windows of several page sizes") {
  std::uint64_t seed = 100;
  for (const window_set& set : window_sets)
    for (const bool receiver_has_windows : {false, true})
      round_trip<false>(set, seed++, receiver_has_windows);
}

TEST_CASE("the default window's state travels: still due, or removed with no window left") {
  world<true> fresh; // never used: the default window is still due
  const auto due = stream_of(fresh.container);
  CHECK(due.size() == (4 + 3) * 8);
  CHECK(le_word(due, 3) == 1);
  world<true> removed;
  REQUIRE(removed.container.remove_window(ioba{0}) == status::ok);
  const auto none = stream_of(removed.container);
  CHECK(le_word(none, 3) == 0);

  world<true> dest;
  (void)dest.container.query();
  REQUIRE(dest.container.create_window(16, 40));
  REQUIRE(restore_container(dest.container, due) == status::ok);
  CHECK(dest.container.window_count() == 0);
  CHECK(dest.container.default_window_due());
  CHECK(dest.tables.charged() == 0);
  CHECK(dest.container.query().free_windows == 1); // the default window comes on first use
  REQUIRE(restore_container(dest.container, none) == status::ok);
  CHECK(dest.container.window_count() == 0);
  CHECK(!dest.container.default_window_due());
  CHECK(dest.container.query().free_windows == 2);
}

TEST_CASE("a contiguous GiB in a 128 TiB window is one record") {
  world<true> source;
  REQUIRE(source.container.create_window(16, 47));
  REQUIRE(source.container.map_dma(ioba{slot1_start + 5 * gib}, ua{memory_first}, gib,
                                   permission::read_write) == status::ok);
  const auto bytes = stream_of(source.container);
  // Header, the default window's header, the huge window's, one record, trailer.
  CHECK(bytes.size() == (4 + 4 + 4 + 3 + 3) * 8);
  CHECK(decode(bytes).records == 1);
}

namespace {

// Everything a failed restore must leave as it was.
struct receiver_state {
  std::vector<window_description> windows;
  std::vector<user_run> runs;
  bool due;
  std::size_t table_bytes;
  std::uint64_t table_charge, pin_charge, pinned, uses;
  friend bool operator==(const receiver_state&, const receiver_state&) = default;
};
template <bool V2>
receiver_state state_of(world<V2>& w) {
  std::uint64_t uses = 0;
  if constexpr (V2)
    uses = w.region_mappings();
  else
    uses = w.strategy.pinned_pages();
  return {windows_of(w.container),
          runs_of(w.container),
          w.container.default_window_due(),
          w.container.table_bytes(),
          w.tables.charged(),
          w.pins.charged(),
          w.backend.pinned_pages(),
          uses};
}

// The catalog's good stream: the default window with one record (A), a
// 64K huge window with two (B, C). Words: 0-3 header; 4-7 the default
// window's header; 8-10 A; 11-14 the huge window's header; 15-17 B; 18-20
// C; 21-23 the trailer.
std::vector<std::byte> catalog_stream() {
  world<true> source;
  REQUIRE(source.container.map_dma(ioba{0x10000}, ua{memory_first + 0x40000}, 3 * 4096,
                                   permission::read_write) == status::ok);
  REQUIRE(source.container.create_window(16, 40));
  REQUIRE(source.container.map_dma(ioba{slot1_start + 2 * 65536}, ua{memory_first}, 2 * 65536,
                                   permission::read) == status::ok);
  REQUIRE(source.container.map_dma(ioba{slot1_start + 10 * 65536}, ua{memory_first + mib}, 65536,
                                   permission::write) == status::ok);
  auto bytes = stream_of(source.container);
  REQUIRE(bytes.size() == 24 * 8);
  REQUIRE(le_word(bytes, 4) == 0x6e69772d74706f69);
  REQUIRE(le_word(bytes, 11) == 0x6e69772d74706f69);
  REQUIRE(le_word(bytes, 21) == 0x646e652d74706f69);
  REQUIRE(le_word(bytes, 6) == (12 | 1 << 8 | 1 << 16));
  REQUIRE(le_word(bytes, 13) == (16 | 3 << 8));
  return bytes;
}

} // namespace

TEST_CASE("bad streams: each gets its status and leaves the receiver as it was") {
  const std::vector<std::byte> good = catalog_stream();
  world<true> receiver;
  (void)receiver.container.query();
  REQUIRE(receiver.container.create_window(16, 32)); // two empty windows to replace
  // `by_receiver`: the stream is valid, the receiver cannot take it (the
  // stream check alone says ok).
  auto try_stream = [&](const std::vector<std::byte>& bytes, status expected,
                        bool by_receiver = false) {
    const receiver_state before = state_of(receiver);
    CHECK(check_container_stream(bytes).error() == (by_receiver ? status::ok : expected));
    CHECK(restore_container(receiver.container, bytes) == expected);
    CHECK(state_of(receiver) == before);
  };
  auto word_set = [&](std::size_t word, std::uint64_t v) {
    auto b = good;
    put_word(b, word, v);
    return b;
  };

  SUBCASE("cut short at every word, and inside words") {
    for (std::size_t words = 0; words < 24; ++words)
      for (const std::size_t extra : {std::size_t{0}, std::size_t{5}}) {
        CAPTURE(words);
        CAPTURE(extra);
        try_stream(std::vector<std::byte>(good.begin(),
                                          good.begin() + static_cast<long>(words * 8 + extra)),
                   status::stream_truncated);
      }
  }
  SUBCASE("bytes after the trailer") {
    auto longer = good;
    longer.resize(good.size() + 8);
    try_stream(longer, status::stream_corrupt);
    longer.resize(good.size() + 1);
    try_stream(longer, status::stream_corrupt);
  }
  SUBCASE("a word of each field changed") {
    struct change {
      const char* what;
      std::size_t word;
      std::uint64_t value;
      status expected;
      bool by_receiver = false;
    };
    const std::uint64_t shape0 = le_word(good, 6), shape1 = le_word(good, 13);
    const std::uint64_t a_ua = le_word(good, 10);
    const change changes[] = {
        {"not the magic", 0, 0x1234, status::stream_corrupt},
        {"version 2", 1, 2 | 2ull << 32, status::stream_mismatch},
        {"a table stream's kind", 1, 1, status::stream_mismatch},
        {"a table changes stream's kind", 1, 1 | 1ull << 32, status::stream_mismatch},
        {"3 windows", 2, 3, status::stream_corrupt},
        {"1 window: one more follows", 2, 1, status::stream_corrupt},
        {"no window: one follows", 2, 0, status::stream_corrupt},
        {"the default window due, with windows", 3, 1, status::stream_corrupt},
        {"a flag this version does not know", 3, 2, status::stream_mismatch},
        {"no window marker: a record of no window", 4, 0x1234, status::stream_corrupt},
        {"a start that is no slot's", 5, 0x1000, status::stream_corrupt},
        {"both windows in slot 1", 5, slot1_start, status::stream_corrupt},
        {"a page shift of 64", 6, (shape0 & ~0xffull) | 64, status::stream_corrupt},
        {"0 levels", 6, shape0 & ~0xff00ull, status::stream_corrupt},
        {"6 levels", 6, (shape0 & ~0xff00ull) | 6 << 8, status::stream_corrupt},
        {"a window header bit this version does not know", 6, shape0 | 1ull << 17,
         status::stream_mismatch},
        {"a size that is not a power of two", 7, 3 * gib, status::stream_corrupt},
        {"a size of 0", 7, 0, status::stream_corrupt},
        {"smaller than a page", 7, 2048, status::stream_corrupt},
        {"the default window in slot 1", 13, shape1 | 1 << 16, status::stream_corrupt},
        {"the window marker lost: its header read as a record", 11, 0x1234, status::stream_corrupt},
        {"a page size the receiver has no configuration for", 6, (shape0 & ~0xffull) | 13,
         status::stream_mismatch, true},
        {"levels the receiver has no 4K configuration of", 6, (shape0 & ~0xff00ull) | 2 << 8,
         status::stream_mismatch, true},
        {"a default window unlike the receiver's (2 GiB)", 7, 2 * gib, status::stream_mismatch,
         true},
        {"a window larger than the receiver's configurations index", 14, one << 60,
         status::stream_mismatch, true},
        {"a record starting past the window", 8, gib >> 12, status::stream_corrupt},
        {"a record ending past it", 8, (gib >> 12) - 2, status::stream_corrupt},
        {"a record of no pages", 9, 3ull << 62, status::stream_corrupt},
        {"a record with no permission", 9, 3, status::stream_corrupt},
        {"a record of 2^62 - 1 pages", 9, ~0ull, status::stream_corrupt},
        {"a user address inside a page", 10, a_ua + 0x800, status::stream_corrupt},
        {"a user range past 2^64", 10, 0 - 0x2000ull, status::stream_corrupt},
        {"a record on the previous one's first page", 18, 2, status::stream_corrupt},
        {"a record on the previous one's last page", 18, 3, status::stream_corrupt},
        {"a record before the previous one", 18, 1, status::stream_corrupt},
        {"the end marker lost", 21, 0, status::stream_corrupt},
        {"a wrong record count", 22, 2, status::stream_corrupt},
        {"a wrong page count", 23, 7, status::stream_corrupt},
    };
    for (const change& c : changes) {
      CAPTURE(c.what);
      try_stream(word_set(c.word, c.value), c.expected, c.by_receiver);
    }
  }
  SUBCASE("receivers that cannot take it") {
    // No configuration for the huge window's 64K pages.
    container_of<v2_strategy, config_4k> only_4k{receiver.strategy, receiver.tables};
    (void)only_4k.query();
    const std::size_t held = only_4k.table_bytes();
    CHECK(restore_container(only_4k, good) == status::stream_mismatch);
    CHECK(only_4k.window_count() == 1);
    CHECK(only_4k.table_bytes() == held);
    // A default window of 64K pages: not the stream's.
    world<true>::container_type other_default{
        receiver.strategy, receiver.tables,
        container_options{.default_page_shift = 16, .default_window_bytes = 256 * mib}};
    CHECK(restore_container(other_default, good) == status::stream_mismatch);
    CHECK(other_default.default_window_due());
    // A receiver that maps something.
    REQUIRE(receiver.container.map_dma(ioba{0}, ua{memory_first}, 4096, permission::read) ==
            status::ok);
    try_stream(good, status::busy, true);
    REQUIRE(receiver.container.unmap_dma(ioba{0}, 4096));
  }
  SUBCASE("memory the receiver has not set up") {
    world<true> unregistered(false);
    (void)unregistered.container.query();
    const receiver_state before = state_of(unregistered);
    CHECK(restore_container(unregistered.container, good) == status::not_found);
    CHECK(state_of(unregistered) == before);
    world<false> disabled(false);
    disabled.backend.back_with_huge_pages(ua{memory_first}, huge_half, 24);
    const receiver_state before_v1 = state_of(disabled);
    CHECK(restore_container(disabled.container, good) == status::not_permitted);
    CHECK(state_of(disabled) == before_v1);
  }
  // The good stream is good.
  CHECK(restore_container(receiver.container, good) == status::ok);
  CHECK(runs_of(receiver.container).size() == 3);
}

TEST_CASE("the change hook hears the restored runs once, and nothing of a failed restore") {
  struct counter {
    std::uint64_t mapped = 0, unmapped = 0;
    void on(bool map, const mapped_run& r) noexcept { (map ? mapped : unmapped) += r.pages; }
  };
  const auto good = catalog_stream();
  counter heard;
  world<false> v1;
  v1.container.set_change_hook(dma_change_hook::to<&counter::on>(heard));
  v1.backend.fail_nth_pin(2); // the second pin fails: the first is given back
  const receiver_state before = state_of(v1);
  CHECK(restore_container(v1.container, good) == status::no_memory);
  CHECK(state_of(v1) == before);
  CHECK(heard.mapped == 0);
  CHECK(heard.unmapped == 0);
  REQUIRE(restore_container(v1.container, good) == status::ok);
  CHECK(heard.mapped == 3 + 2 + 1);
  CHECK(heard.unmapped == 0);
}

namespace {

using faulty_accounting = fault_injecting_accounting<counted_accounting, fault_plan>;
using faulty_registry =
    prereg_registry<simulated_backend, faulty_accounting, fault_injecting_allocator>;

// A receiver whose every allocation, charge, pin and translation is a point
// of one fault plan, with two empty windows a restore replaces.
template <bool V2>
struct fault_world {
  using strategy_type = std::conditional_t<
      V2, preregistered<faulty_registry>,
      pin_on_map<simulated_backend, faulty_accounting, fault_injecting_allocator>>;
  fault_plan plan;
  simulated_backend backend{16, frame_layout::scattered};
  counted_accounting pin_limit{one << 50}, table_limit{one << 40};
  faulty_accounting pins{pin_limit, plan}, tables{table_limit, plan};
  faulty_registry registry{backend, pins, fault_injecting_allocator(plan)};
  strategy_type strategy = make_strategy();
  dma_container<strategy_type, faulty_accounting, config_4k, config_huge_window, cfg_2m> container{
      strategy, tables};

  fault_world() {
    backend.count_faults_in(plan);
    prepare_memory(backend, container, V2);
    (void)container.query();
    REQUIRE(container.create_window(21, 38));
  }
  strategy_type make_strategy() {
    if constexpr (V2)
      return strategy_type(registry);
    else
      return strategy_type(backend, pins, {}, fault_injecting_allocator(plan));
  }
  receiver_state snapshot() {
    std::uint64_t uses = 0;
    if constexpr (V2) {
      for (const std::uint64_t at : {memory_first, memory_first + huge_half})
        if (auto r = registry.acquire(ua{at}, 4096)) {
          uses += (*r)->mappings() - 1;
          registry.release(*r);
        }
    } else {
      uses = strategy.pinned_pages();
    }
    return {windows_of(container),
            runs_of(container),
            container.default_window_due(),
            container.table_bytes(),
            tables.charged(),
            pins.charged(),
            backend.pinned_pages(),
            uses};
  }
  void teardown() {
    REQUIRE(container.reset() == status::ok);
    (void)container.remove_window(ioba{0});
    if constexpr (V2)
      for (const std::uint64_t at : {memory_first, memory_first + huge_half})
        REQUIRE(container.unregister_memory(ua{at}, huge_half) == status::ok);
    CHECK(backend.pinned_pages() == 0);
    CHECK(pins.charged() == 0);
    CHECK(tables.charged() == 0);
  }
};

// A source of two windows with runs across leaf boundaries, over scattered
// frames (a pin and a translation per host page run in v1).
std::vector<std::byte> sweep_stream() {
  world<true> source;
  REQUIRE(source.container.create_window(16, 40));
  REQUIRE(source.container.map_dma(ioba{slot1_start + 16380 * one * 65536},
                                   ua{memory_first + 64 * mib}, 8 * 65536,
                                   permission::read_write) == status::ok);
  REQUIRE(source.container.map_dma(ioba{slot1_start + 40000 * one * 65536}, ua{memory_first}, 65536,
                                   permission::read) == status::ok);
  REQUIRE(source.container.map_dma(ioba{0x7000}, ua{memory_first + huge_half + 0x3000}, 5 * 4096,
                                   permission::write) == status::ok);
  return stream_of(source.container);
}

} // namespace

TEST_CASE("sweep: every allocation, charge and pin of a restore fails in turn, v2") {
  static const std::vector<std::byte> bytes = sweep_stream();
  const auto points = sweep<fault_world<true>>(
      [](fault_world<true>& w) { return restore_container(w.container, bytes); });
  MESSAGE(points << " points");
}

TEST_CASE("sweep: every allocation, charge, pin and translation of a restore fails in turn, v1") {
  static const std::vector<std::byte> bytes = sweep_stream();
  const auto points = sweep<fault_world<false>>(
      [](fault_world<false>& w) { return restore_container(w.container, bytes); });
  MESSAGE(points << " points");
}
