// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// The walk visitor that reads a table's entries back as mapped runs
// (table/mappings.hpp): consecutive present entries with contiguous targets
// and equal permissions make one run, handed to on_run when it ends. It skips
// missing levels and stretches of empty entries at the speed of a memory
// scan, so reading a table back costs its allocated levels plus its set
// entries, never the window size.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <iopt/addr/address.hpp>
#include <iopt/settings.hpp>
#include <iopt/table/list_runs.hpp>
#include <iopt/table/mappings.hpp>
#include <iopt/table/walk.hpp>

namespace iopt::detail {

// Format is the table's format_traits, PageShift its IOMMU page shift.
// on_run(const mapped_run&) may return false to stop the walk.
template <class Format, unsigned PageShift, class OnRun>
struct run_collector {
  using runs = list_runs<Format, PageShift>;
  static constexpr std::uint64_t page_bytes = runs::page_bytes;
  static constexpr bool whole_gaps = true;

  std::uint64_t bus_offset; // the window's first bus address
  OnRun& on_run;
  mapped_run run{};
  std::uint64_t expected = 0; // the value that would extend the run; 0 never does
  bool active = false;

  // Hands the active run on; false when on_run asks to stop.
  bool emit() {
    active = false;
    if constexpr (std::is_void_v<decltype(on_run(run))>) {
      on_run(run);
      return true;
    } else {
      return static_cast<bool>(on_run(run));
    }
  }
  static std::uint64_t successor(std::uint64_t value) noexcept {
    // A run cannot continue past the last page of the 64-bit space.
    return runs::pages_to_top(value) == 1 ? 0 : value + page_bytes;
  }

  IOPT_ALWAYS_INLINE bool leaf(std::uint64_t* block, std::size_t lo, std::size_t hi,
                               std::uint64_t first) {
    std::size_t i = lo;
    while (i <= hi) {
      if (active) {
        i = extend(block, i, hi);
        if (i > hi)
          return true; // the run may go on in the next block
        if (!emit())
          return false;
      }
      i = skip_empty(block, i, hi);
      if (i > hi)
        return true;
      const std::uint64_t value = Format::from_memory(load_entry(block[i]));
      if (Format::is_present(value)) {
        run = mapped_run{ioba{bus_offset + ((first + (i - lo)) << PageShift)},
                         Format::target(value, PageShift), 1, Format::permissions(value)};
        expected = successor(value);
        active = true;
      }
      ++i;
    }
    return true;
  }

  // Extends the active run over entries i.. that continue it; returns the
  // first entry that does not. A run stops short of passing 2^64.
  IOPT_ALWAYS_INLINE std::size_t extend(const std::uint64_t* block, std::size_t i, std::size_t hi) {
    if (expected == 0)
      return i;
    const std::uint64_t room = runs::pages_to_top(expected);
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(hi - i + 1, room));
    const std::size_t k = runs::match_values(block + i, n, expected, page_bytes);
    run.pages += k;
    expected = k == room ? 0 : expected + k * page_bytes;
    return i + k;
  }

  static IOPT_ALWAYS_INLINE std::size_t skip_empty(const std::uint64_t* block, std::size_t i,
                                                   std::size_t hi) noexcept {
    return i + runs::match_values(block + i, hi - i + 1, 0, 0);
  }

  template <unsigned Level>
  on_missing missing(std::uint64_t&, std::uint64_t, std::uint64_t) {
    if (active && !emit())
      return on_missing::stop;
    return on_missing::skip;
  }
};

} // namespace iopt::detail
