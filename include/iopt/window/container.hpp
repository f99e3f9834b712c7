// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// A VFIO-style sPAPR TCE container: the DMA windows of one partitionable
// endpoint, and the map/unmap requests a user-space driver or a VMM makes.
//
// Windows. At most two: slot 0 at bus address 0 (the 32-bit window) and
// slot 1 at 1 << 59 (the 64-bit window). The default window (slot 0, 1 GiB
// of 4 KiB pages unless configured otherwise) is created on first use.
// create_window takes the first free slot. Windows come in the page sizes
// and level counts of the configurations the container is instantiated
// with; "automatic" levels pick the fewest levels whose blocks all fit the
// largest allocation the container allows (a flat table for a big window is
// one huge allocation, which fails on real systems: that is why levels
// exist). A window is charged for the blocks its tables hold, as they come
// and go; creating a 128 TiB window allocates and charges only its top level.
//
// Memory models (the pinning strategy decides):
//   v1 (pin_on_map): enable before mapping; each map pins and charges per
//       page; register_memory is not permitted.
//   v2 (preregistered): register memory first; maps require it; enable and
//       disable are not permitted.
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
#include <tuple>
#include <variant>

#include <iopt/addr/address.hpp>
#include <iopt/addr/align.hpp>
#include <iopt/addr/range.hpp>
#include <iopt/configs.hpp>
#include <iopt/format/permission.hpp>
#include <iopt/prereg/accounting.hpp>
#include <iopt/prereg/pinning.hpp>
#include <iopt/status.hpp>
#include <iopt/table/geometry.hpp>
#include <iopt/window/dma_window.hpp>

namespace iopt {

inline constexpr unsigned max_dma_windows = 2;

struct container_options {
  unsigned default_page_shift = 12;
  std::uint64_t default_window_bytes = std::uint64_t{1} << 30;
  // The largest block a table may allocate when levels are chosen
  // automatically. 4 MiB lets the default window (1 GiB of 4 KiB pages, a
  // 2 MiB flat table) be flat, as it is on real systems.
  std::uint64_t max_block_bytes = std::uint64_t{1} << 22;
};

struct window_query {
  std::uint64_t page_size_mask = 0; // bit n set: pages of 2^n bytes are supported
  unsigned free_windows = 0;
  unsigned max_window_shift = 0; // log2 of the largest window
  friend bool operator==(const window_query&, const window_query&) = default;
};

// Who hears what the container changes: every run it maps (coalesced, with
// its target) and every run it unmaps. notify/notifier.hpp turns this into
// notifier events.
struct dma_change_hook {
  void (*report)(void* context, bool mapped, const mapped_run& run) noexcept = nullptr;
  void* context = nullptr;

  void operator()(bool mapped, const mapped_run& run) const noexcept {
    if (report != nullptr)
      report(context, mapped, run);
  }
  [[nodiscard]] explicit operator bool() const noexcept { return report != nullptr; }
};

struct container_info {
  ioba default_window_start{};
  std::uint64_t default_window_bytes = 0;
  std::uint64_t page_size_mask = 0;
  unsigned max_windows = max_dma_windows;
  unsigned max_levels = 0;
};

template <pinning_strategy Strategy, accounting_policy Accounting, class... Configs>
class dma_container {
  static_assert(sizeof...(Configs) >= 1, "dma_container: name at least one window configuration");
  static constexpr bool shadow = Strategy::needs_shadow;
  using slot = std::variant<std::monostate, dma_window<Configs, Accounting, shadow>...>;

public:
  dma_container(Strategy& strategy, Accounting& accounting, container_options options = {}) noexcept
      : strategy_(&strategy), accounting_(&accounting), options_(options) {}
  dma_container(const dma_container&) = delete;
  dma_container& operator=(const dma_container&) = delete;
  ~dma_container() {
    for (unsigned i = 0; i < max_dma_windows; ++i)
      release_slot(i);
  }

  // ---- v1: enable / disable ------------------------------------------------

  status enable() noexcept {
    if constexpr (Strategy::model != memory_model::v1_pin_on_map)
      return status::not_permitted;
    enabled_ = true;
    return status::ok;
  }
  status disable() noexcept {
    if constexpr (Strategy::model != memory_model::v1_pin_on_map)
      return status::not_permitted;
    if (has_mappings())
      return status::busy;
    enabled_ = false;
    return status::ok;
  }

  // ---- v2: preregistration -------------------------------------------------

  status register_memory(ua first, std::uint64_t size) noexcept {
    if constexpr (Strategy::model != memory_model::v2_preregistered)
      return status::not_permitted;
    else
      return strategy_->registry().register_region(first, size);
  }
  status unregister_memory(ua first, std::uint64_t size) noexcept {
    if constexpr (Strategy::model != memory_model::v2_preregistered)
      return status::not_permitted;
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
    return create_in_free_slot(page_shift, window_shift, levels);
  }

  status remove_window(ioba start) noexcept {
    if (const status s = ensure_default(); s != status::ok)
      return s;
    for (unsigned i = 0; i < max_dma_windows; ++i)
      if (slot_start(i) == start && !std::holds_alternative<std::monostate>(slots_[i])) {
        release_slot(i);
        return status::ok;
      }
    return status::not_found;
  }

  // Back to the default window alone.
  status reset() noexcept {
    for (unsigned i = 0; i < max_dma_windows; ++i)
      release_slot(i);
    default_made_ = false;
    return ensure_default();
  }

  [[nodiscard]] window_query query() noexcept {
    (void)ensure_default();
    window_query q;
    q.page_size_mask = page_size_mask();
    for (unsigned i = 0; i < max_dma_windows; ++i)
      q.free_windows += std::holds_alternative<std::monostate>(slots_[i]) ? 1u : 0u;
    q.max_window_shift = std::max({table_geometry<Configs>::max_window_shift...});
    return q;
  }

  [[nodiscard]] container_info info() const noexcept {
    container_info i;
    i.default_window_start = ioba{0};
    i.default_window_bytes = options_.default_window_bytes;
    i.page_size_mask = page_size_mask();
    i.max_levels = std::max({table_geometry<Configs>::levels...});
    return i;
  }

  // ---- map / unmap -------------------------------------------------------------

  status map_dma(ioba iova, ua from, std::uint64_t size, permission perm) noexcept {
    if constexpr (Strategy::model == memory_model::v1_pin_on_map)
      if (!enabled_)
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

  result<std::uint64_t> unmap_dma(ioba iova, std::uint64_t size) noexcept {
    if (size == 0)
      return status::invalid_parameter;
    if (const status s = ensure_default(); s != status::ok)
      return s;
    std::uint64_t unmapped = 0;
    const status s = with_window(iova, [&](auto& w) {
      using window = std::remove_reference_t<decltype(w)>;
      if (const status c = check_range(w, iova, size); c != status::ok)
        return c;
      const std::uint64_t pages = size >> window::page_shift;
      if (changes_)
        (void)w.table().for_each_run(iova, pages,
                                     [&](const mapped_run& run) { changes_(false, run); });
      w.for_each_mapped_page(iova, pages, [&](ua page, permission p) {
        strategy_->unmap_page(page, window::page_shift, p);
        unmapped += window::page_bytes;
      });
      w.clear(iova, pages);
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
  [[nodiscard]] Strategy& strategy() noexcept { return *strategy_; }
  void set_change_hook(dma_change_hook hook) noexcept { changes_ = hook; }

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

  status ensure_default() noexcept {
    if (default_made_)
      return status::ok;
    if (!std::has_single_bit(options_.default_window_bytes))
      return status::invalid_parameter; // a window is a power of two
    const auto made = create_in_free_slot(
        options_.default_page_shift,
        static_cast<unsigned>(std::countr_zero(options_.default_window_bytes)), 0);
    if (!made)
      return made.error();
    default_made_ = true;
    return status::ok;
  }

  result<ioba> create_in_free_slot(unsigned page_shift, unsigned window_shift,
                                   unsigned levels) noexcept {
    if (page_shift >= 64 || ((page_size_mask() >> page_shift) & 1) == 0)
      return status::invalid_parameter; // not a page size this container supports
    if (window_shift < page_shift || window_shift >= 64)
      return status::invalid_parameter; // smaller than one page, or no size at all
    unsigned free_slot = max_dma_windows;
    for (unsigned i = 0; i < max_dma_windows && free_slot == max_dma_windows; ++i)
      if (std::holds_alternative<std::monostate>(slots_[i]))
        free_slot = i;
    if (free_slot == max_dma_windows)
      return status::busy; // both windows exist
    const ioba start = slot_start(free_slot);
    const std::uint64_t bytes = std::uint64_t{1} << window_shift;
    status result = status::unsupported; // nothing fits, until a configuration does
    bool placed = false;
    // Configurations are tried in order of their level counts, fewest first.
    for (unsigned want = 1; want <= max_table_levels && !placed; ++want) {
      if (levels != 0 && want != levels)
        continue;
      (try_config<Configs>(free_slot, start, page_shift, window_shift, want, levels == 0, bytes,
                           result, placed),
       ...);
    }
    if (!placed)
      return result;
    return start;
  }

  template <class Config>
  void try_config(unsigned slot_index, ioba start, unsigned page_shift, unsigned window_shift,
                  unsigned want, bool automatic, std::uint64_t bytes, status& result,
                  bool& placed) noexcept {
    using geometry = table_geometry<Config>;
    if (placed || geometry::page_shift != page_shift || geometry::levels != want)
      return;
    if (window_shift - page_shift > geometry::max_entries_bits)
      return;
    if (automatic) {
      const unsigned entries_bits = window_shift - page_shift;
      std::uint64_t largest = (std::uint64_t{8} << geometry::top_bits(entries_bits));
      for (unsigned l = 0; l + 1 < geometry::levels; ++l)
        largest = std::max<std::uint64_t>(largest, geometry::block_bytes(l));
      if (largest > options_.max_block_bytes)
        return;
    }
    auto made = dma_window<Config, Accounting, shadow>::create(start, bytes, *accounting_);
    if (!made) {
      result = made.error();
      return;
    }
    slots_[slot_index] = std::move(made).value();
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

  template <class Window>
  static status check_range(const Window& w, ioba iova, std::uint64_t size) noexcept {
    if (!is_aligned(iova, Window::page_shift) || !is_aligned(size, Window::page_shift))
      return status::not_aligned;
    if (size - 1 > w.range().last() - iova)
      return status::out_of_window;
    return status::ok;
  }

  template <class Window>
  status map_in(Window& w, ioba iova, ua from, std::uint64_t size, permission perm) noexcept {
    constexpr unsigned shift = Window::page_shift;
    if (const status s = check_range(w, iova, size); s != status::ok)
      return s;
    if (!is_aligned(from, shift))
      return status::not_aligned;
    const std::uint64_t pages = size >> shift;
    bool occupied = false;
    (void)w.table().for_each_run(iova, pages, [&](const mapped_run&) {
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
    auto levels = w.reserve(iova, pages);
    if (!levels)
      return levels.error;
    for (std::uint64_t i = 0; i < pages; ++i) {
      hpa target{};
      if (const status s = strategy_->map_page(page_of(from, i, shift), shift, perm, target);
          s != status::ok) {
        for (std::uint64_t k = 0; k < i; ++k)
          strategy_->unmap_page(page_of(from, k, shift), shift, perm);
        return s;
      }
    }
    w.install(levels);
    for (std::uint64_t i = 0; i < pages; ++i) {
      const ua page = page_of(from, i, shift);
      const auto target = strategy_->translate_page(page, shift);
      IOPT_ASSERT(target.has_value()); // the page was accepted just above
      const ioba bus{iova.value() + (i << shift)};
      [[maybe_unused]] status written =
          w.table().map(bus, target->value(), perm, allocation::forbidden);
      if constexpr (Window::has_shadow)
        written = w.shadow().map(bus, page.value(), perm, allocation::forbidden);
      IOPT_ASSERT(written == status::ok);
    }
    if (changes_)
      (void)w.table().for_each_run(iova, pages,
                                   [&](const mapped_run& run) { changes_(true, run); });
    return status::ok;
  }

  static ua page_of(ua from, std::uint64_t i, unsigned shift) noexcept {
    return ua{from.value() + (i << shift)};
  }

  void release_slot(unsigned i) noexcept {
    visit_window(slots_[i], [&](auto& w) {
      using window = std::decay_t<decltype(w)>;
      if (changes_)
        w.table().for_each_run([&](const mapped_run& run) { changes_(false, run); });
      w.for_each_mapped_page(w.range().first(), w.table().pages(), [&](ua page, permission p) {
        strategy_->unmap_page(page, window::page_shift, p);
      });
    });
    slots_[i] = std::monostate{};
  }

  bool has_mappings() const noexcept {
    bool any = false;
    for (const slot& s : slots_)
      visit_window(s, [&](const auto& w) {
        w.table().for_each_run([&](const mapped_run&) {
          any = true;
          return false;
        });
      });
    return any;
  }

  Strategy* strategy_;
  Accounting* accounting_;
  container_options options_;
  dma_change_hook changes_{};
  std::array<slot, max_dma_windows> slots_{};
  bool default_made_ = false;
  bool enabled_ = false;
};

} // namespace iopt
