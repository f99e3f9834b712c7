// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// An allocator for tests: it forwards to the heap, counts every allocation
// point, can make the N-th allocation fail, and knows how many blocks and
// bytes are live, so a test can show that a failed operation changed nothing
// and leaked nothing. Copies share one fault_plan, so the plan a test holds
// sees what the table's copy does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>

#include <iopt/table/allocator.hpp>

namespace iopt {

struct fault_plan {
  // The allocation (1-based, counted from the last reset) that fails;
  // 0 means none does.
  std::uint64_t fail_at = 0;
  // When true, every allocation from fail_at on fails, not only that one.
  bool keep_failing = false;

  std::uint64_t allocations = 0; // attempts since the last reset, failed ones included
  std::uint64_t failures = 0;
  std::int64_t live_blocks = 0;
  std::int64_t live_bytes = 0;

  void reset_counts() noexcept { allocations = failures = 0; }
  void fail_nth(std::uint64_t n, bool and_after = false) noexcept {
    reset_counts();
    fail_at = n;
    keep_failing = and_after;
  }
  void never_fail() noexcept { fail_at = 0; }
};

class fault_injecting_allocator {
public:
  fault_injecting_allocator() noexcept = default; // counts into a plan of its own
  explicit fault_injecting_allocator(fault_plan& plan) noexcept : plan_(&plan) {}

  [[nodiscard]] void* allocate(std::size_t bytes, std::size_t alignment) noexcept {
    fault_plan& p = plan();
    const std::uint64_t n = ++p.allocations;
    if (p.fail_at != 0 && (n == p.fail_at || (p.keep_failing && n > p.fail_at))) {
      ++p.failures;
      return nullptr;
    }
    void* block = heap_.allocate(bytes, alignment);
    if (block != nullptr) {
      ++p.live_blocks;
      p.live_bytes += static_cast<std::int64_t>(bytes);
    }
    return block;
  }
  void deallocate(void* block, std::size_t bytes, std::size_t alignment) noexcept {
    fault_plan& p = plan();
    --p.live_blocks;
    p.live_bytes -= static_cast<std::int64_t>(bytes);
    heap_.deallocate(block, bytes, alignment);
  }

  [[nodiscard]] fault_plan& plan() noexcept { return plan_ != nullptr ? *plan_ : own_; }

private:
  fault_plan* plan_ = nullptr;
  fault_plan own_{};
  [[no_unique_address]] heap_allocator heap_{};
};

static_assert(level_allocator<fault_injecting_allocator>);

} // namespace iopt
