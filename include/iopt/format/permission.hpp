// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// DMA permissions of one TCE: what the device may do with the target page.
// "read" means the device reads memory (DMA to the device); "write" means it
// writes memory. An entry with neither is empty.
#pragma once

#include <cstdint>

namespace iopt {

enum class permission : std::uint8_t {
  none = 0,
  read = 1,
  write = 2,
  read_write = 3,
};

constexpr permission operator|(permission a, permission b) noexcept {
  return static_cast<permission>(static_cast<std::uint8_t>(a) | static_cast<std::uint8_t>(b));
}
constexpr permission operator&(permission a, permission b) noexcept {
  return static_cast<permission>(static_cast<std::uint8_t>(a) & static_cast<std::uint8_t>(b));
}
constexpr bool can_read(permission p) noexcept {
  return (p & permission::read) != permission::none;
}
constexpr bool can_write(permission p) noexcept {
  return (p & permission::write) != permission::none;
}
// A value that is one of the four enumerators (an arbitrary integer cast to
// permission is not).
constexpr bool is_valid(permission p) noexcept { return static_cast<std::uint8_t>(p) <= 3; }

} // namespace iopt
