// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// level_tree<Config>: the blocks of a TCE table and where they come from.
//
// A table is a tree of levels (table/geometry.hpp, table/walk.hpp): a top
// block sized for the window, and lower blocks allocated from the
// configuration's allocator when an entry below them is first set. This
// header owns that tree: the top block, the bytes held, the allocator, and
// the one way lower blocks come into being.
//
// Allocation is all or nothing. reserve() counts the blocks a range of pages
// lacks and allocates all of them privately into a level_reservation; nothing
// is visible yet, and a reservation that is never installed gives its blocks
// back when it dies. install() publishes them with a compare-and-swap per
// missing entry (a lost race gives the block back to the reservation and uses
// the winner's) and cannot fail: while any reservation is outstanding, a clear
// leaves emptied blocks in place (see release_if_empty), so a block counted as
// present when the reservation was made is still there when it is installed.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>

#include <iopt/settings.hpp>
#include <iopt/status.hpp>
#include <iopt/table/geometry.hpp>
#include <iopt/table/walk.hpp>

namespace iopt {

// Whether an operation may allocate levels. A hypervisor's fast path may not
// (it must neither sleep nor allocate): where a level is missing it gets
// status::too_hard, with nothing changed, and retries on the slow path.
enum class allocation : std::uint8_t { allowed, forbidden };

// The level blocks of one TCE table: owns the top block and every lower block
// below it, counts their bytes, and is the only place lower blocks are
// allocated (all or nothing) and given back. tce_table holds one.
template <class Config>
class level_tree {
  using geometry = table_geometry<Config>;
  using traits = table_traits<Config>;
  using walker = detail::walker<Config>;

public:
  // The configuration's block allocator.
  using allocator_type = typename traits::allocator;
  // Levels of the tree, the leaves (level 0) included.
  static constexpr unsigned levels = geometry::levels;
  // The number of the top level.
  static constexpr unsigned top = geometry::top;

private:
  // Zeroed blocks allocated for one operation and not installed yet, one
  // intrusive list per level (the link lives in the block's word 0).
  struct spare_blocks {
    std::array<std::uint64_t*, levels> head{};

    void push(unsigned level, std::uint64_t* block) noexcept {
      block[0] = reinterpret_cast<std::uintptr_t>(head[level]);
      head[level] = block;
    }
    std::uint64_t* pop(unsigned level) noexcept {
      std::uint64_t* block = head[level];
      if (block != nullptr) {
        head[level] = reinterpret_cast<std::uint64_t*>(block[0]);
        block[0] = 0;
      }
      return block;
    }
  };

public:
  // The blocks a range of pages lacked when it was reserved, allocated and
  // not yet visible.
  class level_reservation {
  public:
    // Takes over other's blocks; other is left holding none.
    level_reservation(level_reservation&& other) noexcept
        : tree_(std::exchange(other.tree_, nullptr)), first_(other.first_), last_(other.last_),
          spares_(std::exchange(other.spares_, spare_blocks{})), status_(other.status_) {}
    level_reservation& operator=(level_reservation&&) = delete;
    ~level_reservation() {
      if (tree_ != nullptr) {
        tree_->free_spares(spares_);
        tree_->reservations_.fetch_sub(1, std::memory_order_acq_rel);
      }
    }
    // True when every missing block was allocated, ready for install().
    [[nodiscard]] explicit operator bool() const noexcept { return status_ == status::ok; }
    // Why the reservation failed (no_memory, or the range's status), or ok.
    [[nodiscard]] status error() const noexcept { return status_; }

  private:
    friend class level_tree;
    // A failed reservation for a caller's own check (no tree).
    explicit level_reservation(status s) noexcept : tree_(nullptr), status_(s) {}
    level_reservation(level_tree* tree, std::uint64_t first, std::uint64_t last) noexcept
        : tree_(tree), first_(first), last_(last), status_(status::ok) {
      tree_->reservations_.fetch_add(1, std::memory_order_acq_rel);
    }
    level_tree* tree_;
    std::uint64_t first_ = 0, last_ = 0;
    spare_blocks spares_{};
    status status_;
  };

  // No blocks yet, with a default-made allocator.
  level_tree() noexcept = default;
  // No blocks yet; blocks will come from `alloc`.
  explicit level_tree(allocator_type alloc) noexcept : alloc_(std::move(alloc)) {}
  // Takes over other's blocks and allocator; other is left with none. No
  // reservation may be outstanding on other.
  level_tree(level_tree&& other) noexcept
      : alloc_(std::move(other.alloc_)), top_(std::exchange(other.top_, nullptr)),
        entries_bits_(other.entries_bits_),
        bytes_(other.bytes_.exchange(0, std::memory_order_relaxed)) {}
  // Gives back this tree's blocks, then takes over other's as the move
  // constructor does.
  level_tree& operator=(level_tree&& other) noexcept {
    if (this != &other) {
      release();
      alloc_ = std::move(other.alloc_);
      top_ = std::exchange(other.top_, nullptr);
      entries_bits_ = other.entries_bits_;
      bytes_.store(other.bytes_.exchange(0, std::memory_order_relaxed), std::memory_order_relaxed);
    }
    return *this;
  }
  level_tree(const level_tree&) = delete;
  level_tree& operator=(const level_tree&) = delete;
  ~level_tree() { release(); }

  // Allocates the top block for a window of 2^entries_bits pages; false
  // when it cannot be had.
  [[nodiscard]] bool grow_top(unsigned entries_bits) noexcept {
    entries_bits_ = entries_bits;
    top_ = allocate_block(top_bytes(), top_bytes());
    if (top_ == nullptr)
      return false;
    bytes_.store(top_bytes(), std::memory_order_relaxed);
    return true;
  }

  // The top block, entries in the format's memory byte order (what the
  // hardware is pointed at); nullptr while the tree has none.
  [[nodiscard]] std::uint64_t* top_block() const noexcept { return top_; }
  // Bytes held by the levels right now.
  [[nodiscard]] std::size_t bytes() const noexcept {
    return bytes_.load(std::memory_order_relaxed);
  }
  // The allocator blocks come from and go back to.
  [[nodiscard]] allocator_type& allocator() noexcept { return alloc_; }

  // Makes every level below page indices [first, last] exist. The common
  // case (all there) is one read-only walk; the rest is out of line. When
  // allocation is forbidden a missing level is too_hard for the caller.
  status ensure(std::uint64_t first, std::uint64_t last,
                allocation may = allocation::allowed) noexcept {
    if constexpr (levels == 1) {
      return status::ok;
    } else {
      missing_counter counter;
      walker::template walk<top>(top_, first, last, counter);
      if (IOPT_LIKELY(counter.total == 0))
        return status::ok;
      if (may == allocation::forbidden)
        return status::too_hard;
      level_reservation r = reserve_counted(first, last, counter);
      if (!r)
        return r.error();
      install(r);
      return status::ok;
    }
  }

  // Allocates every block missing below [first, last], privately.
  [[nodiscard]] level_reservation reserve(std::uint64_t first, std::uint64_t last) noexcept {
    missing_counter counter;
    if constexpr (levels > 1)
      walker::template walk<top>(top_, first, last, counter);
    return reserve_counted(first, last, counter);
  }
  // The same below each of several ranges: for_each_range(fn) calls
  // fn(first, last) for each, in ascending order (the same calls every time
  // it is called), once here whatever the levels. Install it with
  // install_each and the same ranges.
  // With `written` true, the leaf blocks are not zeroed: the reservation
  // is then only for install_writing, which writes every entry of a new
  // leaf before it publishes it.
  template <class Ranges>
  [[nodiscard]] level_reservation reserve_each(Ranges&& for_each_range,
                                               bool written = false) noexcept {
    missing_counter counter;
    for_each_range([&](std::uint64_t first, std::uint64_t last) {
      if constexpr (levels > 1)
        walker::template walk<top>(top_, first, last, counter);
    });
    // An empty range: install() walks nothing for it.
    return reserve_counted(1, 0, counter, !written);
  }
  // A reservation that failed before it reached the tree (its range was bad).
  [[nodiscard]] static level_reservation refused(status s) noexcept { return level_reservation(s); }
  // Publishes a reservation's blocks where entries are still missing.
  void install(level_reservation& r) noexcept {
    if (r.tree_ == this && r.status_ == status::ok && r.first_ <= r.last_) {
      installer put{this, &r.spares_};
      walker::template walk<top>(top_, r.first_, r.last_, put);
    }
  }
  // Publishes the blocks of a reserve_each(..., written = true) reservation
  // below [first, last] and writes that range with `writer` (a visitor with
  // leaf(), as the table's writers): a leaf block it installs is written
  // whole while still private (the range's entries by the writer, the rest
  // zeroed) and only then published, so a new leaf costs one pass, not a
  // zeroing and a write, and no reader ever sees it half made.
  template <class Writer>
  void install_writing(level_reservation& r, std::uint64_t first, std::uint64_t last,
                       Writer& writer) noexcept {
    IOPT_ASSERT(r.tree_ == this && r.status_ == status::ok);
    writing_installer<Writer> put{this, &r.spares_, &writer};
    walker::template walk<top>(top_, first, last, put);
  }
  // Publishes a reserve_each reservation below the same ranges.
  template <class Ranges>
  void install_each(level_reservation& r, Ranges&& for_each_range) noexcept {
    if (r.tree_ == this && r.status_ == status::ok) {
      installer put{this, &r.spares_};
      for_each_range([&](std::uint64_t first, std::uint64_t last) {
        walker::template walk<top>(top_, first, last, put);
      });
    }
  }

  // After a clear below `entry` of `Level`: with the configuration's
  // free_empty_levels, gives the child block back when every entry of it is
  // empty, unless a reservation is outstanding (it may count on the block).
  template <unsigned Level>
  void release_if_empty(std::uint64_t& entry, std::uint64_t* child) noexcept {
    if constexpr (traits::free_empty_levels) {
      if (reservations_.load(std::memory_order_acquire) != 0)
        return;
      for (std::size_t i = 0; i < geometry::block_entries(Level - 1); ++i)
        if (detail::load_entry(child[i]) != 0)
          return;
      detail::store_entry(entry, 0);
      free_block(Level - 1, child);
      bytes_.fetch_sub(geometry::block_bytes(Level - 1), std::memory_order_relaxed);
    }
  }

  // Gives every block back.
  void release() noexcept {
    if (top_ == nullptr)
      return;
    free_below<top>(top_, std::size_t{1} << geometry::top_bits(entries_bits_));
    alloc_.deallocate(top_, top_bytes(), top_bytes());
    top_ = nullptr;
    bytes_.store(0, std::memory_order_relaxed);
  }

private:
  std::size_t top_bytes() const noexcept { return geometry::top_block_bytes(entries_bits_); }
  static constexpr std::size_t lower_alignment(unsigned level) noexcept {
    return std::max(geometry::block_bytes(level), detail::min_indirect_alignment);
  }
  std::uint64_t* allocate_block(std::size_t bytes, std::size_t alignment,
                                bool zeroed = true) noexcept {
    void* block = alloc_.allocate(bytes, alignment);
    if (block != nullptr && zeroed)
      std::memset(block, 0, bytes); // empty entries are all-zero in every byte order
    return static_cast<std::uint64_t*>(block);
  }
  void free_block(unsigned level, std::uint64_t* block) noexcept {
    alloc_.deallocate(block, geometry::block_bytes(level), lower_alignment(level));
  }

  // Counts the blocks missing below [first, last]: reading only. Walked over
  // several ascending ranges, it counts a block two neighbouring ranges
  // share once.
  struct missing_counter {
    static constexpr bool whole_gaps = true;
    std::array<std::uint64_t, levels> blocks{};
    std::array<std::uint64_t, levels> last_counted = filled(UINT64_MAX);
    std::uint64_t total = 0;

    static constexpr std::array<std::uint64_t, levels> filled(std::uint64_t v) noexcept {
      std::array<std::uint64_t, levels> a{};
      a.fill(v);
      return a;
    }

    bool leaf(std::uint64_t*, std::size_t, std::size_t, std::uint64_t) noexcept { return true; }
    template <unsigned Level>
    detail::on_missing missing(std::uint64_t&, std::uint64_t first, std::uint64_t last) noexcept {
      // A missing slot of Level lacks its whole subtree over [first, last]:
      // at each level k below, one block per distinct slot of level k + 1.
      for (unsigned k = 0; k < Level; ++k) {
        const unsigned shift = geometry::index_shift(k + 1);
        std::uint64_t n = (last >> shift) - (first >> shift) + 1;
        if (first >> shift == last_counted[k])
          --n; // the previous range counted it
        last_counted[k] = last >> shift;
        blocks[k] += n;
        total += n;
      }
      return detail::on_missing::skip;
    }
  };

  // Installs spare blocks where entries are missing. A lost race puts the
  // block back among the spares and uses the winner's block.
  struct installer {
    level_tree* tree;
    spare_blocks* spares;

    bool leaf(std::uint64_t*, std::size_t, std::size_t, std::uint64_t) noexcept { return true; }
    template <unsigned Level>
    detail::on_missing missing(std::uint64_t& entry, std::uint64_t, std::uint64_t) noexcept {
      std::uint64_t* block = spares->pop(Level - 1);
      IOPT_ASSERT(block != nullptr); // counted by reserve, and no clear freed a level since
      std::uint64_t expected = 0;
      if (std::atomic_ref<std::uint64_t>(entry).compare_exchange_strong(
              expected, walker::encode_indirect(block), std::memory_order_acq_rel,
              std::memory_order_acquire))
        tree->bytes_.fetch_add(geometry::block_bytes(Level - 1), std::memory_order_relaxed);
      else
        spares->push(Level - 1, block);
      return detail::on_missing::descend;
    }
  };

  // Installs spare blocks where entries are missing, as installer does, and
  // writes [first, last] with a writer: a missing leaf is written whole
  // before it is published (see install_writing). A leaf that loses a race
  // goes back among the spares written; only this visitor takes leaves
  // from such a reservation, and it writes every entry of one it takes.
  template <class Writer>
  struct writing_installer {
    level_tree* tree;
    spare_blocks* spares;
    Writer* writer;

    IOPT_ALWAYS_INLINE bool leaf(std::uint64_t* block, std::size_t lo, std::size_t hi,
                                 std::uint64_t first) noexcept {
      return writer->leaf(block, lo, hi, first);
    }
    template <unsigned Level>
    detail::on_missing missing(std::uint64_t& entry, std::uint64_t first,
                               std::uint64_t last) noexcept {
      std::uint64_t* block = spares->pop(Level - 1);
      IOPT_ASSERT(block != nullptr); // counted by reserve_each
      if constexpr (Level == 1) {
        const std::size_t lo = walker::template slot<0>(first);
        const std::size_t hi = walker::template slot<0>(last);
        const std::size_t entries = geometry::block_entries(0);
        std::memset(block, 0, lo * sizeof(std::uint64_t));
        std::memset(block + hi + 1, 0, (entries - hi - 1) * sizeof(std::uint64_t));
        writer->leaf(block, lo, hi, first);
      }
      std::uint64_t expected = 0;
      if (std::atomic_ref<std::uint64_t>(entry).compare_exchange_strong(
              expected, walker::encode_indirect(block), std::memory_order_acq_rel,
              std::memory_order_acquire)) {
        tree->bytes_.fetch_add(geometry::block_bytes(Level - 1), std::memory_order_relaxed);
        return Level == 1 ? detail::on_missing::skip : detail::on_missing::descend;
      }
      spares->push(Level - 1, block); // another thread's block is there: write into it
      return detail::on_missing::descend;
    }
  };

  // Allocates what the counter found missing; nothing is installed here.
  // Leaf blocks are zeroed unless the caller writes them whole itself.
  IOPT_COLD level_reservation reserve_counted(std::uint64_t first, std::uint64_t last,
                                              const missing_counter& counter,
                                              bool zero_leaves = true) noexcept {
    level_reservation r(this, first, last);
    for (unsigned level = 0; level < top; ++level) {
      for (std::uint64_t n = 0; n < counter.blocks[level]; ++n) {
        std::uint64_t* block = allocate_block(geometry::block_bytes(level), lower_alignment(level),
                                              level != 0 || zero_leaves);
        if (block == nullptr) {
          r.status_ = status::no_memory;
          return r; // its destructor gives back what was allocated
        }
        r.spares_.push(level, block);
      }
    }
    return r;
  }

  // Frees the spare blocks of a reservation: all of them after a failure,
  // the losers of races otherwise.
  void free_spares(spare_blocks& spares) noexcept {
    for (unsigned level = 0; level < top; ++level)
      while (std::uint64_t* block = spares.pop(level))
        free_block(level, block);
  }

  template <unsigned Level>
  void free_below(std::uint64_t* block, std::size_t entries) noexcept {
    if constexpr (Level > 0) {
      for (std::size_t i = 0; i < entries; ++i) {
        const std::uint64_t raw = block[i];
        if (raw == 0)
          continue;
        std::uint64_t* child = walker::decode_indirect(raw);
        free_below<Level - 1>(child, geometry::block_entries(Level - 1));
        free_block(Level - 1, child);
      }
    }
  }

  [[no_unique_address]] allocator_type alloc_{};
  std::uint64_t* top_ = nullptr;
  unsigned entries_bits_ = 0; // log2 of the window's pages
  std::atomic<std::size_t> bytes_{0};
  std::atomic<unsigned> reservations_{0}; // outstanding level_reservations
};

} // namespace iopt
