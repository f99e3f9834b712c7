// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// Big-endian 64-bit values: hardware TCE tables and PAPR's TCE lists are
// big-endian whatever the host's byte order. Swapping is its own inverse.
#pragma once

#include <bit>
#include <cstdint>

namespace iopt {

constexpr std::uint64_t to_big_endian(std::uint64_t v) noexcept {
  if constexpr (std::endian::native == std::endian::big)
    return v;
  else
    return __builtin_bswap64(v);
}
constexpr std::uint64_t from_big_endian(std::uint64_t v) noexcept { return to_big_endian(v); }

} // namespace iopt
