// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// Table configuration and the geometry derived from it.
//
// A configuration is a small struct of policies. Required members:
//
//   using format = ...;            a TCE format (format/tce_format.hpp)
//   using page_size = ...;         page_size<Shift> (addr/page_size.hpp)
//   static constexpr std::array<unsigned, N> level_bits{...};
//                                  log2 of the entries per level, from the
//                                  leaf (level 0) up; the last one is the
//                                  *largest* top level. 1 <= N <= 5.
// Optional members (defaults in table_traits):
//   using allocator = ...;         level_allocator; default heap_allocator
//   static constexpr bool levels_on_demand;      default true: only the top
//                                  level exists at creation; false allocates
//                                  every level when the table is made
//   static constexpr bool hardware_index_limit;  default false: when true,
//                                  refuse windows whose index bits plus the
//                                  page shift reach 55 (the IODA2 limit)
//   static constexpr bool free_empty_levels;     default false: when true, a
//                                  clear that leaves a lower block empty gives
//                                  its memory back (clear must then not run
//                                  concurrently with other operations)
//
// Everything else — how many page-index bits each level consumes, the largest
// window, the masks — is derived here at compile time. The top level is sized
// for the window at run time: a 128 TiB window does not pay for the largest
// top level the configuration allows.
#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>

#include <iopt/addr/page_size.hpp>
#include <iopt/format/tce_format.hpp>
#include <iopt/format/traits.hpp>
#include <iopt/table/allocator.hpp>

namespace iopt {

// The hardware rule of IODA2 PHBs: index bits of all levels plus the page
// shift must stay below this.
inline constexpr unsigned hardware_index_limit_bits = 55;
inline constexpr std::size_t max_table_levels = 5;

namespace detail {
template <class C>
struct allocator_of {
  using type = heap_allocator;
};
template <class C>
requires requires { typename C::allocator; }
struct allocator_of<C> {
  using type = typename C::allocator;
};
} // namespace detail

template <class C>
struct table_traits {
  static_assert(
      requires { typename C::format; }, "table config: 'using format = ...' is missing");
  static_assert(tce_format<typename C::format>,
                "table config: 'format' is not a TCE format (see format/tce_format.hpp)");
  static_assert(
      requires { typename C::page_size; },
      "table config: 'using page_size = page_size<Shift>' is missing");
  static_assert(
      requires { C::page_size::page_shift; },
      "table config: 'page_size' must be a compile-time page_size<Shift>");
  static_assert(
      requires {
        C::level_bits.size();
        C::level_bits[0];
      },
      "table config: 'static constexpr std::array<unsigned, N> level_bits' is missing");

  using format = typename C::format;
  using page_size = typename C::page_size;

  using allocator = typename detail::allocator_of<C>::type;
  static_assert(level_allocator<allocator>,
                "table config: 'allocator' is not a level_allocator (see table/allocator.hpp)");

  static constexpr bool levels_on_demand = [] {
    if constexpr (requires { C::levels_on_demand; })
      return static_cast<bool>(C::levels_on_demand);
    else
      return true;
  }();
  static constexpr bool hardware_index_limit = [] {
    if constexpr (requires { C::hardware_index_limit; })
      return static_cast<bool>(C::hardware_index_limit);
    else
      return false;
  }();
  static constexpr bool free_empty_levels = [] {
    if constexpr (requires { C::free_empty_levels; })
      return static_cast<bool>(C::free_empty_levels);
    else
      return false;
  }();
};

template <class C>
struct table_geometry {
  using traits = table_traits<C>;

  static constexpr unsigned page_shift = traits::page_size::page_shift;
  static constexpr unsigned levels = static_cast<unsigned>(C::level_bits.size());
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
  static constexpr std::uint64_t slot_mask(unsigned level) noexcept {
    return (std::uint64_t{1} << bits(level)) - 1;
  }
  // Page indices covered by one slot of `level`, minus one.
  static constexpr std::uint64_t slot_span_mask(unsigned level) noexcept {
    return (std::uint64_t{1} << index_shift(level)) - 1;
  }
  static constexpr std::size_t block_entries(unsigned level) noexcept {
    return std::size_t{1} << bits(level);
  }
  static constexpr std::size_t block_bytes(unsigned level) noexcept {
    return block_entries(level) * sizeof(std::uint64_t);
  }

  // The largest window, as log2 of pages and of bytes.
  static constexpr unsigned max_entries_bits = index_shift(levels);
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
  // Entries of the top level for a window of 2^entries_bits pages.
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
