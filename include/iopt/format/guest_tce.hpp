// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// The guest-visible TCE format: the table a hypervisor keeps for a guest's
// window. Same bits as the hardware (read = 0x1, write = 0x2), but stored in
// the host's native byte order and kept exactly as the guest wrote it: a
// write-only entry stays write-only, so the guest reads back its own value.
#pragma once

#include <cstdint>

namespace iopt {

// The TCE format of a guest-visible table: hardware bit layout, host byte
// order, values kept as the guest wrote them (no normalize).
struct guest_tce {
  // The device may read the target page (DMA towards the device).
  static constexpr std::uint64_t read_bit = 0x1;
  // The device may write the target page; may appear without read_bit.
  static constexpr std::uint64_t write_bit = 0x2;

  // The value unchanged: the table is in the host's byte order.
  static constexpr std::uint64_t to_memory(std::uint64_t v) noexcept { return v; }
  // The stored entry unchanged, as to_memory.
  static constexpr std::uint64_t from_memory(std::uint64_t m) noexcept { return m; }
};

} // namespace iopt
