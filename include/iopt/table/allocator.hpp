// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// The allocator policy: where iopt's blocks of memory come from. A block
// allocator hands out memory of a given size and alignment and takes it back
// with the same size and alignment; returning nullptr is the only way to
// fail. Tables take their level blocks from one (a level block holds 2^k
// entries of 8 bytes and the table asks for the natural alignment hardware
// requires, then zero-fills the block itself); the preregistration registry
// and the pin counts take their records and arrays from one too.
//
// Allocation happens on the slow path only, never while a caller expects the
// fast path.
#pragma once

#include <concepts>
#include <cstddef>
#include <new>

namespace iopt {

// Whether A is a block allocator: allocate(bytes, alignment) returns a block
// or nullptr, deallocate(block, bytes, alignment) takes one back; both
// noexcept, and A is nothrow movable (tables move with their allocator).
template <class A>
concept block_allocator = std::is_nothrow_move_constructible_v<A> &&
    requires(A& a, void* p, std::size_t bytes, std::size_t alignment) {
  { a.allocate(bytes, alignment) }
  noexcept->std::same_as<void*>;
  { a.deallocate(p, bytes, alignment) }
  noexcept;
};

// The documented example, and the default: the C++ heap with the requested
// alignment. allocate returns nullptr on failure, never throws.
struct heap_allocator {
  // A block of `bytes` aligned to `alignment` (a power of two), or nullptr.
  [[nodiscard]] void* allocate(std::size_t bytes, std::size_t alignment) noexcept {
    return ::operator new (bytes, std::align_val_t{alignment}, std::nothrow);
  }
  // Gives back a block from allocate, with the alignment it was asked with.
  void deallocate(void* block, std::size_t /*bytes*/, std::size_t alignment) noexcept {
    ::operator delete (block, std::align_val_t{alignment});
  }
};

static_assert(block_allocator<heap_allocator>);

} // namespace iopt
