// put_list takes its list a run at a time (table/tce_table.hpp, run_length):
// a run is checked at its ends and vetted by the caller's check in one call.
// Here random lists built to stress that — long runs, runs that reach the top
// of the 64-bit space or leave a format's address bits part way, repeated
// clears, stray bits, unrelated values — must get exactly the status that
// checking one value at a time gives, leave the table unchanged on failure,
// write exactly the normalized values on success, and behave the same when
// the list is handed over big-endian.
#include "table/support.hpp"

#include <iopt/format/byte_order.hpp>
#include <iopt/format/example_format.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

using namespace iopt;
using namespace iopt_test;

namespace iopt_test {
// A format whose targets may use only 52 bits, so a run can leave them.
struct config_masked_format {
  using format = example_format;
  using page_size = page_4k;
  static constexpr std::array<unsigned, 2> level_bits{6, 6};
};
template <>
struct test_window<config_masked_format> {
  static constexpr std::uint64_t offset = 0;
  static constexpr std::uint64_t bytes = std::uint64_t{1} << 24;
};
} // namespace iopt_test

namespace {

template <class Table>
class list_maker {
public:
  using format = typename Table::format;
  static constexpr std::uint64_t page = Table::page_bytes;

  explicit list_maker(std::uint64_t seed) : rng_(seed) {}

  // A list of n values; strays adds stray bits to some runs.
  std::vector<std::uint64_t> make(std::size_t n, bool strays) {
    std::vector<std::uint64_t> list;
    while (list.size() < n) {
      const std::size_t len = std::min<std::size_t>(n - list.size(), 1 + pick(0, 1) * pick(0, 80));
      switch (pick(0, strays ? 6 : 4)) {
      case 0: // a contiguous run from anywhere
        append_run(list, len, pick_target() | pick_permission(), page);
        break;
      case 1: // a run that reaches (and passes) the top of the 64-bit space
        append_run(list, len, (0 - pick(1, 40) * page) | pick_permission(), page);
        break;
      case 2: // a run that crosses bit 52 (a limit of some formats' addresses)
        append_run(list, len, ((std::uint64_t{1} << 52) - pick(1, 40) * page) | pick_permission(),
                   page);
        break;
      case 3: // repeated clears, sometimes with stale address bits
        append_run(list, len, pick(0, 1) != 0 ? 0 : pick_target(), 0);
        break;
      case 4: // unrelated values
        for (std::size_t i = 0; i < len; ++i)
          list.push_back(pick_target() | pick_permission());
        break;
      default: // a run with one stray bit somewhere in it
        append_run(list, len, pick_target() | pick_permission(), page);
        list[list.size() - 1 - pick(0, len - 1)] |= std::uint64_t{1} << pick(0, 63);
        break;
      }
    }
    return list;
  }
  std::uint64_t pick(std::uint64_t lo, std::uint64_t hi) {
    return std::uniform_int_distribution<std::uint64_t>(lo, hi)(rng_);
  }

private:
  static void append_run(std::vector<std::uint64_t>& list, std::size_t len, std::uint64_t value,
                         std::uint64_t step) {
    for (std::size_t i = 0; i < len; ++i)
      list.push_back(value + i * step);
  }
  std::uint64_t pick_target() { return pick(0, (std::uint64_t{1} << 50) / page) * page; }
  std::uint64_t pick_permission() {
    const std::uint64_t bits[] = {format::read_bit, format::write_bit,
                                  format::read_bit | format::write_bit};
    return bits[pick(0, 2)];
  }
  std::mt19937_64 rng_;
};

} // namespace

TEST_CASE_TEMPLATE("put_list checks runs exactly as it would check each value", Config,
                   IOPT_TEST_CONFIGS, config_masked_format) {
  using table_type = tce_table<Config>;
  using format = typename table_type::format;
  constexpr std::uint64_t page = table_type::page_bytes;
  auto t = make_table<Config>();
  list_maker<table_type> maker(0x7ce1157 + table_type::page_shift);
  std::uint64_t widest_check = 0; // the longest run the caller's check was handed
  int applied = 0;
  int refused = 0;

  for (int round = 0; round < 400; ++round) {
    const std::size_t n =
        static_cast<std::size_t>(maker.pick(1, std::min<std::uint64_t>(600, t.pages())));
    // Half the lists are meant to pass (no stray bits, no target limit).
    const bool clean = maker.pick(0, 1) == 0;
    const std::vector<std::uint64_t> list = maker.make(n, !clean);
    const std::uint64_t first_page = maker.pick(0, t.pages() - n);
    // The caller's check: a page whose target is `limit` or above is refused
    // (UINT64_MAX refuses none), a range-like rule, so vetting a run at once
    // must agree with vetting each page.
    const std::uint64_t limit = clean ? UINT64_MAX : maker.pick(0, std::uint64_t{1} << 51);
    const auto below_limit = [&](std::uint64_t tce, std::uint64_t pages) noexcept {
      widest_check = std::max(widest_check, pages);
      if (!format::is_present(tce))
        return status::ok;
      const std::uint64_t target = format::target(tce, table_type::page_shift);
      // The last page's target, target + (pages - 1) * page, below limit.
      return target < limit && pages - 1 <= (limit - 1 - target) / page ? status::ok
                                                                        : status::not_permitted;
    };

    status expected = status::ok;
    for (const std::uint64_t v : list) {
      expected = format::check(v, table_type::page_shift);
      if (expected == status::ok)
        expected = below_limit(v, 1);
      if (expected != status::ok)
        break;
    }

    const snapshot before = take_snapshot(t);
    const ioba at = page_address(t, first_page);
    const status got = t.put_list(at, native_values{list}, allocation::allowed, below_limit);
    REQUIRE(got == expected);
    ++(got == status::ok ? applied : refused);
    if (got != status::ok) {
      CHECK(take_snapshot(t) == before);
    } else {
      for (std::size_t k = 0; k < n; ++k)
        REQUIRE(*t.get(at + k * page) == format::normalize(list[k]));
    }

    // The same list stored big-endian: the same status and the same table.
    std::vector<std::uint64_t> stored(list.size());
    std::transform(list.begin(), list.end(), stored.begin(), to_big_endian);
    const snapshot after = take_snapshot(t);
    CHECK(t.put_list(at, big_endian_values{stored}, allocation::allowed, below_limit) == expected);
    CHECK(take_snapshot(t) == after);
  }
  // The lists exercised both outcomes, and runs were vetted whole.
  CHECK(applied > 10);
  CHECK(refused > 40);
  CHECK(widest_check > 64);
}
