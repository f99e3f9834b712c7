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

struct mapped_run {
  ioba first{};             // bus address of the first page
  std::uint64_t target = 0; // address the first page translates to
  std::uint64_t pages = 0;  // number of IOMMU pages in the run
  permission perm = permission::none;

  friend constexpr bool operator==(const mapped_run&, const mapped_run&) noexcept = default;
};

// Hears that a run was mapped (true) or unmapped (false): what a DMA
// container reports (window/container.hpp), and notify/notifier.hpp turns
// into notifier events.
using dma_change_hook = hook<bool, const mapped_run&>;

// Table must provide
//   std::optional<mapped_run> next_run(std::uint64_t from_page) const noexcept
//   std::uint64_t page_index(ioba) const noexcept
//   std::uint64_t pages() const noexcept
template <class Table>
class mapping_view : public std::ranges::view_base {
public:
  class iterator {
  public:
    using value_type = mapped_run;
    using difference_type = std::ptrdiff_t;
    using reference = const mapped_run&;
    using pointer = const mapped_run*;
    using iterator_category = std::forward_iterator_tag;
    using iterator_concept = std::forward_iterator_tag;

    iterator() noexcept = default;

    reference operator*() const noexcept { return run_; }
    pointer operator->() const noexcept { return &run_; }

    iterator& operator++() noexcept {
      const std::uint64_t next = table_->page_index(run_.first) + run_.pages;
      find(next);
      return *this;
    }
    iterator operator++(int) noexcept {
      iterator before = *this;
      ++*this;
      return before;
    }

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

  mapping_view() noexcept = default;
  explicit mapping_view(const Table& table) noexcept : table_(&table) {}

  [[nodiscard]] iterator begin() const noexcept { return iterator(table_, 0); }
  [[nodiscard]] iterator end() const noexcept { return iterator(table_); }
  [[nodiscard]] bool empty() const noexcept { return begin() == end(); }

private:
  const Table* table_ = nullptr;
};

} // namespace iopt
