// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// An allocator for tests: it forwards to the heap, counts every allocation
// point, can make the N-th fail, and knows how many blocks and bytes are
// live, so a test can show that a failed operation changed nothing and leaked
// nothing. Copies share one fault_plan, so the plan a test holds sees what
// the table's copy does.
//
// A fault_plan counts *points*: every place that can fail and consults the
// plan (allocations here, charges in fault_injecting_accounting, pins in the
// simulated backend) is one point, numbered in the order they happen, so a
// test can fail a composite operation at each of its points in turn.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>

#include <iopt/table/allocator.hpp>

namespace iopt {

struct fault_plan {
  // The point (1-based, counted from the last reset) that fails; 0: none.
  std::uint64_t fail_at = 0;
  // When true, every point from fail_at on fails, not only that one.
  bool keep_failing = false;

  std::uint64_t points = 0; // points passed since the last reset, failed ones included
  std::uint64_t failures = 0;
  std::int64_t live_blocks = 0;
  std::int64_t live_bytes = 0;

  void reset_counts() noexcept { points = failures = 0; }
  void fail_nth(std::uint64_t n, bool and_after = false) noexcept {
    reset_counts();
    fail_at = n;
    keep_failing = and_after;
  }
  void never_fail() noexcept { fail_at = 0; }

  // Counts one point; true when it is to fail.
  bool next_point_fails() noexcept {
    const std::uint64_t n = ++points;
    const bool fail = fail_at != 0 && (n == fail_at || (keep_failing && n > fail_at));
    failures += fail ? 1 : 0;
    return fail;
  }
};

class fault_injecting_allocator {
public:
  fault_injecting_allocator() noexcept = default; // counts into a plan of its own
  explicit fault_injecting_allocator(fault_plan& plan) noexcept : plan_(&plan) {}

  [[nodiscard]] void* allocate(std::size_t bytes, std::size_t alignment) noexcept {
    fault_plan& p = plan();
    if (p.next_point_fails())
      return nullptr;
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

static_assert(block_allocator<fault_injecting_allocator>);

} // namespace iopt
