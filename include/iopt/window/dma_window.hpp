// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// One DMA window as a container keeps it: the TCE table the device uses and,
// when the pinning strategy needs to know what to undo, a shadow table of
// the same geometry that holds, per entry, the user address that was mapped
// and the permissions asked for (the kernel's per-entry userspace array).
// Both tables allocate through a charging allocator, so the window is
// charged for the levels it really holds.
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>

#include <iopt/addr/address.hpp>
#include <iopt/prereg/accounting.hpp>
#include <iopt/status.hpp>
#include <iopt/table/tce_table.hpp>
#include <iopt/window/charging_allocator.hpp>

namespace iopt {

// Config with its table allocator replaced by Allocator.
template <class Config, class Allocator>
struct with_allocator : Config {
  // Where the table's level blocks come from.
  using allocator = Allocator;
};

// The shadow of a table: same levels, entries kept verbatim in native order.
template <class Config>
using shadow_config = in_guest_format<Config>;

// What a window keeps in place of a shadow table when its strategy needs
// none: nothing.
struct no_shadow {};

// One DMA window of a container: the TCE table of configuration Config, its
// shadow when Shadow is true, both charged to Accounting, and a count of the
// pages mapped in it.
template <class Config, accounting_policy Accounting, bool Shadow>
class dma_window {
public:
  // The table configuration the window was made with.
  using config_type = Config;
  // The TCE table the device uses, charged as it grows.
  using table_type = tce_table<with_allocator<Config, charging_allocator<Accounting>>>;
  // The shadow table (per entry, the user address mapped and the permission),
  // or no_shadow.
  using shadow_type = std::conditional_t<
      Shadow, tce_table<shadow_config<with_allocator<Config, charging_allocator<Accounting>>>>,
      no_shadow>;
  // Whether the window keeps a shadow table (its pinning strategy needs one).
  static constexpr bool has_shadow = Shadow;
  // log2 of the window's IOMMU page size.
  static constexpr unsigned page_shift = table_type::page_shift;
  // The window's IOMMU page size in bytes.
  static constexpr std::uint64_t page_bytes = table_type::page_bytes;

  dma_window() noexcept = default;

  // A window of `bytes` bytes (a power of two) at bus address `start`, its
  // tables charged to `accounting`, which must outlive it. Fails with
  // tce_table::create's status, nothing charged.
  [[nodiscard]] static result<dma_window> create(ioba start, std::uint64_t bytes,
                                                 Accounting& accounting) noexcept {
    auto table = table_type::create(start, bytes, charging_allocator<Accounting>(accounting));
    if (!table)
      return table.error();
    dma_window w;
    w.table_ = std::move(table).value();
    if constexpr (Shadow) {
      auto shadow = shadow_type::create(start, bytes, charging_allocator<Accounting>(accounting));
      if (!shadow)
        return shadow.error();
      w.shadow_ = std::move(shadow).value();
    }
    return w;
  }

  // The TCE table the device uses.
  [[nodiscard]] table_type& table() noexcept { return table_; }
  // The same, read-only.
  [[nodiscard]] const table_type& table() const noexcept { return table_; }
  // The shadow table: what each entry mapped from, for undoing it (no_shadow
  // without one).
  [[nodiscard]] shadow_type& shadow() noexcept { return shadow_; }
  // The same, read-only.
  [[nodiscard]] const shadow_type& shadow() const noexcept { return shadow_; }
  // The bus addresses the window covers.
  [[nodiscard]] ioba_range range() const noexcept { return table_.window(); }
  // Bytes the window's tables hold now, shadow included: what is charged for
  // them.
  [[nodiscard]] std::size_t memory_bytes() const noexcept {
    if constexpr (Shadow)
      return table_.memory_bytes() + shadow_.memory_bytes();
    else
      return table_.memory_bytes();
  }

  // Checks a range of pages against the window (see tce_table::locate); the
  // span is good for the table and its shadow alike.
  [[nodiscard]] result<page_span> locate(ioba first, std::uint64_t pages) const noexcept {
    return table_.locate(first, pages);
  }

  // Levels for the span in both tables, reserved (allocated but not yet
  // visible) so that a caller can do its other fallible steps before
  // anything changes; install() then makes them visible and cannot fail. If
  // either reservation fails, neither table changed.
  struct reservation {
    // The levels reserved in the TCE table.
    typename table_type::level_reservation table;
    // The levels reserved in the shadow table, if the window keeps one.
    std::conditional_t<Shadow, typename shadow_type::level_reservation, no_shadow> shadow;
    // ok, or the status of the reservation that failed (then install
    // nothing).
    status error = status::ok;
    // Whether both tables' levels were reserved.
    explicit operator bool() const noexcept { return error == status::ok; }
  };
  // Reserves the levels `span` lacks in both tables. Blocks a reservation
  // holds go back when it is destroyed uninstalled.
  [[nodiscard]] reservation reserve(page_span span) noexcept {
    if constexpr (Shadow) {
      reservation r{table_.reserve(span), shadow_.reserve(span), status::ok};
      r.error = !r.table ? r.table.error() : !r.shadow ? r.shadow.error() : status::ok;
      return r;
    } else {
      reservation r{table_.reserve(span), {}, status::ok};
      r.error = r.table ? status::ok : r.table.error();
      return r;
    }
  }
  // Makes a successful reservation's levels visible in both tables; cannot
  // fail.
  void install(reservation& r) noexcept {
    table_.install(r.table);
    if constexpr (Shadow)
      shadow_.install(r.shadow);
  }

  // Calls on_run(ua first, std::uint64_t pages, permission) for every run of
  // mapped pages in the span whose user addresses follow each other: from
  // the shadow, or (with no shadow, where the target is the user address)
  // from the table.
  template <class OnRun>
  void for_each_mapped_run(page_span span, OnRun&& on_run) const {
    auto per_run = [&](const mapped_run& run) { on_run(ua{run.target}, run.pages, run.perm); };
    if constexpr (Shadow)
      shadow_.for_each_run(span, per_run);
    else
      table_.for_each_run(span, per_run);
  }

  // Empties the span's entries in both tables; the mapped-page count is left
  // to the caller (count_unmapped).
  void clear(page_span span) noexcept {
    table_.clear(span);
    if constexpr (Shadow)
      shadow_.clear(span);
  }

  // How many pages are mapped, as its owner counts the maps and unmaps it
  // makes: with none, a map need not look for mappings in its way.
  [[nodiscard]] std::uint64_t mapped_pages() const noexcept { return mapped_pages_; }
  // Counts `pages` more pages mapped, after a map.
  void count_mapped(std::uint64_t pages) noexcept { mapped_pages_ += pages; }
  // Counts `pages` fewer pages mapped, after an unmap.
  void count_unmapped(std::uint64_t pages) noexcept { mapped_pages_ -= pages; }

private:
  table_type table_;
  [[no_unique_address]] shadow_type shadow_;
  std::uint64_t mapped_pages_ = 0;
};

} // namespace iopt
