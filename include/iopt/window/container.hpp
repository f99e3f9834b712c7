// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// A VFIO-style sPAPR TCE container: the DMA windows of one partitionable
// endpoint, and the map/unmap requests a user-space driver or a VMM makes.
//
// Windows. At most two: slot 0 at bus address 0 (the 32-bit window) and
// slot 1 at 1 << 59 (the 64-bit window). The default window (slot 0, 1 GiB
// of 4 KiB pages unless configured otherwise) is created on first use, as
// the kernel creates it lazily; removing it before that only cancels it.
// create_window takes the first free slot. Removing the last window, when it
// is not the default one, brings the default window back (QEMU's RTAS
// ibm,remove-pe-dma-window does so since 7.1; container_options turns it off
// for a kernel-like container). Windows come in the page sizes
// and level counts of the configurations the container is instantiated
// with; "automatic" levels pick the fewest levels whose blocks all fit the
// largest allocation the container allows (a flat table for a big window is
// one huge allocation, which fails on real systems: that is why levels
// exist). A window is charged for the blocks its tables hold, as they come
// and go; creating a 128 TiB window allocates and charges only its top level.
//
// Memory models (the pinning strategy decides):
//   v1 (pin_on_map): enable before mapping and unmapping (not_permitted
//       otherwise; enabling twice is busy); each map pins the host pages
//       under it; disable always succeeds and keeps the mappings, which can
//       be unmapped after the next enable or go with their window.
//   v2 (preregistered): register memory first; maps require it.
// A call of the other model (enable on v2, register_memory on v1) is
// unsupported, as the kernel answers it with ENOTTY.
//
// map_dma over an existing mapping is refused (status::exists): replacing it
// would silently drop a pin the caller still counts on. A failure in the
// middle of a range undoes everything the call did. unmap_dma unmaps what is
// mapped in the range and says how many bytes that was. Removing a window
// releases every pin and mapping count it held.
//
// Dirty log (for migrating guest RAM that devices write; VFIO type1 has the
// same three steps in VFIO_IOMMU_DIRTY_PAGES). start_dirty_log, then
// dirty_pages reports, per host page of a user address range, whether a
// device may have written it since logging started or since the last report
// that covered it: every page mapped writable in any window is dirty while
// it stays mapped, and a page unmapped from a writable mapping (unmap_dma,
// remove_window, reset) is dirty until a report covers it. Unmaps record
// into a fixed array allocated at start (window/dirty_log.hpp), so logging
// never makes an unmap fail; when the array is full, ranges merge and more
// pages are reported, never fewer.
//
// Migration (migrate/container_stream.hpp). for_each_window and
// for_each_user_run describe the windows and what their mappings map from;
// rebuild makes a planned set of windows and maps runs into them privately,
// and replaces the container's windows only when everything succeeded.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <span>
#include <tuple>
#include <variant>

#include <iopt/addr/address.hpp>
#include <iopt/addr/align.hpp>
#include <iopt/addr/range.hpp>
#include <iopt/format/permission.hpp>
#include <iopt/prereg/accounting.hpp>
#include <iopt/prereg/pinning.hpp>
#include <iopt/prereg/target_log.hpp>
#include <iopt/status.hpp>
#include <iopt/table/geometry.hpp>
#include <iopt/table/table_config.hpp>
#include <iopt/window/dirty_log.hpp>
#include <iopt/window/dma_window.hpp>

namespace iopt {

// Windows a container holds at most: the 32-bit window's slot and the 64-bit
// one's.
inline constexpr unsigned max_dma_windows = 2;

// Settings of a dma_container, fixed at construction.
struct container_options {
  // log2 of the default window's IOMMU page size (4 KiB); a configuration
  // must have it.
  unsigned default_page_shift = 12;
  // Size of the default window in bytes, a power of two (1 GiB).
  std::uint64_t default_window_bytes = std::uint64_t{1} << 30;
  // The largest block a table may allocate when levels are chosen
  // automatically. 4 MiB lets the default window (1 GiB of 4 KiB pages, a
  // 2 MiB flat table) be flat, as it is on real systems.
  std::uint64_t max_block_bytes = std::uint64_t{1} << 22;
  // Removing the last window, when it is not the default window, creates the
  // default window again (QEMU's behaviour).
  bool restore_default_window = true;
  // How many scattered pages' targets (and as many runs) a map keeps
  // between pinning and writing, so that it translates each page once; the
  // pages past them are translated a second time. 3 MiB of scratch at most
  // by default; 0 keeps none.
  std::size_t target_log_limit = target_log::default_limit;
  // How many separate ranges of user memory unmapped from writable mappings
  // the dirty log keeps between two reports (16 bytes each, allocated by
  // start_dirty_log). Past that, a range joins its nearest neighbour: more
  // pages reported dirty, never fewer.
  std::size_t dirty_log_ranges = 1024;
};

// What query() answers: what create_window can still be asked for.
struct window_query {
  // Bit n set: IOMMU pages of 2^n bytes are supported.
  std::uint64_t page_size_mask = 0;
  // Slots create_window can still fill.
  unsigned free_windows = 0;
  // log2 of the largest window, in bytes, that some configuration can
  // index.
  unsigned max_window_shift = 0;
  // Equal when every field is.
  friend bool operator==(const window_query&, const window_query&) = default;
};

// What info() answers: the default window and the limits of the container's
// configurations.
struct container_info {
  // Bus address of the default window: always 0.
  ioba default_window_start{};
  // Size of the default window in bytes, as configured.
  std::uint64_t default_window_bytes = 0;
  // Bit n set: IOMMU pages of 2^n bytes are supported.
  std::uint64_t page_size_mask = 0;
  // How many windows can exist at once.
  unsigned max_windows = max_dma_windows;
  // The most levels any configuration's table has.
  unsigned max_levels = 0;
};

// One window of a container, as for_each_window reports it and rebuild
// takes it.
struct window_description {
  // Bus address of the window's first byte: 0 (the 32-bit window's slot) or
  // huge_window_bus_offset (the 64-bit window's).
  ioba start{};
  // Size in bytes, a power of two.
  std::uint64_t bytes = 0;
  // log2 of the IOMMU page size.
  unsigned page_shift = 0;
  // Levels of the window's table.
  unsigned levels = 0;
  // Whether it is the default window (made by the container, not asked for).
  bool is_default = false;
  // Equal when every field is.
  friend bool operator==(const window_description&, const window_description&) = default;
};

// A run of mapped pages of one window whose user addresses follow one
// another, all mapped with the same permission: what a user asked map_dma
// for, as far as it can be told from the mappings. Another host maps the
// same run again from the same user memory.
struct user_run {
  // Bus address of the first page.
  ioba first{};
  // User address of the first page; page k of the run maps from + k pages.
  ua from{};
  // Number of IOMMU pages (at least 1).
  std::uint64_t pages = 0;
  // The permission the pages were mapped with.
  permission perm = permission::none;
  // Equal when every field is.
  friend bool operator==(const user_run&, const user_run&) = default;
};

// A sPAPR TCE container whose windows use the table configurations Configs,
// map through a pinning strategy and charge their tables to an accounting
// policy (rules in the file comment). It takes no lock: one caller at a time.
template <pinning_strategy Strategy, accounting_policy Accounting, class... Configs>
class dma_container {
  static_assert(sizeof...(Configs) >= 1, "dma_container: name at least one window configuration");
  static constexpr bool shadow = Strategy::needs_shadow;
  using slot = std::variant<std::monostate, dma_window<Configs, Accounting, shadow>...>;

public:
  // Maps through `strategy` and charges tables to `accounting`; both must
  // outlive the container. The default window is made on first use.
  dma_container(Strategy& strategy, Accounting& accounting, container_options options = {}) noexcept
      : strategy_(&strategy), accounting_(&accounting), options_(options),
        targets_(options.target_log_limit) {}
  dma_container(const dma_container&) = delete;
  dma_container& operator=(const dma_container&) = delete;
  ~dma_container() {
    for (unsigned i = 0; i < max_dma_windows; ++i)
      release_slot(i);
  }

  // ---- v1: enable / disable ------------------------------------------------

  // v1: allows maps and unmaps. busy when enabled already; unsupported under
  // another model.
  status enable() noexcept {
    if constexpr (Strategy::model != memory_model::v1_pin_on_map)
      return status::unsupported;
    if (enabled_)
      return status::busy;
    enabled_ = true;
    return status::ok;
  }
  // Always succeeds; mappings stay (unmapping them waits for the next enable).
  status disable() noexcept {
    if constexpr (Strategy::model != memory_model::v1_pin_on_map)
      return status::unsupported;
    enabled_ = false;
    return status::ok;
  }
  // Whether v1 maps and unmaps are allowed now.
  [[nodiscard]] bool enabled() const noexcept { return enabled_; }

  // ---- v2: preregistration -------------------------------------------------

  // v2: registers [first, first + size) for mapping
  // (prereg_registry::register_region); unsupported under another model.
  status register_memory(ua first, std::uint64_t size) noexcept {
    if constexpr (Strategy::model != memory_model::v2_preregistered)
      return status::unsupported;
    else
      return strategy_->registry().register_region(first, size);
  }
  // v2: undoes the registration of exactly [first, first + size); busy while
  // anything maps it. unsupported under another model.
  status unregister_memory(ua first, std::uint64_t size) noexcept {
    if constexpr (Strategy::model != memory_model::v2_preregistered)
      return status::unsupported;
    else
      return strategy_->registry().unregister_region(first, size);
  }

  // ---- windows ---------------------------------------------------------------

  // A window of 2^window_shift bytes of 2^page_shift pages in the first free
  // slot; levels == 0 chooses them. Returns the window's bus start.
  result<ioba> create_window(unsigned page_shift, unsigned window_shift,
                             unsigned levels = 0) noexcept {
    if (const status s = ensure_default(); s != status::ok)
      return s;
    const unsigned free_slot = first_free_slot();
    if (free_slot == max_dma_windows)
      return status::busy; // both windows exist
    auto made = make_window(slot_start(free_slot), page_shift, window_shift, levels);
    if (!made)
      return made.error();
    slots_[free_slot] = std::move(made).value();
    is_default_[free_slot] = false;
    return slot_start(free_slot);
  }

  // Removes the window that starts at `start`, releasing every mapping in it.
  status remove_window(ioba start) noexcept {
    if (!default_made_ && start == slot_start(0)) {
      default_made_ = true; // the default window was never made: it is cancelled
      return status::ok;
    }
    unsigned at = max_dma_windows;
    for (unsigned i = 0; i < max_dma_windows; ++i)
      if (slot_start(i) == start && !std::holds_alternative<std::monostate>(slots_[i]))
        at = i;
    if (at == max_dma_windows)
      return status::not_found;
    if (options_.restore_default_window && !is_default_[at] && window_count() == 1) {
      // The last window goes and the default comes back: make it first, so
      // that a failure leaves the window in place.
      auto made = make_default_window();
      if (!made)
        return made.error();
      release_slot(at);
      slots_[0] = std::move(made).value();
      is_default_[0] = true;
      return status::ok;
    }
    release_slot(at);
    return status::ok;
  }

  // Back to the default window alone.
  status reset() noexcept {
    for (unsigned i = 0; i < max_dma_windows; ++i)
      release_slot(i);
    default_made_ = false;
    return ensure_default();
  }

  // The page sizes, free slots and largest window create_window offers. Makes
  // the default window first if it is still due, so that the free slots count
  // it.
  [[nodiscard]] window_query query() noexcept {
    (void)ensure_default();
    window_query q;
    q.page_size_mask = page_size_mask();
    for (unsigned i = 0; i < max_dma_windows; ++i)
      q.free_windows += std::holds_alternative<std::monostate>(slots_[i]) ? 1u : 0u;
    q.max_window_shift = std::max({table_geometry<Configs>::max_window_shift...});
    return q;
  }

  // The container's fixed description; changes nothing.
  [[nodiscard]] container_info info() const noexcept {
    container_info i;
    i.default_window_start = ioba{0};
    i.default_window_bytes = options_.default_window_bytes;
    i.page_size_mask = page_size_mask();
    i.max_levels = std::max({table_geometry<Configs>::levels...});
    return i;
  }

  // ---- map / unmap -------------------------------------------------------------

  // Maps `size` bytes of user memory from `from` at bus addresses from
  // `iova`, in one window and aligned to its pages; all or nothing.
  // not_permitted under v1 before enable(); exists when anything in the range
  // is mapped; else the first failing check's status (the window's, the
  // strategy's, or hardware_error for a target the table format cannot hold).
  status map_dma(ioba iova, ua from, std::uint64_t size, permission perm) noexcept {
    if (!may_map())
      return status::not_permitted;
    if (!is_valid(perm))
      return status::bad_permission;
    if (perm == permission::none || size == 0)
      return status::invalid_parameter;
    if (const status s = ensure_default(); s != status::ok)
      return s;
    if (!ua_range::make(from, size))
      return status::wraps;
    return with_window(iova, [&](auto& w) { return map_in(w, iova, from, size, perm); });
  }

  // Unmaps whatever is mapped in `size` bytes from `iova` (in one window,
  // aligned to its pages), releasing it through the strategy; the bytes that
  // were mapped. not_permitted under v1 before enable().
  result<std::uint64_t> unmap_dma(ioba iova, std::uint64_t size) noexcept {
    if (!may_map())
      return status::not_permitted;
    if (size == 0)
      return status::invalid_parameter;
    if (const status s = ensure_default(); s != status::ok)
      return s;
    std::uint64_t unmapped = 0;
    const status s = with_window(iova, [&](auto& w) {
      using window = std::remove_reference_t<decltype(w)>;
      const auto span = locate(w, iova, size);
      if (!span)
        return span.error();
      if (changes_)
        w.table().for_each_run(*span, [&](const mapped_run& run) { changes_(false, run); });
      if (w.mapped_pages() == 0)
        return status::ok; // nothing to find, nothing to clear
      w.for_each_mapped_run(*span, [&](ua first, std::uint64_t n, permission p) {
        if (can_write(p))
          dirty_.record(first, n << window::page_shift);
        strategy_->unmap_pages(first, n, window::page_shift, p);
        unmapped += n << window::page_shift;
      });
      w.clear(*span);
      w.count_unmapped(unmapped >> window::page_shift);
      return status::ok;
    });
    if (s != status::ok)
      return s;
    return unmapped;
  }

  // ---- observers ---------------------------------------------------------------

  // What a device sees at a bus address.
  [[nodiscard]] result<translation> translate(ioba at) const noexcept {
    result<translation> r = status::out_of_window;
    for (const slot& s : slots_)
      visit_window(s, [&](const auto& w) {
        if (w.range().contains(at))
          r = w.table().translate(at);
      });
    return r;
  }
  // How many windows exist now (a default window still due is not one).
  [[nodiscard]] unsigned window_count() const noexcept {
    unsigned n = 0;
    for (const slot& s : slots_)
      n += std::holds_alternative<std::monostate>(s) ? 0u : 1u;
    return n;
  }
  // Bytes held by all windows' tables (what accounting was charged for them).
  [[nodiscard]] std::size_t table_bytes() const noexcept {
    std::size_t bytes = 0;
    for (const slot& s : slots_)
      visit_window(s, [&](const auto& w) { bytes += w.memory_bytes(); });
    return bytes;
  }
  // The pinning strategy the container maps through.
  [[nodiscard]] Strategy& strategy() noexcept { return *strategy_; }
  // Hears every run mapped (true, after the map) or about to be unmapped
  // (false), a removed window's included; replaces the hook set before, and
  // an empty hook stops the reports.
  void set_change_hook(dma_change_hook hook) noexcept { changes_ = hook; }

  // Calls on_run(const mapped_run&) for every run mapped in the window that
  // starts at `window_start` (a replay, for a notifier attached late);
  // not_found when no window starts there.
  template <class OnRun>
  status for_each_run(ioba window_start, OnRun&& on_run) const {
    status s = status::not_found;
    for (const slot& sl : slots_)
      visit_window(sl, [&](const auto& w) {
        if (w.range().first() == window_start) {
          w.table().for_each_run(on_run);
          s = status::ok;
        }
      });
    return s;
  }

  // ---- dirty log ---------------------------------------------------------------

  // Starts the dirty log with nothing recorded (see the file comment). busy
  // when it runs already; no_memory, with logging still off, when the room
  // for container_options::dirty_log_ranges ranges cannot be had;
  // invalid_parameter when that option is 0.
  status start_dirty_log() noexcept { return dirty_.start(options_.dirty_log_ranges); }
  // Stops the dirty log and forgets what it recorded; always ok.
  status stop_dirty_log() noexcept {
    dirty_.stop();
    return status::ok;
  }
  // Whether the dirty log runs.
  [[nodiscard]] bool dirty_logging() const noexcept { return dirty_.active(); }

  // Reports which host pages of 2^host_page_shift bytes in the user range
  // [first, first + size) a device may have written since logging started or
  // since the last report that covered them, and forgets the unmaps it
  // reports. Bit i of `bitmap` (bit i % 64 of word i / 64, counted from the
  // least significant bit of a native word) is set when host page i of the
  // range overlaps, even in part, a page mapped writable in either window
  // now, or a writable mapping unmapped since. The words the range needs,
  // ceil(pages / 64), are written in full (bits past the range are 0); words
  // after them are not touched. Mapped pages stay dirty: the next report
  // sets them again.
  //
  // Checked in this order, nothing changed on failure (bitmap included):
  // not_permitted when logging is off; invalid_parameter for a size of 0 or
  // a host page shift outside [min_host_page_shift, max_host_page_shift];
  // not_aligned for a first address or size that is not a multiple of the
  // host page; wraps for a range past 2^64; invalid_parameter for a bitmap
  // of fewer words than the range needs. Costs the windows' mapped entries
  // (a sparse walk, never the window size), the recorded ranges and the
  // bitmap words each of them covers.
  status dirty_pages(ua first, std::uint64_t size, unsigned host_page_shift,
                     std::span<std::uint64_t> bitmap) noexcept {
    if (!dirty_.active())
      return status::not_permitted;
    if (size == 0 || host_page_shift < min_host_page_shift || host_page_shift > max_host_page_shift)
      return status::invalid_parameter;
    if (!is_aligned(first, host_page_shift) || !is_aligned(size, host_page_shift))
      return status::not_aligned;
    const auto range = ua_range::make(first, size);
    if (!range)
      return status::wraps;
    const std::uint64_t pages = size >> host_page_shift;
    const std::uint64_t words = (pages >> 6) + ((pages & 63) != 0 ? 1 : 0);
    if (bitmap.size() < words)
      return status::invalid_parameter;
    const std::span<std::uint64_t> out = bitmap.first(static_cast<std::size_t>(words));
    std::fill(out.begin(), out.end(), std::uint64_t{0});
    const std::uint64_t last = range->last().value();
    detail::dirty_bitmap dirty(out, first.value(), last, host_page_shift);
    for (const slot& s : slots_)
      visit_window(s, [&](const auto& w) {
        using window = std::decay_t<decltype(w)>;
        if (w.mapped_pages() == 0)
          return;
        if (const auto whole = w.locate(w.range().first(), w.table().pages()))
          w.for_each_mapped_run(*whole, [&](ua from, std::uint64_t n, permission p) {
            if (can_write(p))
              dirty.mark(from.value(), from.value() + ((n << window::page_shift) - 1));
          });
      });
    dirty_.for_each_in(first.value(), last,
                       [&](std::uint64_t lo, std::uint64_t hi) { dirty.mark(lo, hi); });
    dirty_.forget(first.value(), last);
    return status::ok;
  }

  // ---- migration ---------------------------------------------------------------

  // Calls fn(const window_description&) for each window, in bus address
  // order.
  template <class Fn>
  void for_each_window(Fn&& fn) const {
    for (unsigned i = 0; i < max_dma_windows; ++i)
      visit_window(slots_[i], [&](const auto& w) { fn(describe(w, is_default_[i])); });
  }
  // Whether the default window is still due: neither made nor cancelled
  // (then no window exists).
  [[nodiscard]] bool default_window_due() const noexcept { return !default_made_; }

  // Calls on_run(const user_run&) for every run of mapped pages of the window
  // that starts at `window_start` whose user addresses follow one another,
  // with the permission map_dma was given (as the shadow table keeps it; with
  // no shadow, the table's own), in bus order; not_found when no window
  // starts there. Costs the window's allocated levels and mapped entries.
  template <class OnRun>
  status for_each_user_run(ioba window_start, OnRun&& on_run) const {
    status found = status::not_found;
    for (const slot& s : slots_)
      visit_window(s, [&](const auto& w) {
        if (w.range().first() != window_start)
          return;
        found = status::ok;
        auto report = [&](const mapped_run& r) {
          on_run(user_run{r.first, ua{r.target}, r.pages, r.perm});
        };
        if constexpr (std::decay_t<decltype(w)>::has_shadow)
          w.shadow().for_each_run(report);
        else
          w.table().for_each_run(report); // the target is the user address
      });
    return found;
  }

  // Whether rebuild could make the windows of `plan` (with the default
  // window still due after it when `default_due`), changing nothing. ok, or:
  // invalid_parameter for a plan no container takes (more windows than
  // slots, a start that is no slot's, two windows in one slot, a size that
  // is not a power of two, a default window outside slot 0, any window while
  // the default one is still due); unsupported for a window none of this
  // container's configurations can make (page size, size, levels; 0 levels
  // chooses them as create_window does), or a default window of another page
  // size or size than this container's default.
  [[nodiscard]] status check_plan(std::span<const window_description> plan,
                                  bool default_due) const noexcept {
    if (plan.size() > max_dma_windows || (default_due && !plan.empty()))
      return status::invalid_parameter;
    std::array<bool, max_dma_windows> taken{};
    for (const window_description& d : plan) {
      const unsigned at = slot_at(d.start);
      if (at == max_dma_windows || taken[at] || !std::has_single_bit(d.bytes) ||
          (d.is_default && at != 0))
        return status::invalid_parameter;
      taken[at] = true;
      if (d.is_default &&
          (d.page_shift != options_.default_page_shift || d.bytes != options_.default_window_bytes))
        return status::unsupported;
      const auto window_shift = static_cast<unsigned>(std::countr_zero(d.bytes));
      if (window_shape(d.page_shift, window_shift, d.levels) != status::ok)
        return status::unsupported;
    }
    return status::ok;
  }

  // Replaces the container's windows by those of `plan` and maps into them
  // the runs `each_mapping` lists; all or nothing. each_mapping(map) calls
  // map(const user_run&) for each run, returns the first status other than
  // ok that map returns (ok when there is none) and must not throw.
  //
  // The new windows are made and the runs mapped into them privately,
  // through the strategy as map_dma maps (v1 pins, and wants the container
  // enabled; v2 maps from registered memory). Only when everything
  // succeeded are the container's windows released and the new ones put in
  // their slots; the change hook then hears every new run. On any failure
  // the pages pinned or counted so far are released, the new windows go, and
  // the container is as it was: windows, default window state, charges and
  // pins. Both sets of windows are charged while the new one is built.
  //
  // Statuses: check_plan's; busy when any window of the container maps
  // something; then those of map_dma for a run it would refuse
  // (not_permitted, bad_permission, invalid_parameter for no permission or
  // no pages, out_of_window for a run in no planned window or past its
  // end, exists, wraps, not_aligned, the strategy's), or no_memory.
  template <class EachMapping>
  status rebuild(std::span<const window_description> plan, bool default_due,
                 EachMapping&& each_mapping) noexcept {
    if (const status s = check_plan(plan, default_due); s != status::ok)
      return s;
    for (const slot& s : slots_) {
      bool mapped = false;
      visit_window(s, [&](const auto& w) { mapped = w.mapped_pages() != 0; });
      if (mapped)
        return status::busy;
    }
    std::array<slot, max_dma_windows> fresh{};
    for (const window_description& d : plan) {
      auto made = make_window(d.start, d.page_shift,
                              static_cast<unsigned>(std::countr_zero(d.bytes)), d.levels);
      if (!made)
        return made.error(); // the windows made so far go with `fresh`
      fresh[slot_at(d.start)] = std::move(made).value();
    }
    status failed = status::ok;
    const status listed = each_mapping([&](const user_run& run) noexcept {
      if (failed == status::ok)
        failed = map_planned(fresh, run);
      return failed;
    });
    if (failed == status::ok)
      failed = listed;
    if (failed != status::ok) {
      for (slot& s : fresh)
        unmap_invisible(s);
      return failed;
    }
    for (unsigned i = 0; i < max_dma_windows; ++i) {
      release_slot(i); // maps nothing (checked above)
      slots_[i] = std::move(fresh[i]);
    }
    for (const window_description& d : plan)
      is_default_[slot_at(d.start)] = d.is_default;
    default_made_ = !default_due;
    if (changes_)
      for (const slot& s : slots_)
        visit_window(s, [&](const auto& w) {
          w.table().for_each_run([&](const mapped_run& run) { changes_(true, run); });
        });
    return status::ok;
  }

private:
  // Calls fn(window) if the slot holds one (of whichever configuration).
  template <class Slot, class Fn>
  static void visit_window(Slot& s, Fn&& fn) {
    std::visit(
        [&](auto& w) {
          if constexpr (!std::is_same_v<std::decay_t<decltype(w)>, std::monostate>)
            fn(w);
        },
        s);
  }

  static constexpr std::uint64_t page_size_mask() noexcept {
    return ((std::uint64_t{1} << table_geometry<Configs>::page_shift) | ...);
  }
  static constexpr ioba slot_start(unsigned i) noexcept {
    return ioba{i == 0 ? 0 : huge_window_bus_offset};
  }
  // The slot whose windows start at `start`; max_dma_windows for none.
  static constexpr unsigned slot_at(ioba start) noexcept {
    for (unsigned i = 0; i < max_dma_windows; ++i)
      if (slot_start(i) == start)
        return i;
    return max_dma_windows;
  }

  template <class Window>
  static window_description describe(const Window& w, bool is_default) noexcept {
    return {w.range().first(), w.range().size(), Window::page_shift, Window::table_type::levels,
            is_default};
  }

  bool may_map() const noexcept {
    if constexpr (Strategy::model == memory_model::v1_pin_on_map)
      return enabled_;
    else
      return true;
  }

  unsigned first_free_slot() const noexcept {
    for (unsigned i = 0; i < max_dma_windows; ++i)
      if (std::holds_alternative<std::monostate>(slots_[i]))
        return i;
    return max_dma_windows;
  }

  status ensure_default() noexcept {
    if (default_made_)
      return status::ok;
    // Until the default window is made or cancelled, no window exists.
    IOPT_ASSERT(window_count() == 0);
    auto made = make_default_window();
    if (!made)
      return made.error();
    slots_[0] = std::move(made).value();
    is_default_[0] = true;
    default_made_ = true;
    return status::ok;
  }

  result<slot> make_default_window() noexcept {
    if (!std::has_single_bit(options_.default_window_bytes))
      return status::invalid_parameter; // a window is a power of two
    return make_window(slot_start(0), options_.default_page_shift,
                       static_cast<unsigned>(std::countr_zero(options_.default_window_bytes)), 0);
  }

  // What make_window checks before it allocates anything: ok when some
  // configuration can hold the window; invalid_parameter for a page size
  // the container has no configuration for, a size below one page or of
  // 2^64 bytes, more levels than any table has; unsupported when no
  // configuration fits.
  status window_shape(unsigned page_shift, unsigned window_shift, unsigned levels) const noexcept {
    if (page_shift >= 64 || ((page_size_mask() >> page_shift) & 1) == 0)
      return status::invalid_parameter; // not a page size this container supports
    if (window_shift < page_shift || window_shift >= 64)
      return status::invalid_parameter; // smaller than one page, or no size at all
    if (levels > max_table_levels)
      return status::invalid_parameter; // more levels than any table can have
    for (unsigned want = 1; want <= max_table_levels; ++want)
      if ((levels == 0 || want == levels) &&
          (config_fits<Configs>(page_shift, window_shift, want, levels == 0) || ...))
        return status::ok;
    return status::unsupported;
  }

  // Whether a table of Config can hold the window: its page size and level
  // count, enough index bits (within the hardware's, where it has the limit:
  // tce_table::create refuses those, and a plan is checked without creating
  // anything) and, with levels chosen automatically, blocks no larger than
  // the container allows.
  template <class Config>
  bool config_fits(unsigned page_shift, unsigned window_shift, unsigned want,
                   bool automatic) const noexcept {
    using geometry = table_geometry<Config>;
    if (geometry::page_shift != page_shift || geometry::levels != want)
      return false;
    const unsigned entries_bits = window_shift - page_shift;
    if (entries_bits > geometry::max_entries_bits)
      return false;
    if (table_traits<Config>::hardware_index_limit &&
        geometry::hardware_index_bits(entries_bits) + page_shift >= hardware_index_limit_bits)
      return false;
    return !automatic || geometry::largest_block_bytes(entries_bits) <= options_.max_block_bytes;
  }

  // A window at `start` from the first configuration that fits, not yet placed.
  result<slot> make_window(ioba start, unsigned page_shift, unsigned window_shift,
                           unsigned levels) noexcept {
    if (const status s = window_shape(page_shift, window_shift, levels); s != status::ok)
      return s;
    result<slot> made = status::unsupported; // nothing fits, until a configuration does
    bool placed = false;
    // Configurations are tried in order of their level counts, fewest first.
    for (unsigned want = 1; want <= max_table_levels && !placed; ++want) {
      if (levels != 0 && want != levels)
        continue;
      (try_config<Configs>(start, page_shift, window_shift, want, levels == 0, made, placed), ...);
    }
    return made;
  }

  template <class Config>
  void try_config(ioba start, unsigned page_shift, unsigned window_shift, unsigned want,
                  bool automatic, result<slot>& made_slot, bool& placed) noexcept {
    if (placed || !config_fits<Config>(page_shift, window_shift, want, automatic))
      return;
    auto made = dma_window<Config, Accounting, shadow>::create(
        start, std::uint64_t{1} << window_shift, *accounting_);
    if (!made) {
      made_slot = made.error();
      return;
    }
    made_slot = slot(std::move(made).value());
    placed = true;
  }

  // Runs fn on the window that holds `iova`; out_of_window when none does.
  template <class Fn>
  status with_window(ioba iova, Fn&& fn) noexcept {
    for (slot& s : slots_) {
      bool found = false;
      status result = status::ok;
      visit_window(s, [&](auto& w) {
        if (w.range().contains(iova)) {
          found = true;
          result = fn(w);
        }
      });
      if (found)
        return result;
    }
    return status::out_of_window;
  }

  // The pages of `size` bytes from iova in the window: both must be aligned
  // to the window's pages, and the range must end inside it.
  template <class Window>
  static result<page_span> locate(const Window& w, ioba iova, std::uint64_t size) noexcept {
    if (!is_aligned(size, Window::page_shift))
      return status::not_aligned;
    return w.locate(iova, size >> Window::page_shift);
  }

  // Maps into `w` after map_dma's first checks; `report`: tell the change
  // hook (not for a window that is not in its slot yet).
  template <class Window>
  status map_in(Window& w, ioba iova, ua from, std::uint64_t size, permission perm,
                bool report = true) noexcept {
    constexpr unsigned shift = Window::page_shift;
    const auto span = locate(w, iova, size);
    if (!span)
      return span.error();
    if (!is_aligned(from, shift))
      return status::not_aligned;
    const std::uint64_t pages = span->count();
    bool occupied = false;
    if (w.mapped_pages() != 0) // an empty window has no mapping in the way
      w.table().for_each_run(*span, [&](const mapped_run&) {
        occupied = true;
        return false;
      });
    if (occupied)
      return status::exists;
    // All or nothing, in an order where every fallible step comes before
    // anything is visible: reserve the levels (nothing installed yet), pin
    // every page (undone on failure; the reservation then gives its blocks
    // back), and only then install the levels and write the entries, which
    // cannot fail.
    auto levels = w.reserve(*span);
    if (!levels)
      return levels.error;
    if (const status s = strategy_->map_pages(from, pages, shift, perm, targets_); s != status::ok)
      return s;
    const hpa highest = targets_.highest();
    // The highest target and user address must fit the tables' entries.
    using table_format = typename Window::table_type::format;
    if (table_format::check(table_format::make(align_down(highest, shift).value(), perm), shift) !=
        status::ok) {
      strategy_->unmap_pages(from, pages, shift, permission::none); // nothing became visible
      return status::hardware_error;
    }
    w.install(levels);
    if constexpr (Window::has_shadow) {
      [[maybe_unused]] const status remembered =
          pages == 1 ? w.shadow().map(iova, from.value(), perm, allocation::forbidden)
                     : w.shadow().map_range(*span, from.value(), perm, allocation::forbidden);
      IOPT_ASSERT(remembered == status::ok); // levels installed, range checked above
    }
    // The targets the strategy recorded, then (if the log could not hold
    // them all) the rest from the strategy, a log's room at a time.
    write_targets(w.table(), iova, perm);
    for (std::uint64_t done = targets_.recorded_pages(); done != pages;) {
      const std::uint64_t n = std::min<std::uint64_t>(pages - done, targets_.room());
      targets_.restart_within_room(shift);
      strategy_->for_each_target(
          ua{from.value() + (done << shift)}, n, shift,
          [&](std::uint64_t, hpa target, std::uint64_t run) { targets_.record(target, run); });
      IOPT_ASSERT(targets_.recorded_pages() == n); // the log had room for them all
      write_targets(w.table(), ioba{iova.value() + (done << shift)}, perm);
      done += n;
    }
    w.count_mapped(pages);
    if (changes_ && report)
      w.table().for_each_run(*span, [&](const mapped_run& run) { changes_(true, run); });
    return status::ok;
  }

  // Writes the pages the log holds from `first` into a table whose levels
  // are installed and whose targets the strategy checked: cannot fail.
  template <class Table>
  void write_targets(Table& table, ioba first, permission perm) const noexcept {
    auto bus = [&](std::uint64_t page) {
      return ioba{first.value() + (page << Table::page_shift)};
    };
    targets_.replay(
        [&](std::uint64_t page, hpa target, std::uint64_t pages) {
          [[maybe_unused]] const status s =
              table.map_range(bus(page), target.value(), pages, perm, allocation::forbidden);
          IOPT_ASSERT(s == status::ok);
        },
        [&](std::uint64_t page, std::span<const std::uint64_t> targets) {
          [[maybe_unused]] const status s =
              targets.size() == 1 ? table.map(bus(page), targets[0], perm, allocation::forbidden)
                                  : table.map_list(bus(page), targets, perm, allocation::forbidden);
          IOPT_ASSERT(s == status::ok);
        });
  }

  void release_slot(unsigned i) noexcept {
    visit_window(slots_[i], [&](auto& w) {
      using window = std::decay_t<decltype(w)>;
      if (changes_)
        w.table().for_each_run([&](const mapped_run& run) { changes_(false, run); });
      if (const auto whole = w.locate(w.range().first(), w.table().pages()))
        w.for_each_mapped_run(*whole, [&](ua first, std::uint64_t pages, permission p) {
          if (can_write(p))
            dirty_.record(first, pages << window::page_shift);
          strategy_->unmap_pages(first, pages, window::page_shift, p);
        });
    });
    slots_[i] = std::monostate{};
    is_default_[i] = false;
  }

  // Maps a run of a rebuild into the planned window that holds it, with
  // map_dma's checks; nothing is visible yet, so the change hook hears
  // nothing.
  status map_planned(std::array<slot, max_dma_windows>& planned, const user_run& run) noexcept {
    if (!may_map())
      return status::not_permitted;
    if (!is_valid(run.perm))
      return status::bad_permission;
    if (run.perm == permission::none || run.pages == 0)
      return status::invalid_parameter;
    for (slot& s : planned) {
      bool found = false;
      status result = status::ok;
      visit_window(s, [&](auto& w) {
        using window = std::decay_t<decltype(w)>;
        if (!w.range().contains(run.first))
          return;
        found = true;
        if (run.pages > w.table().pages()) {
          result = status::out_of_window; // and its size would not fit 64 bits
          return;
        }
        const std::uint64_t size = run.pages << window::page_shift;
        result = ua_range::make(run.from, size)
                     ? map_in(w, run.first, run.from, size, run.perm, false)
                     : status::wraps;
      });
      if (found)
        return result;
    }
    return status::out_of_window;
  }

  // Gives back what a rebuild mapped into a window that never became
  // visible (no device could use it: nothing is dirty), and the window.
  void unmap_invisible(slot& s) noexcept {
    visit_window(s, [&](auto& w) {
      using window = std::decay_t<decltype(w)>;
      if (w.mapped_pages() == 0)
        return;
      if (const auto whole = w.locate(w.range().first(), w.table().pages()))
        w.for_each_mapped_run(*whole, [&](ua first, std::uint64_t pages, permission) {
          strategy_->unmap_pages(first, pages, window::page_shift, permission::none);
        });
    });
    s = std::monostate{};
  }

  Strategy* strategy_;
  Accounting* accounting_;
  container_options options_;
  dma_change_hook changes_{};
  target_log targets_;    // scratch of map_in, reused from call to call
  dirty_range_log dirty_; // writable ranges unmapped since their last report
  std::array<slot, max_dma_windows> slots_{};
  std::array<bool, max_dma_windows> is_default_{}; // the slot holds the default window
  bool default_made_ = false;
  bool enabled_ = false;
};

} // namespace iopt
