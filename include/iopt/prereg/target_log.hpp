// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// The targets of a range of IOMMU pages, kept between the step that finds
// them and the step that writes them. A pinning strategy translates a range
// while it maps it (every page must have a target before anything becomes
// visible); the log keeps what it found, with the highest target byte, so
// that the table write that follows need not translate the same pages a
// second time. For pin-on-map memory that second translation would be most
// of a map's cost (on a real host, a pagemap read per run).
//
// Kept in the form the table is written in: a run of at least long_run pages
// at consecutive targets as one piece (written with map_range), the pages of
// shorter runs (scattered frames) as a list of per-page targets (written with
// map_list). Pieces are in page order from the range's first page.
//
// The log is scratch memory of its owner, who reuses it from call to call (a
// container keeps one). It always has room for inline_pages pages, whatever
// their runs; past that it grows on the heap, up to its limit. When it
// cannot keep a run it stops recording, so that what it holds is always a
// prefix of the range: the owner then lists the pages after
// recorded_pages() again, at most room() at a time (see the container).
// Recording never makes a map fail.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <span>

#include <iopt/addr/address.hpp>
#include <iopt/settings.hpp>

namespace iopt {

// The targets of one range of IOMMU pages, from the pinning step to the table
// write: scratch memory of one owner, which reuses it; no lock.
class target_log {
public:
  // Runs at least this long are kept as one piece; shorter ones page by page.
  static constexpr std::uint64_t long_run = 8;
  // Pages a log can always hold, whatever their runs.
  static constexpr std::size_t inline_pages = 512;
  // The default limit: 2^17 list entries (1 MiB) and as many pieces (2 MiB).
  static constexpr std::size_t default_limit = std::size_t{1} << 17;

  // `limit`: how many list entries, and how many pieces, the log keeps of a
  // range at most (0: none, every page is listed again).
  explicit target_log(std::size_t limit = default_limit) noexcept : limit_(limit) {}
  target_log(const target_log&) = delete;
  target_log& operator=(const target_log&) = delete;

  // Starts a new range of pages of 2^page_shift bytes, forgetting the last;
  // the log keeps as much of it as its limit allows.
  void restart(unsigned page_shift) noexcept { start(page_shift, limit_); }
  // The same for an owner that will record at most room() pages: the log
  // keeps them all, whatever its limit.
  void restart_within_room(unsigned page_shift) noexcept { start(page_shift, room()); }

  // Sets the highest target byte of the whole range, which the owner checks
  // against the table's format.
  void set_highest(hpa highest) noexcept { highest_ = highest; }
  // The highest target byte of the range (0 until set_highest after a
  // restart).
  [[nodiscard]] hpa highest() const noexcept { return highest_; }

  // The next `pages` pages of the range lie at consecutive targets from
  // `target`. Once a run could not be kept, later ones are not either.
  void record(hpa target, std::uint64_t pages) noexcept {
    // The common case of scattered frames, inline: another short run for the
    // open list. It reads nothing it has just stored.
    if (IOPT_LIKELY(list_open_ && pages < long_run && list_end_ - list_used_ >= pages)) {
      append(target, pages);
      return;
    }
    record_otherwise(target, pages);
  }

  // How many pages from the range's first one the log holds.
  [[nodiscard]] std::uint64_t recorded_pages() const noexcept { return pages_; }
  // How many pages the log can hold without growing, whatever their runs.
  [[nodiscard]] std::size_t room() const noexcept {
    return std::min(pieces_.capacity, list_.capacity);
  }

  // on_run(std::uint64_t page index, hpa target, std::uint64_t pages) for a
  // long run, on_list(std::uint64_t page index, std::span<const
  // std::uint64_t> targets) for consecutive pages of short runs; in order.
  template <class OnRun, class OnList>
  void replay(OnRun&& on_run, OnList&& on_list) const noexcept {
    std::uint64_t page = 0;
    for (std::size_t i = 0; i < pieces_used_; ++i) {
      const piece& p = pieces_.data[i];
      if (p.list) {
        // The open list (the last piece) ends where the list does.
        const std::uint64_t pages =
            list_open_ && i + 1 == pieces_used_ ? list_used_ - p.value : p.pages;
        on_list(page, std::span<const std::uint64_t>(list_.data + p.value, pages));
        page += pages;
      } else {
        on_run(page, hpa{p.value}, p.pages);
        page += p.pages;
      }
    }
  }

private:
  // 16 bytes: a page count never needs the top bit.
  struct piece {
    std::uint64_t value;      // a run's first target, or where its list starts
    std::uint64_t pages : 63; // a list's is written when it closes
    std::uint64_t list : 1;
    static constexpr std::uint64_t max_pages = ~std::uint64_t{0} >> 1;
  };
  static_assert(sizeof(piece) == 16);
  // An array with inline room, grown on the heap by doubling.
  template <class T>
  struct buffer {
    std::array<T, inline_pages> inline_room;
    std::unique_ptr<T[]> heap;
    T* data = inline_room.data();
    std::size_t capacity = inline_pages;

    buffer() noexcept = default;
    buffer(const buffer&) = delete;
    buffer& operator=(const buffer&) = delete;
    // `wanted` elements, the first `used` kept; or false.
    bool grow(std::size_t used, std::size_t wanted) noexcept {
      std::unique_ptr<T[]> larger(new (std::nothrow) T[wanted]);
      if (!larger)
        return false;
      std::copy_n(data, used, larger.get());
      heap = std::move(larger);
      data = heap.get();
      capacity = wanted;
      return true;
    }
  };

  void start(unsigned page_shift, std::size_t keep) noexcept {
    page_shift_ = page_shift;
    keep_ = keep;
    pieces_end_ = std::min(pieces_.capacity, keep);
    list_end_ = std::min(list_.capacity, keep);
    pieces_used_ = 0;
    list_used_ = 0;
    pages_ = 0;
    highest_ = hpa{};
    recording_ = true;
    list_open_ = false;
  }
  void append(hpa target, std::uint64_t pages) noexcept {
    std::uint64_t* const out = list_.data + list_used_;
    for (std::uint64_t k = 0; k < pages; ++k)
      out[k] = target.value() + (k << page_shift_);
    list_used_ += pages;
    pages_ += pages;
  }
  // Room for `more` elements of b past `used` within the range's share.
  template <class T>
  bool make_room(buffer<T>& b, std::size_t used, std::size_t more, std::size_t& end) noexcept {
    if (end - used >= more)
      return true;
    if (keep_ - used < more)
      return false;
    if (b.capacity - used < more &&
        !b.grow(used, std::min(keep_, std::max(used + more, b.capacity * 2))))
      return false;
    end = std::min(b.capacity, keep_);
    return true;
  }
  void close_list() noexcept {
    if (!list_open_)
      return;
    piece& open = pieces_.data[pieces_used_ - 1];
    open.pages = (list_used_ - open.value) & piece::max_pages;
    list_open_ = false;
  }
  [[gnu::noinline]] void record_otherwise(hpa target, std::uint64_t pages) noexcept {
    if (!recording_)
      return;
    const bool listed = pages < long_run;
    const bool new_piece = !listed || !list_open_;
    // Room first, so that a run that does not fit changes nothing.
    if ((new_piece && !make_room(pieces_, pieces_used_, 1, pieces_end_)) ||
        (listed && !make_room(list_, list_used_, pages, list_end_))) {
      recording_ = false;
      close_list(); // nothing more joins it
      return;
    }
    if (listed) {
      if (new_piece)
        pieces_.data[pieces_used_++] = piece{list_used_, 0, 1};
      list_open_ = true;
      append(target, pages);
      return;
    }
    close_list();
    pieces_.data[pieces_used_++] = piece{target.value(), pages & piece::max_pages, 0};
    pages_ += pages;
  }

  std::size_t limit_;
  buffer<piece> pieces_;
  buffer<std::uint64_t> list_;
  std::size_t keep_ = 0;       // elements of each kind this range may use
  std::size_t pieces_end_ = 0; // min(capacity, keep_)
  std::size_t list_end_ = 0;
  std::size_t pieces_used_ = 0;
  std::size_t list_used_ = 0;
  std::uint64_t pages_ = 0;
  hpa highest_{};
  unsigned page_shift_ = 0;
  bool recording_ = false;
  bool list_open_ = false; // the last piece is a list that may grow
};

} // namespace iopt
