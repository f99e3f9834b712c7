// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// The registry of preregistered memory (sPAPR's "v2" memory model).
//
// User memory meant for DMA is registered once: pinned, charged to the
// accounting policy, and recorded. Map and unmap then only look regions up.
// Rules:
//   - register(ua, size): page aligned, not wrapping, not overlapping an
//     existing region — all checked before any pinning cost is paid; then
//     charged, then pinned, each step undone if a later one fails. The same
//     (ua, size) again is `exists`; a range that overlaps a region without
//     being it is `overlaps` (the kernel answers EBUSY and EINVAL).
//   - unregister(ua, size): the exact (ua, size) of a registration, never a
//     part of one; refused with busy while any TCE maps the region, leaving
//     the region registered and usable.
//   - each region knows the largest IOMMU page it can back: the natural
//     alignment of its start and size, reduced to the smallest page backing it.
//
// Concurrency: register and unregister are serialized by a mutex. lookup,
// acquire and translate take no lock: the regions are found in a sorted,
// sequence-locked index (prereg/region_index.hpp) whose entries carry the
// region's whole description, so lookup never reads the region record.
// Region records are never handed back to the heap while the registry lives,
// only reused, so a reader holding a stale record never reads freed memory.
//
// Each region carries a users count: 1 while registered, plus one per mapping
// (acquire raises it, release lowers it). Unregistering swaps 1 for 0; a
// region with mappings cannot be swapped, so it is busy.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <utility>

#include <iopt/addr/address.hpp>
#include <iopt/addr/align.hpp>
#include <iopt/addr/range.hpp>
#include <iopt/prereg/accounting.hpp>
#include <iopt/prereg/backend.hpp>
#include <iopt/prereg/region_index.hpp>
#include <iopt/settings.hpp>
#include <iopt/status.hpp>
#include <iopt/table/allocator.hpp>

namespace iopt {

// One registered region. Fields are atomics because lock-free readers may
// look at a record while a writer reuses it; they validate what they read.
class prereg_region {
public:
  // The region's first user address. Loads are acquire (plain loads on
  // x86) so that a lock-free reader's closing check of the sequence counter
  // cannot move above them.
  [[nodiscard]] ua first() const noexcept { return ua{first_.load(std::memory_order_acquire)}; }
  // The region's length in bytes.
  [[nodiscard]] std::uint64_t size() const noexcept {
    return size_.load(std::memory_order_acquire);
  }
  // The largest IOMMU page (log2) this region can back.
  [[nodiscard]] unsigned max_page_shift() const noexcept {
    return shift_.load(std::memory_order_acquire);
  }
  // How many mappings use the region now.
  [[nodiscard]] std::uint64_t mappings() const noexcept {
    const std::uint64_t u = users_.load(std::memory_order_relaxed);
    return u == 0 ? 0 : u - 1;
  }
  // Whether [first, first + size) lies wholly in the region.
  [[nodiscard]] bool contains(ua first, std::uint64_t size) const noexcept {
    const std::uint64_t base = first_.load(std::memory_order_acquire);
    const std::uint64_t bytes = size_.load(std::memory_order_acquire);
    return first.value() >= base && size <= bytes && first.value() - base <= bytes - size;
  }

  // What follows is fixed while the region is registered and may be read by
  // whoever holds a use of it (a mapping, or acquire()).

  // How many maximal runs of physically contiguous memory the region is.
  [[nodiscard]] std::size_t frame_runs() const noexcept { return run_count_; }
  // The highest host physical byte address in the region.
  [[nodiscard]] hpa highest_target() const noexcept { return highest_; }

  // Calls on_run(const frame_run&) for the runs of [first, first + bytes),
  // which lies in the region, clipped to it.
  template <class OnRun>
  void for_each_frame_run(ua first, std::uint64_t bytes, OnRun&& on_run) const {
    // Locals: on_run's stores could alias the members and force reloads.
    const std::uint64_t base = first_.load(std::memory_order_relaxed);
    const std::uint64_t size = size_.load(std::memory_order_relaxed);
    const run_start* const runs = runs_;
    const std::size_t count = run_count_;
    const std::uint64_t from = first.value() - base, to = from + bytes;
    // The last run that starts at or before `from`.
    std::size_t lo = 0, hi = count;
    while (hi - lo > 1) {
      const std::size_t mid = lo + (hi - lo) / 2;
      (runs[mid].offset <= from ? lo : hi) = mid;
    }
    for (std::size_t i = lo; i < count && runs[i].offset < to; ++i) {
      const std::uint64_t run_end = i + 1 < count ? runs[i + 1].offset : size;
      const std::uint64_t a = std::max(from, runs[i].offset), b = std::min(to, run_end);
      on_run(frame_run{ua{base + a}, hpa{runs[i].target + (a - runs[i].offset)}, b - a});
    }
  }

private:
  // A run starts `offset` bytes into the region at host physical `target`
  // and lasts until the next run starts.
  struct run_start {
    std::uint64_t offset;
    std::uint64_t target;
  };

  template <pinning_backend, accounting_policy, block_allocator>
  friend class prereg_registry;

  // Raises the users count unless it is 0 (free, or being removed).
  bool try_raise() noexcept {
    std::uint64_t u = users_.load(std::memory_order_relaxed);
    do {
      if (u == 0)
        return false;
    } while (!users_.compare_exchange_weak(u, u + 1, std::memory_order_acquire,
                                           std::memory_order_relaxed));
    return true;
  }
  void lower(std::uint64_t uses = 1) noexcept {
    [[maybe_unused]] const std::uint64_t before = users_.fetch_sub(uses, std::memory_order_release);
    IOPT_ASSERT(before > uses); // the registration's own reference is never dropped here
  }
  // More uses by a caller that holds one already (so the count is not 0).
  void raise_held(std::uint64_t uses) noexcept {
    users_.fetch_add(uses, std::memory_order_relaxed);
  }

  std::atomic<std::uint64_t> first_{0};
  std::atomic<std::uint64_t> size_{0};
  std::atomic<unsigned> shift_{0};
  std::atomic<std::uint64_t> users_{0};
  prereg_region* next_free_ = nullptr;
  // The region's translation, taken at registration (the kernel's page
  // array, kept as runs: a hugepage-backed region is a few of them).
  // translated_ is not_permitted when the backend could not tell frames.
  run_start* runs_ = nullptr;
  std::size_t run_count_ = 0;
  std::size_t run_capacity_ = 0;
  status translated_ = status::ok;
  unsigned frame_shift_ = 0; // the largest page every run can start
  hpa highest_{};
};

// What lookup reports: a consistent copy of a region's description.
struct region_info {
  // The region's first user address.
  ua first{};
  // The region's length in bytes.
  std::uint64_t size = 0;
  // log2 of the largest IOMMU page the region can back.
  unsigned max_page_shift = 0;
  // Equal when every field is.
  friend bool operator==(const region_info&, const region_info&) = default;
};

// The preregistered regions of one memory user: pinned through Backend and
// charged to Accounting once, at registration. Writers take a mutex; readers
// take no lock.
template <pinning_backend Backend, accounting_policy Accounting,
          block_allocator Allocator = heap_allocator>
class prereg_registry {
public:
  // Pins through `backend` and charges to `accounting`, both of which must
  // outlive the registry; records, runs and the index come from `alloc`.
  prereg_registry(Backend& backend, Accounting& accounting, Allocator alloc = {}) noexcept
      : backend_(&backend), accounting_(&accounting), index_(std::move(alloc)) {}
  prereg_registry(const prereg_registry&) = delete;
  prereg_registry& operator=(const prereg_registry&) = delete;

  // Unpins and uncharges whatever is still registered, then frees records.
  ~prereg_registry() {
    for (std::size_t i = 0; i < index_.size(); ++i) {
      prereg_region* r = index_.at(i).record;
      give_back(*r, r->first(), r->size());
      free_record(r);
    }
    while (prereg_region* r = free_records_) {
      free_records_ = r->next_free_;
      free_record(r);
    }
  }

  // ---- writers ---------------------------------------------------------------

  // Registers [first, first + size), host-page aligned: invalid_parameter
  // (size 0), not_aligned, wraps, exists, overlaps, no_memory, or the status
  // of the charge, pin or translation that failed, with nothing done. A
  // backend that hides frames leaves the region registered but unmappable.
  status register_region(ua first, std::uint64_t size) noexcept {
    const unsigned page_shift = backend_->host_page_shift();
    if (size == 0)
      return status::invalid_parameter;
    if (!is_aligned(first, page_shift) || !is_aligned(size, page_shift))
      return status::not_aligned;
    if (!ua_range::make(first, size))
      return status::wraps;

    std::lock_guard<std::mutex> lock(writer_);
    const std::size_t n = index_.size();
    const std::size_t at = index_.position(first.value());
    // Overlap with the region before or the one at the insertion point.
    const std::uint64_t last = first.value() + (size - 1);
    if (at < n && index_.at(at).first == first.value() && index_.at(at).last == last)
      return status::exists;
    if ((at < n && index_.at(at).first <= last) ||
        (at > 0 && index_.at(at - 1).last >= first.value()))
      return status::overlaps;

    // Every fallible step, cheapest to undo first.
    prereg_region* record = take_record();
    if (record == nullptr)
      return status::no_memory;
    if (!index_.reserve_one()) {
      put_record(record);
      return status::no_memory;
    }
    if (const status s = accounting_->charge(size); s != status::ok) {
      put_record(record);
      return s;
    }
    if (const status s = backend_->pin(first, size, 1); s != status::ok) {
      accounting_->uncharge(size);
      put_record(record);
      return s;
    }
    if (const status s = take_translation(*record, first, size); s != status::ok) {
      backend_->unpin(first, size, 1);
      accounting_->uncharge(size);
      put_record(record);
      return s;
    }

    const auto natural = static_cast<unsigned>(std::countr_zero(first.value() | size));
    const unsigned backing = backend_->backing_page_shift(first, size);
    record->first_.store(first.value(), std::memory_order_release);
    record->size_.store(size, std::memory_order_release);
    record->shift_.store(std::min(natural, backing), std::memory_order_release);
    record->users_.store(1, std::memory_order_release);

    index_.insert(at, {first.value(), last, record, record->max_page_shift()});
    return status::ok;
  }

  // Unregisters exactly [first, first + size), unpinning and uncharging it:
  // not_aligned, not_found when no registration is that range, busy while
  // mappings use it.
  status unregister_region(ua first, std::uint64_t size) noexcept {
    const unsigned page_shift = backend_->host_page_shift();
    if (!is_aligned(first, page_shift) || !is_aligned(size, page_shift))
      return status::not_aligned;
    std::lock_guard<std::mutex> lock(writer_);
    const std::size_t at = index_.position(first.value());
    if (at == index_.size() || index_.at(at).first != first.value() ||
        index_.at(at).record->size() != size)
      return status::not_found; // only an exact registration can be undone
    prereg_region* record = index_.at(at).record;
    std::uint64_t registered_only = 1;
    if (!record->users_.compare_exchange_strong(registered_only, 0, std::memory_order_acq_rel))
      return status::busy; // TCEs still map it; it stays registered and usable

    // A reader that still finds the record sees it empty.
    index_.erase(at, [record]() noexcept { record->size_.store(0, std::memory_order_release); });

    give_back(*record, first, size);
    put_record(record);
    return status::ok;
  }

  // ---- readers (lock-free) ---------------------------------------------------

  // The region that contains all of [first, first + size), if any.
  [[nodiscard]] result<region_info> lookup(ua first, std::uint64_t size) const noexcept {
    const auto range = ua_range::make(first, size);
    if (!range || range->empty())
      return status::not_found; // no region holds an empty or wrapping range
    // Plain locals, not a returned struct: GCC would copy a struct through
    // the stack with a wider load than its stores, which cannot forward.
    std::uint64_t base = 0, last = 0;
    unsigned shift = 0;
    const bool found =
        index_
            .read_consistent(*range,
                             [&](const index_entry* e, std::uint64_t b, std::uint64_t l) noexcept {
                               if (e == nullptr)
                                 return false;
                               base = b;
                               last = l;
                               shift = index_type::read(e->shift);
                               return true;
                             })
            .first;
    if (!found)
      return status::not_found;
    return region_info{ua{base}, last - base + 1, shift};
  }

  // Finds the region that contains [first, first + size) and raises its
  // mapping count, so that it cannot be unregistered until release().
  // not_found if there is none; busy if it is being unregistered.
  [[nodiscard]] result<prereg_region*> acquire(ua first, std::uint64_t size) noexcept {
    for (;;) {
      const auto [r, seq] = find_consistent(first, size);
      if (r == nullptr)
        return status::not_found;
      if (!r->try_raise()) {
        if (!index_.unchanged_since(seq))
          continue; // the index changed: look again
        return status::busy;
      }
      // Fields cannot change while we hold a use; check we raised the right one.
      if (r->contains(first, size))
        return r;
      r->lower();
    }
  }
  // Gives back the use an acquire() took.
  void release(prereg_region* region) noexcept { region->lower(); }
  // The same for a mapping that remembers only its user address: the region
  // that holds [first, first + size) cannot go away while the caller holds a
  // use of it, so the one found is the one to lower.
  status release(ua first, std::uint64_t size) noexcept {
    prereg_region* r = find_consistent(first, size).first;
    if (r == nullptr)
      return status::not_found;
    r->lower();
    return status::ok;
  }

  // Whether pages of 2^page_shift bytes from `first` can be mapped from a
  // region the caller holds: unsupported when the region cannot back pages
  // that large; hardware_error when its frames do not allow them (a
  // backend whose frames break its own page sizes); the backend's status
  // when the region has no translation.
  [[nodiscard]] static status check_pages(const prereg_region& region, ua first,
                                          unsigned page_shift) noexcept {
    if (region.translated_ != status::ok)
      return region.translated_;
    if (page_shift > region.max_page_shift())
      return status::unsupported;
    if (page_shift > region.frame_shift_)
      return status::hardware_error;
    if (!is_aligned(first, page_shift))
      return status::not_aligned;
    return status::ok;
  }

  // The host physical address of the IOMMU page of 2^page_shift bytes at
  // `page` (user address), inside a region the caller holds, from the
  // translation taken at registration.
  [[nodiscard]] result<hpa> translate(const prereg_region& region, ua page,
                                      unsigned page_shift) noexcept {
    if (const status s = check_pages(region, page, page_shift); s != status::ok)
      return s;
    if (!region.contains(page, std::uint64_t{1} << page_shift))
      return status::not_found;
    hpa target{};
    region.for_each_frame_run(page, 1, [&](const frame_run& run) { target = run.target; });
    return target;
  }

  // The same for a page the caller knows is inside a region it holds a use
  // of (a mapping made earlier): the region is found without a handle.
  [[nodiscard]] result<hpa> translate(ua page, unsigned page_shift) noexcept {
    const prereg_region* r = find_consistent(page, std::uint64_t{1} << page_shift).first;
    if (r == nullptr)
      return status::not_found;
    return translate(*r, page, page_shift);
  }

  // ---- ranges of IOMMU pages ---------------------------------------------------

  // Takes one use of the region that holds the page at `first` for each
  // page of 2^page_shift bytes from `first` in that region, `bytes` at
  // most; `span` says how many bytes that covers. A call spanning adjacent
  // regions takes them one after another. Fails (not_found, busy, or a
  // status of check_pages) with nothing taken.
  [[nodiscard]] result<prereg_region*>
  acquire_pages(ua first, std::uint64_t bytes, unsigned page_shift, std::uint64_t& span) noexcept {
    const std::uint64_t page = std::uint64_t{1} << page_shift;
    auto held = acquire(first, page);
    if (!held)
      return held.error();
    prereg_region* r = *held;
    if (const status s = check_pages(*r, first, page_shift); s != status::ok) {
      r->lower();
      return s;
    }
    // The region cannot change while the use is held.
    span = std::min(bytes, r->first().value() + (r->size() - first.value()));
    if (span > page)
      r->raise_held((span >> page_shift) - 1);
    return r;
  }
  // Gives back the uses acquire_pages took for [first, first + bytes).
  void release_pages(ua first, std::uint64_t bytes, unsigned page_shift) noexcept {
    for_each_held(first, bytes, page_shift,
                  [&](prereg_region& r, ua, std::uint64_t span) { r.lower(span >> page_shift); });
  }
  // Calls on_run(const frame_run&) for [first, first + bytes), pages the
  // caller holds uses of, as maximal runs within each region.
  template <class OnRun>
  void for_each_frame_run(ua first, std::uint64_t bytes, unsigned page_shift,
                          OnRun&& on_run) noexcept {
    for_each_held(first, bytes, page_shift, [&](prereg_region& r, ua at, std::uint64_t span) {
      r.for_each_frame_run(at, span, on_run);
    });
  }

  // How many regions are registered.
  [[nodiscard]] std::size_t region_count() const noexcept { return index_.size(); }
  // The backend that pins the regions.
  [[nodiscard]] Backend& backend() noexcept { return *backend_; }
  // The policy registrations are charged to.
  [[nodiscard]] Accounting& accounting() noexcept { return *accounting_; }

private:
  using index_type = detail::region_index<prereg_region, Allocator>;
  using index_entry = typename index_type::entry;

  // The region containing the range as one consistent read saw it, and the
  // sequence number of that read.
  std::pair<prereg_region*, std::uint64_t> find_consistent(ua first,
                                                           std::uint64_t size) const noexcept {
    const auto range = ua_range::make(first, size);
    if (!range || range->empty())
      return {nullptr, 0}; // no region holds an empty or wrapping range
    return index_.read_consistent(*range,
                                  [](const index_entry* e, std::uint64_t, std::uint64_t) noexcept {
                                    return e == nullptr ? nullptr : index_type::read(e->record);
                                  });
  }

  // Calls f(region, first, bytes) for the part of [first, first + bytes)
  // in each region, for pages the caller holds uses of (so every page lies
  // in a region, and no region goes away meanwhile).
  template <class F>
  void for_each_held(ua first, std::uint64_t bytes, unsigned page_shift, F&& f) noexcept {
    const std::uint64_t page = std::uint64_t{1} << page_shift;
    for (std::uint64_t at = first.value(), left = bytes; left != 0;) {
      prereg_region* r = find_consistent(ua{at}, page).first;
      IOPT_ASSERT(r != nullptr);
      if (r == nullptr)
        return; // a caller that holds no use: nothing of it to visit
      const std::uint64_t span = std::min(left, r->first().value() + (r->size() - at));
      f(*r, ua{at}, span);
      at += span;
      left -= span;
    }
  }

  // ---- memory (writer side, under the mutex) ---------------------------------

  prereg_region* take_record() noexcept {
    if (prereg_region* r = free_records_) {
      free_records_ = r->next_free_;
      return r;
    }
    void* p = index_.allocator().allocate(sizeof(prereg_region), alignof(prereg_region));
    return p == nullptr ? nullptr : new (p) prereg_region();
  }
  void put_record(prereg_region* r) noexcept {
    r->next_free_ = free_records_;
    free_records_ = r;
  }
  void free_record(prereg_region* r) noexcept {
    r->~prereg_region();
    index_.allocator().deallocate(r, sizeof(prereg_region), alignof(prereg_region));
  }
  void give_back(prereg_region& r, ua first, std::uint64_t size) noexcept {
    backend_->unpin(first, size, 1);
    accounting_->uncharge(size);
    free_runs(r);
  }

  // Reads the region's translation from the backend into its run array.
  // A backend that cannot tell frames (not_permitted) leaves the region
  // registered but untranslated: pinned, and refused for mapping.
  status take_translation(prereg_region& r, ua first, std::uint64_t size) noexcept {
    r.run_count_ = 0;
    r.translated_ = status::ok;
    r.frame_shift_ = 63;
    std::uint64_t highest = 0;
    bool room = true;
    const status s = backend_->translate_runs(first, size, [&](const frame_run& run) {
      if (!room || (r.run_count_ == r.run_capacity_ && !grow_runs(r))) {
        room = false;
        return;
      }
      const std::uint64_t offset = run.first.value() - first.value();
      r.runs_[r.run_count_++] = {offset, run.target.value()};
      // A page of 2^k bytes can start in this run, and end in it, only
      // where offset, frame and length are all multiples of 2^k.
      const auto aligned = static_cast<unsigned>(
          std::countr_zero(offset | run.target.value() | run.bytes | (std::uint64_t{1} << 63)));
      r.frame_shift_ = std::min(r.frame_shift_, aligned);
      highest = std::max(highest, run.target.value() + (run.bytes - 1));
    });
    r.highest_ = hpa{highest};
    if (!room) {
      free_runs(r);
      return status::no_memory;
    }
    if (s == status::not_permitted) {
      free_runs(r);
      r.translated_ = status::not_permitted;
      return status::ok;
    }
    if (s != status::ok)
      free_runs(r);
    return s;
  }
  bool grow_runs(prereg_region& r) noexcept {
    const std::size_t capacity = r.run_capacity_ == 0 ? 4 : 2 * r.run_capacity_;
    using run_start = prereg_region::run_start;
    auto* grown = static_cast<run_start*>(
        index_.allocator().allocate(capacity * sizeof(run_start), alignof(run_start)));
    if (grown == nullptr)
      return false;
    std::copy(r.runs_, r.runs_ + r.run_count_, grown);
    const std::size_t count = r.run_count_;
    free_runs(r);
    r.runs_ = grown;
    r.run_count_ = count;
    r.run_capacity_ = capacity;
    return true;
  }
  void free_runs(prereg_region& r) noexcept {
    if (r.runs_ != nullptr)
      index_.allocator().deallocate(r.runs_, r.run_capacity_ * sizeof(prereg_region::run_start),
                                    alignof(prereg_region::run_start));
    r.runs_ = nullptr;
    r.run_count_ = 0;
    r.run_capacity_ = 0;
  }

  Backend* backend_;
  Accounting* accounting_;
  std::mutex writer_;
  index_type index_;
  prereg_region* free_records_ = nullptr;
};

} // namespace iopt
