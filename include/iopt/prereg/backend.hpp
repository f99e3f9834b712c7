// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// Pinning backends: what actually pins user memory and tells its host
// physical addresses.
//
// A backend B provides:
//   unsigned b.host_page_shift() const noexcept        the system page size
//   status b.pin(ua first, std::uint64_t bytes) noexcept
//                       ok, or a failure with nothing left pinned
//   void b.unpin(ua first, std::uint64_t bytes) noexcept
//   result<hpa> b.translate(ua page) noexcept           the host physical
//                       address of one pinned host page
//   unsigned b.backing_page_shift(ua first, std::uint64_t bytes) noexcept
//                       the smallest page that backs the range (larger than
//                       the system page for hugepage-backed memory)
//
// simulated_backend (here) is deterministic and needs no privileges: for
// tests and benchmarks. posix_backend (prereg/posix_backend.hpp) pins real
// memory with mlock and translates through /proc/self/pagemap.
#pragma once

#include <concepts>
#include <cstdint>
#include <map>

#include <iopt/addr/address.hpp>
#include <iopt/addr/align.hpp>
#include <iopt/status.hpp>
#include <iopt/table/fault_injecting_allocator.hpp>

namespace iopt {

template <class B>
concept pinning_backend = requires(B& b, const B& cb, ua addr, std::uint64_t bytes) {
  { cb.host_page_shift() }
  noexcept->std::same_as<unsigned>;
  { b.pin(addr, bytes) }
  noexcept->std::same_as<status>;
  { b.unpin(addr, bytes) }
  noexcept;
  { b.translate(addr) }
  noexcept->std::same_as<result<hpa>>;
  { b.backing_page_shift(addr, bytes) }
  noexcept->std::same_as<unsigned>;
};

// Fake physical memory: a user address maps to itself with bits above 1 GiB
// scrambled, so translations are stable, distinct and page aligned, and
// memory contiguous within a GiB (as a hugepage is) stays contiguous. Counts pins per
// page, can back chosen ranges with larger pages, and can fail the n-th pin.
class simulated_backend {
public:
  explicit simulated_backend(unsigned host_page_shift = 16) noexcept
      : page_shift_(host_page_shift) {}

  unsigned host_page_shift() const noexcept { return page_shift_; }

  status pin(ua first, std::uint64_t bytes) noexcept {
    ++pin_calls_;
    if (fail_pin_at_ != 0 && pin_calls_ == fail_pin_at_)
      return status::no_memory;
    if (plan_ != nullptr && plan_->next_point_fails())
      return status::no_memory;
    for (std::uint64_t off = 0; off < bytes; off += page_bytes())
      ++pins_[(first.value() + off) >> page_shift_];
    pinned_pages_ += bytes >> page_shift_;
    return status::ok;
  }
  void unpin(ua first, std::uint64_t bytes) noexcept {
    for (std::uint64_t off = 0; off < bytes; off += page_bytes()) {
      const auto it = pins_.find((first.value() + off) >> page_shift_);
      IOPT_ASSERT(it != pins_.end());
      if (--it->second == 0)
        pins_.erase(it);
    }
    pinned_pages_ -= bytes >> page_shift_;
  }
  result<hpa> translate(ua page) noexcept {
    return hpa{(align_down(page.value(), page_shift_) ^ scramble) & address_mask};
  }
  unsigned backing_page_shift(ua first, std::uint64_t bytes) noexcept {
    unsigned shift = huge_shift_;
    if (huge_shift_ == 0 || first < huge_first_ ||
        first.value() - huge_first_.value() >= huge_bytes_ ||
        bytes > huge_bytes_ - (first.value() - huge_first_.value()))
      shift = page_shift_;
    return shift;
  }

  // ---- for tests ----
  // Memory in [first, first + bytes) is backed by pages of 2^shift bytes.
  void back_with_huge_pages(ua first, std::uint64_t bytes, unsigned shift) noexcept {
    huge_first_ = first;
    huge_bytes_ = bytes;
    huge_shift_ = shift;
  }
  void fail_nth_pin(std::uint64_t n) noexcept {
    pin_calls_ = 0;
    fail_pin_at_ = n;
  }
  // Pins become points of a fault plan (table/fault_injecting_allocator.hpp).
  void count_pins_in(fault_plan& plan) noexcept { plan_ = &plan; }
  std::uint64_t pinned_pages() const noexcept { return pinned_pages_; }
  std::uint64_t pin_count(ua page) const noexcept {
    const auto it = pins_.find(page.value() >> page_shift_);
    return it == pins_.end() ? 0 : it->second;
  }

private:
  static constexpr std::uint64_t scramble = std::uint64_t{0x5a5a5} << 30;
  static constexpr std::uint64_t address_mask = (std::uint64_t{1} << 52) - 1;
  std::uint64_t page_bytes() const noexcept { return std::uint64_t{1} << page_shift_; }

  unsigned page_shift_;
  std::map<std::uint64_t, std::uint64_t> pins_; // host page -> pin count
  std::uint64_t pinned_pages_ = 0;
  std::uint64_t pin_calls_ = 0;
  std::uint64_t fail_pin_at_ = 0;
  fault_plan* plan_ = nullptr;
  ua huge_first_{};
  std::uint64_t huge_bytes_ = 0;
  unsigned huge_shift_ = 0;
};

static_assert(pinning_backend<simulated_backend>);

} // namespace iopt
