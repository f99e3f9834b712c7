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

template <class Addr>
class addr_range {
public:
  using address_type = Addr;

  constexpr addr_range() noexcept = default; // empty, at 0

  // [first, first + size); refuses ranges that go past 2^64.
  [[nodiscard]] static constexpr result<addr_range> make(Addr first, std::uint64_t size) noexcept {
    if (size != 0 && size - 1 > UINT64_MAX - first.value())
      return status::wraps;
    return addr_range(first, size);
  }
  // [first, last], both inclusive; the form that reaches the very top.
  [[nodiscard]] static constexpr result<addr_range> from_inclusive(Addr first, Addr last) noexcept {
    if (last < first)
      return status::invalid_parameter;
    const std::uint64_t span = last - first;
    if (span == UINT64_MAX)
      return status::wraps; // all of 2^64 bytes does not fit a 64-bit size
    return addr_range(first, span + 1);
  }

  [[nodiscard]] constexpr Addr first() const noexcept { return first_; }
  [[nodiscard]] constexpr std::uint64_t size() const noexcept { return size_; }
  [[nodiscard]] constexpr bool empty() const noexcept { return size_ == 0; }
  // The last byte; only meaningful for a non-empty range.
  [[nodiscard]] constexpr Addr last() const noexcept { return first_ + (size_ - 1); }
  // True when the range ends exactly at 2^64, so that first + size is not a value.
  [[nodiscard]] constexpr bool reaches_top() const noexcept {
    return size_ != 0 && last().value() == UINT64_MAX;
  }

  [[nodiscard]] constexpr bool contains(Addr a) const noexcept {
    return a >= first_ && a - first_ < size_;
  }
  [[nodiscard]] constexpr bool contains(const addr_range& other) const noexcept {
    if (other.empty()) // an empty range is contained anywhere from first to one past last
      return other.first_ >= first_ && other.first_ - first_ <= size_;
    return contains(other.first_) && contains(other.last());
  }
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

  friend constexpr bool operator==(const addr_range&, const addr_range&) noexcept = default;

private:
  constexpr addr_range(Addr first, std::uint64_t size) noexcept : first_(first), size_(size) {}

  Addr first_{};
  std::uint64_t size_ = 0;
};

using ioba_range = addr_range<ioba>;
using gpa_range = addr_range<gpa>;
using ua_range = addr_range<ua>;
using hpa_range = addr_range<hpa>;

} // namespace iopt
