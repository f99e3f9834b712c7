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
// Pins come in ranges (a map_dma of a gigabyte pins 16384 host pages of
// 64 KiB at once), so the counts are kept per chunk of 1024 consecutive
// pages. A chunk whose pages all have the same count says so and is raised
// or lowered as a whole in one step: a range costs a step per chunk it
// covers, not one per page. Only where counts differ within a chunk (the
// ends of ranges, single pages) are they kept page by page, in an array
// changed in one pass that the compiler vectorizes. Chunks are found through
// a small open-addressing directory and exist only where something is
// counted; a chunk whose pages all drop to zero is given back.
//
// Nothing allocates while counting: a caller reserves the range first (the
// one fallible step, done before anything changes), then raises and lowers,
// which cannot fail. Every chunk has room for its array from the start (a
// lower that splits a uniform chunk must not need memory), but writes it
// only when its pages stop being uniform. That keeps every map
// all-or-nothing without exceptions. A reservation whose raise never comes
// is undone with trim().
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>

#include <iopt/settings.hpp>
#include <iopt/table/allocator.hpp>

namespace iopt {

// A count per host page number, for pins that nest; raising and lowering
// reserved pages never allocates. Takes no lock: its owner serializes calls.
template <block_allocator Allocator = heap_allocator>
class page_counts {
public:
  // Counts nothing yet; chunks and their directory come from `alloc`.
  explicit page_counts(Allocator alloc = {}) noexcept : alloc_(std::move(alloc)) {}
  page_counts(const page_counts&) = delete;
  page_counts& operator=(const page_counts&) = delete;
  ~page_counts() {
    for (std::size_t i = 0; i < capacity_; ++i)
      if (directory_[i] != nullptr)
        release_chunk(directory_[i]);
    while (spare_ != nullptr) {
      chunk* next = spare_->next_spare;
      release_chunk(spare_);
      spare_ = next;
    }
    free_directory(directory_, capacity_);
  }

  // Room to count the pages [first, first + pages): afterwards raising any
  // of them cannot fail. false (nothing changed) when the room cannot be
  // allocated.
  [[nodiscard]] bool reserve(std::uint64_t first, std::uint64_t pages) noexcept {
    if (pages == 0)
      return true;
    const std::uint64_t first_chunk = first >> chunk_shift;
    const std::uint64_t last_chunk = (first + (pages - 1)) >> chunk_shift;
    std::size_t missing = 0;
    for (std::uint64_t c = first_chunk; c <= last_chunk; ++c)
      missing += find(c) == nullptr ? 1u : 0u;
    if (missing == 0)
      return true;
    if (!reserve_directory(chunks_ + missing))
      return false;
    for (std::uint64_t c = first_chunk; c <= last_chunk; ++c) {
      if (find(c) != nullptr)
        continue;
      chunk* made = make_chunk(c);
      if (made == nullptr) {
        trim(first, pages); // the chunks made so far count nothing yet
        return false;
      }
      insert(made);
    }
    return true;
  }

  // Gives back the chunks of the range that count nothing: the undo of a
  // reserve() whose raise did not come.
  void trim(std::uint64_t first, std::uint64_t pages) noexcept {
    if (pages == 0)
      return;
    for (std::uint64_t c = first >> chunk_shift; c <= (first + (pages - 1)) >> chunk_shift; ++c)
      if (chunk* k = find(c); k != nullptr && k->counted == 0)
        erase(k);
  }

  // How many pages of the range nothing counts.
  [[nodiscard]] std::uint64_t uncounted(std::uint64_t first, std::uint64_t pages) const noexcept {
    std::uint64_t zeros = 0;
    for_each_piece(first, pages, [&](std::uint64_t c, unsigned from, unsigned n) {
      const chunk* k = find(c);
      if (k == nullptr)
        zeros += n;
      else if (k->uniform)
        zeros += k->value == 0 ? n : 0;
      else
        zeros += count_zeros(k->counts + from, n);
    });
    return zeros;
  }

  // Adds `by` to the count of every page of the range, which must be
  // reserved; returns how many of them were counted zero times before.
  std::uint64_t raise(std::uint64_t first, std::uint64_t pages, std::uint64_t by = 1) noexcept {
    std::uint64_t fresh = 0;
    for_each_piece(first, pages, [&](std::uint64_t c, unsigned from, unsigned n) {
      chunk* k = find(c);
      IOPT_ASSERT(k != nullptr); // reserve() came first
      std::uint64_t zeros = 0;
      if (k->uniform && n == chunk_pages) {
        zeros = k->value == 0 ? n : 0;
        k->value += by;
      } else {
        zeros = add(split(*k) + from, n, by);
      }
      k->counted += static_cast<unsigned>(zeros);
      fresh += zeros;
    });
    size_ += fresh;
    return fresh;
  }

  // Subtracts `by` from the count of every page of the range (each must be
  // counted at least that often); returns how many of them reach zero.
  std::uint64_t lower(std::uint64_t first, std::uint64_t pages, std::uint64_t by = 1) noexcept {
    std::uint64_t gone = 0;
    for_each_piece(first, pages, [&](std::uint64_t c, unsigned from, unsigned n) {
      chunk* k = find(c);
      IOPT_ASSERT(k != nullptr);
      std::uint64_t zeros = 0;
      if (k->uniform && n == chunk_pages) {
        IOPT_ASSERT(k->value >= by);
        k->value -= by;
        zeros = k->value == 0 ? n : 0;
      } else {
        zeros = subtract(split(*k) + from, n, by);
      }
      IOPT_ASSERT(zeros <= k->counted);
      k->counted -= static_cast<unsigned>(zeros);
      gone += zeros;
      if (k->counted == 0)
        erase(k);
    });
    size_ -= gone;
    return gone;
  }

  // The same for one page; the new count.
  std::uint64_t raise(std::uint64_t page) noexcept {
    raise(page, 1, 1);
    return count(page);
  }
  // The same for lowering one page once; its new count.
  std::uint64_t lower(std::uint64_t page) noexcept {
    lower(page, 1, 1);
    return count(page);
  }

  // How many times `page` is counted now (0 for a page never counted).
  [[nodiscard]] std::uint64_t count(std::uint64_t page) const noexcept {
    const chunk* k = find(page >> chunk_shift);
    return k == nullptr ? 0 : k->uniform ? k->value : k->counts[page & chunk_mask];
  }
  // How many distinct pages are counted.
  [[nodiscard]] std::size_t size() const noexcept { return static_cast<std::size_t>(size_); }

  // Calls f(page, count) for every counted page, in no particular order.
  template <class F>
  void for_each(F&& f) const {
    for (std::size_t i = 0; i < capacity_; ++i)
      if (const chunk* k = directory_[i]; k != nullptr)
        for (unsigned p = 0; p < chunk_pages; ++p)
          if (const std::uint64_t n = k->uniform ? k->value : k->counts[p]; n != 0)
            f((k->number << chunk_shift) + p, n);
  }

  // Calls f(first page, pages) for each run of pages of the range whose
  // count is zero (counted == false) or not, in ascending order.
  template <class F>
  void for_each_run(std::uint64_t first, std::uint64_t pages, bool counted, F&& f) const {
    std::uint64_t run_first = 0, run_pages = 0;
    auto extend = [&](std::uint64_t page, std::uint64_t n) {
      if (run_pages != 0 && run_first + run_pages == page) {
        run_pages += n;
        return;
      }
      if (run_pages != 0)
        f(run_first, run_pages);
      run_first = page;
      run_pages = n;
    };
    for_each_piece(first, pages, [&](std::uint64_t c, unsigned from, unsigned n) {
      const std::uint64_t base = (c << chunk_shift) + from;
      const chunk* k = find(c);
      if (k == nullptr || k->uniform) {
        if ((k != nullptr && k->value != 0) == counted)
          extend(base, n);
        return;
      }
      for (unsigned i = 0; i < n;) {
        const bool here = k->counts[from + i] != 0;
        unsigned j = i + 1;
        while (j < n && (k->counts[from + j] != 0) == here)
          ++j;
        if (here == counted)
          extend(base + i, j - i);
        i = j;
      }
    });
    if (run_pages != 0)
      f(run_first, run_pages);
  }

private:
  // 1024 pages a chunk: 8 KiB of counts, 64 MiB of 64 KiB pages.
  static constexpr unsigned chunk_shift = 10;
  static constexpr unsigned chunk_pages = 1u << chunk_shift;
  static constexpr std::uint64_t chunk_mask = chunk_pages - 1;

  struct chunk {
    std::uint64_t number; // first page >> chunk_shift
    unsigned counted;     // pages whose count is not zero
    bool uniform;         // every page's count is `value`; counts[] unused
    std::uint64_t value;
    chunk* next_spare; // in the list of spare chunks
    std::uint64_t counts[chunk_pages];
  };

  // The chunk's counts page by page, written out if it was uniform.
  static std::uint64_t* split(chunk& k) noexcept {
    if (k.uniform) {
      std::fill(k.counts, k.counts + chunk_pages, k.value);
      k.uniform = false;
    }
    return k.counts;
  }

  // Calls piece(chunk number, first index in it, pages) for the parts of the
  // range that fall in each chunk.
  template <class Piece>
  static void for_each_piece(std::uint64_t first, std::uint64_t pages, Piece&& piece) {
    while (pages != 0) {
      const auto from = static_cast<unsigned>(first & chunk_mask);
      const auto n = static_cast<unsigned>(std::min<std::uint64_t>(pages, chunk_pages - from));
      piece(first >> chunk_shift, from, n);
      first += n;
      pages -= n;
    }
  }
  // Simple loops over contiguous counts, written so that they vectorize.
  static std::uint64_t count_zeros(const std::uint64_t* c, unsigned n) noexcept {
    std::uint64_t zeros = 0;
    for (unsigned i = 0; i < n; ++i)
      zeros += c[i] == 0 ? 1u : 0u;
    return zeros;
  }
  static std::uint64_t add(std::uint64_t* c, unsigned n, std::uint64_t by) noexcept {
    std::uint64_t zeros = 0;
    for (unsigned i = 0; i < n; ++i) {
      zeros += c[i] == 0 ? 1u : 0u;
      c[i] += by;
    }
    return zeros;
  }
  static std::uint64_t subtract(std::uint64_t* c, unsigned n, std::uint64_t by) noexcept {
    std::uint64_t zeros = 0;
    for (unsigned i = 0; i < n; ++i) {
      IOPT_ASSERT(c[i] >= by);
      c[i] -= by;
      zeros += c[i] == 0 ? 1u : 0u;
    }
    return zeros;
  }

  // ---- the directory: chunk number -> chunk, open addressing ----

  std::size_t home(std::uint64_t number) const noexcept {
    // Fibonacci hashing: consecutive chunks spread over the whole directory.
    return static_cast<std::size_t>((number * 0x9e3779b97f4a7c15ULL) >> 20) & (capacity_ - 1);
  }
  chunk* find(std::uint64_t number) const noexcept {
    if (capacity_ == 0)
      return nullptr;
    for (std::size_t i = home(number);; i = (i + 1) & (capacity_ - 1)) {
      chunk* k = directory_[i];
      if (k == nullptr || k->number == number)
        return k;
    }
  }
  void insert(chunk* k) noexcept {
    std::size_t i = home(k->number);
    while (directory_[i] != nullptr)
      i = (i + 1) & (capacity_ - 1);
    directory_[i] = k;
    ++chunks_;
  }
  // Linear probing deletes without tombstones: later chunks of the same
  // probe sequence move back into the hole.
  void erase(chunk* k) noexcept {
    std::size_t hole = home(k->number);
    while (directory_[hole] != k)
      hole = (hole + 1) & (capacity_ - 1);
    free_chunk(k);
    --chunks_;
    std::size_t i = hole;
    for (;;) {
      directory_[hole] = nullptr;
      for (;;) {
        i = (i + 1) & (capacity_ - 1);
        if (directory_[i] == nullptr)
          return;
        const std::size_t h = home(directory_[i]->number);
        // Stays if its home lies cyclically in (hole, i].
        const bool stays = hole <= i ? (hole < h && h <= i) : (hole < h || h <= i);
        if (!stays)
          break;
      }
      directory_[hole] = directory_[i];
      hole = i;
    }
  }
  // A directory at most half full for `wanted` chunks.
  bool reserve_directory(std::size_t wanted) noexcept {
    if (wanted <= capacity_ / 2)
      return true;
    std::size_t capacity = capacity_ == 0 ? 16 : capacity_;
    while (capacity / 2 < wanted)
      capacity *= 2;
    auto* grown = static_cast<chunk**>(alloc_.allocate(capacity * sizeof(chunk*), alignof(chunk*)));
    if (grown == nullptr)
      return false;
    std::fill(grown, grown + capacity, nullptr);
    std::swap(grown, directory_);
    std::swap(capacity, capacity_);
    chunks_ = 0;
    for (std::size_t i = 0; i < capacity; ++i)
      if (grown[i] != nullptr)
        insert(grown[i]);
    free_directory(grown, capacity);
    return true;
  }
  chunk* make_chunk(std::uint64_t number) noexcept {
    chunk* k = spare_;
    if (k != nullptr) {
      spare_ = k->next_spare;
      --spares_;
    } else {
      void* p = alloc_.allocate(sizeof(chunk), alignof(chunk));
      if (p == nullptr)
        return nullptr;
      k = new (p) chunk; // counts[] is written when the chunk splits
    }
    k->number = number;
    k->counted = 0;
    k->uniform = true;
    k->value = 0;
    return k;
  }
  // A few emptied chunks are kept for reuse, so that mapping and unmapping
  // the same gigabyte again and again does not go to the allocator each time.
  void free_chunk(chunk* k) noexcept {
    if (spares_ == max_spares) {
      release_chunk(k);
      return;
    }
    k->next_spare = spare_;
    spare_ = k;
    ++spares_;
  }
  void release_chunk(chunk* k) noexcept { alloc_.deallocate(k, sizeof(chunk), alignof(chunk)); }
  void free_directory(chunk** d, std::size_t capacity) noexcept {
    if (d != nullptr)
      alloc_.deallocate(d, capacity * sizeof(chunk*), alignof(chunk*));
  }

  [[no_unique_address]] Allocator alloc_;
  chunk** directory_ = nullptr;
  std::size_t capacity_ = 0;
  std::size_t chunks_ = 0;
  std::uint64_t size_ = 0;
  static constexpr std::size_t max_spares = 32; // 256 KiB at most
  chunk* spare_ = nullptr;
  std::size_t spares_ = 0;
};

} // namespace iopt
