// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// Pinning backends: what actually pins user memory and tells its host
// physical addresses.
//
// A backend B provides:
//   unsigned b.host_page_shift() const noexcept        the system page size
//   status b.pin(ua first, std::uint64_t bytes, std::uint64_t times) noexcept
//                       pins the host pages of a host-page-aligned range
//                       `times` times more: ok, or a failure with nothing
//                       changed. Pins nest, as the kernel's page references
//                       do: a page stays pinned until every pin is undone.
//   void b.unpin(ua first, std::uint64_t bytes, std::uint64_t times) noexcept
//                       undoes that
//   result<hpa> b.translate(ua at) noexcept    the host physical address of
//                       the byte at `at`, inside a pinned host page: that
//                       page's frame plus the offset of `at` in it (so an
//                       IOMMU page smaller than the host page keeps its place)
//   status b.translate_runs(ua first, std::uint64_t bytes, OnRun&& on_run) noexcept
//                       the same for a whole range of pinned memory at once,
//                       as maximal runs of physically contiguous bytes:
//                       on_run(const frame_run&) for each, in ascending order,
//                       together covering the range exactly. A failure (the
//                       status translate would give) may come after some
//                       runs were reported.
//   unsigned b.backing_page_shift(ua first, std::uint64_t bytes) noexcept
//                       the smallest page that backs the range as one
//                       physically contiguous unit: the system page, or a
//                       larger page for hugetlbfs-backed memory
//
// simulated_backend (here) is deterministic and needs no privileges: for
// tests and benchmarks. posix_backend (prereg/posix_backend.hpp) pins real
// memory with mlock and translates through /proc/self/pagemap.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <iterator>
#include <map>
#include <utility>

#include <iopt/addr/address.hpp>
#include <iopt/addr/align.hpp>
#include <iopt/prereg/page_counts.hpp>
#include <iopt/status.hpp>

namespace iopt {

// Bytes [first, first + bytes) of user memory lie at [target, target + bytes)
// of host physical memory.
struct frame_run {
  // The run's first user address.
  ua first{};
  // The host physical address of `first`.
  hpa target{};
  // The run's length in bytes.
  std::uint64_t bytes = 0;
  // Equal when all three fields are.
  friend bool operator==(const frame_run&, const frame_run&) = default;
};

namespace detail {
// The visitor the concept checks translate_runs with.
struct frame_run_visitor {
  void operator()(const frame_run&) const noexcept {}
};

// Joins the pieces a backend finds into maximal runs: add() each piece in
// order, then finish().
template <class OnRun>
class frame_run_joiner {
public:
  explicit frame_run_joiner(OnRun& on_run) noexcept : on_run_(&on_run) {}
  void add(ua first, hpa target, std::uint64_t bytes) {
    if (run_.bytes != 0 && run_.target.value() + run_.bytes == target.value()) {
      run_.bytes += bytes;
      return;
    }
    finish();
    run_ = frame_run{first, target, bytes};
  }
  void finish() {
    if (run_.bytes != 0)
      (*on_run_)(std::as_const(run_));
    run_.bytes = 0;
  }

private:
  OnRun* on_run_;
  frame_run run_{};
};
} // namespace detail

template <class B>
concept pinning_backend = requires(B& b, const B& cb, ua addr, std::uint64_t bytes,
                                   detail::frame_run_visitor on_run) {
  { cb.host_page_shift() }
  noexcept->std::same_as<unsigned>;
  { b.pin(addr, bytes, bytes) }
  noexcept->std::same_as<status>;
  { b.unpin(addr, bytes, bytes) }
  noexcept;
  { b.translate(addr) }
  noexcept->std::same_as<result<hpa>>;
  { b.translate_runs(addr, bytes, on_run) }
  noexcept->std::same_as<status>;
  { b.backing_page_shift(addr, bytes) }
  noexcept->std::same_as<unsigned>;
};

// How a simulated_backend lays out its frames.
enum class frame_layout : std::uint8_t {
  // A user address maps to itself with bits above 1 GiB scrambled: memory
  // contiguous within a GiB stays physically contiguous (long runs).
  contiguous,
  // Every host page (or huge page, where memory is backed by them) gets a
  // frame of its own, far from its neighbours' frames: no two pages are
  // contiguous unless one huge page holds both. What a fragmented host
  // gives, and the layout that catches code which assumes contiguity.
  scattered,
};

// Fake physical memory, deterministic and privilege-free. Counts pins per
// host page (they nest), can back chosen ranges with larger pages, and can
// fail the n-th pin.
class simulated_backend {
public:
  // Host pages of 2^host_page_shift bytes (16: 64 KiB, the usual page size of
  // Linux on POWER), frames laid out as `layout` says.
  explicit simulated_backend(unsigned host_page_shift = 16,
                             frame_layout layout = frame_layout::contiguous) noexcept
      : page_shift_(host_page_shift), layout_(layout) {}

  // log2 of the simulated host page size.
  unsigned host_page_shift() const noexcept { return page_shift_; }

  // Pins the host pages of the host-page-aligned range `times` times more.
  // no_memory, with nothing changed, for an injected failure (fail_nth_pin,
  // count_faults_in) or when the counts cannot grow.
  status pin(ua first, std::uint64_t bytes, std::uint64_t times = 1) noexcept {
    ++pin_calls_;
    if (fail_pin_at_ != 0 && pin_calls_ == fail_pin_at_)
      return status::no_memory;
    if (injected_failure())
      return status::no_memory;
    if (!pins_.reserve(first.value() >> page_shift_, bytes >> page_shift_))
      return status::no_memory;
    pins_.raise(first.value() >> page_shift_, bytes >> page_shift_, times);
    return status::ok;
  }
  // Undoes `times` pins of each host page of the range; each must hold that
  // many.
  void unpin(ua first, std::uint64_t bytes, std::uint64_t times = 1) noexcept {
    pins_.lower(first.value() >> page_shift_, bytes >> page_shift_, times);
  }
  // The simulated physical address of the byte at `at`; does not check that
  // the page is pinned. Fails only when made to (count_faults_in), with
  // fault, as a failed read of pagemap does.
  result<hpa> translate(ua at) noexcept {
    if (injected_failure())
      return status::fault;
    if (layout_ == frame_layout::contiguous)
      return hpa{(at.value() ^ scramble) & address_mask};
    return frame_of(at.value(), backing_at(at.value()).shift);
  }
  // The same for a range, as maximal runs of contiguous frames in order (see
  // the file comment). An injected failure (count_faults_in) comes after the
  // run of the first host page was reported, as a real one may come part way.
  template <class OnRun>
  status translate_runs(ua first, std::uint64_t bytes, OnRun&& on_run) noexcept {
    if (injected_failure()) {
      const std::uint64_t page = std::uint64_t{1} << page_shift_;
      translate_all(first, std::min(bytes, page - (first.value() & (page - 1))), on_run);
      return status::fault;
    }
    translate_all(first, bytes, on_run);
    return status::ok;
  }
  // The smallest page backing all of the range: the smallest huge page when
  // huge page ranges cover it all without a gap, else the host page.
  unsigned backing_page_shift(ua first, std::uint64_t bytes) noexcept {
    const std::uint64_t last = first.value() + (bytes == 0 ? 0 : bytes - 1);
    unsigned smallest = 63;
    std::uint64_t covered = first.value(); // bytes before it lie in huge ranges
    bool reached = false;                  // ... and so does `last`
    auto it = huge_.upper_bound(first.value());
    if (it != huge_.begin())
      --it;
    for (; it != huge_.end() && it->first <= last && !reached; ++it) {
      const std::uint64_t range_last = it->first + (it->second.bytes - 1);
      if (range_last < covered)
        continue;
      if (it->first > covered)
        break; // a stretch of ordinary pages before this range
      smallest = std::min(smallest, it->second.shift);
      reached = range_last >= last;
      covered = range_last + 1;
    }
    return reached ? smallest : page_shift_;
  }

  // ---- for tests ----
  // Memory in [first, first + bytes) is backed by pages of 2^shift bytes
  // (both aligned to them). Ranges may be added one after another; a new
  // range replaces whatever it overlaps.
  void back_with_huge_pages(ua first, std::uint64_t bytes, unsigned shift) {
    const std::uint64_t last = first.value() + (bytes - 1);
    for (auto it = huge_.begin(); it != huge_.end();)
      it = it->first <= last && first.value() <= it->first + (it->second.bytes - 1)
               ? huge_.erase(it)
               : std::next(it);
    huge_[first.value()] = huge_range{bytes, shift};
  }
  // Makes the n-th pin from now fail with no_memory (1: the next one), once;
  // 0 turns it off.
  void fail_nth_pin(std::uint64_t n) noexcept {
    pin_calls_ = 0;
    fail_pin_at_ = n;
  }
  // Pins and translations become points of a fault plan
  // (testing/fault_injecting_allocator.hpp): before each, plan.next_point_fails()
  // says whether it fails.
  template <class Plan>
  void count_faults_in(Plan& plan) noexcept {
    plan_ = &plan;
    point_fails_ = [](void* p) noexcept { return static_cast<Plan*>(p)->next_point_fails(); };
  }
  // Distinct host pages pinned now.
  std::uint64_t pinned_pages() const noexcept { return pins_.size(); }
  // How many pins hold the host page that contains `at`.
  std::uint64_t pin_count(ua at) const noexcept { return pins_.count(at.value() >> page_shift_); }
  // How frames are laid out.
  frame_layout layout() const noexcept { return layout_; }

private:
  static constexpr std::uint64_t scramble = std::uint64_t{0x5a5a5} << 30;
  static constexpr std::uint64_t address_mask = (std::uint64_t{1} << 52) - 1;
  static constexpr unsigned zone_shift = 44; // frames of one page size: below 2^44
  static constexpr std::uint64_t frame_multiplier = 0x9e3779b97f4a7c15ULL;
  struct huge_range {
    std::uint64_t bytes;
    unsigned shift;
  };
  // The page size backing the byte at `at`, and where memory of that page
  // size ends (0: at 2^64).
  struct backing {
    unsigned shift;
    std::uint64_t end;
  };
  backing backing_at(std::uint64_t at) const noexcept {
    auto it = huge_.upper_bound(at);
    const std::uint64_t next = it == huge_.end() ? 0 : it->first;
    if (it != huge_.begin()) {
      --it;
      if (at - it->first < it->second.bytes)
        return {it->second.shift, it->first + it->second.bytes};
    }
    return {page_shift_, next};
  }
  // The scattered layout's frame for the byte at `at` in a page of 2^shift.
  static hpa frame_of(std::uint64_t at, unsigned shift) noexcept {
    if (shift >= zone_shift) // pages too large to scatter: left in place
      return hpa{(at ^ scramble) & address_mask};
    const std::uint64_t unit = at >> shift;
    const std::uint64_t frames_in_zone = (std::uint64_t{1} << (zone_shift - shift)) - 1;
    // An odd multiplier permutes the frame numbers of one zone; each page
    // size has its own zone, so frames of different sizes never collide.
    const std::uint64_t frame = (unit * frame_multiplier) & frames_in_zone;
    return hpa{(std::uint64_t{shift} << zone_shift) | (frame << shift) |
               (at & ((std::uint64_t{1} << shift) - 1))};
  }

  // Reports the runs of the range; cannot fail.
  template <class OnRun>
  void translate_all(ua first, std::uint64_t bytes, OnRun& on_run) noexcept {
    detail::frame_run_joiner<std::remove_reference_t<OnRun>> join(on_run);
    std::uint64_t at = first.value();
    for (std::uint64_t left = bytes; left != 0;) {
      // A stretch where frames follow a rule: a GiB of the contiguous
      // layout, or memory backed by pages of one size.
      std::uint64_t stretch = 0;
      unsigned shift = 0;
      if (layout_ == frame_layout::contiguous) {
        shift = 30;
        stretch = (std::uint64_t{1} << 30) - (at & ((std::uint64_t{1} << 30) - 1));
      } else {
        const backing b = backing_at(at);
        shift = b.shift;
        stretch = b.end - at; // 0: up to 2^64
      }
      const std::uint64_t n = stretch == 0 ? left : std::min(left, stretch);
      if (layout_ == frame_layout::contiguous || shift >= zone_shift) {
        join.add(ua{at}, hpa{(at ^ scramble) & address_mask}, n);
      } else {
        const std::uint64_t unit = std::uint64_t{1} << shift;
        const std::uint64_t head = std::min(n, unit - (at & (unit - 1)));
        join.add(ua{at}, frame_of(at, shift), head);
        // Whole pages from here on: their frames, with the constants hoisted.
        const std::uint64_t zone = std::uint64_t{shift} << zone_shift;
        const std::uint64_t frames_in_zone = (std::uint64_t{1} << (zone_shift - shift)) - 1;
        std::uint64_t number = (at + head) >> shift;
        for (std::uint64_t done = head; done < n; done += unit, ++number)
          join.add(ua{at + done},
                   hpa{zone | (((number * frame_multiplier) & frames_in_zone) << shift)},
                   std::min(unit, n - done));
      }
      at += n;
      left -= n;
    }
    join.finish();
  }
  // Whether the fault plan, if any, fails this point.
  bool injected_failure() noexcept { return plan_ != nullptr && point_fails_(plan_); }

  unsigned page_shift_;
  frame_layout layout_;
  page_counts<> pins_;
  std::uint64_t pin_calls_ = 0;
  std::uint64_t fail_pin_at_ = 0;
  void* plan_ = nullptr;
  bool (*point_fails_)(void* plan) noexcept = nullptr;
  std::map<std::uint64_t, huge_range> huge_; // first byte -> range backed by huge pages
};

static_assert(pinning_backend<simulated_backend>);

} // namespace iopt
