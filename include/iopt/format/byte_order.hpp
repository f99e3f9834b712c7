// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// Big-endian 64-bit values: hardware TCE tables and PAPR's TCE lists are
// big-endian whatever the host's byte order. Swapping is its own inverse.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>

namespace iopt {

constexpr std::uint64_t to_big_endian(std::uint64_t v) noexcept {
  if constexpr (std::endian::native == std::endian::big)
    return v;
  else
    return __builtin_bswap64(v);
}
constexpr std::uint64_t from_big_endian(std::uint64_t v) noexcept { return to_big_endian(v); }

// 64-bit values as their owner stores them, in a stated byte order: PAPR's
// TCE lists are big-endian in guest memory, and a table reads such a list in
// place rather than after a pass that converts it. operator[] gives a value
// in the host's order.
template <std::endian Order>
struct ordered_values {
  static constexpr bool swapped = Order != std::endian::native;

  std::span<const std::uint64_t> stored;

  constexpr std::uint64_t operator[](std::size_t k) const noexcept {
    return swapped ? __builtin_bswap64(stored[k]) : stored[k];
  }
  [[nodiscard]] constexpr std::size_t size() const noexcept { return stored.size(); }
};
using native_values = ordered_values<std::endian::native>;
using big_endian_values = ordered_values<std::endian::big>;

} // namespace iopt
