// Bulk writes and scans of entry runs: every width the processor has, both
// byte orders, every alignment of the start, lengths around every vector
// boundary, and a mismatch at every position, against a plain loop.
#include <doctest/doctest.h>

#include <iopt/table/bulk_entries.hpp>

#include <array>
#include <cstdint>
#include <vector>

namespace {

using namespace iopt;
using detail::vector_width;

std::vector<vector_width> widths_here() {
  std::vector<vector_width> widths{vector_width::scalar};
  if (detail::best_vector_width() >= vector_width::avx2)
    widths.push_back(vector_width::avx2);
  if (detail::best_vector_width() >= vector_width::avx512)
    widths.push_back(vector_width::avx512);
  return widths;
}

template <bool Swap>
std::uint64_t form(std::uint64_t v) {
  return Swap ? __builtin_bswap64(v) : v;
}

constexpr std::size_t slots = 160;
constexpr std::uint64_t guard = 0x5a5a'5a5a'5a5a'5a5a;
constexpr std::uint64_t steps[] = {0, 0x1000, 0x1'0000, 0x100'0000};

} // namespace

TEST_CASE_TEMPLATE("store_run writes value + k * step in memory form and nothing else", Swapped,
                   std::true_type, std::false_type) {
  constexpr bool swap = Swapped::value;
  for (const vector_width width : widths_here()) {
    for (const std::uint64_t step : steps) {
      for (std::size_t at = 0; at < 9; ++at) {
        for (std::size_t n = 0; n + at + 1 < slots; n += (n < 40 ? 1 : 13)) {
          alignas(64) std::array<std::uint64_t, slots> block;
          block.fill(guard);
          // A value whose addition carries across bytes, so a lane mix-up shows.
          const std::uint64_t value = 0x00ff'fff0'00ff'f003 + at;
          detail::store_run<swap>(block.data() + at, n, value, step, width);
          for (std::size_t k = 0; k < slots; ++k) {
            const bool inside = k >= at && k < at + n;
            const std::uint64_t want = inside ? form<swap>(value + (k - at) * step) : guard;
            if (block[k] != want) {
              FAIL("width ", static_cast<int>(width), " step ", step, " at ", at, " n ", n,
                   " entry ", k);
            }
          }
        }
      }
    }
  }
}

TEST_CASE_TEMPLATE("match_run stops at the first entry that breaks the run", Swapped,
                   std::true_type, std::false_type) {
  constexpr bool swap = Swapped::value;
  for (const vector_width width : widths_here()) {
    for (const std::uint64_t step : steps) {
      for (std::size_t at = 0; at < 9; ++at) {
        const std::size_t n = 150; // two steps of eight vectors, then the rest
        alignas(64) std::array<std::uint64_t, slots> block{};
        const std::uint64_t value = 0xffff'ffff'ffff'0003 - at; // wraps inside the run
        for (std::size_t k = 0; k < n; ++k)
          block[at + k] = form<swap>(value + k * step);
        CHECK(detail::match_run<swap>(block.data() + at, n, value, step, width) == n);
        CHECK(detail::match_run<swap>(block.data() + at, 0, value, step, width) == 0);
        for (std::size_t bad = 0; bad < n; ++bad) {
          const std::uint64_t kept = block[at + bad];
          block[at + bad] ^= std::uint64_t{1} << (bad % 64); // one bit anywhere in the entry
          const std::size_t got = detail::match_run<swap>(block.data() + at, n, value, step, width);
          // A scan that ends before the bad entry sees a whole run.
          const std::size_t before =
              detail::match_run<swap>(block.data() + at, bad, value, step, width);
          block[at + bad] = kept;
          if (got != bad || before != bad)
            FAIL("width ", static_cast<int>(width), " step ", step, " at ", at, " bad ", bad,
                 " got ", got, " before ", before);
        }
      }
    }
  }
}
