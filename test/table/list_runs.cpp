// The bulk look at single list values (list_runs::screen) and their bulk
// write (store_normalized), at every vector width the processor has, for
// formats of both byte orders, with and without a normalize, against plain
// loops over the format's own functions. The screen may vouch for fewer
// values than it could (that is only slower), so the test asks for exactly
// the values its rule allows: an overeager screen would let a bad value
// through, a timid one would hide a slow path.
#include <doctest/doctest.h>

#include <iopt/format/example_format.hpp>
#include <iopt/format/guest_tce.hpp>
#include <iopt/format/hardware_tce.hpp>
#include <iopt/format/traits.hpp>
#include <iopt/table/list_runs.hpp>

#include <cstdint>
#include <random>
#include <vector>

namespace {

using namespace iopt;
using detail::accepted_targets;
using detail::vector_width;

std::vector<vector_width> widths_here() {
  std::vector<vector_width> widths{vector_width::scalar};
  if (detail::best_vector_width() >= vector_width::avx2)
    widths.push_back(vector_width::avx2);
  if (detail::best_vector_width() >= vector_width::avx512)
    widths.push_back(vector_width::avx512);
  return widths;
}

// A caller's check that accepts exactly the targets in `ok`.
struct bounded_check {
  detail::accepted_targets ok;
  status operator()(std::uint64_t, std::uint64_t) const noexcept { return status::ok; }
  detail::accepted_targets accepted_targets() const noexcept { return ok; }
};

template <class Format, unsigned PageShift>
struct case_of {
  using format = format_traits<Format>;
  using runs = detail::list_runs<format, PageShift>;
  static constexpr std::uint64_t page = std::uint64_t{1} << PageShift;

  std::mt19937_64 rng{PageShift * 31 + format::read_bit};
  std::uint64_t next(std::uint64_t bound) {
    return std::uniform_int_distribution<std::uint64_t>(0, bound - 1)(rng);
  }

  // A value of every kind the screen must tell apart: empty, target
  // without permission, mappings inside, at the edges of and outside the
  // accepted targets, stray bits below the page, bits past the format's
  // address mask, write-only (normalized to read-write where the format
  // says so).
  std::uint64_t value(accepted_targets ok) {
    const std::uint64_t perm = format::read_bit << next(2) | (next(2) ? format::write_bit : 0);
    const std::uint64_t inside = ok.first + next((ok.last - ok.first) / page + 1) * page;
    switch (next(12)) {
    case 0: return 0;
    case 1: return inside; // no permission
    case 2: return (ok.last + page) | perm;
    case 3: return (ok.first - page) | perm;
    case 4: return ok.first | perm;
    case 5: return ok.last | perm;
    case 6: return inside | perm | 0x800; // stray bit (below every page size here)
    case 7: return inside | perm | ~format::address_mask;
    case 8: return inside | format::write_bit;
    default: return inside | perm;
    }
  }

  // The screen's rule, one value at a time: chunks of eight while no run
  // may start and every value passes the format's check and maps, if
  // anything, inside `ok`.
  template <bool Swapped>
  std::size_t expected_screen(const std::vector<std::uint64_t>& list, accepted_targets ok,
                              std::size_t& first_set, std::size_t& last_set) {
    std::size_t i = 0;
    for (; list.size() - i >= 8; i += 8) {
      if (runs::template run_may_start<Swapped>(list.data() + i, list.size() - i))
        break;
      bool good = true;
      for (std::size_t k = 0; k < 8; ++k) {
        const std::uint64_t v = detail::swapped_if<Swapped>(list[i + k]);
        const std::uint64_t t = format::target(v, PageShift);
        good = good && format::check(v, PageShift) == status::ok &&
               (!format::is_present(v) || (ok.first <= t && t <= ok.last));
      }
      if (!good)
        break;
      for (std::size_t k = 0; k < 8; ++k)
        if (format::normalize(detail::swapped_if<Swapped>(list[i + k])) != 0) {
          first_set = std::min(first_set, i + k);
          last_set = i + k;
        }
    }
    return i;
  }

  template <bool Swapped>
  void screen_agrees() {
    for (int round = 0; round < 300; ++round) {
      CAPTURE(round);
      const std::uint64_t first = (next(1 << 20) + 1) * page;
      const accepted_targets ok{first, first + next(1 << 16) * page};
      // Lists where bad values are rare, so that screens go on for a while,
      // and lists that are all bad.
      std::vector<std::uint64_t> list(next(80));
      const bool mostly_good = round % 3 != 0;
      for (auto& v : list) {
        const std::uint64_t plain =
            (ok.first + next((ok.last - ok.first) / page + 1) * page) | format::permission_bits;
        v = detail::swapped_if<Swapped>(mostly_good && next(20) != 0 ? plain : value(ok));
      }
      if (round % 7 == 0 && list.size() > 20) // a run from index 16
        for (std::size_t k = 16; k < list.size(); ++k)
          list[k] = detail::swapped_if<Swapped>((ok.first + (k - 16) * page) | format::read_bit);
      std::size_t want_first = SIZE_MAX, want_last = 0;
      const std::size_t want = expected_screen<Swapped>(list, ok, want_first, want_last);
      for (const vector_width width : widths_here()) {
        CAPTURE(static_cast<int>(width));
        std::size_t got_first = SIZE_MAX, got_last = 0;
        const std::size_t got = runs::template screen<Swapped>(
            list.data(), list.size(), bounded_check{ok}, width, got_first, got_last);
        if (width == vector_width::scalar) {
          CHECK(got == 0); // no quick look without vectors
          continue;
        }
        REQUIRE(got == want);
        CHECK(got_first == want_first);
        if (want_first != SIZE_MAX)
          CHECK(got_last == want_last);
      }
    }
  }

  template <bool Swapped>
  void store_agrees() {
    constexpr std::uint64_t guard = 0x5a5a'5a5a'5a5a'5a5a;
    const accepted_targets ok{page, page << 20};
    for (const vector_width width : widths_here())
      for (std::size_t offset = 0; offset < 8; ++offset)
        for (std::size_t n = 0; n <= 48; ++n) {
          CAPTURE(static_cast<int>(width));
          CAPTURE(offset);
          CAPTURE(n);
          std::vector<std::uint64_t> src(n);
          for (auto& v : src)
            v = detail::swapped_if<Swapped>(value(ok));
          alignas(64) std::uint64_t dst[64];
          std::fill(std::begin(dst), std::end(dst), guard);
          runs::template store_normalized<Swapped>(dst + offset, src.data(), n, width);
          for (std::size_t k = 0; k < 64; ++k) {
            const bool written = k >= offset && k < offset + n;
            const std::uint64_t want = written ? format::to_memory(format::normalize(
                                                     detail::swapped_if<Swapped>(src[k - offset])))
                                               : guard;
            REQUIRE(dst[k] == want);
          }
        }
  }

  void run() {
    screen_agrees<true>();
    screen_agrees<false>();
    store_agrees<true>();
    store_agrees<false>();
  }
};

} // namespace

TEST_CASE("list screen and bulk store agree with the format, value by value") {
  SUBCASE("hardware TCEs, 4 KiB") { case_of<hardware_tce, 12>{}.run(); }
  SUBCASE("hardware TCEs, 64 KiB") { case_of<hardware_tce, 16>{}.run(); }
  SUBCASE("hardware TCEs, 16 MiB") { case_of<hardware_tce, 24>{}.run(); }
  SUBCASE("guest TCEs, 4 KiB") { case_of<guest_tce, 12>{}.run(); }
  SUBCASE("example format, 64 KiB") { case_of<example_format, 16>{}.run(); }
}

TEST_CASE("normalize is seen as XOR masks on the permission bits") {
  using hw = detail::list_runs<format_traits<hardware_tce>, 12>;
  CHECK(hw::fix_count == 1); // write-only becomes read-write
  CHECK(hw::fixes[0].from == hardware_tce::write_bit);
  CHECK(hw::fixes[0].flip == hardware_tce::read_bit);
  CHECK(hw::only_zero_normalizes_to_zero);
  using guest = detail::list_runs<format_traits<guest_tce>, 12>;
  CHECK(guest::fix_count == 0);
}
