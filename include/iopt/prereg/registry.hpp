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
// acquire and translate take no lock: the index of regions is a sorted array
// read under a sequence counter (a reader retries if a writer ran meanwhile).
// Reads the sequence counter validates are atomic, so this is free of data
// races in the C++ memory model, not only in practice. Each index entry
// carries the region's whole description, so lookup reads one entry and
// never the region record; readers remember the slot of their last hit and
// try it before searching.
// Region records are never handed back to the heap while the registry lives,
// only reused, so a reader holding a stale record never reads freed memory;
// replaced index arrays are kept until the registry dies (they at most
// double the live one, since the array grows by doubling).
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
#include <iopt/settings.hpp>
#include <iopt/status.hpp>
#include <iopt/table/allocator.hpp>

namespace iopt {

// One registered region. Fields are atomics because lock-free readers may
// look at a record while a writer reuses it; they validate what they read.
class prereg_region {
public:
  // Loads are acquire (plain loads on x86) so that a lock-free reader's
  // closing check of the sequence counter cannot move above them.
  [[nodiscard]] ua first() const noexcept { return ua{first_.load(std::memory_order_acquire)}; }
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
  ua first{};
  std::uint64_t size = 0;
  unsigned max_page_shift = 0;
  friend bool operator==(const region_info&, const region_info&) = default;
};

template <pinning_backend Backend, accounting_policy Accounting,
          block_allocator Allocator = heap_allocator>
class prereg_registry {
public:
  prereg_registry(Backend& backend, Accounting& accounting, Allocator alloc = {}) noexcept
      : backend_(&backend), accounting_(&accounting), alloc_(std::move(alloc)) {}
  prereg_registry(const prereg_registry&) = delete;
  prereg_registry& operator=(const prereg_registry&) = delete;

  // Unpins and uncharges whatever is still registered, then frees records.
  ~prereg_registry() {
    const std::size_t n = count_.load(std::memory_order_relaxed);
    entry* index = index_.load(std::memory_order_relaxed);
    for (std::size_t i = 0; i < n; ++i) {
      prereg_region* r = index[i].region;
      give_back(*r, r->first(), r->size());
      free_record(r);
    }
    while (prereg_region* r = free_records_) {
      free_records_ = r->next_free_;
      free_record(r);
    }
    free_array(index, capacity_);
    while (retired_ != nullptr) {
      retired_array* next = retired_->next;
      free_array(retired_->array, retired_->capacity);
      alloc_.deallocate(retired_, sizeof(retired_array), alignof(retired_array));
      retired_ = next;
    }
  }

  // ---- writers ---------------------------------------------------------------

  status register_region(ua first, std::uint64_t size) noexcept {
    const unsigned page_shift = backend_->host_page_shift();
    if (size == 0)
      return status::invalid_parameter;
    if (!is_aligned(first, page_shift) || !is_aligned(size, page_shift))
      return status::not_aligned;
    if (!ua_range::make(first, size))
      return status::wraps;

    std::lock_guard<std::mutex> lock(writer_);
    const std::size_t n = count_.load(std::memory_order_relaxed);
    entry* index = index_.load(std::memory_order_relaxed);
    const std::size_t at = lower_bound(index, n, first.value());
    // Overlap with the region before or the one at the insertion point.
    const std::uint64_t last = first.value() + (size - 1);
    if (at < n && index[at].first == first.value() && index[at].last == last)
      return status::exists;
    if ((at < n && index[at].first <= last) || (at > 0 && index[at - 1].last >= first.value()))
      return status::overlaps;

    // Every fallible step, cheapest to undo first.
    prereg_region* record = take_record();
    if (record == nullptr)
      return status::no_memory;
    if (!reserve_slot(n)) {
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

    begin_write();
    index = index_.load(std::memory_order_relaxed);
    for (std::size_t i = n; i > at; --i)
      store(index[i], load(index[i - 1]));
    store(index[at], entry{first.value(), last, record, record->max_page_shift()});
    count_.store(n + 1, std::memory_order_release);
    end_write();
    return status::ok;
  }

  status unregister_region(ua first, std::uint64_t size) noexcept {
    const unsigned page_shift = backend_->host_page_shift();
    if (!is_aligned(first, page_shift) || !is_aligned(size, page_shift))
      return status::not_aligned;
    std::lock_guard<std::mutex> lock(writer_);
    const std::size_t n = count_.load(std::memory_order_relaxed);
    entry* index = index_.load(std::memory_order_relaxed);
    const std::size_t at = lower_bound(index, n, first.value());
    if (at == n || index[at].first != first.value() || index[at].region->size() != size)
      return status::not_found; // only an exact registration can be undone
    prereg_region* record = index[at].region;
    std::uint64_t registered_only = 1;
    if (!record->users_.compare_exchange_strong(registered_only, 0, std::memory_order_acq_rel))
      return status::busy; // TCEs still map it; it stays registered and usable

    begin_write();
    for (std::size_t i = at; i + 1 < n; ++i)
      store(index[i], load(index[i + 1]));
    count_.store(n - 1, std::memory_order_release);
    record->size_.store(0, std::memory_order_release);
    end_write();

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
    for (;;) {
      const std::uint64_t seq = begin_read();
      const auto [index, n] = current_index();
      std::uint64_t base = 0, last = 0;
      const std::size_t at = find(index, n, *range, base, last);
      if (at < n) {
        const unsigned shift = read(index[at].shift);
        if (end_read(seq))
          return region_info{ua{base}, last - base + 1, shift};
      } else if (end_read(seq)) {
        return status::not_found;
      }
    }
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
        if (!end_read(seq))
          continue; // the index changed: look again
        return status::busy;
      }
      // Fields cannot change while we hold a use; check we raised the right one.
      if (r->contains(first, size))
        return r;
      r->lower();
    }
  }
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

  [[nodiscard]] std::size_t region_count() const noexcept {
    return count_.load(std::memory_order_relaxed);
  }
  [[nodiscard]] Backend& backend() noexcept { return *backend_; }
  [[nodiscard]] Accounting& accounting() noexcept { return *accounting_; }

private:
  // One region in the index: its bytes [first, last], its record, and the
  // largest IOMMU page it backs (a copy of the record's, which never changes
  // while the region is registered).
  struct entry {
    std::uint64_t first;
    std::uint64_t last;
    prereg_region* region;
    unsigned shift;
  };
  struct retired_array {
    entry* array;
    std::size_t capacity;
    retired_array* next;
  };

  // Index entries are read by lock-free readers while a writer moves them.
  // The sequence lock needs no fences: a writer stores with release after
  // making the counter odd, so a reader whose acquire load sees a new value
  // also sees the odd (or a later) counter in its closing check. Both are
  // plain moves on x86, and ThreadSanitizer understands them.
  template <class T>
  static T read(const T& field) noexcept {
    return std::atomic_ref<T>(const_cast<T&>(field)) // NOLINT: atomic_ref needs a mutable object
        .load(std::memory_order_acquire);
  }
  static entry load(const entry& e) noexcept {
    return entry{read(e.first), read(e.last), read(e.region), read(e.shift)};
  }
  static void store(entry& e, const entry& v) noexcept {
    std::atomic_ref<std::uint64_t>(e.first).store(v.first, std::memory_order_release);
    std::atomic_ref<std::uint64_t>(e.last).store(v.last, std::memory_order_release);
    std::atomic_ref<prereg_region*>(e.region).store(v.region, std::memory_order_release);
    std::atomic_ref<unsigned>(e.shift).store(v.shift, std::memory_order_release);
  }

  // Sequence counter: odd while a writer changes the index.
  void begin_write() noexcept { seq_.fetch_add(1, std::memory_order_acq_rel); }
  void end_write() noexcept { seq_.fetch_add(1, std::memory_order_release); }
  std::uint64_t begin_read() const noexcept {
    std::uint64_t s = seq_.load(std::memory_order_acquire);
    while ((s & 1) != 0)
      s = seq_.load(std::memory_order_acquire);
    return s;
  }
  bool end_read(std::uint64_t s) const noexcept {
    return seq_.load(std::memory_order_acquire) == s;
  }

  // The region containing the range as one consistent read saw it, and the
  // sequence number of that read.
  std::pair<prereg_region*, std::uint64_t> find_consistent(ua first,
                                                           std::uint64_t size) const noexcept {
    const auto range = ua_range::make(first, size);
    if (!range || range->empty())
      return {nullptr, 0}; // no region holds an empty or wrapping range
    for (;;) {
      const std::uint64_t seq = begin_read();
      const auto [index, n] = current_index();
      std::uint64_t base = 0, last = 0;
      const std::size_t at = find(index, n, *range, base, last);
      prereg_region* r = at < n ? read(index[at].region) : nullptr;
      if (end_read(seq))
        return {r, seq};
    }
  }

  // First index position whose region starts at or after `value`.
  static std::size_t lower_bound(const entry* index, std::size_t n, std::uint64_t value) noexcept {
    std::size_t lo = 0, hi = n;
    while (lo < hi) {
      const std::size_t mid = lo + (hi - lo) / 2;
      if (read(index[mid].first) < value)
        lo = mid + 1;
      else
        hi = mid;
    }
    return lo;
  }

  // Inside a read section: the index array and how many of its slots hold
  // regions. count_ is read before index_: an array is published before the
  // count that needs it, and arrays only grow, so every slot below n is
  // allocated even when a writer interleaves (the sequence check then fails).
  std::pair<const entry*, std::size_t> current_index() const noexcept {
    const std::size_t n = count_.load(std::memory_order_acquire);
    return {index_.load(std::memory_order_acquire), n};
  }

  // Inside a read section: the slot of the region that contains the
  // non-empty range `wanted`, or n if none. That region's first and last
  // byte, as read, go to `base` and `last` so that callers need not load
  // them again.
  // (Out-parameters, not a returned struct: GCC copies such a struct through
  // the stack with a wider load than its stores, which cannot be forwarded.)
  std::size_t find(const entry* index, std::size_t n, const ua_range& wanted, std::uint64_t& base,
                   std::uint64_t& last) const noexcept {
    const std::uint64_t first = wanted.first().value(), last_wanted = wanted.last().value();
    // The slot of the last hit, a hint any reader may have left: checked
    // against what the slot holds now.
    if (const std::size_t hint = last_hit_.load(std::memory_order_relaxed); hint < n) [[likely]] {
      base = read(index[hint].first);
      last = read(index[hint].last);
      if (covers(base, last, first, last_wanted)) [[likely]]
        return hint;
    }
    // The last region starting at or before `first`.
    const std::size_t after = upper_bound(index, n, first);
    if (after == 0)
      return n;
    base = read(index[after - 1].first);
    last = read(index[after - 1].last);
    if (!covers(base, last, first, last_wanted))
      return n;
    last_hit_.store(after - 1, std::memory_order_relaxed);
    return after - 1;
  }
  // Whether bytes [base, last] hold bytes [first, last_wanted].
  static bool covers(std::uint64_t base, std::uint64_t last, std::uint64_t first,
                     std::uint64_t last_wanted) noexcept {
    return base <= first && last_wanted <= last;
  }
  // Number of regions starting at or before `value`. Branch-free (the
  // comparison picks the half with a conditional move), and reads only the
  // start of each entry it passes.
  static std::size_t upper_bound(const entry* index, std::size_t n, std::uint64_t value) noexcept {
    if (n == 0)
      return 0;
    const entry* base = index;
    while (n > 1) {
      const std::size_t half = n / 2;
      base = read(base[half].first) <= value ? base + half : base;
      n -= half;
    }
    return static_cast<std::size_t>(base - index) + (read(base->first) <= value ? 1 : 0);
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
    void* p = alloc_.allocate(sizeof(prereg_region), alignof(prereg_region));
    return p == nullptr ? nullptr : new (p) prereg_region();
  }
  void put_record(prereg_region* r) noexcept {
    r->next_free_ = free_records_;
    free_records_ = r;
  }
  void free_record(prereg_region* r) noexcept {
    r->~prereg_region();
    alloc_.deallocate(r, sizeof(prereg_region), alignof(prereg_region));
  }
  void free_array(entry* a, std::size_t capacity) noexcept {
    if (a != nullptr)
      alloc_.deallocate(a, capacity * sizeof(entry), alignof(entry));
  }

  // Room for one more entry; a grown array replaces the old one, which is
  // retired (readers may still be searching it).
  bool reserve_slot(std::size_t n) noexcept {
    if (n < capacity_)
      return true;
    const std::size_t capacity = capacity_ == 0 ? 16 : 2 * capacity_;
    auto* grown = static_cast<entry*>(alloc_.allocate(capacity * sizeof(entry), alignof(entry)));
    if (grown == nullptr)
      return false;
    void* note = nullptr;
    entry* old = index_.load(std::memory_order_relaxed);
    if (old != nullptr) {
      note = alloc_.allocate(sizeof(retired_array), alignof(retired_array));
      if (note == nullptr) {
        alloc_.deallocate(grown, capacity * sizeof(entry), alignof(entry));
        return false;
      }
    }
    for (std::size_t i = 0; i < n; ++i)
      grown[i] = old[i];
    index_.store(grown, std::memory_order_release);
    if (old != nullptr)
      retired_ = new (note) retired_array{old, capacity_, retired_};
    capacity_ = capacity;
    return true;
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
    auto* grown =
        static_cast<run_start*>(alloc_.allocate(capacity * sizeof(run_start), alignof(run_start)));
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
      alloc_.deallocate(r.runs_, r.run_capacity_ * sizeof(prereg_region::run_start),
                        alignof(prereg_region::run_start));
    r.runs_ = nullptr;
    r.run_count_ = 0;
    r.run_capacity_ = 0;
  }

  Backend* backend_;
  Accounting* accounting_;
  [[no_unique_address]] Allocator alloc_;
  std::mutex writer_;
  std::atomic<std::uint64_t> seq_{0};
  std::atomic<entry*> index_{nullptr};
  std::atomic<std::size_t> count_{0};
  // Written by readers that miss it, so it has a cache line of its own: a
  // miss on one core must not evict what every reader loads (the counter,
  // the count and the array) from the others.
  alignas(64) mutable std::atomic<std::size_t> last_hit_{0};
  std::size_t capacity_ = 0;
  prereg_region* free_records_ = nullptr;
  retired_array* retired_ = nullptr;
};

} // namespace iopt
