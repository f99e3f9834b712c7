// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// region_index<Record, Allocator>: the sorted, sequence-locked index behind
// the preregistration registry (prereg/registry.hpp).
//
// It holds non-overlapping byte ranges [first, last] in ascending order, each
// with a pointer to its Record and a small payload (`shift`, the largest
// IOMMU page the range backs, kept here so a lookup never reads the record).
// One writer at a time (the caller serializes them) inserts and erases;
// any number of readers search it without a lock:
//   - the entries are a sorted array read under a sequence counter, odd
//     while a writer changes it: a reader retries if a writer ran meanwhile.
//     Reads the counter validates are atomic, so this is free of data races
//     in the C++ memory model, not only in practice;
//   - readers remember the slot of their last hit and try it before a
//     branch-free binary search;
//   - a full array is replaced by one twice its size; the old one is retired,
//     not freed, while the index lives (a reader may still be searching it),
//     so retired arrays at most double the memory of the live one.
// Records are the caller's: the index never frees them, and a caller must
// not hand one back to the heap while readers may hold it (the registry
// reuses records instead). Record getters a reader calls inside a read
// section must load with acquire, so that the closing check of the counter
// cannot move above them.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>

#include <iopt/addr/range.hpp>
#include <iopt/table/allocator.hpp>

namespace iopt::detail {

template <class Record, block_allocator Allocator>
class region_index {
public:
  // One range: its bytes [first, last], its record, and the payload.
  struct entry {
    std::uint64_t first;
    std::uint64_t last;
    Record* record;
    unsigned shift;
  };

  explicit region_index(Allocator alloc) noexcept : alloc_(std::move(alloc)) {}
  region_index(const region_index&) = delete;
  region_index& operator=(const region_index&) = delete;
  // Frees the arrays, live and retired; never a record.
  ~region_index() {
    free_array(index_.load(std::memory_order_relaxed), capacity_);
    while (retired_ != nullptr) {
      retired_array* next = retired_->next;
      free_array(retired_->array, retired_->capacity);
      alloc_.deallocate(retired_, sizeof(retired_array), alignof(retired_array));
      retired_ = next;
    }
  }

  // The allocator the index takes its arrays from, for the caller's records.
  [[nodiscard]] Allocator& allocator() noexcept { return alloc_; }
  // How many ranges the index holds (exact for the writer, a snapshot for
  // anyone else).
  [[nodiscard]] std::size_t size() const noexcept { return count_.load(std::memory_order_relaxed); }

  // ---- readers (lock-free) ---------------------------------------------------

  // Finds the entry that holds all of the non-empty range `wanted` and calls
  // f(const entry* e, std::uint64_t first, std::uint64_t last) inside one
  // consistent read: e is null when no entry holds it, and first and last
  // are the bytes of the entry found, as read. f reads further fields with
  // read(); it may run more than once (a writer interleaved) and its last
  // result is returned with the sequence number of that read.
  template <class F>
  auto read_consistent(const ua_range& wanted, F&& f) const noexcept {
    for (;;) {
      const std::uint64_t seq = begin_read();
      const auto [index, n] = current_index();
      std::uint64_t base = 0, last = 0;
      const std::size_t at = find(index, n, wanted, base, last);
      auto found = f(at < n ? index + at : nullptr, base, last);
      if (end_read(seq))
        return std::pair{found, seq};
    }
  }
  // Whether no writer changed the index since the read numbered `seq`.
  [[nodiscard]] bool unchanged_since(std::uint64_t seq) const noexcept { return end_read(seq); }

  // Index entries are read by lock-free readers while a writer moves them.
  // The sequence lock needs no fences: a writer stores with release after
  // making the counter odd, so a reader whose acquire load sees a new value
  // also sees the odd (or a later) counter in its closing check. Both are
  // plain moves on x86, and ThreadSanitizer understands them.
  template <class T>
  static T read(const T& field) noexcept {
    return std::atomic_ref<T>(const_cast<T&>(field)) // NOLINT: atomic_ref needs a mutable object
        .load(std::memory_order_acquire);
  }

  // ---- the writer (serialized by the caller) ----------------------------------

  // The entries, for the writer.
  [[nodiscard]] const entry& at(std::size_t i) const noexcept {
    return index_.load(std::memory_order_relaxed)[i];
  }
  // First position whose range starts at or after `value`, for the writer.
  [[nodiscard]] std::size_t position(std::uint64_t value) const noexcept {
    return lower_bound(index_.load(std::memory_order_relaxed), size(), value);
  }
  // Makes room for one more entry; false (and nothing changed) when the
  // memory cannot be had. insert() then cannot fail.
  [[nodiscard]] bool reserve_one() noexcept { return reserve_slot(size()); }
  // Inserts e at `pos` (after reserve_one).
  void insert(std::size_t pos, const entry& e) noexcept {
    const std::size_t n = size();
    begin_write();
    entry* index = index_.load(std::memory_order_relaxed);
    for (std::size_t i = n; i > pos; --i)
      store_entry(index[i], load_entry(index[i - 1]));
    store_entry(index[pos], e);
    count_.store(n + 1, std::memory_order_release);
    end_write();
  }
  // Erases the entry at `pos`, and calls in_section() before the write
  // section ends, so that what it changes is published with the erasure.
  template <class InSection>
  void erase(std::size_t pos, InSection&& in_section) noexcept {
    const std::size_t n = size();
    begin_write();
    entry* index = index_.load(std::memory_order_relaxed);
    for (std::size_t i = pos; i + 1 < n; ++i)
      store_entry(index[i], load_entry(index[i + 1]));
    count_.store(n - 1, std::memory_order_release);
    in_section();
    end_write();
  }

private:
  struct retired_array {
    entry* array;
    std::size_t capacity;
    retired_array* next;
  };

  static entry load_entry(const entry& e) noexcept {
    return entry{read(e.first), read(e.last), read(e.record), read(e.shift)};
  }
  static void store_entry(entry& e, const entry& v) noexcept {
    std::atomic_ref<std::uint64_t>(e.first).store(v.first, std::memory_order_release);
    std::atomic_ref<std::uint64_t>(e.last).store(v.last, std::memory_order_release);
    std::atomic_ref<Record*>(e.record).store(v.record, std::memory_order_release);
    std::atomic_ref<unsigned>(e.shift).store(v.shift, std::memory_order_release);
  }

  // Sequence counter: odd while a writer changes the index.
  void begin_write() noexcept { seq_.fetch_add(1, std::memory_order_acq_rel); }
  void end_write() noexcept { seq_.fetch_add(1, std::memory_order_release); }
  std::uint64_t begin_read() const noexcept {
    std::uint64_t s = seq_.load(std::memory_order_acquire);
    while ((s & 1) != 0)
      s = seq_.load(std::memory_order_acquire);
    return s;
  }
  bool end_read(std::uint64_t s) const noexcept {
    return seq_.load(std::memory_order_acquire) == s;
  }

  // First index position whose region starts at or after `value`.
  static std::size_t lower_bound(const entry* index, std::size_t n, std::uint64_t value) noexcept {
    std::size_t lo = 0, hi = n;
    while (lo < hi) {
      const std::size_t mid = lo + (hi - lo) / 2;
      if (read(index[mid].first) < value)
        lo = mid + 1;
      else
        hi = mid;
    }
    return lo;
  }

  // Inside a read section: the index array and how many of its slots hold
  // regions. count_ is read before index_: an array is published before the
  // count that needs it, and arrays only grow, so every slot below n is
  // allocated even when a writer interleaves (the sequence check then fails).
  std::pair<const entry*, std::size_t> current_index() const noexcept {
    const std::size_t n = count_.load(std::memory_order_acquire);
    return {index_.load(std::memory_order_acquire), n};
  }

  // Inside a read section: the slot of the region that contains the
  // non-empty range `wanted`, or n if none. That region's first and last
  // byte, as read, go to `base` and `last` so that callers need not load
  // them again.
  // (Out-parameters, not a returned struct: GCC copies such a struct through
  // the stack with a wider load than its stores, which cannot be forwarded.)
  std::size_t find(const entry* index, std::size_t n, const ua_range& wanted, std::uint64_t& base,
                   std::uint64_t& last) const noexcept {
    const std::uint64_t first = wanted.first().value(), last_wanted = wanted.last().value();
    // The slot of the last hit, a hint any reader may have left: checked
    // against what the slot holds now.
    if (const std::size_t hint = last_hit_.load(std::memory_order_relaxed); hint < n) [[likely]] {
      base = read(index[hint].first);
      last = read(index[hint].last);
      if (covers(base, last, first, last_wanted)) [[likely]]
        return hint;
    }
    // The last region starting at or before `first`.
    const std::size_t after = upper_bound(index, n, first);
    if (after == 0)
      return n;
    base = read(index[after - 1].first);
    last = read(index[after - 1].last);
    if (!covers(base, last, first, last_wanted))
      return n;
    last_hit_.store(after - 1, std::memory_order_relaxed);
    return after - 1;
  }
  // Whether bytes [base, last] hold bytes [first, last_wanted].
  static bool covers(std::uint64_t base, std::uint64_t last, std::uint64_t first,
                     std::uint64_t last_wanted) noexcept {
    return base <= first && last_wanted <= last;
  }
  // Number of regions starting at or before `value`. Branch-free (the
  // comparison picks the half with a conditional move), and reads only the
  // start of each entry it passes.
  static std::size_t upper_bound(const entry* index, std::size_t n, std::uint64_t value) noexcept {
    if (n == 0)
      return 0;
    const entry* base = index;
    while (n > 1) {
      const std::size_t half = n / 2;
      base = read(base[half].first) <= value ? base + half : base;
      n -= half;
    }
    return static_cast<std::size_t>(base - index) + (read(base->first) <= value ? 1 : 0);
  }

  void free_array(entry* a, std::size_t capacity) noexcept {
    if (a != nullptr)
      alloc_.deallocate(a, capacity * sizeof(entry), alignof(entry));
  }

  // Room for one more entry; a grown array replaces the old one, which is
  // retired (readers may still be searching it).
  bool reserve_slot(std::size_t n) noexcept {
    if (n < capacity_)
      return true;
    const std::size_t capacity = capacity_ == 0 ? 16 : 2 * capacity_;
    auto* grown = static_cast<entry*>(alloc_.allocate(capacity * sizeof(entry), alignof(entry)));
    if (grown == nullptr)
      return false;
    void* note = nullptr;
    entry* old = index_.load(std::memory_order_relaxed);
    if (old != nullptr) {
      note = alloc_.allocate(sizeof(retired_array), alignof(retired_array));
      if (note == nullptr) {
        alloc_.deallocate(grown, capacity * sizeof(entry), alignof(entry));
        return false;
      }
    }
    for (std::size_t i = 0; i < n; ++i)
      grown[i] = old[i];
    index_.store(grown, std::memory_order_release);
    if (old != nullptr)
      retired_ = new (note) retired_array{old, capacity_, retired_};
    capacity_ = capacity;
    return true;
  }

  [[no_unique_address]] Allocator alloc_;
  std::atomic<std::uint64_t> seq_{0};
  std::atomic<entry*> index_{nullptr};
  std::atomic<std::size_t> count_{0};
  // Written by readers that miss it, so it has a cache line of its own: a
  // miss on one core must not evict what every reader loads (the counter,
  // the count and the array) from the others.
  alignas(64) mutable std::atomic<std::size_t> last_hit_{0};
  std::size_t capacity_ = 0;
  retired_array* retired_ = nullptr;
};

} // namespace iopt::detail
