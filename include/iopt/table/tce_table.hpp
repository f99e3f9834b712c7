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
// and no leak. Reads and clears never allocate levels.
//
// Allocation is all or nothing (table/level_tree.hpp): an operation first
// counts the blocks it lacks, allocates all of them privately, and only then
// installs them. When an allocation fails nothing has been published, so the
// table is exactly as it was (entries, levels and memory_bytes()) and
// status::no_memory is returned.
//
// Every operation validates its whole input before it changes anything; bad
// input gets a status and leaves the table unchanged. A range is checked once,
// by locate(), into a page_span that the range operations take, so a caller
// that has checked a range itself (the hypercall front end, the container)
// passes the span on instead of checking it again. Entries are written
// atomically: a concurrent reader sees the old or the new entry, never a mix.
//
// A table can track which pages change (start_tracking), for incremental
// migration (migrate/table_stream.hpp): every write and clear then marks the
// pages it touched, after writing them (table/change_tracker.hpp). Marking
// never fails; it allocates tracking nodes unless the operation's
// allocation is forbidden.
//
// Targets are plain 64-bit addresses: host physical addresses in a hardware
// table, guest physical addresses in a table a hypervisor keeps for a guest.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <utility>

#include <iopt/addr/address.hpp>
#include <iopt/addr/align.hpp>
#include <iopt/addr/range.hpp>
#include <iopt/format/byte_order.hpp>
#include <iopt/format/permission.hpp>
#include <iopt/format/traits.hpp>
#include <iopt/settings.hpp>
#include <iopt/status.hpp>
#include <iopt/table/bulk_entries.hpp>
#include <iopt/table/change_tracker.hpp>
#include <iopt/table/geometry.hpp>
#include <iopt/table/level_tree.hpp>
#include <iopt/table/list_runs.hpp>
#include <iopt/table/mappings.hpp>
#include <iopt/table/run_collector.hpp>
#include <iopt/table/walk.hpp>

namespace iopt {

// Where one IOBA leads.
struct translation {
  // The byte address the IOBA translates to, page offset included.
  std::uint64_t target = 0;
  // The access its page grants.
  permission perm = permission::none;

  // Translations are equal when target and permission are.
  friend constexpr bool operator==(const translation&, const translation&) noexcept = default;
};

// A stretch of a window's pages that locate() has checked: at least one page,
// every one inside the window. It holds page indices, so it is good for the
// table that made it and for any table of the same window (a shadow).
class page_span {
public:
  // No pages: a placeholder to assign a located span to. Only spans that
  // locate() made may be given to a table.
  page_span() noexcept = default;
  // Page index of the first page, from the window's start.
  [[nodiscard]] std::uint64_t first() const noexcept { return first_; }
  // How many pages (at least 1 in a span locate() made).
  [[nodiscard]] std::uint64_t count() const noexcept { return count_; }
  // Page index of the last page, inclusive.
  [[nodiscard]] std::uint64_t last() const noexcept { return first_ + (count_ - 1); }

private:
  template <class>
  friend class tce_table;
  page_span(std::uint64_t first, std::uint64_t count) noexcept : first_(first), count_(count) {}
  std::uint64_t first_ = 0;
  std::uint64_t count_ = 0;
};

// The TCE table of one DMA window, shaped by Config (a table_config): entry i
// translates IOMMU page i of the window. Owns its levels; movable, not
// copyable. Entries are read and written atomically, so operations may run
// on several threads at once, except that with free_empty_levels clears must
// run alone; moving or destroying a table must not overlap any use of it.
template <class Config>
class tce_table {
  using geometry = table_geometry<Config>;
  using traits = table_traits<Config>;
  using walker = detail::walker<Config>;
  using tree_type = level_tree<Config>;
  static constexpr unsigned top = geometry::top;

public:
  // The configuration the table was made with.
  using config_type = Config;
  // The entry format, through format_traits: how a TCE value is made, checked
  // and stored.
  using format = format_traits<typename traits::format>;
  // Where the table's level blocks come from (the configuration's allocator).
  using allocator_type = typename traits::allocator;
  // Blocks allocated by reserve() and not yet installed (table/level_tree.hpp).
  using level_reservation = typename tree_type::level_reservation;

  // log2 of the IOMMU page size.
  static constexpr unsigned page_shift = geometry::page_shift;
  // The IOMMU page size in bytes.
  static constexpr std::uint64_t page_bytes = std::uint64_t{1} << page_shift;
  // Levels of the tree, the leaves included.
  static constexpr unsigned levels = geometry::levels;
  // The largest window the levels can index, in bytes; with the hardware
  // index limit, create() may allow less.
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
    if (!table.tree_.grow_top(entries_bits))
      return status::no_memory;
    table.offset_ = bus_offset.value();
    table.pages_ = std::uint64_t{1} << entries_bits;
    if constexpr (!traits::levels_on_demand) {
      if (const status s = table.tree_.ensure(0, table.pages_ - 1); s != status::ok)
        return s; // the tree's destructor gives back what was allocated
    }
    return table;
  }

  // Takes over other's window and levels; other is left with no window.
  tce_table(tce_table&& other) noexcept
      : tree_(std::move(other.tree_)), changes_(std::move(other.changes_)),
        write_hooks_(other.write_hooks_.load(std::memory_order_relaxed)), offset_(other.offset_),
        pages_(std::exchange(other.pages_, 0)) {}
  // Gives back this table's levels, then takes over other's window and
  // levels; other is left with no window.
  tce_table& operator=(tce_table&& other) noexcept {
    if (this != &other) {
      tree_ = std::move(other.tree_);
      changes_ = std::move(other.changes_);
      write_hooks_.store(other.write_hooks_.load(std::memory_order_relaxed),
                         std::memory_order_relaxed);
      offset_ = other.offset_;
      pages_ = std::exchange(other.pages_, 0);
    }
    return *this;
  }
  tce_table(const tce_table&) = delete;
  tce_table& operator=(const tce_table&) = delete;
  ~tce_table() = default;

  // ---- observers -----------------------------------------------------------

  // The bus addresses the table translates: [bus offset, bus offset + size);
  // empty for a table with no window.
  [[nodiscard]] ioba_range window() const noexcept {
    return ioba_range::make(ioba{offset_}, pages_ << page_shift).value_or(ioba_range{});
  }
  // IOMMU pages in the window (a power of two, 0 with no window).
  [[nodiscard]] std::uint64_t pages() const noexcept { return pages_; }
  // Bytes held by the table's levels right now.
  [[nodiscard]] std::size_t memory_bytes() const noexcept { return tree_.bytes(); }
  // Whether no entry is set. Seen without a scan where the table was never
  // written since create() (a receiver made for restore or import_dense)
  // and, with levels on demand, where the tree is the top block alone;
  // otherwise the entries are scanned (the cost of next_run).
  [[nodiscard]] bool empty() const noexcept {
    if (pages_ == 0)
      return true;
    if constexpr (empty_needs_scan) {
      if ((write_hooks_.load(std::memory_order_relaxed) & hook_never_written) != 0)
        return true;
    } else if (tree_.bytes() ==
               geometry::top_block_bytes(static_cast<unsigned>(std::countr_zero(pages_)))) {
      return true;
    }
    return !next_run(0);
  }
  // The allocator the levels come from and go back to.
  [[nodiscard]] allocator_type& allocator() noexcept { return tree_.allocator(); }
  // Page index of an IOBA inside the window (no checks).
  [[nodiscard]] std::uint64_t page_index(ioba a) const noexcept {
    return (a.value() - offset_) >> page_shift;
  }

  // Checks that `pages` pages from `first` lie in the window: invalid_parameter
  // for no pages, out_of_window for a first page outside it or a range that
  // runs past its end, not_aligned for a first address inside a page.
  [[nodiscard]] result<page_span> locate(ioba first, std::uint64_t pages) const noexcept {
    if (IOPT_UNLIKELY(pages == 0))
      return status::invalid_parameter;
    std::uint64_t first_page = 0;
    if (const status s = check_ioba(first, first_page); IOPT_UNLIKELY(s != status::ok))
      return s;
    if (IOPT_UNLIKELY(pages > pages_ - first_page))
      return status::out_of_window; // the range runs past the window's end
    return page_span(first_page, pages);
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
    std::uint64_t* e = walker::template leaf_entry<top>(tree_.top_block(), page);
    if (e == nullptr || !format::is_present(format::from_memory(detail::load_entry(*e))))
      return status::not_found;
    const std::uint64_t old = format::from_memory(detail::exchange_entry(*e, 0));
    changed(page, page, allocation::allowed);
    return format::is_present(old) ? status::ok : status::not_found;
  }

  // The raw TCE value of one page (0 where nothing was ever set).
  [[nodiscard]] result<std::uint64_t> get(ioba a) const noexcept {
    std::uint64_t page = 0;
    if (const status s = check_ioba(a, page); IOPT_UNLIKELY(s != status::ok))
      return s;
    const std::uint64_t* e = walker::template leaf_entry<top>(tree_.top_block(), page);
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
      std::uint64_t* e = walker::template leaf_entry<top>(tree_.top_block(), page);
      if (e != nullptr) {
        detail::store_entry(*e, 0);
        changed(page, page, may);
      }
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
    std::uint64_t* e = walker::template leaf_entry<top>(tree_.top_block(), page);
    if (e == nullptr) {
      if (value == 0)
        return std::uint64_t{0};
      if (const status s = tree_.ensure(page, page, may); s != status::ok)
        return s;
      e = walker::template leaf_entry<top>(tree_.top_block(), page);
    }
    const std::uint64_t old =
        format::from_memory(detail::exchange_entry(*e, format::to_memory(value)));
    changed(page, page, may);
    return old;
  }

  // Where a byte of bus address space leads; not_found when its page is not mapped.
  [[nodiscard]] result<translation> translate(ioba a) const noexcept {
    const std::uint64_t rel = a.value() - offset_; // below the window: past its end
    if (IOPT_UNLIKELY((rel >> page_shift) >= pages_))
      return status::out_of_window;
    const std::uint64_t* e = walker::template leaf_entry<top>(tree_.top_block(), rel >> page_shift);
    if (e == nullptr)
      return status::not_found;
    const std::uint64_t value = format::from_memory(detail::load_entry(*e));
    if (!format::is_present(value))
      return status::not_found;
    return translation{format::target(value, page_shift) | (rel & (page_bytes - 1)),
                       format::permissions(value)};
  }

  // ---- ranges --------------------------------------------------------------
  //
  // Each range operation takes the page_span locate() made, or an IOBA and a
  // page count that it locates first.

  // Maps the pages of `span` to consecutive targets from `target`, replacing
  // what was there. Walks down once per leaf block.
  status map_range(page_span span, std::uint64_t target, permission perm,
                   allocation may = allocation::allowed) noexcept {
    if (const status s = check_range_mapping(span, target, perm); IOPT_UNLIKELY(s != status::ok))
      return s;
    return write_sequence(span, format::make(target, perm), page_bytes, may);
  }
  // The same for `pages` pages from IOBA `first`, located first.
  status map_range(ioba first, std::uint64_t target, std::uint64_t pages, permission perm,
                   allocation may = allocation::allowed) noexcept {
    const auto span = locate(first, pages);
    return IOPT_LIKELY(span) ? map_range(*span, target, perm, may) : span.error();
  }

  // Writes the raw TCE values `tces` to consecutive pages from `first`. Every
  // value is checked before any is written, and every level is allocated
  // before any is written: the call applies all of them or none. Values
  // that map nothing need no level: a list that maps nothing allocates
  // nothing.
  status put_list(ioba first, std::span<const std::uint64_t> tces,
                  allocation may = allocation::allowed) noexcept {
    return put_list(first, native_values{tces}, may, runs::no_check);
  }
  // The same for values in a stated byte order (a guest's big-endian TCE
  // list, read in place), with a check of the caller's own (for instance,
  // that targets are guest RAM). check(tce, pages) vets the `pages` values
  // from tce, after the format has accepted each of them: a long run (see
  // table/list_runs.hpp) in one call, any other value on its own. The first
  // value or run it refuses decides the status. The span must hold as many
  // pages as there are values.
  template <std::endian Order, class Check>
  status put_list(page_span span, ordered_values<Order> tces, allocation may,
                  Check&& check) noexcept {
    constexpr bool swapped = ordered_values<Order>::swapped;
    IOPT_ASSERT(span.count() == tces.size());
    const std::uint64_t* stored = tces.stored.data();
    typename runs::checked_list checked;
    runs::template check_list<swapped>(stored, tces.size(), check, checked);
    if (IOPT_UNLIKELY(checked.result != status::ok))
      return checked.result;
    if (!checked.maps_nothing())
      if (const status s =
              tree_.ensure(span.first() + checked.first_set, span.first() + checked.last_set, may);
          s != status::ok)
        return s;
    typename runs::template list_writer<swapped> writer{stored, &checked};
    walker::template walk<top>(tree_.top_block(), span.first(), span.last(), writer);
    changed(span.first(), span.last(), may);
    return status::ok;
  }
  // The same for as many pages from IOBA `first` as there are values,
  // located first.
  template <std::endian Order, class Check>
  status put_list(ioba first, ordered_values<Order> tces, allocation may, Check&& check) noexcept {
    const auto span = locate(first, tces.size());
    return IOPT_LIKELY(span) ? put_list(*span, tces, may, check) : span.error();
  }

  // The same for a list that another thread may write while it is read (a
  // guest's list in the guest's memory), taken only where that is safe: its
  // values are one run (table/list_runs.hpp), each read once, and the run
  // passes every check; it is then written as computed from its first
  // value, so what is written is what was checked, as put_list would write
  // it. Otherwise std::nullopt with nothing changed: copy the list and call
  // put_list, which finds the status (and clears without levels).
  template <std::endian Order, class Check>
  std::optional<status> put_list_in_place(page_span span, ordered_values<Order> tces,
                                          allocation may, Check&& check) noexcept {
    IOPT_ASSERT(span.count() == tces.size());
    const auto head =
        runs::template whole_run<ordered_values<Order>::swapped>(tces.stored.data(), tces.size());
    if (!head)
      return std::nullopt;
    const std::uint64_t step = runs::run_step(*head);
    const std::uint64_t value = format::normalize(*head);
    if (value == 0 || format::check(*head, page_shift) != status::ok ||
        format::check(*head + (span.count() - 1) * step, page_shift) != status::ok ||
        check(*head, span.count()) != status::ok)
      return std::nullopt;
    return write_sequence(span, value, step, may);
  }

  // Maps consecutive pages from `first` to the listed targets (scattered
  // frames: one target per page), all with `perm`. Every target is checked
  // (aligned to the page, within the format's address bits) before any
  // entry is written; the call maps all of them or none.
  status map_list(ioba first, std::span<const std::uint64_t> targets, permission perm,
                  allocation may = allocation::allowed) noexcept {
    const auto span = locate(first, targets.size());
    if (IOPT_UNLIKELY(!span))
      return span.error();
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
    if (const status s = tree_.ensure(span->first(), span->last(), may); s != status::ok)
      return s;
    target_writer writer{{}, targets.data(), format::make(0, perm)};
    walker::template walk<top>(tree_.top_block(), span->first(), span->last(), writer);
    changed(span->first(), span->last(), may);
    return status::ok;
  }

  // Writes one raw TCE value into every page of `span`. A value that
  // normalizes to 0 is a clear and allocates nothing.
  status fill(page_span span, std::uint64_t tce, allocation may = allocation::allowed) noexcept {
    if (const status s = format::check(tce, page_shift); IOPT_UNLIKELY(s != status::ok))
      return s;
    const std::uint64_t value = format::normalize(tce);
    if (value == 0) {
      clear(span, may);
      return status::ok;
    }
    return write_sequence(span, value, 0, may);
  }
  // The same for `pages` pages from IOBA `first`, located first.
  status fill(ioba first, std::uint64_t pages, std::uint64_t tce,
              allocation may = allocation::allowed) noexcept {
    const auto span = locate(first, pages);
    return IOPT_LIKELY(span) ? fill(*span, tce, may) : span.error();
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
  // it is destroyed), install() publishes them and cannot fail, even after
  // a clear in between (see table/level_tree.hpp).
  [[nodiscard]] level_reservation reserve(page_span span) noexcept {
    return tree_.reserve(span.first(), span.last());
  }
  // The same for `pages` pages from IOBA `first`; a range locate() refuses
  // gives a failed reservation whose error() says why.
  [[nodiscard]] level_reservation reserve(ioba first, std::uint64_t pages) noexcept {
    const auto span = locate(first, pages);
    return span ? reserve(*span) : tree_type::refused(span.error());
  }
  // Publishes the blocks of a successful reservation made by this table
  // where entries are still missing; a failed one, or another table's, is
  // ignored. What stays unused goes back when the reservation is destroyed.
  void install(level_reservation& r) noexcept { tree_.install(r); }

  // Reserves the levels below several spans at once, all or nothing:
  // for_each_span(fn) calls fn(page_span) for each span locate() made, in
  // ascending order, the same spans every time it is called. Install with
  // install_each and the same spans; with `written` true, the reservation
  // is instead for the writes that install as they write (map_range and
  // put_list taking a reservation).
  template <class Spans>
  [[nodiscard]] level_reservation reserve_each(Spans&& for_each_span,
                                               bool written = false) noexcept {
    return tree_.reserve_each(
        [&](auto&& range) { for_each_span([&](page_span s) { range(s.first(), s.last()); }); },
        written);
  }
  // Publishes a reserve_each reservation's blocks below the same spans;
  // cannot fail.
  template <class Spans>
  void install_each(level_reservation& r, Spans&& for_each_span) noexcept {
    tree_.install_each(
        r, [&](auto&& range) { for_each_span([&](page_span s) { range(s.first(), s.last()); }); });
  }

  // The writes of a restore: map_range and put_list (values in a stated
  // byte order, a check of the caller's, as above) into levels `r`
  // reserved with reserve_each(..., written = true) below the span,
  // installed as the entries are written, so that a new leaf block is
  // written once instead of zeroed and then written. Nothing is allocated;
  // the checks are those of the plain calls.
  status map_range(level_reservation& r, page_span span, std::uint64_t target,
                   permission perm) noexcept {
    if (const status s = check_range_mapping(span, target, perm); IOPT_UNLIKELY(s != status::ok))
      return s;
    sequence_writer writer{{}, format::make(target, perm), page_bytes};
    tree_.install_writing(r, span.first(), span.last(), writer);
    changed(span.first(), span.last(), allocation::allowed);
    return status::ok;
  }
  // The same for a list of values (see above).
  template <std::endian Order, class Check>
  status put_list(level_reservation& r, page_span span, ordered_values<Order> tces,
                  Check&& check) noexcept {
    constexpr bool swapped = ordered_values<Order>::swapped;
    IOPT_ASSERT(span.count() == tces.size());
    const std::uint64_t* stored = tces.stored.data();
    typename runs::checked_list checked;
    runs::template check_list<swapped>(stored, tces.size(), check, checked);
    if (IOPT_UNLIKELY(checked.result != status::ok))
      return checked.result;
    typename runs::template list_writer<swapped> writer{stored, &checked};
    tree_.install_writing(r, span.first(), span.last(), writer);
    changed(span.first(), span.last(), allocation::allowed);
    return status::ok;
  }

  // Empties the pages of `span`. Never allocates levels; with the
  // configuration's free_empty_levels, gives back blocks it leaves empty.
  // While tracking, marks the pages it emptied (only those below existing
  // levels: the others were empty already).
  void clear(page_span span, allocation may = allocation::allowed) noexcept {
    clearer c{&tree_, changes_.active() ? &changes_ : nullptr, may == allocation::allowed};
    walker::template walk<top>(tree_.top_block(), span.first(), span.last(), c);
  }
  // The same for `pages` pages from IOBA `first`, located first: a bad range
  // gets locate()'s status and clears nothing.
  status clear(ioba first, std::uint64_t pages) noexcept {
    const auto span = locate(first, pages);
    if (IOPT_UNLIKELY(!span))
      return span.error();
    clear(*span);
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
  void for_each_run(page_span span, OnRun&& on_run) const {
    visit_runs(span.first(), span.last(), on_run);
  }
  // The same for `pages` pages from IOBA `first`, located first.
  template <class OnRun>
  status for_each_run(ioba first, std::uint64_t pages, OnRun&& on_run) const {
    const auto span = locate(first, pages);
    if (!span)
      return span.error();
    visit_runs(span->first(), span->last(), on_run);
    return status::ok;
  }

  // The mapped runs as a forward range.
  [[nodiscard]] mapping_view<tce_table> mappings() const noexcept {
    return mapping_view<tce_table>(*this);
  }

  // The mapped pages from page index `from_page` on, as a run: the run that
  // holds from_page, cut to start there, or else the first run that starts
  // after it.
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

  // ---- change tracking (for incremental migration) ---------------------------

  // Starts marking every page that changes from now on, nothing marked yet:
  // busy when tracking already, no_memory when the tracker cannot be had,
  // invalid_parameter for a table with no window. Must not overlap other
  // uses of the table.
  status start_tracking() noexcept {
    if (pages_ == 0)
      return status::invalid_parameter;
    const status s = changes_.start(static_cast<unsigned>(std::countr_zero(pages_)));
    if (s == status::ok)
      write_hooks_.fetch_or(hook_tracking, std::memory_order_relaxed);
    return s;
  }
  // Stops tracking and forgets the marks. Must not overlap other uses of the
  // table.
  void stop_tracking() noexcept {
    write_hooks_.fetch_and(static_cast<unsigned char>(~hook_tracking), std::memory_order_relaxed);
    changes_.stop();
  }
  // Whether changes are being tracked.
  [[nodiscard]] bool tracking() const noexcept { return changes_.active(); }
  // Bytes the tracker holds now (heap memory, not the table's levels).
  [[nodiscard]] std::size_t tracking_bytes() const noexcept { return changes_.bytes(); }
  // Takes the marks (get and clear): on_range(first, last) for every
  // stretch of pages changed since the last take (or since tracking
  // started), by page index, ascending; a stretch may hold pages that did
  // not change, never misses one that did. Read the pages after the call
  // returns a stretch: a write after its mark was taken is marked again.
  template <class OnRange>
  void take_changes(OnRange&& on_range) noexcept {
    changes_.take(on_range);
  }

private:
  using runs = detail::list_runs<format, page_shift>;

  explicit tce_table(allocator_type alloc) noexcept : tree_(std::move(alloc)) {}

  // ---- validation (every check happens before any change) -------------------

  // One compare accepts an IOBA: below the window, its offset wraps past the
  // window's end (a window never reaches 2^64); inside a page, the rotate
  // carries the page offset to the top bits. Only a refusal looks at which.
  status check_ioba(ioba a, std::uint64_t& page) const noexcept {
    const std::uint64_t rel = a.value() - offset_;
    const std::uint64_t rotated = std::rotr(rel, page_shift);
    if (IOPT_UNLIKELY(rotated >= pages_))
      return (rel >> page_shift) >= pages_ ? status::out_of_window : status::not_aligned;
    page = rotated;
    return status::ok;
  }
  // map_range's checks: the first target's, then that the last one neither
  // wraps nor leaves the format's address bits.
  static status check_range_mapping(page_span span, std::uint64_t target,
                                    permission perm) noexcept {
    if (const status s = check_mapping(target, perm, format::make(target, perm)); s != status::ok)
      return s;
    if (span.count() - 1 > ((UINT64_MAX - target) >> page_shift))
      return status::wraps; // the last target would pass 2^64
    const std::uint64_t last_target = target + ((span.count() - 1) << page_shift);
    return format::check(format::make(last_target, perm), page_shift);
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

  // ---- writing -------------------------------------------------------------

  IOPT_ALWAYS_INLINE status store(std::uint64_t page, std::uint64_t value,
                                  allocation may) noexcept {
    std::uint64_t* e = walker::template leaf_entry<top>(tree_.top_block(), page);
    if (IOPT_UNLIKELY(e == nullptr)) {
      if (const status s = tree_.ensure(page, page, may); s != status::ok)
        return s;
      e = walker::template leaf_entry<top>(tree_.top_block(), page);
    }
    detail::store_entry(*e, format::to_memory(value));
    changed(page, page, may);
    return status::ok;
  }

  // The pages of span get value, value + step, value + 2 step, ...
  status write_sequence(page_span span, std::uint64_t value, std::uint64_t step,
                        allocation may) noexcept {
    // A span inside one leaf block that exists (a guest's buffer, mapped
    // again): one descent, no search for missing levels.
    if constexpr (geometry::levels > 1)
      if ((span.first() ^ span.last()) >> geometry::index_shift(1) == 0)
        if (std::uint64_t* e = walker::template leaf_entry<top>(tree_.top_block(), span.first());
            IOPT_LIKELY(e != nullptr)) {
          runs::store_values(e, span.count(), value, step);
          changed(span.first(), span.last(), may);
          return status::ok;
        }
    if (const status s = tree_.ensure(span.first(), span.last(), may); s != status::ok)
      return s;
    sequence_writer writer{{}, value, step};
    walker::template walk<top>(tree_.top_block(), span.first(), span.last(), writer);
    changed(span.first(), span.last(), may);
    return status::ok;
  }

  // Writes value, value + step, ... (step is a page for a mapping, 0 for a fill).
  struct sequence_writer : detail::prepared_writer {
    std::uint64_t value; // the TCE value of the next page
    std::uint64_t step;

    IOPT_ALWAYS_INLINE bool leaf(std::uint64_t* block, std::size_t lo, std::size_t hi,
                                 std::uint64_t) noexcept {
      const std::size_t n = hi - lo + 1;
      runs::store_values(block + lo, n, value, step);
      value += n * step;
      return true;
    }
  };

  // Writes a TCE per listed target, each with the same permission bits.
  struct target_writer : detail::prepared_writer {
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
    tree_type* tree;
    change_tracker<>* changes; // nullptr when not tracking
    bool may_allocate;

    IOPT_ALWAYS_INLINE bool leaf(std::uint64_t* block, std::size_t lo, std::size_t hi,
                                 std::uint64_t first) noexcept {
      runs::store_values(block + lo, hi - lo + 1, 0, 0);
      if (IOPT_UNLIKELY(changes != nullptr))
        changes->mark(first, first + (hi - lo), may_allocate);
      return true;
    }
    template <unsigned Level>
    detail::on_missing missing(std::uint64_t&, std::uint64_t, std::uint64_t) noexcept {
      return detail::on_missing::skip; // nothing to clear where no level exists
    }
    template <unsigned Level>
    void after_child(std::uint64_t& entry, std::uint64_t* child) noexcept {
      tree->template release_if_empty<Level>(entry, child);
    }
  };

  // ---- reading runs --------------------------------------------------------

  template <class OnRun>
  void visit_runs(std::uint64_t first, std::uint64_t last, OnRun& on_run) const {
    detail::run_collector<format, page_shift, OnRun> collector{offset_, on_run};
    if (walker::template walk<top>(tree_.top_block(), first, last, collector) && collector.active)
      collector.emit();
  }

  // After writing pages [first, last]: the write hooks that are due, if any
  // (one load and an untaken branch when none is).
  IOPT_ALWAYS_INLINE void changed(std::uint64_t first, std::uint64_t last,
                                  allocation may) noexcept {
    if (IOPT_UNLIKELY(write_hooks_.load(std::memory_order_relaxed) != 0))
      run_write_hooks(first, last, may);
  }
  // Forgets that the table was never written, and marks the pages while
  // tracking.
  void run_write_hooks(std::uint64_t first, std::uint64_t last, allocation may) noexcept {
    if ((write_hooks_.load(std::memory_order_relaxed) & hook_never_written) != 0)
      write_hooks_.fetch_and(static_cast<unsigned char>(~hook_never_written),
                             std::memory_order_relaxed);
    if (changes_.active())
      changes_.mark(first, last, may == allocation::allowed);
  }

  // Whether empty() has to look at entries to know: the leaves exist from
  // the start (one level, or levels made up front), so the tree's size says
  // nothing.
  static constexpr bool empty_needs_scan = levels == 1 || !traits::levels_on_demand;
  // The bits of write_hooks_.
  static constexpr unsigned char hook_tracking = 1;      // mark changes_
  static constexpr unsigned char hook_never_written = 2; // empty() needs no scan

  tree_type tree_;
  change_tracker<> changes_; // off unless start_tracking()
  // What a write must do besides writing: mark the tracker while tracking;
  // and, until the first write since create() where empty() would scan,
  // forget that the table was never written (an empty() racing with that
  // first write may answer either way).
  std::atomic<unsigned char> write_hooks_{empty_needs_scan ? hook_never_written : 0};
  std::uint64_t offset_ = 0; // bus offset of the window
  std::uint64_t pages_ = 0;  // IOMMU pages in the window (a power of two)
};

} // namespace iopt
