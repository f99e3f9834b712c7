// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// Mapped runs and the range of them a table presents.
//
// A mapped run is a maximal stretch of consecutive IOMMU pages whose targets
// are contiguous and whose permissions are equal: a 1 GiB contiguous mapping
// of 64 KiB pages is one run, not 16384. mapping_view<Table> is a forward
// range of runs (a std::ranges view, usable with range-v3 too); each step asks
// the table for the next run after the previous one, so the whole iteration
// costs what the table's sparse walk costs: allocated levels plus set entries,
// never the window size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>
#include <ranges>

#include <iopt/addr/address.hpp>
#include <iopt/format/permission.hpp>
#include <iopt/hook.hpp>

namespace iopt {

// One run of mapped pages: consecutive IOMMU pages whose targets follow one
// another page by page, all with the same permission.
struct mapped_run {
  // Bus address of the first page.
  ioba first{};
  // Address the first page translates to; page k of the run goes to
  // target + k pages.
  std::uint64_t target = 0;
  // Number of IOMMU pages in the run (at least 1).
  std::uint64_t pages = 0;
  // The access every page of the run grants.
  permission perm = permission::none;

  // Runs are equal when every field is.
  friend constexpr bool operator==(const mapped_run&, const mapped_run&) noexcept = default;
};

// Hears that a run was mapped (true) or unmapped (false): what a DMA
// container reports (window/container.hpp), and notify/notifier.hpp turns
// into notifier events.
using dma_change_hook = hook<bool, const mapped_run&>;

// The mapped runs of a table, in IOBA order, as a forward range that borrows
// the table (it must outlive the view). Table must provide
//   std::optional<mapped_run> next_run(std::uint64_t from_page) const noexcept
//   std::uint64_t page_index(ioba) const noexcept
//   std::uint64_t pages() const noexcept
template <class Table>
class mapping_view : public std::ranges::view_base {
public:
  // Stands on one run; it holds a copy of the run, so a change to the table
  // shows only when the iterator steps.
  class iterator {
  public:
    // Iterators yield runs.
    using value_type = mapped_run;
    // The standard iterator difference type.
    using difference_type = std::ptrdiff_t;
    // A reference to the run held by the iterator.
    using reference = const mapped_run&;
    // A pointer to the run held by the iterator.
    using pointer = const mapped_run*;
    // A forward iterator: it can be copied and stepped again.
    using iterator_category = std::forward_iterator_tag;
    // The same for C++20 ranges.
    using iterator_concept = std::forward_iterator_tag;

    // An end iterator of no table.
    iterator() noexcept = default;

    // The current run.
    reference operator*() const noexcept { return run_; }
    // The current run, for member access.
    pointer operator->() const noexcept { return &run_; }

    // Steps to the first run after the current one's last page.
    iterator& operator++() noexcept {
      const std::uint64_t next = table_->page_index(run_.first) + run_.pages;
      find(next);
      return *this;
    }
    // Steps on and returns the iterator as it was.
    iterator operator++(int) noexcept {
      iterator before = *this;
      ++*this;
      return before;
    }

    // Equal when both are at the end, or on runs that start at the same IOBA
    // of the same table.
    friend bool operator==(const iterator& a, const iterator& b) noexcept {
      if (a.at_end_ || b.at_end_)
        return a.at_end_ == b.at_end_;
      return a.table_ == b.table_ && a.run_.first == b.run_.first;
    }

  private:
    friend class mapping_view;
    iterator(const Table* table, std::uint64_t from) noexcept : table_(table) { find(from); }
    explicit iterator(const Table* table) noexcept : table_(table), at_end_(true) {}

    void find(std::uint64_t from) noexcept {
      std::optional<mapped_run> run;
      if (table_ != nullptr && from < table_->pages())
        run = table_->next_run(from);
      at_end_ = !run.has_value();
      if (run)
        run_ = *run;
    }

    const Table* table_ = nullptr;
    mapped_run run_{};
    bool at_end_ = true;
  };

  // A view of no table: empty.
  mapping_view() noexcept = default;
  // A view of the runs of `table`, which it refers to, not copies.
  explicit mapping_view(const Table& table) noexcept : table_(&table) {}

  // The first run of the window; each call walks the table to find it.
  [[nodiscard]] iterator begin() const noexcept { return iterator(table_, 0); }
  // Past the last run.
  [[nodiscard]] iterator end() const noexcept { return iterator(table_); }
  // True when the window maps nothing (it walks to the first run).
  [[nodiscard]] bool empty() const noexcept { return begin() == end(); }

private:
  const Table* table_ = nullptr;
};

} // namespace iopt
