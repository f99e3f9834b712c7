// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// The geometry derived from a table configuration (table/table_config.hpp).
//
// Everything but the policies — how many page-index bits each level consumes,
// the largest window, the masks, the block sizes — is derived here at compile
// time. The top level is sized for the window at run time: a 128 TiB window
// does not pay for the largest top level the configuration allows.
#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>

#include <iopt/table/table_config.hpp>

namespace iopt {

// The shape of the tables of configuration C, derived at compile time:
// levels, index bits, masks, block sizes; the top level is sized per window.
template <class C>
struct table_geometry {
  // C's members with the optional ones defaulted.
  using traits = table_traits<C>;

  // log2 of the IOMMU page size in bytes.
  static constexpr unsigned page_shift = traits::page_size::page_shift;
  // How many levels a table has (1 to max_table_levels).
  static constexpr unsigned levels = static_cast<unsigned>(C::level_bits.size());
  // The number of the top level; the leaves are level 0.
  static constexpr unsigned top = levels - 1;

  static_assert(levels >= 1 && levels <= max_table_levels,
                "table config: level_bits must list between 1 and 5 levels");
  static_assert(
      [] {
        for (unsigned b : C::level_bits)
          if (b < 1 || b > 28)
            return false;
        return true;
      }(),
      "table config: every level must have between 2^1 and 2^28 entries (level_bits in [1, 28])");

  // Log2 of entries per level (for the top level, the largest allowed).
  static constexpr unsigned bits(unsigned level) noexcept { return C::level_bits[level]; }

  // How many low page-index bits the levels below `level` consume: the slot
  // of `level` for page index i is (i >> index_shift(level)) & mask.
  static constexpr unsigned index_shift(unsigned level) noexcept {
    unsigned s = 0;
    for (unsigned l = 0; l < level; ++l)
      s += bits(l);
    return s;
  }
  // Mask of the page-index bits that pick a slot of `level`, once shifted
  // down by index_shift(level).
  static constexpr std::uint64_t slot_mask(unsigned level) noexcept {
    return (std::uint64_t{1} << bits(level)) - 1;
  }
  // Page indices covered by one slot of `level`, minus one.
  static constexpr std::uint64_t slot_span_mask(unsigned level) noexcept {
    return (std::uint64_t{1} << index_shift(level)) - 1;
  }
  // Entries in one block of `level` (for the top level, the most it can have).
  static constexpr std::size_t block_entries(unsigned level) noexcept {
    return std::size_t{1} << bits(level);
  }
  // Bytes of one block of `level`: 8 per entry.
  static constexpr std::size_t block_bytes(unsigned level) noexcept {
    return block_entries(level) * sizeof(std::uint64_t);
  }

  // The largest window, as log2 of its pages.
  static constexpr unsigned max_entries_bits = index_shift(levels);
  // The same, as log2 of its bytes.
  static constexpr unsigned max_window_shift = max_entries_bits + page_shift;
  static_assert(max_window_shift <= 63,
                "table config: levels and page size together index more than 2^63 bytes");

  // Bits of the page index the levels below the top always consume; a window
  // smaller than that still has a one-entry top level over full-size blocks.
  static constexpr unsigned lower_bits = index_shift(top);

  // Index bits the hardware sees for a window of 2^entries_bits pages.
  static constexpr unsigned hardware_index_bits(unsigned entries_bits) noexcept {
    return entries_bits > lower_bits ? entries_bits : lower_bits;
  }
  // log2 of the top level's entries for a window of 2^entries_bits pages
  // (0, a single entry, when the levels below cover the window).
  static constexpr unsigned top_bits(unsigned entries_bits) noexcept {
    return entries_bits > lower_bits ? entries_bits - lower_bits : 0;
  }
  // Bytes of that top level (it is allocated aligned to its size).
  static constexpr std::size_t top_block_bytes(unsigned entries_bits) noexcept {
    return (std::size_t{1} << top_bits(entries_bits)) * sizeof(std::uint64_t);
  }
  // The largest block a window of 2^entries_bits pages ever allocates.
  static constexpr std::size_t largest_block_bytes(unsigned entries_bits) noexcept {
    std::size_t largest = top_block_bytes(entries_bits);
    for (unsigned level = 0; level < top; ++level)
      largest = largest > block_bytes(level) ? largest : block_bytes(level);
    return largest;
  }
};

} // namespace iopt
