// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// The allocator policy: where the blocks that make up a table's levels come
// from. A level block holds 2^k entries of 8 bytes and must be aligned to at
// least its own size (natural alignment; hardware requires it, and the low
// bits of a block's address are where an indirect entry keeps its present
// mark). The table asks for the alignment it needs and zero-fills the block
// itself, so an allocator only has to hand out aligned memory.
//
// Allocation happens on the slow path only, never while a caller expects the
// fast path; returning nullptr is the only way to fail.
#pragma once

#include <concepts>
#include <cstddef>
#include <new>

namespace iopt {

template <class A>
concept level_allocator = std::is_nothrow_move_constructible_v<A> &&
    requires(A& a, void* p, std::size_t bytes, std::size_t alignment) {
  { a.allocate(bytes, alignment) }
  noexcept->std::same_as<void*>;
  { a.deallocate(p, bytes, alignment) }
  noexcept;
};

// The documented example, and the default: the C++ heap with the requested
// alignment. allocate returns nullptr on failure, never throws.
struct heap_allocator {
  [[nodiscard]] void* allocate(std::size_t bytes, std::size_t alignment) noexcept {
    return ::operator new (bytes, std::align_val_t{alignment}, std::nothrow);
  }
  void deallocate(void* block, std::size_t /*bytes*/, std::size_t alignment) noexcept {
    ::operator delete (block, std::align_val_t{alignment});
  }
};

static_assert(level_allocator<heap_allocator>);

} // namespace iopt
