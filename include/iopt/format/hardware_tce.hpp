// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// The hardware TCE format, as the PHB's IOMMU reads it: read = 0x1,
// write = 0x2, the target aligned to the IOMMU page in the bits above, and the
// whole entry stored big-endian whatever the host's byte order. The hardware
// cannot express write-only, so a write permission always carries read too.
#pragma once

#include <cstdint>

#include <iopt/format/byte_order.hpp>

namespace iopt {

// The TCE format the PHB's IOMMU reads: bits 0x1 and 0x2, stored
// big-endian, write always carrying read.
struct hardware_tce {
  // The device may read the target page (DMA towards the device).
  static constexpr std::uint64_t read_bit = 0x1;
  // The device may write the target page; normalize adds read_bit to it.
  static constexpr std::uint64_t write_bit = 0x2;

  // The value as the table stores it: big-endian.
  static constexpr std::uint64_t to_memory(std::uint64_t v) noexcept { return to_big_endian(v); }
  // A stored big-endian entry as a value in the host's byte order.
  static constexpr std::uint64_t from_memory(std::uint64_t m) noexcept {
    return from_big_endian(m);
  }

  // The value with read_bit added whenever write_bit is set, since the
  // hardware cannot express a write-only mapping.
  static constexpr std::uint64_t normalize(std::uint64_t v) noexcept {
    return (v & write_bit) ? (v | read_bit) : v;
  }
};

} // namespace iopt
