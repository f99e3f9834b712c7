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

// v in big-endian byte order: byte-swapped on a little-endian host, unchanged
// on a big-endian one.
constexpr std::uint64_t to_big_endian(std::uint64_t v) noexcept {
  if constexpr (std::endian::native == std::endian::big)
    return v;
  else
    return __builtin_bswap64(v);
}
// A big-endian v in the host's byte order; the same swap as to_big_endian.
constexpr std::uint64_t from_big_endian(std::uint64_t v) noexcept { return to_big_endian(v); }

// 64-bit values as their owner stores them, in a stated byte order: PAPR's
// TCE lists are big-endian in guest memory, and a table reads such a list in
// place rather than after a pass that converts it. operator[] gives a value
// in the host's order.
template <std::endian Order>
struct ordered_values {
  // Whether Order differs from the host's, so each value is swapped on reading.
  static constexpr bool swapped = Order != std::endian::native;

  // The values as stored, in Order; not owned.
  std::span<const std::uint64_t> stored;

  // Value k in the host's byte order; k must be below size() (unchecked).
  constexpr std::uint64_t operator[](std::size_t k) const noexcept {
    return swapped ? __builtin_bswap64(stored[k]) : stored[k];
  }
  // The number of 64-bit values.
  [[nodiscard]] constexpr std::size_t size() const noexcept { return stored.size(); }
};
// Values already in the host's byte order; reading them is a plain load.
using native_values = ordered_values<std::endian::native>;
// Big-endian values, such as a PAPR TCE list read in place from guest memory.
using big_endian_values = ordered_values<std::endian::big>;

} // namespace iopt
