// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// Pinning strategies: what mapping and unmapping an IOMMU page do to memory.
//
//   pin_on_map     sPAPR VFIO "v1": a map pins the host pages under its
//                  IOMMU page (pins nest per host page) and charges those it
//                  pins first; an unmap undoes that.
//   preregistered  "v2": memory was registered beforehand; a map requires
//                  its page to lie in a registered region and raises that
//                  region's mapping count, an unmap lowers it. Nothing is
//                  pinned at map time.
//   no_pinning     nothing to pin: the user address is the device address
//                  (simulators, identity-mapped test setups).
//
// A strategy S works on ranges of IOMMU pages (one map_dma of a gigabyte is
// one call, not 16384). The concept pinning_strategy below checks every
// member it must provide:
//   static constexpr bool needs_shadow
//       whether the table must remember, per entry, the user address it
//       mapped (what unmap must undo); false means no shadow is kept.
//   static constexpr memory_model model
//       which VFIO IOMMU model it implements (v1 pinning at map time, v2
//       preregistered, or unpinned): the container answers the calls of
//       the other model as unsupported (register_memory under v1, enable
//       under v2), as the kernel does.
//   status s.map_pages(ua first, std::uint64_t pages, unsigned page_shift,
//                      permission, target_log& log) noexcept
//       every fallible step of mapping `pages` IOMMU pages of 2^page_shift
//       bytes from `first` (pinning, charging, counting, translating): ok
//       with every page's target aligned to its size, the highest target
//       byte in `log` and, if the strategy translated the range on the way,
//       the runs of a prefix of it (prereg/target_log.hpp); or a status with
//       nothing pinned, charged or counted.
//   void s.for_each_target(ua first, std::uint64_t pages, unsigned page_shift,
//                          OnRun&& on_run) noexcept
//       the targets of pages map_pages accepted, with no side effect:
//       on_run(std::uint64_t page index, hpa target, std::uint64_t pages) for
//       each run of pages whose targets are consecutive, in order (a caller
//       asks only for the pages after those the log recorded).
//   void s.unmap_pages(ua first, std::uint64_t pages, unsigned page_shift,
//                      permission) noexcept
//       undoes map_pages for any run of pages it mapped (not necessarily
//       in the same pieces); writable pages are reported dirtied first.
//       permission::none undoes a map that never became visible.
//
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <mutex>
#include <utility>

#include <iopt/addr/address.hpp>
#include <iopt/format/permission.hpp>
#include <iopt/hook.hpp>
#include <iopt/prereg/accounting.hpp>
#include <iopt/prereg/backend.hpp>
#include <iopt/prereg/page_counts.hpp>
#include <iopt/prereg/registry.hpp>
#include <iopt/prereg/target_log.hpp>
#include <iopt/status.hpp>

namespace iopt {

// The sPAPR VFIO memory models a strategy implements.
enum class memory_model : std::uint8_t {
  // VFIO_SPAPR_TCE_IOMMU: enable first; maps pin.
  v1_pin_on_map,
  // VFIO_SPAPR_TCE_v2_IOMMU: register memory first; maps look it up.
  v2_preregistered,
  // Nothing to enable or register.
  unpinned,
};

namespace detail {
// The callable the concept checks for_each_target with.
struct target_run_visitor {
  void operator()(std::uint64_t, hpa, std::uint64_t) const noexcept {}
};
} // namespace detail

template <class S>
concept pinning_strategy = requires(S& s, ua first, std::uint64_t pages, unsigned shift,
                                    permission perm, target_log& log,
                                    detail::target_run_visitor on_run) {
  { S::needs_shadow } -> std::convertible_to<bool>;
  { S::model } -> std::convertible_to<memory_model>;
  { s.map_pages(first, pages, shift, perm, log) }
  noexcept->std::same_as<status>;
  { s.for_each_target(first, pages, shift, on_run) }
  noexcept;
  { s.unmap_pages(first, pages, shift, perm) }
  noexcept;
};

// Hears that `bytes` from `first` were unmapped from mappings a device
// could write: the pages a migration must send again.
using dirty_hook = hook<ua, std::uint64_t>;

namespace detail {
inline void report_dirty(const dirty_hook& dirty, ua first, std::uint64_t bytes,
                         permission perm) noexcept {
  if (can_write(perm))
    dirty(first, bytes);
}
} // namespace detail

// Nothing pinned or counted: a page's target is its own user address, and an
// unmap only reports writable pages dirty.
class no_pinning {
public:
  // The table's targets are the user addresses already: no shadow.
  static constexpr bool needs_shadow = false;
  // Neither enable nor register_memory applies.
  static constexpr memory_model model = memory_model::unpinned;
  // `dirty` hears of writable pages as they are unmapped.
  explicit no_pinning(dirty_hook dirty = {}) noexcept : dirty_(dirty) {}

  // Records the range as one run at its own user address; always ok.
  status map_pages(ua first, std::uint64_t pages, unsigned page_shift, permission,
                   target_log& log) noexcept {
    log.restart(page_shift);
    log.set_highest(hpa{first.value() + ((pages << page_shift) - 1)});
    log.record(hpa{first.value()}, pages);
    return status::ok;
  }
  // The range as one run from its user address.
  template <class OnRun>
  void for_each_target(ua first, std::uint64_t pages, unsigned, OnRun&& on_run) noexcept {
    on_run(std::uint64_t{0}, hpa{first.value()}, pages);
  }
  // Reports writable pages dirty; there is nothing else to undo.
  void unmap_pages(ua first, std::uint64_t pages, unsigned page_shift, permission perm) noexcept {
    detail::report_dirty(dirty_, first, pages << page_shift, perm);
  }

private:
  dirty_hook dirty_;
};

// v2. A map takes one use of its region per page, all of a region's pages
// at once (a call may span adjacent regions), and its targets come from the
// translation the region took at registration, run by run.
template <class Registry>
class preregistered {
public:
  // An unmap must know the user address each entry mapped: it finds the
  // page's region by it.
  static constexpr bool needs_shadow = true;
  // Memory is registered before it is mapped; enable does not apply.
  static constexpr memory_model model = memory_model::v2_preregistered;
  // Maps from the regions of `registry`, which must outlive the strategy;
  // `dirty` hears of writable pages as they are unmapped.
  explicit preregistered(Registry& registry, dirty_hook dirty = {}) noexcept
      : registry_(&registry), dirty_(dirty) {}

  // not_found when a page is not registered memory; unsupported when its
  // region cannot back pages this large.
  status map_pages(ua first, std::uint64_t pages, unsigned page_shift, permission,
                   target_log& log) noexcept {
    const std::uint64_t bytes = pages << page_shift;
    for (std::uint64_t done = 0; done < bytes;) {
      std::uint64_t span = 0;
      const auto region =
          registry_->acquire_pages(ua{first.value() + done}, bytes - done, page_shift, span);
      if (!region) {
        if (done != 0)
          registry_->release_pages(first, done, page_shift);
        return region.error();
      }
      done += span;
    }
    log.restart(page_shift);
    std::uint64_t top = 0;
    for_each_target(first, pages, page_shift, [&](std::uint64_t, hpa target, std::uint64_t n) {
      top = std::max(top, target.value() + ((n << page_shift) - 1));
      log.record(target, n);
    });
    log.set_highest(hpa{top});
    return status::ok;
  }
  // The targets of mapped pages, from the translation their regions took at
  // registration.
  template <class OnRun>
  void for_each_target(ua first, std::uint64_t pages, unsigned page_shift,
                       OnRun&& on_run) noexcept {
    registry_->for_each_frame_run(first, pages << page_shift, page_shift,
                                  [&](const frame_run& run) {
                                    on_run((run.first.value() - first.value()) >> page_shift,
                                           run.target, run.bytes >> page_shift);
                                  });
  }
  // Reports writable pages dirty and gives back the pages' uses of their
  // regions.
  void unmap_pages(ua first, std::uint64_t pages, unsigned page_shift, permission perm) noexcept {
    detail::report_dirty(dirty_, first, pages << page_shift, perm);
    registry_->release_pages(first, pages << page_shift, page_shift);
  }

  // The registry the maps use: where register_memory registers.
  [[nodiscard]] Registry& registry() noexcept { return *registry_; }

private:
  Registry* registry_;
  dirty_hook dirty_;
};

// v1. An IOMMU page pins the host pages it covers: the one host page that
// holds it when it is smaller than a host page (its target is that page's
// frame plus its offset in it), or every host page of it when it is larger —
// allowed only where one huge page backs the whole IOMMU page, as the kernel
// requires a compound page at least as large (not_permitted otherwise: the
// device would reach memory that is not the user's).
//
// Pins are counted per host page and nest: every mapping pins the host pages
// under it once more (as the kernel takes a page reference per IOMMU page),
// and a host page stays pinned while any mapping covers it, through any
// window. Charges follow the pinned pages: a host page is charged when its
// first mapping pins it and uncharged when its last mapping goes, so the
// charge is always (distinct host pages pinned) x (host page size).
// (The kernel charges the whole default window at enable time instead; see
// test/BAD_INPUTS.md.) The count table allocates through Allocator before
// anything changes, so an allocation failure is no_memory with nothing done.
template <pinning_backend Backend, accounting_policy Accounting,
          block_allocator Allocator = heap_allocator>
class pin_on_map {
public:
  // An unmap must know the user address each entry mapped, to unpin its host
  // pages.
  static constexpr bool needs_shadow = true;
  // Maps pin, once the container is enabled; register_memory does not apply.
  static constexpr memory_model model = memory_model::v1_pin_on_map;
  // Pins through `backend` and charges host pages to `accounting`, both of
  // which must outlive the strategy; `dirty` hears of writable pages as they
  // are unmapped; the pin counts allocate through `alloc`.
  pin_on_map(Backend& backend, Accounting& accounting, dirty_hook dirty = {},
             Allocator alloc = {}) noexcept
      : backend_(&backend), accounting_(&accounting), dirty_(dirty), pins_(std::move(alloc)) {}

  // Checks containment, then reserves count room, charges the host pages
  // no mapping pins yet (one charge for the call), pins the host pages and
  // translates the range, recording its runs in `log`; each step undone if
  // a later one fails.
  status map_pages(ua first, std::uint64_t pages, unsigned page_shift, permission,
                   target_log& log) noexcept {
    if (!is_aligned(first, page_shift))
      return status::not_aligned;
    const unsigned host_shift = backend_->host_page_shift();
    const std::uint64_t bytes = pages << page_shift;
    if (page_shift > host_shift && backend_->backing_page_shift(first, bytes) < page_shift)
      return status::not_permitted; // no one huge page holds each IOMMU page
    const host_pins plan = host_pins_of(first, bytes, page_shift, host_shift);

    std::lock_guard<std::mutex> lock(pins_lock_);
    if (!pins_.reserve(plan.first, plan.pages))
      return status::no_memory;
    const std::uint64_t fresh = pins_.uncounted(plan.first, plan.pages); // no mapping pins them yet
    if (fresh != 0)
      if (const status s = accounting_->charge(fresh << host_shift); s != status::ok) {
        pins_.trim(plan.first, plan.pages);
        return s;
      }
    auto undo = [&](std::size_t pinned) {
      for (std::size_t i = 0; i < pinned; ++i)
        unpin(plan.pieces[i], host_shift);
      if (fresh != 0)
        accounting_->uncharge(fresh << host_shift);
      pins_.trim(plan.first, plan.pages);
    };
    // Every mapping pins its host pages once more, as the kernel takes a page
    // reference per IOMMU page: the backend's count is the mappings' count.
    for (std::size_t i = 0; i < plan.count; ++i) {
      const piece& p = plan.pieces[i];
      if (const status s = backend_->pin(ua{p.first << host_shift}, p.pages << host_shift, p.times);
          s != status::ok) {
        undo(i);
        return s;
      }
    }
    // Every page must have a target it can start at, and none may straddle
    // two runs: checked now, while nothing is visible.
    std::uint64_t top = 0;
    std::uint64_t bits = 0; // every run's start, frame and length, OR'd
    log.restart(page_shift);
    const status translated = backend_->translate_runs(first, bytes, [&](const frame_run& run) {
      bits |= run.first.value() | run.target.value() | run.bytes;
      top = std::max(top, run.target.value() + (run.bytes - 1));
      log.record(run.target, run.bytes >> page_shift); // read only if all are aligned
    });
    const bool aligned = is_aligned(bits, page_shift);
    if (translated != status::ok || !aligned) {
      undo(plan.count);
      return translated != status::ok ? translated : status::hardware_error;
    }
    for (std::size_t i = 0; i < plan.count; ++i)
      pins_.raise(plan.pieces[i].first, plan.pieces[i].pages, plan.pieces[i].times);
    log.set_highest(hpa{top});
    return status::ok;
  }

  // The targets of mapped pages, translated again through the backend.
  template <class OnRun>
  void for_each_target(ua first, std::uint64_t pages, unsigned page_shift,
                       OnRun&& on_run) noexcept {
    [[maybe_unused]] const status s =
        backend_->translate_runs(first, pages << page_shift, [&](const frame_run& run) {
          on_run((run.first.value() - first.value()) >> page_shift, run.target,
                 run.bytes >> page_shift);
        });
    IOPT_ASSERT(s == status::ok); // map_pages translated the same pinned pages
  }

  // Reports writable pages dirty, unpins the host pages under the range and
  // uncharges those whose last mapping this was.
  void unmap_pages(ua first, std::uint64_t pages, unsigned page_shift, permission perm) noexcept {
    const std::uint64_t bytes = pages << page_shift;
    detail::report_dirty(dirty_, first, bytes, perm);
    const unsigned host_shift = backend_->host_page_shift();
    const host_pins plan = host_pins_of(first, bytes, page_shift, host_shift);
    std::lock_guard<std::mutex> lock(pins_lock_);
    std::uint64_t gone = 0; // host pages whose last mapping this was
    for (std::size_t i = 0; i < plan.count; ++i) {
      unpin(plan.pieces[i], host_shift);
      gone += pins_.lower(plan.pieces[i].first, plan.pieces[i].pages, plan.pieces[i].times);
    }
    if (gone != 0)
      accounting_->uncharge(gone << host_shift);
  }

  // Distinct host pages this strategy's mappings pin.
  [[nodiscard]] std::size_t pinned_pages() const noexcept {
    std::lock_guard<std::mutex> lock(pins_lock_);
    return pins_.size();
  }
  // How many mappings cover the host page that contains `at`.
  [[nodiscard]] std::uint64_t pin_count(ua at) const noexcept {
    std::lock_guard<std::mutex> lock(pins_lock_);
    return pins_.count(at.value() >> backend_->host_page_shift());
  }

private:
  // Host pages [first, first + pages), each pinned `times` times.
  struct piece {
    std::uint64_t first;
    std::uint64_t pages;
    std::uint64_t times;
  };
  // The pins a range of IOMMU pages takes: each IOMMU page pins every host
  // page it touches once. With IOMMU pages at least as large as host pages
  // that is each host page of the range once; with smaller ones, a host page
  // is pinned once per IOMMU page inside it: the whole count in the middle,
  // fewer in a first or last host page the range covers only in part.
  struct host_pins {
    std::uint64_t first; // the host pages the range touches
    std::uint64_t pages;
    std::array<piece, 3> pieces;
    std::size_t count;
  };
  static host_pins host_pins_of(ua first, std::uint64_t bytes, unsigned page_shift,
                                unsigned host_shift) noexcept {
    const std::uint64_t head = first.value() >> host_shift;
    const std::uint64_t tail = (first.value() + (bytes - 1)) >> host_shift;
    host_pins p{head, tail - head + 1, {}, 0};
    if (page_shift >= host_shift) {
      p.pieces[p.count++] = {head, p.pages, 1};
      return p;
    }
    const std::uint64_t per_host = std::uint64_t{1} << (host_shift - page_shift);
    const std::uint64_t page_first = first.value() >> page_shift;
    const std::uint64_t page_end = page_first + (bytes >> page_shift); // one past the last
    auto add = [&p](std::uint64_t host_first, std::uint64_t host_pages, std::uint64_t times) {
      if (host_pages == 0)
        return;
      if (p.count != 0 && p.pieces[p.count - 1].times == times)
        p.pieces[p.count - 1].pages += host_pages; // joins the piece before
      else
        p.pieces[p.count++] = {host_first, host_pages, times};
    };
    if (head == tail) {
      add(head, 1, page_end - page_first);
      return p;
    }
    add(head, 1, (head + 1) * per_host - page_first);
    add(head + 1, tail - head - 1, per_host);
    add(tail, 1, page_end - tail * per_host);
    return p;
  }
  void unpin(const piece& p, unsigned host_shift) noexcept {
    backend_->unpin(ua{p.first << host_shift}, p.pages << host_shift, p.times);
  }

  Backend* backend_;
  Accounting* accounting_;
  dirty_hook dirty_;
  mutable std::mutex pins_lock_;
  page_counts<Allocator> pins_; // host page number -> mappings that cover it
};

static_assert(pinning_strategy<no_pinning>);
static_assert(pinning_strategy<pin_on_map<simulated_backend, counted_accounting>>);
static_assert(
    pinning_strategy<preregistered<prereg_registry<simulated_backend, counted_accounting>>>);

} // namespace iopt
