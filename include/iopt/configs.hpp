// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// The ready configurations. Each is a small struct of policies (see
// table/example_config.hpp for every member); everything else is derived
// (table/geometry.hpp).
//
// Why these level sizes: memory is charged for what a table really holds, so
// the upper levels of a sparse tree should cost little next to the leaves.
// config_huge_window therefore has large leaves (16384 entries: one 128 KiB
// block maps 1 GiB of 64 KiB pages) under small upper levels (a 4 KiB middle
// level, and a top sized for the window: 2 KiB for 128 TiB). One contiguous
// GiB mapped into a 128 TiB window then costs 134 KiB, 1.05x the 128 KiB of
// entries it needs, where a flat table for that window would take 16 GiB.
#pragma once

#include <array>
#include <cstdint>

#include <iopt/addr/address.hpp> // huge_window_bus_offset, for users of the huge window
#include <iopt/addr/page_size.hpp>
#include <iopt/format/hardware_tce.hpp>
#include <iopt/table/table_config.hpp>

namespace iopt {

// The default 32-bit window: 4 KiB pages in one flat level, up to 4 GiB
// (QEMU's default window is 1 GiB of 4 KiB pages at bus address 0).
struct config_4k {
  // Big-endian TCEs, as the IOMMU reads them.
  using format = hardware_tce;
  // 4 KiB IOMMU pages.
  using page_size = page_4k;
  // One level of up to 2^20 entries: 8 MiB of table for 4 GiB, 2 MiB for
  // QEMU's 1 GiB window.
  static constexpr std::array<unsigned, 1> level_bits{20};
  // The hardware walks this table: windows must keep to the IODA2 limit.
  static constexpr bool hardware_index_limit = true;
};

// 64 KiB pages in two levels of 8192 entries (64 KiB blocks), all allocated
// when the table is made: up to 4 TiB.
struct config_64k {
  // Big-endian TCEs, as the IOMMU reads them.
  using format = hardware_tce;
  // 64 KiB IOMMU pages.
  using page_size = page_64k;
  // Leaves of 2^13 entries (64 KiB blocks, each mapping 512 MiB) under a top
  // of up to 2^13 entries.
  static constexpr std::array<unsigned, 2> level_bits{13, 13};
  // Every level is allocated when the table is made, so no later write
  // allocates or fails for want of memory; a full 4 TiB window holds 512 MiB
  // of leaves.
  static constexpr bool levels_on_demand = false;
  // The hardware walks this table: windows must keep to the IODA2 limit.
  static constexpr bool hardware_index_limit = true;
};

// The 64-bit "huge window": 64 KiB pages, three levels allocated on demand.
// Covers 128 TiB at bus offset 1 << 59 (and up to 4 PiB).
struct config_huge_window {
  // Big-endian TCEs, as the IOMMU reads them.
  using format = hardware_tce;
  // 64 KiB IOMMU pages.
  using page_size = page_64k;
  // Leaves of 2^14 entries (128 KiB, mapping 1 GiB each), a middle level of
  // 2^9 (4 KiB) and a top of up to 2^13; a 128 TiB window gets a 2 KiB top.
  static constexpr std::array<unsigned, 3> level_bits{14, 9, 13};
  // The hardware walks this table: windows must keep to the IODA2 limit.
  static constexpr bool hardware_index_limit = true;
};

// 16 MiB pages (hugepage-backed guests), three levels on demand, up to 16 PiB.
struct config_16m {
  // Big-endian TCEs, as the IOMMU reads them.
  using format = hardware_tce;
  // 16 MiB IOMMU pages.
  using page_size = page_16m;
  // Leaves and middle level of 2^12 entries (32 KiB blocks; a leaf maps
  // 64 GiB) under a top of up to 2^6.
  static constexpr std::array<unsigned, 3> level_bits{12, 12, 6};
  // The hardware walks this table: windows must keep to the IODA2 limit
  // (this one's largest window, 2^54 bytes, just fits).
  static constexpr bool hardware_index_limit = true;
};

// 16 MiB pages in one flat level, up to 16 TiB: the table DPDK asks for first
// (levels = 1) for hugepage-backed memory, before it retries with more.
struct config_16m_flat {
  // Big-endian TCEs, as the IOMMU reads them.
  using format = hardware_tce;
  // 16 MiB IOMMU pages.
  using page_size = page_16m;
  // One level of up to 2^20 entries: 8 MiB of table for the full 16 TiB.
  static constexpr std::array<unsigned, 1> level_bits{20};
  // The hardware walks this table: windows must keep to the IODA2 limit.
  static constexpr bool hardware_index_limit = true;
};

// Every named configuration above, as an X-macro: IOPT_NAMED_CONFIGS(X)
// expands to X(config_4k) X(config_64k) ... The test suites and the
// benchmarks run over this list, so a configuration added here is tested and
// measured everywhere.
#define IOPT_NAMED_CONFIGS(X)                                                                      \
  X(config_4k) X(config_64k) X(config_huge_window) X(config_16m) X(config_16m_flat)

// The same configurations in the guest's format (table/table_config.hpp):
// the tables a hypervisor keeps for its guest's windows, which the guest
// edits with hypercalls and which hold its values verbatim.
//
// config_4k in the guest's format: the guest's default 32-bit window.
using config_4k_guest = in_guest_format<config_4k>;
// config_64k in the guest's format: a guest's 64 KiB-page window, every
// level allocated up front.
using config_64k_guest = in_guest_format<config_64k>;
// config_huge_window in the guest's format: the guest's 64-bit window of
// 64 KiB pages, levels on demand.
using config_huge_window_guest = in_guest_format<config_huge_window>;
// config_16m in the guest's format: a hugepage-backed guest's window of
// 16 MiB pages, levels on demand.
using config_16m_guest = in_guest_format<config_16m>;
// config_16m_flat in the guest's format: the one-level 16 MiB-page window.
using config_16m_flat_guest = in_guest_format<config_16m_flat>;

} // namespace iopt
