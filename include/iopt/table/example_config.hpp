// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// example_config: a working table configuration whose only purpose is to
// document every member a configuration can have (table/table_config.hpp
// states the rules). Copy it to write your own; configs.hpp names the ready
// ones.
//
// This example is a 64 KiB-page window of three levels allocated on demand,
// kept in the guest's format (as a hypervisor keeps the table a guest edits
// with hypercalls), whose emptied levels are given back.
#pragma once

#include <array>

#include <iopt/addr/page_size.hpp>
#include <iopt/format/guest_tce.hpp>
#include <iopt/table/allocator.hpp>
#include <iopt/table/table_config.hpp>

namespace iopt {

// A guest-format window of 64 KiB pages in three levels allocated on demand,
// emptied levels given back; each member says what it sets.
struct example_config {
  // Required. How an entry encodes a target and its permissions and how it
  // lies in memory: hardware_tce (big-endian, write implies read) for a
  // table an IOMMU reads, guest_tce (native, verbatim) for one a guest
  // edits, or a format of your own (format/example_format.hpp).
  using format = guest_tce;

  // Required. The IOMMU page size, fixed at compile time: page_4k, page_64k,
  // page_2m, page_16m, page_256m, page_1g or page_16g, or page_size<Shift>.
  using page_size = page_64k;

  // Required. log2 of the entries of each level, the leaf (level 0) first.
  // The last entry is the largest top level the configuration allows; a
  // window smaller than the levels can index gets a smaller top level, sized
  // for it at run time. Here: leaves of 2^13 entries (64 KiB blocks, each
  // mapping 512 MiB), a middle level of 2^9 and a top of up to 2^12: up to
  // 2^34 pages, 1 PiB of 64 KiB pages. 1 to 5 levels, each 2^1 to 2^28
  // entries, and the page shift plus all index bits at most 63.
  static constexpr std::array<unsigned, 3> level_bits{13, 9, 12};

  // Optional (default heap_allocator). Where level blocks come from: any
  // block_allocator (table/allocator.hpp). A dma_window substitutes one that
  // charges the blocks to an accounting policy.
  using allocator = heap_allocator;

  // Optional (default true). Only the top level exists when the table is
  // made; lower levels are allocated when an entry below them is first set.
  // false allocates every level up front (a fully populated table).
  static constexpr bool levels_on_demand = true;

  // Optional (default false). Refuse windows whose index bits plus page shift
  // reach 55, as IODA2 hardware does. A guest-format table is not read by
  // hardware, so this one leaves it off.
  static constexpr bool hardware_index_limit = false;

  // Optional (default false). A clear that leaves a lower block empty gives
  // it back. Clears must then not run concurrently with other operations on
  // the table; the kernel never frees levels.
  static constexpr bool free_empty_levels = true;
};

static_assert(table_config<example_config>);

} // namespace iopt
