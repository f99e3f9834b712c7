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

struct guest_tce {
  static constexpr std::uint64_t read_bit = 0x1;
  static constexpr std::uint64_t write_bit = 0x2;

  static constexpr std::uint64_t to_memory(std::uint64_t v) noexcept { return v; }
  static constexpr std::uint64_t from_memory(std::uint64_t m) noexcept { return m; }
};

} // namespace iopt
