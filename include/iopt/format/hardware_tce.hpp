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

struct hardware_tce {
  static constexpr std::uint64_t read_bit = 0x1;
  static constexpr std::uint64_t write_bit = 0x2;

  static constexpr std::uint64_t to_memory(std::uint64_t v) noexcept { return to_big_endian(v); }
  static constexpr std::uint64_t from_memory(std::uint64_t m) noexcept {
    return from_big_endian(m);
  }

  static constexpr std::uint64_t normalize(std::uint64_t v) noexcept {
    return (v & write_bit) ? (v | read_bit) : v;
  }
};

} // namespace iopt
