// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// Runs in lists of TCE values: how a table takes a guest's list (an
// H_PUT_TCE_INDIRECT page, a put_list call) in bulk where it can.
//
// A run is a present value followed by the values of the next pages (each
// target one page on, the same permission bits), or a value that maps nothing
// repeated. Lists are read list_stride values at a time: when the values
// from list[0] form a run that reaches list[list_stride], run_at gives its
// length and the run is checked and written in bulk; otherwise it gives 0 and
// the next list_stride values are taken one by one. So any run of
// 2 * list_stride values or more goes in bulk from at most list_stride - 1
// values into it, and a list of unrelated pages costs one compare per
// list_stride values. A list may be stored byte-reversed (a guest's
// big-endian list read in place): Swapped says so.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include <iopt/settings.hpp>
#include <iopt/status.hpp>
#include <iopt/table/bulk_entries.hpp>
#include <iopt/table/walk.hpp>

namespace iopt::detail {

// Format is the table's format_traits; PageShift its IOMMU page shift.
template <class Format, unsigned PageShift>
struct list_runs {
  static constexpr std::uint64_t page_bytes = std::uint64_t{1} << PageShift;
  static constexpr std::size_t list_stride = 8;

  // The step from one value of a run to the next: a page for a present value
  // (its target moves on), none for a value that maps nothing.
  static constexpr std::uint64_t run_step(std::uint64_t value) noexcept {
    return Format::is_present(value) ? page_bytes : 0;
  }
  // How many pages a run starting at value's target can hold before it would
  // pass the last page of the 64-bit space (at least 1).
  static constexpr std::uint64_t pages_to_top(std::uint64_t value) noexcept {
    return ((UINT64_MAX - Format::target(value, PageShift)) >> PageShift) + 1;
  }

  // Stores value, value + step, ... into n entries from dst, in memory form.
  IOPT_ALWAYS_INLINE static void store_values(std::uint64_t* dst, std::size_t n,
                                              std::uint64_t value, std::uint64_t step) noexcept {
    store_run<Format::memory_swaps_bytes>(dst, n, value, step);
  }
  // How many of the n entries from src hold value, value + step, ...
  IOPT_ALWAYS_INLINE static std::size_t match_values(const std::uint64_t* src, std::size_t n,
                                                     std::uint64_t value,
                                                     std::uint64_t step) noexcept {
    return match_run<Format::memory_swaps_bytes>(src, n, value, step);
  }

  // The length of the run that starts at list[0] when it reaches
  // list[list_stride], else 0.
  template <bool Swapped>
  IOPT_ALWAYS_INLINE static std::size_t run_at(const std::uint64_t* list, std::size_t n) noexcept {
    if (n <= list_stride)
      return 0;
    const std::uint64_t value = swapped_if<Swapped>(list[0]);
    if (list[list_stride] != swapped_if<Swapped>(value + list_stride * run_step(value)))
      return 0;
    return run_length<Swapped>(list, n, value); // at least 1, even if list[1] breaks the run
  }
  template <bool Swapped>
  static std::size_t run_length(const std::uint64_t* list, std::size_t n,
                                std::uint64_t value) noexcept {
    const std::uint64_t step = run_step(value);
    if (step != 0)
      n = static_cast<std::size_t>(std::min<std::uint64_t>(n, pages_to_top(value)));
    return 1 + match_run<Swapped>(list + 1, n - 1, value + step, step);
  }

  // The format's check of every value of a run, then the caller's check of
  // the run. A run's permission bits are all alike and its targets rise
  // without wrapping, so its first and last values stand for the rest unless
  // the run leaves the format's address bits part way, which is taken one
  // value at a time to find the first bad one.
  template <bool Swapped, class Check>
  static status check_run(const std::uint64_t* run, std::size_t n, Check& check) noexcept {
    const std::uint64_t head = swapped_if<Swapped>(run[0]);
    if (const status s = Format::check(head, PageShift); IOPT_UNLIKELY(s != status::ok))
      return s;
    if (IOPT_UNLIKELY(Format::check(swapped_if<Swapped>(run[n - 1]), PageShift) != status::ok))
      return check_each<Swapped>(run, check);
    return check(head, std::uint64_t{n});
  }
  template <class Check>
  IOPT_ALWAYS_INLINE static status check_one(std::uint64_t value, Check& check) noexcept {
    if (const status s = Format::check(value, PageShift); IOPT_UNLIKELY(s != status::ok))
      return s;
    return check(value, std::uint64_t{1});
  }
  template <bool Swapped, class Check>
  IOPT_COLD static status check_each(const std::uint64_t* run, Check& check) noexcept {
    for (std::size_t k = 0;; ++k) // the run's last value fails, so this returns
      if (const status s = check_one(swapped_if<Swapped>(run[k]), check); s != status::ok)
        return s;
  }
  static constexpr auto no_check = [](std::uint64_t, std::uint64_t) noexcept { return status::ok; };

  // Checks every value of a list (see check_run) and finds the part of it
  // that maps anything: [first_set, last_set] index the first and the last
  // value that does not normalize to empty (first_set > last_set when none
  // does), so that levels are needed only there.
  struct checked_list {
    status result = status::ok;
    std::size_t first_set = SIZE_MAX;
    std::size_t last_set = 0;
    [[nodiscard]] bool maps_nothing() const noexcept { return first_set > last_set; }
  };
  template <bool Swapped, class Check>
  static checked_list check_list(const std::uint64_t* list, std::size_t size,
                                 Check& check) noexcept {
    checked_list out;
    auto note_set = [&out](std::size_t from, std::size_t to) noexcept {
      out.first_set = std::min(out.first_set, from);
      out.last_set = std::max(out.last_set, to);
    };
    for (std::size_t i = 0; i < size;) {
      if (const std::size_t n = run_at<Swapped>(list + i, size - i); n != 0) {
        if (const status s = check_run<Swapped>(list + i, n, check);
            IOPT_UNLIKELY(s != status::ok)) {
          out.result = s;
          return out;
        }
        if (Format::normalize(swapped_if<Swapped>(list[i])) != 0)
          note_set(i, i + n - 1);
        i += n;
      } else {
        for (const std::size_t end = std::min(size, i + list_stride); i < end; ++i) {
          const std::uint64_t value = swapped_if<Swapped>(list[i]);
          if (const status s = check_one(value, check); IOPT_UNLIKELY(s != status::ok)) {
            out.result = s;
            return out;
          }
          if (Format::normalize(value) != 0)
            note_set(i, i);
        }
      }
    }
    return out;
  }

  // Writes normalized values from a checked list: long runs in bulk, other
  // values one by one. Where a level is missing, the list maps nothing (the
  // caller made levels exist under every value that maps anything), so the
  // walk skips it.
  template <bool Swapped>
  struct list_writer {
    const std::uint64_t* next; // the list holds exactly the walked entries

    IOPT_ALWAYS_INLINE bool leaf(std::uint64_t* block, std::size_t lo, std::size_t hi,
                                 std::uint64_t) noexcept {
      for (std::size_t i = lo; i <= hi;) {
        if (const std::size_t n = run_at<Swapped>(next, hi - i + 1); n != 0) {
          // normalize changes only permission bits, so a run stays a run.
          const std::uint64_t value = Format::normalize(swapped_if<Swapped>(*next));
          store_values(block + i, n, value, run_step(value));
          next += n;
          i += n;
        } else {
          for (const std::size_t end = std::min(hi + 1, i + list_stride); i < end; ++i)
            store_entry(block[i],
                        Format::to_memory(Format::normalize(swapped_if<Swapped>(*next++))));
        }
      }
      return true;
    }
    template <unsigned Level>
    on_missing missing(std::uint64_t&, std::uint64_t first, std::uint64_t last) noexcept {
      next += last - first + 1;
      return on_missing::skip;
    }
  };
};

} // namespace iopt::detail
