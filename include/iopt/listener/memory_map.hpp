// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// The guest memory map: a set of regions, its current flat view, and the
// listeners that hear every change to that view.
//
// Each add_region or remove_region publishes one change; a `batch` groups
// several into one. A change reaches every listener in four steps:
//   1. begin(), in ascending priority;
//   2. section_removed() for each section that went, then section_added()
//      for each that came: every listener hears the whole change before
//      any of them acts on it;
//   3. commit_removals(), in descending priority;
//   4. commit_additions(), in ascending priority.
// So a listener of lower priority is the first to gain what a change adds
// and the last to lose what it removes, as QEMU runs its MemoryListeners:
// give the preregistration listener a lower priority than the DMA listener
// and memory is registered before it is mapped and unmapped before it is
// unregistered, whichever listener was attached first. Listeners of equal
// priority run in the order they were attached (removals in reverse).
// A listener attached to a map that already has sections hears them all as
// additions first. Listeners unlink themselves when destroyed, and a map
// unlinks its listeners when it goes, so neither can dangle.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include <iopt/detail/intrusive_list.hpp>
#include <iopt/listener/flat_view.hpp>
#include <iopt/status.hpp>

namespace iopt {

// What a memory map calls; memory_listener (listener/listener.hpp) is the
// implementation iopt provides.
class map_listener : public detail::intrusive_node<map_listener> {
public:
  // `priority` orders the listeners of one map: lower hears begin() and
  // commit_additions() earlier and commit_removals() later.
  explicit map_listener(int priority = 0) noexcept : priority_(priority) {}
  virtual ~map_listener() = default;

  // Step 1: a change starts, in ascending priority.
  virtual void begin() = 0;
  // Step 2: a section of the old view went (heard before any addition).
  virtual void section_removed(const flat_section&) = 0;
  // Step 2: a section of the new view came.
  virtual void section_added(const flat_section&) = 0;
  // Step 3, in descending priority, once every listener heard the change.
  virtual void commit_removals() {}
  // Step 4, in ascending priority; by default commit(), for a listener that
  // acts on a change in one step.
  virtual void commit_additions() { commit(); }
  // The one-step commit that commit_additions() calls by default; does nothing
  // unless overridden.
  virtual void commit() {}

  // The priority given at construction (lower acts first on additions).
  [[nodiscard]] int priority() const noexcept { return priority_; }
  // Whether the listener is attached to a map (and so hears its changes).
  [[nodiscard]] bool attached() const noexcept { return linked(); }
  // Stops hearing changes. What the listener acted on so far stays as it is:
  // nothing is removed on its behalf.
  void detach() noexcept { unlink(); }

private:
  friend class memory_map;
  int priority_;
  std::uint64_t attach_order_ = 0;
};

// The guest's memory regions, their rendered flat view, and the listeners
// that hear each change to the view. Not thread-safe: the owner serializes.
class memory_map {
public:
  memory_map() = default;
  memory_map(const memory_map&) = delete;
  memory_map& operator=(const memory_map&) = delete;

  // Adds `region` and publishes the change. Refuses an id in use (exists), an
  // empty region (invalid_parameter) and one that would pass 2^64 (wraps).
  status add_region(const memory_region& region) {
    if (region.size == 0)
      return status::invalid_parameter;
    if (!gpa_range::make(region.first, region.size))
      return status::wraps;
    if (find(region.id) != regions_.end())
      return status::exists;
    regions_.push_back(region);
    publish();
    return status::ok;
  }
  // Removes the region named `id` and publishes the change; not_found when no
  // region has that id.
  status remove_region(std::uint64_t id) {
    const auto it = find(id);
    if (it == regions_.end())
      return status::not_found;
    regions_.erase(it);
    publish();
    return status::ok;
  }

  // Several changes published as one.
  class batch {
  public:
    // Holds back publishing on `map` while it lives; batches nest, and the
    // outermost one publishes every change made meanwhile as one when it goes.
    explicit batch(memory_map& map) noexcept : map_(&map) { ++map_->batch_depth_; }
    batch(const batch&) = delete;
    batch& operator=(const batch&) = delete;
    ~batch() {
      if (--map_->batch_depth_ == 0)
        map_->publish();
    }

  private:
    memory_map* map_;
  };

  // Attaches `listener` (leaving any list it was in) and tells it the current
  // view as one change of additions, before this returns. The listener is
  // kept by reference; either side going away unlinks the other.
  void attach(map_listener& listener) {
    listener.attach_order_ = ++attached_;
    listeners_.push_front(listener);
    listener.begin();
    for (const flat_section& s : view_)
      listener.section_added(s);
    listener.commit_removals();
    listener.commit_additions();
  }

  // The current flat view (as of the last publish; a batch in progress is not
  // in it yet).
  [[nodiscard]] const flat_view& view() const noexcept { return view_; }
  // The regions in the order they were added (a later one wins ties).
  [[nodiscard]] const std::vector<memory_region>& regions() const noexcept { return regions_; }

private:
  std::vector<memory_region>::iterator find(std::uint64_t id) {
    return std::find_if(regions_.begin(), regions_.end(),
                        [id](const memory_region& r) { return r.id == id; });
  }

  void publish() {
    if (batch_depth_ != 0)
      return;
    flat_view next = render(regions_);
    const flat_view_change change = difference(view_, next);
    view_ = std::move(next);
    if (change.removed.empty() && change.added.empty())
      return;
    std::vector<map_listener*> order;
    listeners_.for_each([&](map_listener& l) { order.push_back(&l); });
    std::sort(order.begin(), order.end(), [](const map_listener* a, const map_listener* b) {
      return a->priority_ != b->priority_ ? a->priority_ < b->priority_
                                          : a->attach_order_ < b->attach_order_;
    });
    for (map_listener* l : order)
      l->begin();
    for (map_listener* l : order) {
      for (const flat_section& s : change.removed)
        l->section_removed(s);
      for (const flat_section& s : change.added)
        l->section_added(s);
    }
    for (auto it = order.rbegin(); it != order.rend(); ++it)
      (*it)->commit_removals();
    for (map_listener* l : order)
      l->commit_additions();
  }

  std::vector<memory_region> regions_;
  flat_view view_;
  detail::intrusive_list<map_listener> listeners_;
  std::uint64_t attached_ = 0;
  int batch_depth_ = 0;
};

} // namespace iopt
