// Migration streams of TCE tables: round trips for every configuration
// against a reference model and an independent decoder of the stream
// format, dense import and export, a catalog of bad streams (each: its
// status and the receiver unchanged), and every allocation of a restore
// failed in turn.
#include "migrate/support.hpp"

#include <iopt/migrate/table_stream.hpp>
#include <iopt/testing/fault_injecting_allocator.hpp>

#include <doctest/doctest.h>

#include <cstring>
#include <map>
#include <random>
#include <vector>

using namespace iopt;
using namespace iopt_test;

namespace {

// The stream format decoded from its description, not from the library's
// reader: little-endian words, 8 of header, records, "iopt-end", a count.
struct decoded {
  std::vector<std::uint64_t> header;
  std::map<std::uint64_t, std::uint64_t> entries; // page -> value
  std::uint64_t records = 0, trailer_count = 0;
};
decoded decode(const std::vector<std::byte>& b, unsigned page_shift) {
  decoded d;
  REQUIRE(b.size() % 8 == 0);
  std::size_t w = 0;
  for (; w < 8; ++w)
    d.header.push_back(le_word(b, w));
  while (le_word(b, w) != 0x646e652d74706f69) { // "iopt-end"
    const std::uint64_t first = le_word(b, w), kind_count = le_word(b, w + 1);
    const std::uint64_t kind = kind_count >> 62,
                        count = kind_count & ((std::uint64_t{1} << 62) - 1);
    w += 2;
    REQUIRE(kind <= 1);
    for (std::uint64_t k = 0; k < count; ++k) {
      const std::uint64_t v = kind == 0 ? le_word(b, w) + (k << page_shift)
                                        : le_word(b, w + static_cast<std::size_t>(k));
      REQUIRE(d.entries.emplace(first + k, v).second); // no page twice
    }
    w += kind == 0 ? 1 : static_cast<std::size_t>(count);
    ++d.records;
  }
  d.trailer_count = le_word(b, w + 1);
  CHECK((w + 2) * 8 == b.size());
  return d;
}

} // namespace

TEST_CASE_TEMPLATE("snapshot and restore round trip, checked by an independent decoder", Config,
                   IOPT_TEST_CONFIGS) {
  using table_type = tce_table<Config>;
  for (const std::uint64_t seed : {1u, 2u, 3u}) {
    CAPTURE(seed);
    auto t = make_table<Config>();
    reference_model<table_type> model(t);
    fill_randomly(t, model, seed * 77 + table_type::page_shift, 60);
    const auto bytes = stream_of(t);
    // The stream says what the model says, in the documented layout.
    const decoded d = decode(bytes, table_type::page_shift);
    CHECK(d.header[0] == 0x6563742d74706f69); // "iopt-tce"
    CHECK(d.header[1] == 1);
    CHECK((d.header[2] & 0xff) == table_type::page_shift);
    CHECK(((d.header[2] >> 8) & 0xff) == table_type::levels);
    CHECK(d.header[6] == t.window().first().value());
    CHECK(d.header[7] == t.window().size());
    std::map<std::uint64_t, std::uint64_t> expected;
    for (const mapped_run& r : model.runs())
      for (std::uint64_t k = 0; k < r.pages; ++k)
        expected[t.page_index(r.first) + k] = table_type::format::normalize(
            table_type::format::make(r.target + (k << table_type::page_shift), r.perm));
    CHECK(d.entries == expected);
    CHECK(d.trailer_count == model.size());
    // Restored, the table is the source again, and writes the same stream.
    auto copy = empty_like(t);
    REQUIRE(restore(copy, bytes) == status::ok);
    CHECK(take_snapshot(copy).runs == model.runs());
    CHECK(stream_of(copy) == bytes);
    // Dense, both byte orders, and back.
    std::vector<std::uint64_t> dense(t.pages() <= (std::uint64_t{1} << 22) ? t.pages() : 0);
    if (!dense.empty()) {
      REQUIRE(export_dense(t, dense) == status::ok);
      for (std::uint64_t p = 0; p < dense.size(); ++p)
        REQUIRE(dense[p] == model.get(p));
      auto imported = empty_like(t);
      REQUIRE(import_dense(imported, native_values{dense}) == status::ok);
      CHECK(take_snapshot(imported).runs == model.runs());
      REQUIRE(export_dense<std::endian::big>(t, dense) == status::ok);
      auto from_big = empty_like(t);
      REQUIRE(import_dense(from_big, big_endian_values{dense}) == status::ok);
      CHECK(take_snapshot(from_big).runs == model.runs());
    }
  }
}

TEST_CASE("an empty 128 TiB window is a header and a trailer") {
  auto t = make_table<config_huge_window>();
  const auto bytes = stream_of(t);
  CHECK(bytes.size() == (8 + 2) * 8);
  auto copy = empty_like(t);
  CHECK(restore(copy, bytes) == status::ok);
  CHECK(!copy.next_run(0));
}

TEST_CASE("a window that ends at 2^64: its last page travels") {
  using table_type = tce_table<config_64k>;
  const std::uint64_t bytes = std::uint64_t{1} << 32;
  auto t = table_type::create(ioba{0 - bytes}, bytes).value();
  REQUIRE(t.map(ioba{0 - table_type::page_bytes}, 0x7000'0000, permission::read_write) ==
          status::ok);
  REQUIRE(t.map_range(ioba{0 - bytes}, 0x1'0000'0000, 5, permission::read) == status::ok);
  auto copy = table_type::create(ioba{0 - bytes}, bytes).value();
  REQUIRE(restore(copy, stream_of(t)) == status::ok);
  CHECK(take_snapshot(copy).runs == take_snapshot(t).runs);
}

TEST_CASE("1 GiB mapped in one run of a 128 TiB window: one record") {
  using table_type = tce_table<config_huge_window>;
  auto t = make_table<config_huge_window>();
  REQUIRE(t.map_range(t.window().first(), 0x40'0000'0000, (std::uint64_t{1} << 30) >> 16,
                      permission::read_write) == status::ok);
  const auto bytes = stream_of(t);
  CHECK(bytes.size() == (8 + 3 + 2) * 8);
  CHECK(decode(bytes, table_type::page_shift).records == 1);
}

namespace {

// The catalog: a good stream of a small table, broken one way at a time.
using small_table = tce_table<config_small_blocks>;
constexpr unsigned small_shift = small_table::page_shift;

void put_word(std::vector<std::byte>& b, std::size_t word, std::uint64_t v) {
  for (std::size_t i = 0; i < 8; ++i)
    b.at(word * 8 + i) = static_cast<std::byte>(v >> (8 * i));
}

} // namespace

TEST_CASE("bad streams: each gets its status and leaves the receiver as it was") {
  auto source = make_table<config_small_blocks>();
  // A run record (pages 10..14), then a list record (pages 20, 21).
  REQUIRE(source.map_range(page_address(source, 10), 0x10'0000, 5, permission::read) == status::ok);
  const std::uint64_t list[] = {0x30'0000, 0x90'0000};
  REQUIRE(source.map_list(page_address(source, 20), list, permission::read_write) == status::ok);
  const std::vector<std::byte> good = stream_of(source);
  // Words: 0-7 header; 8, 9, 10 the run; 11, 12, 13, 14 the list; 15 the end
  // marker; 16 the count.
  REQUIRE(good.size() == 17 * 8);
  REQUIRE(le_word(good, 15) == 0x646e652d74706f69);

  auto try_stream = [&](const std::vector<std::byte>& bytes, status expected, auto& receiver) {
    const auto before = take_snapshot(receiver);
    CHECK(check_stream<small_table>(bytes, receiver.window()).error() ==
          (expected == status::busy ? status::ok : expected));
    CHECK(restore(receiver, bytes) == expected);
    CHECK(take_snapshot(receiver) == before);
  };
  auto word_set = [&](std::size_t word, std::uint64_t v) {
    auto b = good;
    put_word(b, word, v);
    return b;
  };
  auto cut = [&](std::size_t bytes) {
    return std::vector<std::byte>(good.begin(), good.begin() + static_cast<long>(bytes));
  };
  auto receiver = empty_like(source);
  REQUIRE(restore(receiver, good) == status::ok); // the good stream is good
  receiver = empty_like(source);

  SUBCASE("cut short") {
    for (const std::size_t bytes :
         {std::size_t{0}, std::size_t{7}, std::size_t{8 * 8 - 1}, std::size_t{8 * 8},
          std::size_t{9 * 8}, std::size_t{10 * 8}, std::size_t{11 * 8}, std::size_t{13 * 8},
          std::size_t{15 * 8}, std::size_t{16 * 8}, std::size_t{17 * 8 - 3}}) {
      CAPTURE(bytes);
      try_stream(cut(bytes), status::stream_truncated, receiver);
    }
  }
  SUBCASE("not a stream, or bytes after its end") {
    try_stream(word_set(0, 0x1234), status::stream_corrupt, receiver);
    auto longer = good;
    longer.resize(good.size() + 8);
    try_stream(longer, status::stream_corrupt, receiver);
    longer.resize(good.size() + 1);
    try_stream(longer, status::stream_corrupt, receiver);
  }
  SUBCASE("another version, configuration or window") {
    struct header_change {
      const char* what;
      std::size_t word;
      std::uint64_t value;
    };
    const header_change changes[] = {
        {"version 2", 1, 2},
        {"a stream kind other than a whole table", 1, std::uint64_t{1} << 32 | 1},
        {"another page size", 2, le_word(good, 2) + 1},
        {"another number of levels", 2, le_word(good, 2) + 0x100},
        {"a reserved bit", 2, le_word(good, 2) ^ 0x10000},
        {"other permission bits", 3, le_word(good, 3) ^ 3},
        {"another address mask", 4, 0xffff'ffff},
        {"a format that keeps write-only values", 5, 2},
        {"another bus offset", 6, 0},
        {"another window size", 7, le_word(good, 7) * 2},
    };
    for (const header_change& c : changes) {
      CAPTURE(c.what);
      try_stream(word_set(c.word, c.value), status::stream_mismatch, receiver);
    }
    // A receiver of another window, and one of another configuration.
    auto elsewhere =
        small_table::create(ioba{0x2000'0000}, test_window<config_small_blocks>::bytes);
    try_stream(good, status::stream_mismatch, *elsewhere);
    auto other = make_table<config_guest_4k>();
    const auto before = take_snapshot(other);
    CHECK(restore(other, good) == status::stream_mismatch);
    CHECK(take_snapshot(other) == before);
  }
  SUBCASE("records out of place") {
    const std::uint64_t pages = source.pages();
    try_stream(word_set(8, pages), status::stream_corrupt, receiver);     // starts past the end
    try_stream(word_set(8, pages - 2), status::stream_corrupt, receiver); // ends past it
    try_stream(word_set(9, 0), status::stream_corrupt, receiver);         // no pages
    try_stream(word_set(9, std::uint64_t{2} << 62 | 5), status::stream_corrupt, receiver); // kind
    try_stream(word_set(11, 12), status::stream_corrupt, receiver); // overlaps the run
    try_stream(word_set(11, 14), status::stream_corrupt, receiver); // its last page
    try_stream(word_set(11, 3), status::stream_corrupt, receiver);  // before it
    try_stream(word_set(9, 0x7fff'ffff'ffff'ffff), status::stream_corrupt, receiver); // huge count
  }
  SUBCASE("values the format refuses") {
    try_stream(word_set(13, 0), status::stream_corrupt, receiver);                // maps nothing
    try_stream(word_set(13, 0x30'0000 | 0x10), status::stream_corrupt, receiver); // stray bit
    try_stream(word_set(13, 0x30'0000 | 2), status::stream_corrupt, receiver);    // not normalized
    // A run whose last target wraps past 2^64.
    try_stream(word_set(10, (0 - (std::uint64_t{2} << small_shift)) | 1), status::stream_corrupt,
               receiver);
  }
  SUBCASE("a wrong count in the trailer") {
    try_stream(word_set(16, 6), status::stream_corrupt, receiver);
    try_stream(word_set(16, 8), status::stream_corrupt, receiver);
  }
  SUBCASE("a receiver that holds entries") {
    auto busy = empty_like(source);
    REQUIRE(busy.map(page_address(busy, 3), 0x5000'0000, permission::read) == status::ok);
    try_stream(good, status::busy, busy);
  }
}

TEST_CASE("dense import: bad input changes nothing") {
  auto t = make_table<config_small_blocks>();
  std::vector<std::uint64_t> dense(t.pages());
  CHECK(import_dense(t, native_values{std::span(dense).first(dense.size() - 1)}) ==
        status::invalid_parameter);
  dense[7] = 0x5000'0000 | 1;
  dense[4000] = 0x6000'0000 | 0x10; // a stray bit
  CHECK(import_dense(t, native_values{dense}) == status::not_aligned);
  CHECK(!t.next_run(0));
  CHECK(t.memory_bytes() == make_table<config_small_blocks>().memory_bytes());
  dense[4000] = 0;
  REQUIRE(t.map(page_address(t, 9), 0x7000'0000, permission::read) == status::ok);
  const auto before = take_snapshot(t);
  CHECK(import_dense(t, native_values{dense}) == status::busy);
  CHECK(take_snapshot(t) == before);
  std::vector<std::uint64_t> wrong_size(3);
  CHECK(export_dense(t, wrong_size) == status::invalid_parameter);
}

TEST_CASE("every allocation of a restore and an import can fail: the receiver stays as it was") {
  using table_type = small_table; // its allocator can fail
  fault_plan plan;
  auto make = [&] {
    auto made = table_type::create(ioba{test_window<config_small_blocks>::offset},
                                   test_window<config_small_blocks>::bytes,
                                   fault_injecting_allocator(plan));
    REQUIRE(made);
    return std::move(made).value();
  };
  auto source = make();
  reference_model<table_type> model(source);
  fill_randomly(source, model, 99, 40);
  const auto bytes = stream_of(source);
  std::vector<std::uint64_t> dense(source.pages());
  REQUIRE(export_dense(source, dense) == status::ok);
  for (const bool dense_form : {false, true}) {
    CAPTURE(dense_form);
    auto apply = [&](table_type& r) {
      return dense_form ? import_dense(r, native_values{dense}) : restore(r, bytes);
    };
    std::uint64_t points = 0;
    {
      auto receiver = make();
      plan.reset_counts();
      REQUIRE(apply(receiver) == status::ok);
      points = plan.points;
      CHECK(take_snapshot(receiver).runs == model.runs());
    }
    REQUIRE(points >= 3);
    for (std::uint64_t n = 1; n <= points; ++n) {
      CAPTURE(n);
      auto receiver = make();
      const auto before = take_snapshot(receiver);
      const std::int64_t live = plan.live_bytes;
      plan.fail_nth(n);
      CHECK(apply(receiver) == status::no_memory);
      plan.never_fail();
      CHECK(plan.failures == 1);
      CHECK(take_snapshot(receiver) == before);
      CHECK(plan.live_bytes == live); // what the failed restore allocated went back
    }
  }
}

TEST_CASE("a sink that fails stops the snapshot with its status") {
  auto t = make_table<config_huge_window>();
  std::vector<std::uint64_t> targets;
  for (std::uint64_t k = 0; k < 3000; ++k)
    targets.push_back((k * 7919 % 100000) << 16); // scattered: a long list
  REQUIRE(t.map_list(t.window().first(), targets, permission::read) == status::ok);
  int calls = 0;
  auto failing = [&](std::span<const std::byte>) {
    ++calls;
    return calls == 2 ? status::no_memory : status::ok;
  };
  CHECK(iopt::snapshot(t, failing) == status::no_memory);
  CHECK(calls == 2); // nothing more after the failure
}
