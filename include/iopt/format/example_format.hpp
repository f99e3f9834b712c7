// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// example_format: a working format whose only purpose is to document every
// hook a TCE format can supply. Copy it to write your own. The algorithms
// never call these members directly; they go through format_traits<F>
// (format/traits.hpp), which supplies the optional ones when a format leaves
// them out.
//
// This example models an IOMMU that stores entries little-endian, places the
// permission bits at 0x4 and 0x8 instead of 0x1 and 0x2, cannot express a
// write-only mapping, and has 52 address bits.
#pragma once

#include <bit>
#include <cstdint>

namespace iopt {

// A sample TCE format (little-endian, permission bits 0x4 and 0x8, write
// implies read, 52 address bits) that documents each hook a format supplies.
struct example_format {
  // Required. The bit that lets the device read the target page (DMA towards
  // the device). One bit, below 4096 so it fits under the smallest page.
  static constexpr std::uint64_t read_bit = 0x4;

  // Required. The bit that lets the device write the target page. One bit,
  // different from read_bit, below 4096.
  static constexpr std::uint64_t write_bit = 0x8;

  // Required. The memory form of a TCE value, as the table stores it. Called
  // once per entry written; it must be cheap and must not fail. It must be
  // constexpr and either keep the value's bytes (a table in the host's byte
  // order) or reverse them (the other order), nothing else: runs of entries
  // are written and scanned in bulk on that promise, and the tce_format
  // concept refuses a format that breaks it.
  static constexpr std::uint64_t to_memory(std::uint64_t v) noexcept {
    if constexpr (std::endian::native == std::endian::little)
      return v;
    else
      return __builtin_bswap64(v);
  }

  // Required. The inverse of to_memory: from_memory(to_memory(v)) == v.
  static constexpr std::uint64_t from_memory(std::uint64_t m) noexcept { return to_memory(m); }

  // Optional (default: the identity). The canonical value of an entry before
  // it is written: here, as on POWER hardware, write implies read.
  static constexpr std::uint64_t normalize(std::uint64_t v) noexcept {
    return (v & write_bit) ? (v | read_bit) : v;
  }

  // Optional (default: all bits). The bits a target address may occupy; a
  // value with a bit above the page outside this mask is refused with
  // status::bad_permission.
  static constexpr std::uint64_t address_mask = (std::uint64_t{1} << 52) - 1;
};

} // namespace iopt
