// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// Alignment and overflow-checked arithmetic on 64-bit addresses.
//
// Rounding up can overflow near the top of the 64-bit space (align_up of
// 2^64 - 1 to 4 KiB has no answer); such a request reports status::wraps
// instead of silently returning 0. Alignments are given by their shift.
#pragma once

#include <cstdint>

#include <iopt/addr/address.hpp>
#include <iopt/settings.hpp>
#include <iopt/status.hpp>

namespace iopt {

// The low shift bits set: 2^shift - 1, the offset mask of a 2^shift-byte
// alignment. shift must be below 64 (an invariant, asserted).
constexpr std::uint64_t low_mask(unsigned shift) noexcept {
  IOPT_ASSERT(shift < 64);
  return (std::uint64_t{1} << shift) - 1;
}

// Whether value is a multiple of 2^shift.
constexpr bool is_aligned(std::uint64_t value, unsigned shift) noexcept {
  return (value & low_mask(shift)) == 0;
}

// value rounded down to a multiple of 2^shift; never fails.
constexpr std::uint64_t align_down(std::uint64_t value, unsigned shift) noexcept {
  return value & ~low_mask(shift);
}

// value rounded up to a multiple of 2^shift, or status::wraps when that
// multiple would be 2^64 or more.
constexpr result<std::uint64_t> align_up(std::uint64_t value, unsigned shift) noexcept {
  const std::uint64_t mask = low_mask(shift);
  if (value > UINT64_MAX - mask)
    return is_aligned(value, shift) ? result<std::uint64_t>(value)
                                    : result<std::uint64_t>(status::wraps);
  return (value + mask) & ~mask;
}

// a + b, or status::wraps when the sum does not fit in 64 bits.
constexpr result<std::uint64_t> checked_add(std::uint64_t a, std::uint64_t b) noexcept {
  if (a > UINT64_MAX - b)
    return status::wraps;
  return a + b;
}

// Whether the address is a multiple of 2^shift. This and the three below are
// the same operations on the strong address types; they keep the kind.
template <class Tag>
constexpr bool is_aligned(address<Tag> a, unsigned shift) noexcept {
  return is_aligned(a.value(), shift);
}
// The address rounded down to a multiple of 2^shift, of the same kind.
template <class Tag>
constexpr address<Tag> align_down(address<Tag> a, unsigned shift) noexcept {
  return address<Tag>(align_down(a.value(), shift));
}
// The address rounded up to a multiple of 2^shift, of the same kind, or
// status::wraps when that would pass the top of the 64-bit space.
template <class Tag>
constexpr result<address<Tag>> align_up(address<Tag> a, unsigned shift) noexcept {
  const auto up = align_up(a.value(), shift);
  if (!up)
    return up.error();
  return address<Tag>(*up);
}
// The address offset bytes higher, of the same kind, or status::wraps when it
// would pass the top of the 64-bit space (unlike address + offset, which wraps).
template <class Tag>
constexpr result<address<Tag>> checked_add(address<Tag> a, std::uint64_t offset) noexcept {
  const auto sum = checked_add(a.value(), offset);
  if (!sum)
    return sum.error();
  return address<Tag>(*sum);
}

} // namespace iopt
