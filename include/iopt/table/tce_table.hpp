// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// tce_table<Config>: the TCE table of one DMA window.
//
// The window is [bus offset, bus offset + size), size a power of two, split
// into IOMMU pages of the configuration's page size; entry i translates page i.
// The table is a tree of levels (table/geometry.hpp, table/walk.hpp). With
// levels on demand only the top level exists at creation; a lower block is
// allocated when an entry below it is first set and installed with a
// compare-and-swap, so two threads racing to create it end with one block
// and no leak. Reads and clears never allocate.
//
// Allocation is all or nothing: an operation first counts the blocks it lacks,
// allocates all of them privately, and only then installs them. When an
// allocation fails nothing has been published, so the table is exactly as it
// was (entries, levels and memory_bytes()) and status::no_memory is returned.
//
// Every operation validates its whole input before it changes anything; bad
// input gets a status and leaves the table unchanged. Entries are written
// atomically: a concurrent reader sees the old or the new entry, never a mix.
//
// Targets are plain 64-bit addresses: host physical addresses in a hardware
// table, guest physical addresses in a table a hypervisor keeps for a guest.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <type_traits>
#include <utility>

#include <iopt/addr/address.hpp>
#include <iopt/addr/align.hpp>
#include <iopt/addr/range.hpp>
#include <iopt/config.hpp>
#include <iopt/format/byte_order.hpp>
#include <iopt/format/permission.hpp>
#include <iopt/format/traits.hpp>
#include <iopt/status.hpp>
#include <iopt/table/bulk_entries.hpp>
#include <iopt/table/geometry.hpp>
#include <iopt/table/mappings.hpp>
#include <iopt/table/walk.hpp>

namespace iopt {

// Whether an operation may allocate levels. A hypervisor's fast path may not
// (it must neither sleep nor allocate): where a level is missing it gets
// status::too_hard, with nothing changed, and retries on the slow path.
enum class allocation : std::uint8_t { allowed, forbidden };

// Where one IOBA leads.
struct translation {
  std::uint64_t target = 0; // the byte address, page offset included
  permission perm = permission::none;

  friend constexpr bool operator==(const translation&, const translation&) noexcept = default;
};

template <class Config>
class tce_table {
  using geometry = table_geometry<Config>;
  using traits = table_traits<Config>;
  using walker = detail::walker<Config>;
  static constexpr unsigned top = geometry::top;

  // Zeroed blocks allocated for one operation before any is installed,
  // kept as one intrusive list per level (the link lives in word 0).
  struct level_reserve {
    std::array<std::uint64_t*, geometry::levels> head{};

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
  using config_type = Config;
  using format = format_traits<typename traits::format>;
  using allocator_type = typename traits::allocator;

  static constexpr unsigned page_shift = geometry::page_shift;
  static constexpr std::uint64_t page_bytes = std::uint64_t{1} << page_shift;
  static constexpr unsigned levels = geometry::levels;
  static constexpr std::uint64_t max_window_bytes = std::uint64_t{1} << geometry::max_window_shift;

  // A table with no window: every IOBA is outside it.
  tce_table() noexcept = default;

  // Makes the table of a window of `window_bytes` at `bus_offset`. Refuses a
  // size that is not a power of two or smaller than a page
  // (invalid_parameter), an offset not aligned to the page (not_aligned), a
  // window past 2^64 (wraps), one larger than the levels can index or, where
  // the configuration asks for it, one that breaks the hardware index limit
  // (unsupported), and reports no_memory when the first blocks cannot be had.
  [[nodiscard]] static result<tce_table> create(ioba bus_offset, std::uint64_t window_bytes,
                                                allocator_type alloc = {}) noexcept {
    if (!std::has_single_bit(window_bytes) || window_bytes < page_bytes)
      return status::invalid_parameter;
    if (!is_aligned(bus_offset, page_shift))
      return status::not_aligned;
    if (!ioba_range::make(bus_offset, window_bytes))
      return status::wraps;
    const auto entries_bits = static_cast<unsigned>(std::countr_zero(window_bytes)) - page_shift;
    if (entries_bits > geometry::max_entries_bits)
      return status::unsupported;
    if (traits::hardware_index_limit &&
        geometry::hardware_index_bits(entries_bits) + page_shift >= hardware_index_limit_bits)
      return status::unsupported;

    tce_table table(std::move(alloc));
    table.offset_ = bus_offset.value();
    table.pages_ = std::uint64_t{1} << entries_bits;
    table.top_bits_ = geometry::top_bits(entries_bits);
    table.top_ = table.allocate_block(table.top_bytes(), table.top_bytes());
    if (table.top_ == nullptr)
      return status::no_memory;
    table.bytes_.store(table.top_bytes(), std::memory_order_relaxed);
    if constexpr (!traits::levels_on_demand) {
      if (const status s = table.ensure_levels(0, table.pages_ - 1); s != status::ok)
        return s; // the table's destructor gives back what was allocated
    }
    return table;
  }

  tce_table(tce_table&& other) noexcept
      : alloc_(std::move(other.alloc_)), top_(std::exchange(other.top_, nullptr)),
        offset_(other.offset_), pages_(std::exchange(other.pages_, 0)), top_bits_(other.top_bits_),
        bytes_(other.bytes_.exchange(0, std::memory_order_relaxed)) {}
  tce_table& operator=(tce_table&& other) noexcept {
    if (this != &other) {
      release();
      alloc_ = std::move(other.alloc_);
      top_ = std::exchange(other.top_, nullptr);
      offset_ = other.offset_;
      pages_ = std::exchange(other.pages_, 0);
      top_bits_ = other.top_bits_;
      bytes_.store(other.bytes_.exchange(0, std::memory_order_relaxed), std::memory_order_relaxed);
    }
    return *this;
  }
  tce_table(const tce_table&) = delete;
  tce_table& operator=(const tce_table&) = delete;
  ~tce_table() { release(); }

  // ---- observers -----------------------------------------------------------

  [[nodiscard]] ioba_range window() const noexcept {
    return ioba_range::make(ioba{offset_}, pages_ << page_shift).value_or(ioba_range{});
  }
  [[nodiscard]] std::uint64_t pages() const noexcept { return pages_; }
  // Bytes held by the table's levels right now.
  [[nodiscard]] std::size_t memory_bytes() const noexcept {
    return bytes_.load(std::memory_order_relaxed);
  }
  [[nodiscard]] allocator_type& allocator() noexcept { return alloc_; }
  // Page index of an IOBA inside the window (no checks).
  [[nodiscard]] std::uint64_t page_index(ioba a) const noexcept {
    return (a.value() - offset_) >> page_shift;
  }

  // ---- single entries ------------------------------------------------------

  // Maps one page. An existing entry is replaced.
  status map(ioba a, std::uint64_t target, permission perm,
             allocation may = allocation::allowed) noexcept {
    std::uint64_t page = 0;
    if (const status s = check_ioba(a, page); IOPT_UNLIKELY(s != status::ok))
      return s;
    const std::uint64_t value = format::make(target, perm);
    if (const status s = check_mapping(target, perm, value); IOPT_UNLIKELY(s != status::ok))
      return s;
    return store(page, value, may);
  }

  // Removes the mapping of one page: not_found when there was none.
  status unmap(ioba a) noexcept {
    std::uint64_t page = 0;
    if (const status s = check_ioba(a, page); IOPT_UNLIKELY(s != status::ok))
      return s;
    std::uint64_t* e = walker::template leaf_entry<top>(top_, page);
    if (e == nullptr || !format::is_present(format::from_memory(detail::load_entry(*e))))
      return status::not_found;
    const std::uint64_t old = format::from_memory(detail::exchange_entry(*e, 0));
    return format::is_present(old) ? status::ok : status::not_found;
  }

  // The raw TCE value of one page (0 where nothing was ever set).
  [[nodiscard]] result<std::uint64_t> get(ioba a) const noexcept {
    std::uint64_t page = 0;
    if (const status s = check_ioba(a, page); IOPT_UNLIKELY(s != status::ok))
      return s;
    const std::uint64_t* e = walker::template leaf_entry<top>(top_, page);
    return e == nullptr ? 0 : format::from_memory(detail::load_entry(*e));
  }

  // Writes a raw TCE value (normalized by the format). Writing 0 where the
  // level does not exist allocates nothing.
  status put(ioba a, std::uint64_t tce, allocation may = allocation::allowed) noexcept {
    std::uint64_t page = 0;
    if (const status s = check_value(a, tce, page); IOPT_UNLIKELY(s != status::ok))
      return s;
    const std::uint64_t value = format::normalize(tce);
    if (value == 0) {
      std::uint64_t* e = walker::template leaf_entry<top>(top_, page);
      if (e != nullptr)
        detail::store_entry(*e, 0);
      return status::ok;
    }
    return store(page, value, may);
  }

  // Atomically replaces one entry and returns the value it held.
  result<std::uint64_t> xchg(ioba a, std::uint64_t tce,
                             allocation may = allocation::allowed) noexcept {
    std::uint64_t page = 0;
    if (const status s = check_value(a, tce, page); IOPT_UNLIKELY(s != status::ok))
      return s;
    const std::uint64_t value = format::normalize(tce);
    std::uint64_t* e = walker::template leaf_entry<top>(top_, page);
    if (e == nullptr) {
      if (value == 0)
        return std::uint64_t{0};
      if (const status s = ensure_levels(page, page, may); s != status::ok)
        return s;
      e = walker::template leaf_entry<top>(top_, page);
    }
    return format::from_memory(detail::exchange_entry(*e, format::to_memory(value)));
  }

  // Where a byte of bus address space leads; not_found when its page is not mapped.
  [[nodiscard]] result<translation> translate(ioba a) const noexcept {
    const std::uint64_t rel = a.value() - offset_;
    if (IOPT_UNLIKELY(a.value() < offset_ || (rel >> page_shift) >= pages_))
      return status::out_of_window;
    const std::uint64_t* e = walker::template leaf_entry<top>(top_, rel >> page_shift);
    if (e == nullptr)
      return status::not_found;
    const std::uint64_t value = format::from_memory(detail::load_entry(*e));
    if (!format::is_present(value))
      return status::not_found;
    return translation{format::target(value, page_shift) | (rel & (page_bytes - 1)),
                       format::permissions(value)};
  }

  // ---- ranges --------------------------------------------------------------

  // Maps `pages` consecutive pages from `first` to consecutive targets from
  // `target`, replacing what was there. Walks down once per leaf block.
  status map_range(ioba first, std::uint64_t target, std::uint64_t pages, permission perm,
                   allocation may = allocation::allowed) noexcept {
    std::uint64_t first_page = 0;
    if (const status s = check_range(first, pages, first_page); IOPT_UNLIKELY(s != status::ok))
      return s;
    const std::uint64_t value = format::make(target, perm);
    if (const status s = check_mapping(target, perm, value); IOPT_UNLIKELY(s != status::ok))
      return s;
    if (pages - 1 > ((UINT64_MAX - target) >> page_shift))
      return status::wraps; // the last target would pass 2^64
    const std::uint64_t last_target = target + ((pages - 1) << page_shift);
    if (const status s = format::check(format::make(last_target, perm), page_shift);
        s != status::ok)
      return s;
    return write_sequence(first_page, pages, value, page_bytes, may);
  }

  // Writes the raw TCE values `tces` to consecutive pages from `first`. Every
  // value is checked before any is written, and every level is allocated
  // before any is written: the call applies all of them or none.
  status put_list(ioba first, std::span<const std::uint64_t> tces,
                  allocation may = allocation::allowed) noexcept {
    return put_list(first, native_values{tces}, may, no_check);
  }
  // The same for values in a stated byte order (a guest's big-endian TCE
  // list, read in place), with a check of the caller's own (for instance,
  // that targets are guest RAM). check(tce, pages) vets the `pages` values
  // from tce, after the format has accepted each of them: a long run (a
  // present value followed by the values of the next pages, or a value that
  // maps nothing repeated; see run_at) in one call, any other value on its
  // own. The first value or run it refuses decides the status.
  template <std::endian Order, class Check>
  status put_list(ioba first, ordered_values<Order> tces, allocation may, Check&& check) noexcept {
    constexpr bool swapped = ordered_values<Order>::swapped;
    std::uint64_t first_page = 0;
    if (const status s = check_range(first, tces.size(), first_page);
        IOPT_UNLIKELY(s != status::ok))
      return s;
    const std::uint64_t* stored = tces.stored.data();
    for (std::size_t i = 0; i < tces.size();) {
      if (const std::size_t n = run_at<swapped>(stored + i, tces.size() - i); n != 0) {
        if (const status s = check_run<swapped>(stored + i, n, check);
            IOPT_UNLIKELY(s != status::ok))
          return s;
        i += n;
      } else {
        for (const std::size_t end = std::min(tces.size(), i + list_stride); i < end; ++i)
          if (const status s = check_one(detail::swapped_if<swapped>(stored[i]), check);
              IOPT_UNLIKELY(s != status::ok))
            return s;
      }
    }
    const std::uint64_t last_page = first_page + (tces.size() - 1);
    if (const status s = ensure_levels(first_page, last_page, may); s != status::ok)
      return s;
    list_writer<swapped> writer{{}, stored};
    walker::template walk<top>(top_, first_page, last_page, writer);
    return status::ok;
  }

  // Maps consecutive pages from `first` to the listed targets (scattered
  // frames: one target per page), all with `perm`. Every target is checked
  // (aligned to the page, within the format's address bits) before any
  // entry is written; the call maps all of them or none.
  status map_list(ioba first, std::span<const std::uint64_t> targets, permission perm,
                  allocation may = allocation::allowed) noexcept {
    std::uint64_t first_page = 0;
    if (const status s = check_range(first, targets.size(), first_page);
        IOPT_UNLIKELY(s != status::ok))
      return s;
    // One pass: the OR of all targets shows any unaligned one, their
    // maximum any past the address bits (the format's mask is a low mask).
    std::uint64_t bits = 0, highest = 0;
    for (const std::uint64_t t : targets) {
      bits |= t;
      highest = std::max(highest, t);
    }
    if (const status s =
            check_mapping(bits & low_mask(page_shift), perm, format::make(highest, perm));
        IOPT_UNLIKELY(s != status::ok))
      return s;
    if (const status s = ensure_levels(first_page, first_page + (targets.size() - 1), may);
        s != status::ok)
      return s;
    target_writer writer{{}, targets.data(), format::make(0, perm)};
    walker::template walk<top>(top_, first_page, first_page + (targets.size() - 1), writer);
    return status::ok;
  }

  // Writes one raw TCE value into `pages` entries from `first`. A value that
  // normalizes to 0 is a clear and allocates nothing.
  status fill(ioba first, std::uint64_t pages, std::uint64_t tce,
              allocation may = allocation::allowed) noexcept {
    std::uint64_t first_page = 0;
    if (const status s = check_range(first, pages, first_page); IOPT_UNLIKELY(s != status::ok))
      return s;
    if (const status s = format::check(tce, page_shift); IOPT_UNLIKELY(s != status::ok))
      return s;
    const std::uint64_t value = format::normalize(tce);
    if (value == 0) {
      clear_pages(first_page, pages);
      return status::ok;
    }
    return write_sequence(first_page, pages, value, 0, may);
  }

  // Makes every level below `pages` entries from `first` exist, writing no
  // entry: afterwards writes to that range cannot fail for want of memory.
  // All or nothing, like every allocation here.
  status prepare(ioba first, std::uint64_t pages) noexcept {
    level_reservation r = reserve(first, pages);
    if (!r)
      return r.error();
    install(r);
    return status::ok;
  }

  // The same in two steps, for callers that must prepare several tables all
  // or nothing: reserve() allocates every missing block privately (nothing
  // is visible yet; a reservation never installed gives its blocks back when
  // it is destroyed), install() publishes them and cannot fail.
  class level_reservation {
  public:
    level_reservation(level_reservation&& other) noexcept
        : table_(std::exchange(other.table_, nullptr)), first_(other.first_), last_(other.last_),
          blocks_(std::exchange(other.blocks_, level_reserve{})), status_(other.status_) {}
    level_reservation& operator=(level_reservation&&) = delete;
    ~level_reservation() {
      if (table_ != nullptr)
        table_->free_reserve(blocks_);
    }
    [[nodiscard]] explicit operator bool() const noexcept { return status_ == status::ok; }
    [[nodiscard]] status error() const noexcept { return status_; }

  private:
    friend class tce_table;
    level_reservation(tce_table* table, std::uint64_t first, std::uint64_t last, status s) noexcept
        : table_(table), first_(first), last_(last), status_(s) {}
    tce_table* table_;
    std::uint64_t first_, last_;
    level_reserve blocks_{};
    status status_;
  };

  [[nodiscard]] level_reservation reserve(ioba first, std::uint64_t pages) noexcept {
    std::uint64_t first_page = 0;
    if (const status s = check_range(first, pages, first_page); s != status::ok)
      return level_reservation(nullptr, 0, 0, s);
    return reserve_pages(first_page, first_page + (pages - 1));
  }
  void install(level_reservation& r) noexcept {
    if (r.table_ == this && r.status_ == status::ok) {
      level_installer installer{this, &r.blocks_};
      walker::template walk<top>(top_, r.first_, r.last_, installer);
    }
  }

  // Empties `pages` entries from `first`. Never allocates; with the
  // configuration's free_empty_levels, gives back blocks it leaves empty.
  status clear(ioba first, std::uint64_t pages) noexcept {
    std::uint64_t first_page = 0;
    if (const status s = check_range(first, pages, first_page); IOPT_UNLIKELY(s != status::ok))
      return s;
    clear_pages(first_page, pages);
    return status::ok;
  }

  // Calls on_run(const mapped_run&) for every run of the window in IOBA
  // order; on_run may return false to stop early. Costs allocated levels plus
  // set entries, never the window size.
  template <class OnRun>
  void for_each_run(OnRun&& on_run) const {
    if (pages_ != 0)
      visit_runs(0, pages_ - 1, on_run);
  }
  // The same over part of the window; runs are clipped to it.
  template <class OnRun>
  status for_each_run(ioba first, std::uint64_t pages, OnRun&& on_run) const {
    std::uint64_t first_page = 0;
    if (const status s = check_range(first, pages, first_page); s != status::ok)
      return s;
    visit_runs(first_page, first_page + (pages - 1), on_run);
    return status::ok;
  }

  // The mapped runs as a forward range.
  [[nodiscard]] mapping_view<tce_table> mappings() const noexcept {
    return mapping_view<tce_table>(*this);
  }

  // The first run that starts at or after page index `from_page`.
  [[nodiscard]] std::optional<mapped_run> next_run(std::uint64_t from_page) const noexcept {
    std::optional<mapped_run> found;
    auto take_first = [&found](const mapped_run& r) {
      found = r;
      return false;
    };
    if (from_page < pages_)
      visit_runs(from_page, pages_ - 1, take_first);
    return found;
  }

private:
  explicit tce_table(allocator_type alloc) noexcept : alloc_(std::move(alloc)) {}

  // ---- validation (every check happens before any change) -------------------

  status check_ioba(ioba a, std::uint64_t& page) const noexcept {
    const std::uint64_t rel = a.value() - offset_;
    if (a.value() < offset_ || (rel >> page_shift) >= pages_)
      return status::out_of_window;
    if ((rel & (page_bytes - 1)) != 0)
      return status::not_aligned;
    page = rel >> page_shift;
    return status::ok;
  }
  status check_range(ioba first, std::uint64_t pages, std::uint64_t& first_page) const noexcept {
    if (pages == 0)
      return status::invalid_parameter;
    if (const status s = check_ioba(first, first_page); s != status::ok)
      return s;
    if (pages > pages_ - first_page)
      return status::out_of_window; // the range runs past the window's end
    return status::ok;
  }
  static status check_mapping(std::uint64_t target, permission perm, std::uint64_t value) noexcept {
    if (!is_valid(perm))
      return status::bad_permission;
    if (perm == permission::none)
      return status::invalid_parameter; // a mapping grants read or write
    if (!is_aligned(target, page_shift))
      return status::not_aligned;
    return format::check(value, page_shift);
  }
  status check_value(ioba a, std::uint64_t tce, std::uint64_t& page) const noexcept {
    if (const status s = check_ioba(a, page); s != status::ok)
      return s;
    return format::check(tce, page_shift);
  }

  // ---- runs of values ------------------------------------------------------

  // The step from one value of a run to the next: a page for a present value
  // (its target moves on), none for a value that maps nothing.
  static constexpr std::uint64_t run_step(std::uint64_t value) noexcept {
    return format::is_present(value) ? page_bytes : 0;
  }
  // How many pages a run starting at value's target can hold before it would
  // pass the last page of the 64-bit space (at least 1).
  static constexpr std::uint64_t pages_to_top(std::uint64_t value) noexcept {
    return ((UINT64_MAX - format::target(value, page_shift)) >> page_shift) + 1;
  }

  // Lists are read list_stride values at a time. When the values from
  // list[0] form a run (each the one before plus run_step, no target passing
  // the last page of the 64-bit space) that reaches list[list_stride],
  // run_at gives its length and the run is taken in bulk; otherwise it gives
  // 0 and the next list_stride values are taken one by one. So any run of
  // 2 * list_stride values or more goes in bulk from at most list_stride - 1
  // values into it, and a list of unrelated pages costs one compare per
  // list_stride values. Swapped: the list holds the values byte-reversed.
  static constexpr std::size_t list_stride = 8;

  template <bool Swapped>
  IOPT_ALWAYS_INLINE static std::size_t run_at(const std::uint64_t* list, std::size_t n) noexcept {
    if (n <= list_stride)
      return 0;
    const std::uint64_t value = detail::swapped_if<Swapped>(list[0]);
    if (list[list_stride] != detail::swapped_if<Swapped>(value + list_stride * run_step(value)))
      return 0;
    return run_length<Swapped>(list, n, value); // at least 1, even if list[1] breaks the run
  }
  template <bool Swapped>
  static std::size_t run_length(const std::uint64_t* list, std::size_t n,
                                std::uint64_t value) noexcept {
    const std::uint64_t step = run_step(value);
    if (step != 0)
      n = static_cast<std::size_t>(std::min<std::uint64_t>(n, pages_to_top(value)));
    return 1 + detail::match_run<Swapped>(list + 1, n - 1, value + step, step);
  }

  // The format's check of every value of a run, then the caller's check of
  // the run. A run's permission bits are all alike and its targets rise
  // without wrapping, so its first and last values stand for the rest unless
  // the run leaves the format's address bits part way, which is taken one
  // value at a time to find the first bad one.
  template <bool Swapped, class Check>
  static status check_run(const std::uint64_t* run, std::size_t n, Check& check) noexcept {
    const std::uint64_t head = detail::swapped_if<Swapped>(run[0]);
    if (const status s = format::check(head, page_shift); IOPT_UNLIKELY(s != status::ok))
      return s;
    if (IOPT_UNLIKELY(format::check(detail::swapped_if<Swapped>(run[n - 1]), page_shift) !=
                      status::ok))
      return check_each<Swapped>(run, check);
    return check(head, std::uint64_t{n});
  }
  template <class Check>
  IOPT_ALWAYS_INLINE static status check_one(std::uint64_t value, Check& check) noexcept {
    if (const status s = format::check(value, page_shift); IOPT_UNLIKELY(s != status::ok))
      return s;
    return check(value, std::uint64_t{1});
  }
  template <bool Swapped, class Check>
  IOPT_COLD static status check_each(const std::uint64_t* run, Check& check) noexcept {
    for (std::size_t k = 0;; ++k) // the run's last value fails, so this returns
      if (const status s = check_one(detail::swapped_if<Swapped>(run[k]), check); s != status::ok)
        return s;
  }
  static constexpr auto no_check = [](std::uint64_t, std::uint64_t) noexcept { return status::ok; };

  // Stores value, value + step, ... into n entries from dst, in memory form.
  IOPT_ALWAYS_INLINE static void store_values(std::uint64_t* dst, std::size_t n,
                                              std::uint64_t value, std::uint64_t step) noexcept {
    detail::store_run<format::memory_swaps_bytes>(dst, n, value, step);
  }
  // How many of the n entries from src hold value, value + step, ...
  IOPT_ALWAYS_INLINE static std::size_t match_values(const std::uint64_t* src, std::size_t n,
                                                     std::uint64_t value,
                                                     std::uint64_t step) noexcept {
    return detail::match_run<format::memory_swaps_bytes>(src, n, value, step);
  }

  // ---- writing one entry ---------------------------------------------------

  IOPT_ALWAYS_INLINE status store(std::uint64_t page, std::uint64_t value,
                                  allocation may) noexcept {
    std::uint64_t* e = walker::template leaf_entry<top>(top_, page);
    if (IOPT_UNLIKELY(e == nullptr)) {
      if (const status s = ensure_levels(page, page, may); s != status::ok)
        return s;
      e = walker::template leaf_entry<top>(top_, page);
    }
    detail::store_entry(*e, format::to_memory(value));
    return status::ok;
  }

  // Pages [first, first + pages) get value, value + step, value + 2 step, ...
  status write_sequence(std::uint64_t first, std::uint64_t pages, std::uint64_t value,
                        std::uint64_t step, allocation may) noexcept {
    const std::uint64_t last = first + (pages - 1);
    if (const status s = ensure_levels(first, last, may); s != status::ok)
      return s;
    sequence_writer writer{{}, value, step};
    walker::template walk<top>(top_, first, last, writer);
    return status::ok;
  }

  void clear_pages(std::uint64_t first, std::uint64_t pages) noexcept {
    clearer c{this};
    walker::template walk<top>(top_, first, first + (pages - 1), c);
  }

  // ---- level blocks --------------------------------------------------------

  std::size_t top_bytes() const noexcept {
    return (std::size_t{1} << top_bits_) * sizeof(std::uint64_t);
  }
  static constexpr std::size_t lower_alignment(unsigned level) noexcept {
    return std::max(geometry::block_bytes(level), detail::min_indirect_alignment);
  }

  std::uint64_t* allocate_block(std::size_t bytes, std::size_t alignment) noexcept {
    void* block = alloc_.allocate(bytes, alignment);
    if (block != nullptr)
      std::memset(block, 0, bytes); // empty entries are all-zero in every byte order
    return static_cast<std::uint64_t*>(block);
  }
  void free_lower_block(unsigned level, std::uint64_t* block) noexcept {
    alloc_.deallocate(block, geometry::block_bytes(level), lower_alignment(level));
  }

  // Counts the blocks missing below [first, last]: reading only.
  struct missing_counter {
    static constexpr bool whole_gaps = true;
    std::array<std::uint64_t, levels> blocks{};
    std::uint64_t total = 0;

    bool leaf(std::uint64_t*, std::size_t, std::size_t, std::uint64_t) noexcept { return true; }
    template <unsigned Level>
    detail::on_missing missing(std::uint64_t&, std::uint64_t first, std::uint64_t last) noexcept {
      // A missing slot of Level lacks its whole subtree over [first, last]:
      // at each level k below, one block per distinct slot of level k + 1.
      for (unsigned k = 0; k < Level; ++k) {
        const unsigned shift = geometry::index_shift(k + 1);
        const std::uint64_t n = (last >> shift) - (first >> shift) + 1;
        blocks[k] += n;
        total += n;
      }
      return detail::on_missing::skip;
    }
  };

  // Installs blocks from a reserve where entries are missing. A lost race
  // returns the block to the reserve and uses the winner's block.
  struct level_installer {
    tce_table* table;
    level_reserve* reserve;

    bool leaf(std::uint64_t*, std::size_t, std::size_t, std::uint64_t) noexcept { return true; }
    template <unsigned Level>
    detail::on_missing missing(std::uint64_t& entry, std::uint64_t, std::uint64_t) noexcept {
      std::uint64_t* block = reserve->pop(Level - 1);
      IOPT_ASSERT(block != nullptr);
      std::uint64_t expected = 0;
      if (std::atomic_ref<std::uint64_t>(entry).compare_exchange_strong(
              expected, walker::encode_indirect(block), std::memory_order_acq_rel,
              std::memory_order_acquire))
        table->bytes_.fetch_add(geometry::block_bytes(Level - 1), std::memory_order_relaxed);
      else
        reserve->push(Level - 1, block);
      return detail::on_missing::descend;
    }
  };

  // Makes every level below [first, last] exist. The common case (all there)
  // is one read-only walk; the rest is out of line. When allocation is
  // forbidden a missing level is too_hard for the caller.
  status ensure_levels(std::uint64_t first, std::uint64_t last,
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

  level_reservation reserve_pages(std::uint64_t first, std::uint64_t last) noexcept {
    missing_counter counter;
    if constexpr (levels > 1)
      walker::template walk<top>(top_, first, last, counter);
    return reserve_counted(first, last, counter);
  }

  // Allocates what the counter found missing; nothing is installed here.
  IOPT_COLD level_reservation reserve_counted(std::uint64_t first, std::uint64_t last,
                                              const missing_counter& counter) noexcept {
    level_reservation r(this, first, last, status::ok);
    for (unsigned level = 0; level < top; ++level) {
      for (std::uint64_t n = 0; n < counter.blocks[level]; ++n) {
        std::uint64_t* block = allocate_block(geometry::block_bytes(level), lower_alignment(level));
        if (block == nullptr) {
          r.status_ = status::no_memory;
          return r; // its destructor gives back what was allocated
        }
        r.blocks_.push(level, block);
      }
    }
    return r;
  }

  // Frees the blocks of a reservation that were not installed (all of them
  // after a failure, the losers of races otherwise).
  void free_reserve(level_reserve& blocks) noexcept {
    for (unsigned level = 0; level < top; ++level)
      while (std::uint64_t* block = blocks.pop(level))
        free_lower_block(level, block);
  }

  // ---- range visitors ------------------------------------------------------

  // Writers run after ensure_levels: a missing level cannot happen.
  struct prepared_writer {
    template <unsigned Level>
    detail::on_missing missing(std::uint64_t&, std::uint64_t, std::uint64_t) noexcept {
      IOPT_ASSERT(false && "levels were ensured before writing");
      return detail::on_missing::stop;
    }
  };

  // Writes value, value + step, ... (step is a page for a mapping, 0 for a fill).
  struct sequence_writer : prepared_writer {
    std::uint64_t value; // the TCE value of the next page
    std::uint64_t step;

    IOPT_ALWAYS_INLINE bool leaf(std::uint64_t* block, std::size_t lo, std::size_t hi,
                                 std::uint64_t) noexcept {
      const std::size_t n = hi - lo + 1;
      store_values(block + lo, n, value, step);
      value += n * step;
      return true;
    }
  };

  // Writes normalized values from a list that was checked beforehand: long
  // runs (see run_at) in bulk, other values one by one.
  template <bool Swapped>
  struct list_writer : prepared_writer {
    const std::uint64_t* next; // the list holds exactly the walked entries

    IOPT_ALWAYS_INLINE bool leaf(std::uint64_t* block, std::size_t lo, std::size_t hi,
                                 std::uint64_t) noexcept {
      for (std::size_t i = lo; i <= hi;) {
        if (const std::size_t n = run_at<Swapped>(next, hi - i + 1); n != 0) {
          // normalize changes only permission bits, so a run stays a run.
          const std::uint64_t value = format::normalize(detail::swapped_if<Swapped>(*next));
          store_values(block + i, n, value, run_step(value));
          next += n;
          i += n;
        } else {
          for (const std::size_t end = std::min(hi + 1, i + list_stride); i < end; ++i)
            detail::store_entry(block[i], format::to_memory(format::normalize(
                                              detail::swapped_if<Swapped>(*next++))));
        }
      }
      return true;
    }
  };

  // Writes a TCE per listed target, each with the same permission bits.
  struct target_writer : prepared_writer {
    const std::uint64_t* next; // the list holds exactly the walked entries
    std::uint64_t bits;        // the permission bits of every entry

    IOPT_ALWAYS_INLINE bool leaf(std::uint64_t* block, std::size_t lo, std::size_t hi,
                                 std::uint64_t) noexcept {
      for (std::size_t i = lo; i <= hi; ++i)
        detail::store_entry(block[i], format::to_memory(format::normalize(*next++ | bits)));
      return true;
    }
  };

  struct clearer {
    static constexpr bool whole_gaps = true;
    tce_table* table;

    IOPT_ALWAYS_INLINE bool leaf(std::uint64_t* block, std::size_t lo, std::size_t hi,
                                 std::uint64_t) noexcept {
      store_values(block + lo, hi - lo + 1, 0, 0);
      return true;
    }
    template <unsigned Level>
    detail::on_missing missing(std::uint64_t&, std::uint64_t, std::uint64_t) noexcept {
      return detail::on_missing::skip; // nothing to clear where no level exists
    }
    template <unsigned Level>
    void after_child(std::uint64_t& entry, std::uint64_t* child) noexcept {
      if constexpr (traits::free_empty_levels) {
        for (std::size_t i = 0; i < geometry::block_entries(Level - 1); ++i)
          if (detail::load_entry(child[i]) != 0)
            return;
        detail::store_entry(entry, 0);
        table->free_lower_block(Level - 1, child);
        table->bytes_.fetch_sub(geometry::block_bytes(Level - 1), std::memory_order_relaxed);
      }
    }
  };

  // Gathers consecutive present entries with contiguous targets and equal
  // permissions into runs and hands each finished run to on_run.
  template <class OnRun>
  struct run_collector {
    static constexpr bool whole_gaps = true;
    const tce_table* table;
    OnRun& on_run;
    mapped_run run{};
    std::uint64_t expected = 0; // the value that would extend the run; 0 never does
    bool active = false;

    bool emit() {
      active = false;
      if constexpr (std::is_void_v<decltype(on_run(run))>) {
        on_run(run);
        return true;
      } else {
        return static_cast<bool>(on_run(run));
      }
    }
    static std::uint64_t successor(std::uint64_t value) noexcept {
      // A run cannot continue past the last page of the 64-bit space.
      return pages_to_top(value) == 1 ? 0 : value + page_bytes;
    }

    IOPT_ALWAYS_INLINE bool leaf(std::uint64_t* block, std::size_t lo, std::size_t hi,
                                 std::uint64_t first) {
      std::size_t i = lo;
      while (i <= hi) {
        if (active) {
          i = extend(block, i, hi);
          if (i > hi)
            return true; // the run may go on in the next block
          if (!emit())
            return false;
        }
        i = skip_empty(block, i, hi);
        if (i > hi)
          return true;
        const std::uint64_t value = format::from_memory(detail::load_entry(block[i]));
        if (format::is_present(value)) {
          run = mapped_run{ioba{table->offset_ + ((first + (i - lo)) << page_shift)},
                           format::target(value, page_shift), 1, format::permissions(value)};
          expected = successor(value);
          active = true;
        }
        ++i;
      }
      return true;
    }

    // Extends the active run over entries i.. that continue it; returns the
    // first entry that does not. A run stops short of passing 2^64.
    IOPT_ALWAYS_INLINE std::size_t extend(const std::uint64_t* block, std::size_t i,
                                          std::size_t hi) {
      if (expected == 0)
        return i;
      const std::uint64_t room = pages_to_top(expected);
      const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(hi - i + 1, room));
      const std::size_t k = match_values(block + i, n, expected, page_bytes);
      run.pages += k;
      expected = k == room ? 0 : expected + k * page_bytes;
      return i + k;
    }

    static IOPT_ALWAYS_INLINE std::size_t skip_empty(const std::uint64_t* block, std::size_t i,
                                                     std::size_t hi) noexcept {
      return i + match_values(block + i, hi - i + 1, 0, 0);
    }

    template <unsigned Level>
    detail::on_missing missing(std::uint64_t&, std::uint64_t, std::uint64_t) {
      if (active && !emit())
        return detail::on_missing::stop;
      return detail::on_missing::skip;
    }
  };

  template <class OnRun>
  void visit_runs(std::uint64_t first, std::uint64_t last, OnRun& on_run) const {
    run_collector<OnRun> collector{this, on_run};
    if (walker::template walk<top>(top_, first, last, collector) && collector.active)
      collector.emit();
  }

  // ---- teardown ------------------------------------------------------------

  template <unsigned Level>
  void free_below(std::uint64_t* block, std::size_t entries) noexcept {
    if constexpr (Level > 0) {
      for (std::size_t i = 0; i < entries; ++i) {
        const std::uint64_t raw = block[i];
        if (raw == 0)
          continue;
        std::uint64_t* child = walker::decode_indirect(raw);
        free_below<Level - 1>(child, geometry::block_entries(Level - 1));
        free_lower_block(Level - 1, child);
      }
    }
  }
  void release() noexcept {
    if (top_ == nullptr)
      return;
    free_below<top>(top_, std::size_t{1} << top_bits_);
    alloc_.deallocate(top_, top_bytes(), top_bytes());
    top_ = nullptr;
    pages_ = 0;
    bytes_.store(0, std::memory_order_relaxed);
  }

  [[no_unique_address]] allocator_type alloc_{};
  std::uint64_t* top_ = nullptr;
  std::uint64_t offset_ = 0; // bus offset of the window
  std::uint64_t pages_ = 0;  // IOMMU pages in the window (a power of two)
  unsigned top_bits_ = 0;    // log2 of the top level's entries
  std::atomic<std::size_t> bytes_{0};
};

} // namespace iopt
