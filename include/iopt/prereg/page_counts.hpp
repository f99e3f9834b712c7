// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// A count per host page, for pins that nest.
//
// The kernel counts pins in each page's reference count: a page mapped for
// DMA twice (a 4 KiB and a 64 KiB IOMMU page over it, two windows, two
// containers) stays pinned until the last user lets go. mlock does not nest,
// so whatever pins through it must count per host page itself, and must know
// when a page's first pin comes and its last one goes.
//
// page_counts is an open-addressing hash table from host page number to a
// count, whose storage comes from a level allocator. It never allocates while
// counting: a caller reserves room for the pages it may add first (the one
// fallible step, done before anything changes), then raises and lowers counts,
// which cannot fail. That keeps every map all-or-nothing without exceptions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

#include <iopt/config.hpp>
#include <iopt/table/allocator.hpp>

namespace iopt {

template <level_allocator Allocator = heap_allocator>
class page_counts {
public:
  explicit page_counts(Allocator alloc = {}) noexcept : alloc_(std::move(alloc)) {}
  page_counts(const page_counts&) = delete;
  page_counts& operator=(const page_counts&) = delete;
  ~page_counts() { release(slots_, capacity_); }

  // Room for `more` pages not counted yet, so that raising them cannot fail.
  // false (nothing changed) when the room cannot be allocated.
  [[nodiscard]] bool reserve(std::size_t more) noexcept {
    if (more > max_pages - size_)
      return false;
    const std::size_t wanted = size_ + more;
    if (wanted <= capacity_ / 2) // at most half full: probe sequences stay short
      return true;
    std::size_t capacity = capacity_ == 0 ? 64 : capacity_;
    while (capacity / 2 < wanted)
      capacity *= 2;
    auto* grown = static_cast<slot*>(alloc_.allocate(capacity * sizeof(slot), alignof(slot)));
    if (grown == nullptr)
      return false;
    for (std::size_t i = 0; i < capacity; ++i)
      grown[i] = slot{};
    std::swap(grown, slots_);
    std::swap(capacity, capacity_);
    for (std::size_t i = 0; i < capacity; ++i)
      if (grown[i].count != 0)
        *probe(grown[i].page) = grown[i];
    release(grown, capacity);
    return true;
  }

  // Adds one pin of `page`; the new count. A page not counted yet needs room
  // reserved beforehand.
  std::uint64_t raise(std::uint64_t page) noexcept {
    IOPT_ASSERT(capacity_ != 0); // reserve() came first
    slot* s = probe(page);
    if (s->count == 0) {
      IOPT_ASSERT(size_ < capacity_ / 2); // reserve() made room for it
      s->page = page;
      ++size_;
    }
    return ++s->count;
  }

  // Drops one pin of `page`, which must be counted; the new count.
  std::uint64_t lower(std::uint64_t page) noexcept {
    slot* s = probe(page);
    IOPT_ASSERT(s->count != 0);
    if (--s->count != 0)
      return s->count;
    erase(static_cast<std::size_t>(s - slots_));
    return 0;
  }

  [[nodiscard]] std::uint64_t count(std::uint64_t page) const noexcept {
    return capacity_ == 0 ? 0 : const_cast<page_counts*>(this)->probe(page)->count;
  }
  // How many distinct pages are counted.
  [[nodiscard]] std::size_t size() const noexcept { return size_; }

  // Calls f(page, count) for every counted page, in no particular order.
  template <class F>
  void for_each(F&& f) const {
    for (std::size_t i = 0; i < capacity_; ++i)
      if (slots_[i].count != 0)
        f(slots_[i].page, slots_[i].count);
  }

private:
  struct slot {
    std::uint64_t page = 0;
    std::uint64_t count = 0; // 0: free
  };
  static constexpr std::size_t max_pages = std::size_t{1} << 40;

  std::size_t home(std::uint64_t page) const noexcept {
    // Fibonacci hashing: consecutive pages spread over the whole table.
    return static_cast<std::size_t>((page * 0x9e3779b97f4a7c15ULL) >> 20) & (capacity_ - 1);
  }
  // The slot holding `page`, or the free slot where it would go.
  slot* probe(std::uint64_t page) noexcept {
    std::size_t i = home(page);
    while (slots_[i].count != 0 && slots_[i].page != page)
      i = (i + 1) & (capacity_ - 1);
    return &slots_[i];
  }
  // Linear probing deletes without tombstones: later entries of the same
  // probe sequence move back into the hole.
  void erase(std::size_t hole) noexcept {
    --size_;
    std::size_t i = hole;
    for (;;) {
      slots_[hole] = slot{};
      for (;;) {
        i = (i + 1) & (capacity_ - 1);
        if (slots_[i].count == 0)
          return;
        const std::size_t h = home(slots_[i].page);
        // Stays if its home lies cyclically in (hole, i].
        const bool stays = hole <= i ? (hole < h && h <= i) : (hole < h || h <= i);
        if (!stays)
          break;
      }
      slots_[hole] = slots_[i];
      hole = i;
    }
  }
  void release(slot* slots, std::size_t capacity) noexcept {
    if (slots != nullptr)
      alloc_.deallocate(slots, capacity * sizeof(slot), alignof(slot));
  }

  [[no_unique_address]] Allocator alloc_;
  slot* slots_ = nullptr;
  std::size_t capacity_ = 0;
  std::size_t size_ = 0;
};

} // namespace iopt
