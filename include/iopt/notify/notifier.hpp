// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// IOMMU notifiers: whoever must follow a window's mappings (a VMM's vhost or
// VFIO code shadowing a guest's window, a device model's cache) hears map
// and unmap events, each a coalesced run {ioba, target, pages, permissions}:
// one event for a contiguous gigabyte, not one per page.
//
// A notifier attached to a window that already has mappings first hears
// them all, by replay. Replay is the table's sparse walk: it visits only
// levels that exist and entries that are set, so an empty 128 TiB window
// replays in the time it takes to look at its top level, with no flag to
// keep in sync, and nothing in it can wrap at the top of the 64-bit space.
//
// Notifiers live in an intrusive list and leave it when destroyed; a list
// detaches its notifiers when it goes. Attaching, detaching and notifying
// are not concurrent with each other (the owner of the window serializes
// them, as it serializes changes to the window).
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>

#include <iopt/addr/address.hpp>
#include <iopt/detail/intrusive_list.hpp>
#include <iopt/format/permission.hpp>
#include <iopt/hcall/change_hook.hpp>
#include <iopt/status.hpp>
#include <iopt/table/mappings.hpp>

namespace iopt {

// One map or unmap event: a coalesced run of a window's pages.
struct iommu_event {
  // map: the run's pages now translate to its target; unmap: they translate
  // to nothing.
  enum class kind : std::uint8_t { map, unmap }
  // Whether the run was mapped or unmapped.
  type = kind::map;
  // The pages concerned, as one coalesced run.
  mapped_run run{}; // for an unmap, target and permissions are not meaningful
  // Memberwise, target and permissions included, even for an unmap.
  friend bool operator==(const iommu_event&, const iommu_event&) = default;
};

// The base of every notifier: derive, implement notify(), and attach it to a
// notifier_list. It leaves its list when destroyed.
class iommu_notifier : public detail::intrusive_node<iommu_notifier> {
public:
  iommu_notifier() noexcept = default;
  virtual ~iommu_notifier() = default;

  // Hears one event. Must not throw, and must not attach, detach or destroy
  // notifiers of the list that is delivering it (the walk would lose its place).
  virtual void notify(const iommu_event&) noexcept = 0;

  // Whether the notifier is in a list (and so hears events).
  [[nodiscard]] bool attached() const noexcept { return linked(); }
  // Leaves its list; no-op when not attached.
  void detach() noexcept { unlink(); }
};

// A notifier that calls a function object.
template <class F>
class callback_notifier final : public iommu_notifier {
public:
  // Keeps its own copy of `f`, which is called as f(const iommu_event&).
  explicit callback_notifier(F f) noexcept(std::is_nothrow_move_constructible_v<F>)
      : f_(std::move(f)) {}
  // Calls f(e); an exception from f terminates.
  void notify(const iommu_event& e) noexcept override { f_(e); }

private:
  F f_;
};

// Replays every mapping of `table` to `n` as map events.
template <class Table>
void replay(const Table& table, iommu_notifier& n) {
  table.for_each_run([&](const mapped_run& run) {
    n.notify(iommu_event{iommu_event::kind::map, run});
  });
}

// Replays every mapping of the container window that starts at
// `window_start` to `n` (a notifier attached after the window was filled);
// not_found when no window starts there.
template <class Container>
status replay_window(const Container& container, ioba window_start, iommu_notifier& n) {
  return container.for_each_run(window_start, [&](const mapped_run& run) {
    n.notify(iommu_event{iommu_event::kind::map, run});
  });
}

// The notifiers of one window, which an event reaches in turn (the one
// attached last first). Not copyable: its notifiers point back at it.
class notifier_list {
public:
  notifier_list() noexcept = default;
  notifier_list(const notifier_list&) = delete;
  notifier_list& operator=(const notifier_list&) = delete;

  // Links `n` after replaying the window's current mappings to it.
  template <class Table>
  void attach(iommu_notifier& n, const Table& window) {
    n.detach();
    replay(window, n);
    notifiers_.push_front(n);
  }

  // Delivers `e` to every attached notifier.
  void notify(const iommu_event& e) const noexcept {
    notifiers_.for_each([&](iommu_notifier& n) { n.notify(e); });
  }
  // The changes to [first, first + pages) of `window`: one unmap of the
  // range, then a map per run now mapped in it.
  template <class Table>
  void notify_changed(const Table& window, ioba first, std::uint64_t pages) const {
    if (notifiers_.empty())
      return;
    notify(iommu_event{iommu_event::kind::unmap, mapped_run{first, 0, pages, permission::none}});
    (void)window.for_each_run(first, pages, [&](const mapped_run& run) {
      notify(iommu_event{iommu_event::kind::map, run});
    });
  }

  // A hook for dma_container::set_change_hook that forwards to this list.
  [[nodiscard]] dma_change_hook container_hook() noexcept {
    return dma_change_hook::to<&notifier_list::notify_run>(*this);
  }
  // What container_hook() calls: `run` was mapped (true) or unmapped (false).
  void notify_run(bool mapped, const mapped_run& run) const noexcept {
    notify(iommu_event{mapped ? iommu_event::kind::map : iommu_event::kind::unmap, run});
  }

  // Whether no notifier is attached (then notify_changed returns at once).
  [[nodiscard]] bool empty() const noexcept { return notifiers_.empty(); }

private:
  detail::intrusive_list<iommu_notifier> notifiers_;
};

// Turns what the hypercall front end changed in one guest window
// (hcall/change_hook.hpp) into notifier events: give hook() to
// tce_hcalls::set_change_hook, and keep this object alive while it is set.
template <class Table>
class guest_window_notifier {
public:
  // Forwards changes to the window the guest names `liobn`, which is `window`,
  // to `notifiers`; both are kept by reference and must outlive this object.
  guest_window_notifier(std::uint64_t liobn, const Table& window,
                        const notifier_list& notifiers) noexcept
      : liobn_(liobn), window_(&window), notifiers_(&notifiers) {}
  // A hook that calls tces_changed on this object, for
  // tce_hcalls::set_change_hook; valid while this object lives.
  [[nodiscard]] tce_change_hook hook() noexcept {
    return tce_change_hook::to<&guest_window_notifier::tces_changed>(*this);
  }
  // What the hook calls: `pages` entries from `first` of window `liobn` were
  // written; changes to other windows are ignored.
  void tces_changed(std::uint64_t liobn, ioba first, std::uint64_t pages) noexcept {
    if (liobn == liobn_)
      notifiers_->notify_changed(*window_, first, pages);
  }

private:
  std::uint64_t liobn_;
  const Table* window_;
  const notifier_list* notifiers_;
};

} // namespace iopt
