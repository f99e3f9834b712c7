// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// DMA permissions of one TCE: what the device may do with the target page.
// "read" means the device reads memory (DMA to the device); "write" means it
// writes memory. An entry with neither is empty.
#pragma once

#include <cstdint>

namespace iopt {

// The DMA access a TCE grants the device; a bit set (read = 1, write = 2)
// that the format's read_bit and write_bit encode in an entry.
enum class permission : std::uint8_t {
  // No access: the entry is empty and translates nothing.
  none = 0,
  // The device may read the page (DMA towards the device).
  read = 1,
  // The device may write the page (DMA from the device).
  write = 2,
  // Both read and write.
  read_write = 3,
};

// The union of two permissions: read | write == read_write.
constexpr permission operator|(permission a, permission b) noexcept {
  return static_cast<permission>(static_cast<std::uint8_t>(a) | static_cast<std::uint8_t>(b));
}
// The access both permissions grant.
constexpr permission operator&(permission a, permission b) noexcept {
  return static_cast<permission>(static_cast<std::uint8_t>(a) & static_cast<std::uint8_t>(b));
}
// Whether p lets the device read memory.
constexpr bool can_read(permission p) noexcept {
  return (p & permission::read) != permission::none;
}
// Whether p lets the device write memory.
constexpr bool can_write(permission p) noexcept {
  return (p & permission::write) != permission::none;
}
// A value that is one of the four enumerators (an arbitrary integer cast to
// permission is not).
constexpr bool is_valid(permission p) noexcept { return static_cast<std::uint8_t>(p) <= 3; }

} // namespace iopt
