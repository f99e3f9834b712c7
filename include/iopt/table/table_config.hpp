// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// The table configuration concept: a configuration is a small struct of
// policies, one per axis (table/example_config.hpp documents each member in
// a working example; configs.hpp names the ready ones).
//
// Required members:
//   using format = ...;            a TCE format (format/tce_format.hpp)
//   using page_size = ...;         page_size<Shift> (addr/page_size.hpp)
//   static constexpr std::array<unsigned, N> level_bits{...};
//                                  log2 of the entries per level, from the
//                                  leaf (level 0) up; the last one is the
//                                  *largest* top level (a window smaller than
//                                  the levels can index gets a smaller top).
//                                  1 <= N <= 5, each in [1, 28], and the
//                                  index bits plus the page shift at most 63.
// Optional members (defaults in table_traits):
//   using allocator = ...;         a block_allocator (table/allocator.hpp);
//                                  default heap_allocator
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
// table_config<C> says whether C is one. A table instantiated with something
// that is not fails with one static_assert per broken requirement, each
// naming it (table_traits below).
#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>

#include <iopt/addr/page_size.hpp>
#include <iopt/format/guest_tce.hpp>
#include <iopt/format/tce_format.hpp>
#include <iopt/format/traits.hpp>
#include <iopt/table/allocator.hpp>

namespace iopt {

// The hardware rule of IODA2 PHBs: index bits of all levels plus the page
// shift must stay below this.
inline constexpr unsigned hardware_index_limit_bits = 55;
// The most levels a table may have (level_bits holds 1 to this many).
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

namespace detail {
template <class C>
constexpr bool levels_are_valid() noexcept {
  if (C::level_bits.size() < 1 || C::level_bits.size() > max_table_levels)
    return false;
  unsigned index_bits = 0;
  for (unsigned b : C::level_bits) {
    if (b < 1 || b > 28)
      return false;
    index_bits += b;
  }
  return index_bits + C::page_size::page_shift <= 63;
}
} // namespace detail

// Whether C is a table configuration: every required member present and
// valid, and its allocator, if it names one, a block_allocator.
template <class C>
concept table_config = requires {
  typename C::format;
  typename C::page_size;
  { C::page_size::page_shift } -> std::convertible_to<unsigned>;
  C::level_bits.size();
  { C::level_bits[0] } -> std::convertible_to<unsigned>;
}
&&tce_format<typename C::format>&& block_allocator<typename detail::allocator_of<C>::type>&&
detail::levels_are_valid<C>();

// What a table reads from configuration C: its required members, and the
// optional ones with their defaults filled in. Instantiating it with a broken
// configuration names each broken requirement in a static_assert.
template <class C>
struct table_traits {
  static_assert(
      requires { typename C::format; }, "table config: 'using format = ...' is missing");
  static_assert(
      !requires { &C::format::to_memory; } || detail::keeps_or_reverses_bytes<typename C::format>(),
      "table config: the format's to_memory must be constexpr and either keep the bytes "
      "of a value or reverse them (see format/tce_format.hpp)");
  static_assert(
      !requires { &C::format::read_bit; } ||
          detail::normalizes_permissions_only<typename C::format>(),
      "table config: the format's normalize must be constexpr and change only the permission "
      "bits, as a function of them (see format/tce_format.hpp)");
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

  // The configuration's TCE format.
  using format = typename C::format;
  // The configuration's page size, a page_size<Shift>.
  using page_size = typename C::page_size;

  // Where level blocks come from: C::allocator, else heap_allocator.
  using allocator = typename detail::allocator_of<C>::type;
  static_assert(block_allocator<allocator>,
                "table config: 'allocator' is not a block_allocator (see table/allocator.hpp)");

  // True (the default) when lower levels are allocated as entries below them
  // are first set; false when all are allocated with the table.
  static constexpr bool levels_on_demand = [] {
    if constexpr (requires { C::levels_on_demand; })
      return static_cast<bool>(C::levels_on_demand);
    else
      return true;
  }();
  // Whether windows must keep index bits plus page shift below
  // hardware_index_limit_bits; default false.
  static constexpr bool hardware_index_limit = [] {
    if constexpr (requires { C::hardware_index_limit; })
      return static_cast<bool>(C::hardware_index_limit);
    else
      return false;
  }();
  // Whether a clear gives back the lower blocks it empties; default false.
  // When true, clears must not run concurrently with other operations.
  static constexpr bool free_empty_levels = [] {
    if constexpr (requires { C::free_empty_levels; })
      return static_cast<bool>(C::free_empty_levels);
    else
      return false;
  }();
};

// The same configuration with its entries kept in the guest's format
// (native order, the guest's value verbatim): the table a hypervisor keeps
// for a guest's window, or the shadow of user addresses a DMA window keeps
// beside its hardware table. Hardware never reads it, so the hardware index
// limit does not apply.
template <class Config>
struct in_guest_format : Config {
  // Native byte order, the guest's TCE values kept verbatim.
  using format = guest_tce;
  // Off: no hardware walks this table.
  static constexpr bool hardware_index_limit = false;
};

} // namespace iopt
