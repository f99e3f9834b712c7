// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// change_tracker: which pages of a table changed since they were last taken,
// for incremental migration (migrate/table_stream.hpp). A table keeps one
// and marks the pages every write and clear touches while tracking is on;
// a migration round takes the marks (get and clear) and sends what those
// pages hold now. Off by default: then it is one null pointer and the
// writes pay one untaken branch.
//
// The marks are a radix tree of bitmaps. A node is 66 words: a summary of
// which of its 64 slots hold marks, a `whole` mask, and 64 slots. A level-0
// node's slots are bitmaps of 64 pages each (4096 pages a node); a higher
// node's slots point to the nodes below (64 times the pages of a child).
// Nodes exist only where something was marked, so the memory and the cost
// of a take follow the changes, not the window: 1000 scattered changes in
// a 128 TiB window are a few hundred nodes and a walk down to each.
//
// Marking never fails and never loses a change. A child wholly inside a
// marked range is marked `whole` in its parent, with no node below; where a
// node is needed but cannot be had (the allocation failed, or the caller may
// not allocate), the child that would hold it is marked whole instead. A
// take then reports more pages than changed, never fewer: sending a page
// that did not change costs bytes, missing one corrupts the copy.
//
// Marks and takes may run on several threads at once. A writer sets the
// slot bits first and the summary bit after; a take exchanges the summary
// with 0 first and each slot after. A mark that a take misses is therefore
// left whole for the next take, and a take that reads a page after
// exchanging its mark sees every write that came before the mark (the
// table marks after it writes). Most marks find their bits set already (a
// page changed twice in a round, a summary bit its neighbours set): a mark
// reads before it sets, and sets only bits that are missing, so it costs
// one fence and a few loads instead of a locked operation per word. The
// fence orders the table's write before those reads, and every mark and
// take operation is sequentially consistent, so a bit seen set cannot be
// one a take has just cleared without the take also seeing the write.
// start() and stop() must run alone.
#pragma once

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include <iopt/settings.hpp>
#include <iopt/status.hpp>
#include <iopt/table/allocator.hpp>

// ThreadSanitizer does not model fences (GCC refuses them under it): there
// the tracker orders its marks and takes through one shared atomic instead.
#if defined(__SANITIZE_THREAD__)
#define IOPT_TRACKER_ORDER_BY_RMW 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define IOPT_TRACKER_ORDER_BY_RMW 1
#endif
#endif
#ifndef IOPT_TRACKER_ORDER_BY_RMW
#define IOPT_TRACKER_ORDER_BY_RMW 0
#endif

namespace iopt {

// The pages of a window that changed since they were last taken, as a
// sparse radix tree of bitmaps (see the file comment); nodes come from
// Allocator.
template <block_allocator Allocator = heap_allocator>
class change_tracker {
  // One node: 64 slots, a summary of the marked ones, and (above level 0)
  // the slots marked whole.
  struct node {
    std::uint64_t marked; // bit i: slot i holds marks (or is whole)
    std::uint64_t whole;  // bit i: every page under slot i changed
    std::uint64_t slot[64];
  };
  static constexpr unsigned node_bits = 6;  // log2 of the slots of a node
  static constexpr unsigned page_bits = 12; // log2 of the pages of a level-0 node

  // log2 of the pages under one slot of a node of `level`.
  static constexpr unsigned slot_shift(unsigned level) noexcept {
    return level == 0 ? 6 : page_bits + node_bits * (level - 1);
  }

public:
  // Not tracking.
  change_tracker() noexcept = default;
  // Not tracking; nodes will come from `alloc`.
  explicit change_tracker(Allocator alloc) noexcept : alloc_(std::move(alloc)) {}
  // Takes over other's marks; other is left not tracking.
  change_tracker(change_tracker&& other) noexcept
      : alloc_(std::move(other.alloc_)), root_(std::exchange(other.root_, nullptr)),
        root_level_(other.root_level_),
        nodes_(other.nodes_.exchange(0, std::memory_order_relaxed)) {}
  // Stops tracking here, then takes over other's marks.
  change_tracker& operator=(change_tracker&& other) noexcept {
    if (this != &other) {
      stop();
      alloc_ = std::move(other.alloc_);
      root_ = std::exchange(other.root_, nullptr);
      root_level_ = other.root_level_;
      nodes_.store(other.nodes_.exchange(0, std::memory_order_relaxed), std::memory_order_relaxed);
    }
    return *this;
  }
  change_tracker(const change_tracker&) = delete;
  change_tracker& operator=(const change_tracker&) = delete;
  ~change_tracker() { stop(); }

  // Starts tracking a window of 2^entries_bits pages with nothing marked:
  // busy when tracking already, no_memory when the root cannot be had.
  status start(unsigned entries_bits) noexcept {
    if (root_ != nullptr)
      return status::busy;
    unsigned level = 0;
    while (entries_bits > page_bits + node_bits * level)
      ++level;
    node* root = make_node();
    if (root == nullptr)
      return status::no_memory;
    root_level_ = level;
    root_ = root;
    return status::ok;
  }
  // Stops tracking and forgets every mark.
  void stop() noexcept {
    if (root_ == nullptr)
      return;
    free_below(root_, root_level_);
    root_ = nullptr;
  }
  // Whether changes are being tracked.
  [[nodiscard]] bool active() const noexcept { return root_ != nullptr; }
  // Bytes the marks hold now.
  [[nodiscard]] std::size_t bytes() const noexcept {
    return nodes_.load(std::memory_order_relaxed) * sizeof(node);
  }

  // Marks pages [first, last] changed; only while tracking. Never fails:
  // where a node is missing and may_allocate is false, or it cannot be
  // had, a larger stretch is marked (see the file comment).
  void mark(std::uint64_t first, std::uint64_t last, bool may_allocate) noexcept {
    IOPT_ASSERT(root_ != nullptr && first <= last);
    order_point(); // the write before the reads
    mark_below(root_, root_level_, 0, first, last, may_allocate);
  }

  // Takes every mark (get and clear): calls on_range(first, last) for each
  // stretch of marked pages, in ascending order, adjacent stretches joined.
  // Pages past the window are never marked.
  template <class OnRange>
  void take(OnRange&& on_range) noexcept {
    if (root_ == nullptr)
      return;
    joiner<std::remove_reference_t<OnRange>> join{&on_range};
    take_below(root_, root_level_, 0, join, false);
    join.flush();
  }

private:
  // Orders every access before it against every access after it, on all
  // threads, as a sequentially consistent fence. Under ThreadSanitizer it
  // is a read-modify-write of one atomic that every mark and take shares:
  // those are totally ordered, each acquiring what the one before released,
  // which gives marks and takes the same order.
  void order_point() noexcept {
#if IOPT_TRACKER_ORDER_BY_RMW
    order_.fetch_add(0, std::memory_order_seq_cst);
#else
    std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
  }
  // Sets bits in a word, with a locked operation only if some are missing.
  static void set_bits(std::uint64_t& word, std::uint64_t bits) noexcept {
    auto w = std::atomic_ref<std::uint64_t>(word);
    if ((w.load(std::memory_order_seq_cst) & bits) != bits)
      w.fetch_or(bits, std::memory_order_seq_cst);
  }
  static std::uint64_t take_word(std::uint64_t& word) noexcept {
    // A load first: an exchange of a word with no marks would only take its
    // cache line away from the writers.
    auto w = std::atomic_ref<std::uint64_t>(word);
    if (w.load(std::memory_order_seq_cst) == 0)
      return 0;
    return w.exchange(0, std::memory_order_seq_cst);
  }
  // Bits lo..hi (inclusive) of a word.
  static constexpr std::uint64_t bit_span(unsigned lo, unsigned hi) noexcept {
    return (hi == 63 ? ~std::uint64_t{0} : (std::uint64_t{1} << (hi + 1)) - 1) &
           ~((std::uint64_t{1} << lo) - 1);
  }

  node* make_node() noexcept {
    void* p = alloc_.allocate(sizeof(node), alignof(node));
    if (p == nullptr)
      return nullptr;
    std::memset(p, 0, sizeof(node));
    nodes_.fetch_add(1, std::memory_order_relaxed);
    return static_cast<node*>(p);
  }
  void free_node(node* n) noexcept {
    alloc_.deallocate(n, sizeof(node), alignof(node));
    nodes_.fetch_sub(1, std::memory_order_relaxed);
  }
  void free_below(node* n, unsigned level) noexcept {
    if (level > 0)
      for (const std::uint64_t child : n->slot)
        if (child != 0)
          free_below(reinterpret_cast<node*>(child), level - 1);
    free_node(n);
  }

  // The child under slot i of n, made if missing and allowed; nullptr when
  // it cannot be had. A lost race gives the new node back.
  node* child_of(node* n, unsigned i, bool may_allocate) noexcept {
    auto slot = std::atomic_ref<std::uint64_t>(n->slot[i]);
    std::uint64_t raw = slot.load(std::memory_order_acquire);
    if (raw != 0 || !may_allocate)
      return reinterpret_cast<node*>(raw);
    node* made = make_node();
    if (made == nullptr)
      return nullptr;
    if (slot.compare_exchange_strong(raw, reinterpret_cast<std::uintptr_t>(made),
                                     std::memory_order_acq_rel, std::memory_order_acquire))
      return made;
    free_node(made);
    return reinterpret_cast<node*>(raw);
  }

  // Marks [first, last], which lies under n (a node of `level` whose first
  // page is base).
  void mark_below(node* n, unsigned level, std::uint64_t base, std::uint64_t first,
                  std::uint64_t last, bool may_allocate) noexcept {
    const unsigned shift = slot_shift(level);
    const auto lo = static_cast<unsigned>((first - base) >> shift);
    const auto hi = static_cast<unsigned>((last - base) >> shift);
    if (level == 0) {
      for (unsigned i = lo; i <= hi; ++i) {
        const std::uint64_t word_first = base + (std::uint64_t{i} << shift);
        const unsigned from = i == lo ? static_cast<unsigned>(first - word_first) : 0;
        const unsigned to = i == hi ? static_cast<unsigned>(last - word_first) : 63;
        set_bits(n->slot[i], bit_span(from, to));
      }
    } else {
      std::uint64_t whole = 0;
      for (unsigned i = lo; i <= hi; ++i) {
        const std::uint64_t child_first = base + (std::uint64_t{i} << shift);
        const std::uint64_t child_last = child_first + ((std::uint64_t{1} << shift) - 1);
        const std::uint64_t from = std::max(first, child_first);
        const std::uint64_t to = std::min(last, child_last);
        node* child = nullptr;
        if (from != child_first || to != child_last)
          child = child_of(n, i, may_allocate);
        if (child == nullptr)
          whole |= std::uint64_t{1} << i; // all of it, or more than changed
        else
          mark_below(child, level - 1, child_first, from, to, may_allocate);
      }
      if (whole != 0)
        set_bits(n->whole, whole);
    }
    set_bits(n->marked, bit_span(lo, hi));
  }

  // Joins the stretches a take finds, which come in ascending order.
  template <class OnRange>
  struct joiner {
    OnRange* on_range;
    std::uint64_t first = 0, last = 0;
    bool open = false;

    void add(std::uint64_t f, std::uint64_t l) noexcept {
      if (open && f == last + 1) {
        last = l;
        return;
      }
      flush();
      first = f;
      last = l;
      open = true;
    }
    void flush() noexcept {
      if (open)
        (*on_range)(first, last);
      open = false;
    }
  };

  // Takes the marks under n, handing them to join unless `discard` (the
  // subtree was taken whole above: its marks are only cleared).
  template <class Join>
  void take_below(node* n, unsigned level, std::uint64_t base, Join& join, bool discard) noexcept {
    const unsigned shift = slot_shift(level);
    std::uint64_t marked = take_word(n->marked);
    if (level == 0) {
      // Every word first, then one fence, then the pages: whoever reads
      // them then sees every write whose mark was taken (the file comment).
      std::uint64_t taken[64];
      for (std::uint64_t left = marked; left != 0; left &= left - 1) {
        const auto i = static_cast<unsigned>(std::countr_zero(left));
        taken[i] = take_word(n->slot[i]);
      }
      order_point();
      for (; marked != 0 && !discard; marked &= marked - 1) {
        const auto i = static_cast<unsigned>(std::countr_zero(marked));
        const std::uint64_t word_first = base + (std::uint64_t{i} << shift);
        for (std::uint64_t bits = taken[i]; bits != 0;) {
          const auto from = static_cast<unsigned>(std::countr_zero(bits));
          const auto length = static_cast<unsigned>(std::countr_one(bits >> from));
          join.add(word_first + from, word_first + from + length - 1);
          bits &= ~bit_span(from, from + length - 1);
        }
      }
      return;
    }
    const std::uint64_t whole = take_word(n->whole);
    if (whole != 0)
      order_point(); // as for the words below
    for (std::uint64_t pending = marked | whole; pending != 0; pending &= pending - 1) {
      const auto i = static_cast<unsigned>(std::countr_zero(pending));
      const std::uint64_t child_first = base + (std::uint64_t{i} << shift);
      const bool taken_whole = (whole >> i & 1) != 0;
      if (taken_whole && !discard)
        join.add(child_first, child_first + ((std::uint64_t{1} << shift) - 1));
      const std::uint64_t raw =
          std::atomic_ref<std::uint64_t>(n->slot[i]).load(std::memory_order_acquire);
      if (raw != 0)
        take_below(reinterpret_cast<node*>(raw), level - 1, child_first, join,
                   discard || taken_whole);
    }
  }

  [[no_unique_address]] Allocator alloc_{};
  node* root_ = nullptr;
  unsigned root_level_ = 0;
  std::atomic<std::size_t> nodes_{0};
  std::atomic<std::uint64_t> order_{0}; // order_point's atomic under ThreadSanitizer
};

} // namespace iopt
