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

// A block allocator that takes its blocks from Inner and charges each one to
// an accounting policy while it is out.
template <accounting_policy Accounting, block_allocator Inner = heap_allocator>
class charging_allocator {
public:
  // Charges nothing: for a table with no window.
  charging_allocator() noexcept = default;
  // Charges to `accounting`, which must outlive the allocator and every block
  // it hands out.
  explicit charging_allocator(Accounting& accounting, Inner inner = {}) noexcept
      : accounting_(&accounting), inner_(std::move(inner)) {}

  // Charges `bytes`, then allocates them: nullptr, with nothing charged, when
  // the policy refuses the charge or Inner has no memory.
  [[nodiscard]] void* allocate(std::size_t bytes, std::size_t alignment) noexcept {
    if (accounting_ != nullptr && accounting_->charge(bytes) != status::ok)
      return nullptr;
    void* block = inner_.allocate(bytes, alignment);
    if (block == nullptr && accounting_ != nullptr)
      accounting_->uncharge(bytes);
    return block;
  }
  // Frees a block allocate() gave, with its size and alignment, and uncharges
  // its bytes.
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
