// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// A block allocator that charges what it allocates to an accounting policy
// and gives the charge back when the block is freed. A window whose table
// uses it is charged for the levels it really holds, as they come and go —
// not for its fully populated size up front, which is what the kernel
// charges (and why a 128 TiB window is hard to create there).
#pragma once

#include <cstddef>

#include <iopt/prereg/accounting.hpp>
#include <iopt/table/allocator.hpp>

namespace iopt {

template <accounting_policy Accounting, block_allocator Inner = heap_allocator>
class charging_allocator {
public:
  charging_allocator() noexcept = default; // charges nothing: for a table with no window
  explicit charging_allocator(Accounting& accounting, Inner inner = {}) noexcept
      : accounting_(&accounting), inner_(std::move(inner)) {}

  [[nodiscard]] void* allocate(std::size_t bytes, std::size_t alignment) noexcept {
    if (accounting_ != nullptr && accounting_->charge(bytes) != status::ok)
      return nullptr;
    void* block = inner_.allocate(bytes, alignment);
    if (block == nullptr && accounting_ != nullptr)
      accounting_->uncharge(bytes);
    return block;
  }
  void deallocate(void* block, std::size_t bytes, std::size_t alignment) noexcept {
    inner_.deallocate(block, bytes, alignment);
    if (accounting_ != nullptr)
      accounting_->uncharge(bytes);
  }

private:
  Accounting* accounting_ = nullptr;
  [[no_unique_address]] Inner inner_{};
};

static_assert(block_allocator<charging_allocator<counted_accounting>>);

} // namespace iopt
