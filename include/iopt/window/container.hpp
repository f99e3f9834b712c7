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

  // A window at `start` from the first configuration that fits, not yet placed.
  result<slot> make_window(ioba start, unsigned page_shift, unsigned window_shift,
                           unsigned levels) noexcept {
    if (page_shift >= 64 || ((page_size_mask() >> page_shift) & 1) == 0)
      return status::invalid_parameter; // not a page size this container supports
    if (window_shift < page_shift || window_shift >= 64)
      return status::invalid_parameter; // smaller than one page, or no size at all
    if (levels > max_table_levels)
      return status::invalid_parameter; // more levels than any table can have
    const std::uint64_t bytes = std::uint64_t{1} << window_shift;
    result<slot> made = status::unsupported; // nothing fits, until a configuration does
    bool placed = false;
    // Configurations are tried in order of their level counts, fewest first.
    for (unsigned want = 1; want <= max_table_levels && !placed; ++want) {
      if (levels != 0 && want != levels)
        continue;
      (try_config<Configs>(start, page_shift, window_shift, want, levels == 0, bytes, made, placed),
       ...);
    }
    return made;
  }

  template <class Config>
  void try_config(ioba start, unsigned page_shift, unsigned window_shift, unsigned want,
                  bool automatic, std::uint64_t bytes, result<slot>& made_slot,
                  bool& placed) noexcept {
    using geometry = table_geometry<Config>;
    if (placed || geometry::page_shift != page_shift || geometry::levels != want)
      return;
    if (window_shift - page_shift > geometry::max_entries_bits)
      return;
    if (automatic) {
      const unsigned entries_bits = window_shift - page_shift;
      if (geometry::largest_block_bytes(entries_bits) > options_.max_block_bytes)
        return;
    }
    auto made = dma_window<Config, Accounting, shadow>::create(start, bytes, *accounting_);
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

  template <class Window>
  status map_in(Window& w, ioba iova, ua from, std::uint64_t size, permission perm) noexcept {
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
    if (changes_)
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
          strategy_->unmap_pages(first, pages, window::page_shift, p);
        });
    });
    slots_[i] = std::monostate{};
    is_default_[i] = false;
  }

  Strategy* strategy_;
  Accounting* accounting_;
  container_options options_;
  dma_change_hook changes_{};
  target_log targets_; // scratch of map_in, reused from call to call
  std::array<slot, max_dma_windows> slots_{};
  std::array<bool, max_dma_windows> is_default_{}; // the slot holds the default window
  bool default_made_ = false;
  bool enabled_ = false;
};

} // namespace iopt
