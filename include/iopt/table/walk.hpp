// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// The one walk over a multi-level TCE table that every range operation uses.
//
// A table is a tree of blocks. A block of a lower level holds 2^bits entries;
// an entry of a level above the leaves is *indirect*: it holds the address of
// the block below it OR'd with the format's read and write bits as its
// present mark, stored in the format's memory byte order, exactly like a leaf
// TCE. A zero indirect entry means the level below does not exist yet.
//
// `walk<Level>(block, first, last, visitor)` visits the page indices [first,
// last] (inclusive, relative to the window start, so nothing ever wraps) below
// `block`. The level is a template parameter, so every shift and mask is a
// constant and the recursion unrolls. It keeps its position: it goes down once
// per leaf block and hands the visitor a whole run of leaf entries at a time.
//
// A visitor supplies:
//   `bool leaf(std::uint64_t* block, std::size_t lo, std::size_t hi, std::uint64_t first)`
//        entries lo..hi (inclusive) of a leaf block; `first` is the page index
//        of entry lo. Return false to stop the walk.
//   `template <unsigned Level> on_missing missing(std::uint64_t& entry,`
//        `std::uint64_t first, std::uint64_t last)`
//        the indirect `entry` of `Level` that covers [first, last] is empty:
//        skip it, stop the walk, or descend (the visitor installed a block).
//   `template <unsigned Level> void after_child(std::uint64_t& entry, std::uint64_t* child)`
//        optional; called after the walk below `entry` returns.
//   `static constexpr bool whole_gaps = true;`
//        optional; says that missing() never descends and takes [first, last]
//        as a whole. The walker then finds a stretch of consecutive empty
//        entries with one vector scan and hands it over in one call, with
//        `entry` the first of them: sparse tables are read at the speed of
//        memory, not one indirect entry at a time.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include <iopt/format/traits.hpp>
#include <iopt/settings.hpp>
#include <iopt/table/bulk_entries.hpp>
#include <iopt/table/geometry.hpp>

namespace iopt::detail {

// Entries are read and written as atomics so that a concurrent reader never
// sees a torn entry. Relaxed order is enough for leaf entries (they carry no
// data a reader then dereferences); indirect entries are published with
// release and read with acquire, because a reader follows them into a block
// whose zero fill must be visible.
IOPT_ALWAYS_INLINE std::uint64_t
load_entry(const std::uint64_t& e, std::memory_order order = std::memory_order_relaxed) noexcept {
  return std::atomic_ref<std::uint64_t>(const_cast<std::uint64_t&>(e)).load(order); // NOLINT
}
IOPT_ALWAYS_INLINE void store_entry(std::uint64_t& e, std::uint64_t v) noexcept {
  std::atomic_ref<std::uint64_t>(e).store(v, std::memory_order_relaxed);
}
IOPT_ALWAYS_INLINE std::uint64_t exchange_entry(std::uint64_t& e, std::uint64_t v) noexcept {
  return std::atomic_ref<std::uint64_t>(e).exchange(v, std::memory_order_acq_rel);
}

// Blocks referenced by indirect entries are aligned to at least this, so the
// low bits are free for any format's permission bits (which lie below 4096).
inline constexpr std::size_t min_indirect_alignment = 4096;

enum class on_missing : std::uint8_t { skip, stop, descend };

template <class Config>
struct walker {
  using geometry = table_geometry<Config>;
  using fmt = format_traits<typename table_traits<Config>::format>;

  static std::uint64_t encode_indirect(const std::uint64_t* block) noexcept {
    return fmt::to_memory(reinterpret_cast<std::uintptr_t>(block) | fmt::permission_bits);
  }
  // Only encode_indirect writes indirect entries, so the low bits of one
  // are exactly the permission bits: subtracting them (rather than masking)
  // folds into the address of the load that follows.
  IOPT_ALWAYS_INLINE static std::uint64_t* decode_indirect(std::uint64_t raw) noexcept {
    return reinterpret_cast<std::uint64_t*>(fmt::from_memory(raw) - fmt::permission_bits);
  }

  // The slot of `Level` that holds page index `page`. The top level is sized
  // for the window, so its slot needs no mask.
  template <unsigned Level>
  IOPT_ALWAYS_INLINE static constexpr std::size_t slot(std::uint64_t page) noexcept {
    if constexpr (Level == geometry::top)
      return static_cast<std::size_t>(page >> geometry::index_shift(Level));
    else
      return static_cast<std::size_t>((page >> geometry::index_shift(Level)) &
                                      geometry::slot_mask(Level));
  }

  template <unsigned Level, class Visitor>
  IOPT_ALWAYS_INLINE static bool walk(std::uint64_t* block, std::uint64_t first, std::uint64_t last,
                                      Visitor& v) {
    if constexpr (Level == 0) {
      return v.leaf(block, slot<0>(first), slot<0>(last), first);
    } else {
      for (std::uint64_t page = first;;) {
        std::uint64_t sub_last = std::min(last, page | geometry::slot_span_mask(Level));
        std::uint64_t& entry = block[slot<Level>(page)];
        std::uint64_t raw = load_entry(entry, std::memory_order_acquire);
        if (raw == 0) {
          if constexpr (requires { requires Visitor::whole_gaps; }) {
            // The empty entries that follow, up to the one that holds `last`
            // (zero is zero in either byte order).
            const std::size_t here = slot<Level>(page);
            const std::size_t more = match_run<false>(&entry + 1, slot<Level>(last) - here, 0, 0);
            sub_last =
                std::min(last, sub_last + (std::uint64_t{more} << geometry::index_shift(Level)));
          }
          const on_missing action = v.template missing<Level>(entry, page, sub_last);
          if (action == on_missing::stop)
            return false;
          if (action == on_missing::descend)
            raw = load_entry(entry, std::memory_order_acquire);
        }
        if (raw != 0) {
          std::uint64_t* child = decode_indirect(raw);
          if (!walk<Level - 1>(child, page, sub_last, v))
            return false;
          if constexpr (requires { v.template after_child<Level>(entry, child); })
            v.template after_child<Level>(entry, child);
        }
        if (sub_last == last)
          return true;
        page = sub_last + 1;
      }
    }
  }

  // The leaf entry of one page, or nullptr where a level is missing: the
  // single-entry operations' descent, with no loop to run.
  template <unsigned Level>
  IOPT_ALWAYS_INLINE static std::uint64_t* leaf_entry(std::uint64_t* block,
                                                      std::uint64_t page) noexcept {
    std::uint64_t* const entry = block + slot<Level>(page);
    if constexpr (Level == 0) {
      if (entry == nullptr) // never: saying so spares the callers a test
        __builtin_unreachable();
      return entry;
    } else {
      const std::uint64_t raw = load_entry(*entry, std::memory_order_acquire);
      if (IOPT_UNLIKELY(raw == 0))
        return nullptr;
      return leaf_entry<Level - 1>(decode_indirect(raw), page);
    }
  }
};

// A mixin for visitors that write a range whose levels were made to exist
// beforehand: a missing level cannot happen there.
struct prepared_writer {
  template <unsigned Level>
  on_missing missing(std::uint64_t&, std::uint64_t, std::uint64_t) noexcept {
    IOPT_ASSERT(false && "levels were ensured before writing");
    return on_missing::stop;
  }
};

} // namespace iopt::detail
