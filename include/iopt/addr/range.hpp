// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// A half-open address range [first, first + size) of one address kind.
//
// The range is stored as (first, size) so that a range ending exactly at the
// top of the 64-bit space, such as a DMA window placed at 2^64 - 2^40, is
// representable although its end (2^64) is not a 64-bit value. Construction
// refuses a range that would go past 2^64. Every query is written so that it
// never computes first + size, and therefore never wraps.
#pragma once

#include <algorithm>
#include <cstdint>

#include <iopt/addr/address.hpp>
#include <iopt/status.hpp>

namespace iopt {

// A half-open range [first, first + size) of addresses of one kind (Addr is
// ioba, gpa, ua or hpa), stored as start and size so it may end at 2^64.
template <class Addr>
class addr_range {
public:
  // The kind of address the range covers.
  using address_type = Addr;

  // An empty range at address 0.
  constexpr addr_range() noexcept = default;

  // [first, first + size), size in bytes; status::wraps when the range would
  // go past 2^64 (ending exactly at 2^64 is fine). A size of 0 is an empty range.
  [[nodiscard]] static constexpr result<addr_range> make(Addr first, std::uint64_t size) noexcept {
    if (size != 0 && size - 1 > UINT64_MAX - first.value())
      return status::wraps;
    return addr_range(first, size);
  }
  // [first, last], both inclusive; the form that reaches the very top.
  // status::invalid_parameter when last < first; status::wraps for the whole
  // 64-bit space, whose 2^64 bytes do not fit the size.
  [[nodiscard]] static constexpr result<addr_range> from_inclusive(Addr first, Addr last) noexcept {
    if (last < first)
      return status::invalid_parameter;
    const std::uint64_t span = last - first;
    if (span == UINT64_MAX)
      return status::wraps; // all of 2^64 bytes does not fit a 64-bit size
    return addr_range(first, span + 1);
  }

  // The first address in the range (where an empty range sits).
  [[nodiscard]] constexpr Addr first() const noexcept { return first_; }
  // The length in bytes.
  [[nodiscard]] constexpr std::uint64_t size() const noexcept { return size_; }
  // Whether the range holds no address (size 0).
  [[nodiscard]] constexpr bool empty() const noexcept { return size_ == 0; }
  // The last byte; only meaningful for a non-empty range.
  [[nodiscard]] constexpr Addr last() const noexcept { return first_ + (size_ - 1); }
  // True when the range ends exactly at 2^64, so that first + size is not a value.
  [[nodiscard]] constexpr bool reaches_top() const noexcept {
    return size_ != 0 && last().value() == UINT64_MAX;
  }

  // Whether a lies in the range; never for an empty range.
  [[nodiscard]] constexpr bool contains(Addr a) const noexcept {
    return a >= first_ && a - first_ < size_;
  }
  // Whether every address of other lies in this range. An empty other is
  // contained when its start lies from first() to one past the last byte.
  [[nodiscard]] constexpr bool contains(const addr_range& other) const noexcept {
    if (other.empty()) // an empty range is contained anywhere from first to one past last
      return other.first_ >= first_ && other.first_ - first_ <= size_;
    return contains(other.first_) && contains(other.last());
  }
  // Whether the two ranges share at least one address; never when either is empty.
  [[nodiscard]] constexpr bool overlaps(const addr_range& other) const noexcept {
    if (empty() || other.empty())
      return false;
    return first_ <= other.last() && other.first_ <= last();
  }
  // The common part; empty (at this range's start) when there is none.
  [[nodiscard]] constexpr addr_range intersect(const addr_range& other) const noexcept {
    if (!overlaps(other))
      return addr_range(first_, 0);
    const Addr lo = std::max(first_, other.first_);
    const Addr hi = std::min(last(), other.last());
    return addr_range(lo, (hi - lo) + 1);
  }
  // Byte offset of a from the start; precondition: contains(a).
  [[nodiscard]] constexpr std::uint64_t offset_of(Addr a) const noexcept { return a - first_; }

  // Equal when start and size are: two empty ranges at different starts differ.
  friend constexpr bool operator==(const addr_range&, const addr_range&) noexcept = default;

private:
  constexpr addr_range(Addr first, std::uint64_t size) noexcept : first_(first), size_(size) {}

  Addr first_{};
  std::uint64_t size_ = 0;
};

// A range of I/O bus addresses, such as a DMA window.
using ioba_range = addr_range<ioba>;
// A range of guest physical addresses.
using gpa_range = addr_range<gpa>;
// A range of user-space (host virtual) addresses, such as preregistered memory.
using ua_range = addr_range<ua>;
// A range of host physical addresses.
using hpa_range = addr_range<hpa>;

} // namespace iopt
