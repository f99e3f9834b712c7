// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// The storage of a container's dirty log (window/container.hpp): the user
// address ranges that writable mappings covered when they were unmapped,
// since the log last reported them, and the bitmap a report is written into.
//
// A VMM that migrates guest RAM must send again every page a device may have
// written. A page mapped writable may be written at any moment, so it is
// dirty for as long as it is mapped: the container finds those pages in its
// windows when asked. A page that was mapped writable and is not any more
// may have been written before its unmap: only the log remembers it, until
// a report covers it.
//
// Unmapping must never fail and must not allocate, so the log is a fixed
// array of sorted, disjoint ranges, allocated when logging starts. A range
// that touches or overlaps recorded ones merges with them; when the array is
// full, a range that would need a slot of its own merges with its nearest
// neighbour instead, taking in the gap between them. Reporting more pages
// dirty than were written is always safe (the VMM sends a page it did not
// have to); reporting fewer would lose guest memory. Every choice below that
// cannot be exact errs on the side of reporting more.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <span>

#include <iopt/addr/address.hpp>
#include <iopt/status.hpp>

namespace iopt {

// The smallest host page a dirty-page report counts in: log2 of 4 KiB.
inline constexpr unsigned min_host_page_shift = 12;
// The largest: log2 of 16 GiB, the largest huge page of POWER.
inline constexpr unsigned max_host_page_shift = 34;

// The user address ranges unmapped from writable mappings and not yet
// reported: sorted, disjoint and never adjacent, at most capacity() of them.
// Inactive (recording nothing) until started. No lock: its owner's.
class dirty_range_log {
public:
  // One recorded range of user addresses, both ends inclusive (a range may
  // end at the top of the address space).
  struct range {
    // The first byte.
    std::uint64_t first = 0;
    // The last byte.
    std::uint64_t last = 0;
    // Equal when both ends are.
    friend constexpr bool operator==(const range&, const range&) noexcept = default;
  };

  // An inactive log.
  dirty_range_log() noexcept = default;
  dirty_range_log(const dirty_range_log&) = delete;
  dirty_range_log& operator=(const dirty_range_log&) = delete;

  // Allocates room for `capacity` ranges and starts recording, with nothing
  // recorded. invalid_parameter for a capacity of 0, no_memory when the room
  // cannot be had; either way the log stays inactive. busy when active.
  status start(std::size_t capacity) noexcept {
    if (active())
      return status::busy;
    if (capacity == 0)
      return status::invalid_parameter;
    std::unique_ptr<range[]> room(new (std::nothrow) range[capacity]);
    if (!room)
      return status::no_memory;
    ranges_ = std::move(room);
    capacity_ = capacity;
    used_ = 0;
    return status::ok;
  }
  // Stops recording and forgets everything recorded; frees the room.
  void stop() noexcept {
    ranges_.reset();
    capacity_ = 0;
    used_ = 0;
  }
  // Whether the log records.
  [[nodiscard]] bool active() const noexcept { return capacity_ != 0; }
  // How many ranges the log can hold.
  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
  // The recorded ranges, in address order.
  [[nodiscard]] std::span<const range> ranges() const noexcept { return {ranges_.get(), used_}; }

  // Records `bytes` (at least 1, not past 2^64) from `first` as possibly
  // written. Nothing when inactive. Never fails and never allocates: when
  // the range needs a slot and none is free, it joins its nearest neighbour.
  void record(ua first, std::uint64_t bytes) noexcept {
    if (!active() || bytes == 0)
      return;
    insert(range{first.value(), first.value() + (bytes - 1)});
  }

  // Calls on_range(std::uint64_t first, std::uint64_t last) for every
  // recorded range that meets [first, last], clipped to it, in order.
  template <class OnRange>
  void for_each_in(std::uint64_t first, std::uint64_t last, OnRange&& on_range) const {
    for (std::size_t i = first_ending_at_or_after(first); i < used_; ++i) {
      const range& r = ranges_[i];
      if (r.first > last)
        break;
      on_range(std::max(r.first, first), std::min(r.last, last));
    }
  }

  // Forgets what the log holds of [first, last]: ranges inside it go, ranges
  // across its ends are cut back to what lies outside. A range that holds
  // [first, last] with bytes on both sides needs a second slot for its far
  // part; when none is free it stays whole, reported again next time.
  void forget(std::uint64_t first, std::uint64_t last) noexcept {
    const std::size_t i = first_ending_at_or_after(first);
    std::size_t j = i; // one past the last range that meets [first, last]
    while (j < used_ && ranges_[j].first <= last)
      ++j;
    if (i == j)
      return;
    const bool keep_head = ranges_[i].first < first;
    const bool keep_tail = ranges_[j - 1].last > last;
    if (i + 1 == j && keep_head && keep_tail) { // the range must split in two
      if (used_ == capacity_)
        return; // no slot for the far part: keep it all (over-report)
      std::copy_backward(ranges_.get() + j, ranges_.get() + used_, ranges_.get() + used_ + 1);
      ranges_[j] = range{last + 1, ranges_[i].last};
      ranges_[i].last = first - 1;
      ++used_;
      return;
    }
    std::size_t out = i;
    if (keep_head)
      ranges_[out++].last = first - 1;
    if (keep_tail)
      ranges_[out++] = range{last + 1, ranges_[j - 1].last};
    std::copy(ranges_.get() + j, ranges_.get() + used_, ranges_.get() + out);
    used_ -= j - out;
  }

private:
  // The first range whose last byte is at or after `at` (used_ if none).
  [[nodiscard]] std::size_t first_ending_at_or_after(std::uint64_t at) const noexcept {
    const range* found = std::partition_point(ranges_.get(), ranges_.get() + used_,
                                              [at](const range& r) { return r.last < at; });
    return static_cast<std::size_t>(found - ranges_.get());
  }

  void insert(range add) noexcept {
    // The ranges that overlap `add` or touch it, [i, j): they merge with it.
    std::size_t i = add.first == 0 ? 0 : first_ending_at_or_after(add.first - 1);
    std::size_t j = i;
    while (j < used_ && (add.last == UINT64_MAX || ranges_[j].first <= add.last + 1))
      ++j;
    if (i != j) {
      ranges_[i] =
          range{std::min(add.first, ranges_[i].first), std::max(add.last, ranges_[j - 1].last)};
      std::copy(ranges_.get() + j, ranges_.get() + used_, ranges_.get() + i + 1);
      used_ -= j - i - 1;
      return;
    }
    if (used_ < capacity_) {
      std::copy_backward(ranges_.get() + i, ranges_.get() + used_, ranges_.get() + used_ + 1);
      ranges_[i] = add;
      ++used_;
      return;
    }
    // Full: widen the nearer neighbour over the gap and `add` (more pages
    // reported, never fewer). The widened range still leaves a gap to the
    // other neighbour, which `add` did not touch.
    const bool has_left = i != 0, has_right = i != used_;
    const std::uint64_t left_gap = has_left ? add.first - ranges_[i - 1].last : UINT64_MAX;
    const std::uint64_t right_gap = has_right ? ranges_[i].first - add.last : UINT64_MAX;
    if (has_left && left_gap <= right_gap)
      ranges_[i - 1].last = add.last;
    else
      ranges_[i].first = add.first;
  }

  std::unique_ptr<range[]> ranges_;
  std::size_t capacity_ = 0; // 0: inactive
  std::size_t used_ = 0;
};

namespace detail {

// The bitmap a dirty-page report fills: bit i (bit i % 64 of word i / 64,
// counted from the least significant bit of a native word) stands for host
// page i of the reported range [first, last].
class dirty_bitmap {
public:
  dirty_bitmap(std::span<std::uint64_t> words, std::uint64_t first, std::uint64_t last,
               unsigned host_page_shift) noexcept
      : words_(words), first_(first), last_(last), shift_(host_page_shift) {}

  // Sets the bit of every host page that holds a byte of [from, to] inside
  // the range.
  void mark(std::uint64_t from, std::uint64_t to) noexcept {
    if (to < first_ || from > last_)
      return;
    const std::uint64_t lo = (std::max(from, first_) - first_) >> shift_;
    const std::uint64_t hi = (std::min(to, last_) - first_) >> shift_;
    const auto lo_word = static_cast<std::size_t>(lo >> 6);
    const auto hi_word = static_cast<std::size_t>(hi >> 6);
    const std::uint64_t head = ~std::uint64_t{0} << (lo & 63);
    const std::uint64_t tail = ~std::uint64_t{0} >> (63 - (hi & 63));
    if (lo_word == hi_word) {
      words_[lo_word] |= head & tail;
      return;
    }
    words_[lo_word] |= head;
    std::fill(words_.begin() + static_cast<std::ptrdiff_t>(lo_word) + 1,
              words_.begin() + static_cast<std::ptrdiff_t>(hi_word), ~std::uint64_t{0});
    words_[hi_word] |= tail;
  }

private:
  std::span<std::uint64_t> words_;
  std::uint64_t first_, last_;
  unsigned shift_;
};

} // namespace detail

} // namespace iopt
