// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// Strong address types. The four address spaces of the domain:
//
//   ioba — I/O bus address: what a device puts on the bus; a TCE table
//          translates it.
//   gpa  — guest physical address: what the guest thinks is physical memory.
//   ua   — user-space (host virtual) address of the process that backs the guest.
//   hpa  — host physical address: what a TCE finally points at on real hardware.
//
// Mixing them is the classic bug of IOMMU code (passing a UA where an HPA is
// expected). Each is its own type: construction from an integer is explicit,
// comparisons only work within one kind, and arithmetic adds plain byte
// offsets. Offset arithmetic is modular like unsigned integers; code that must
// not wrap uses checked_add (addr/align.hpp) or addr_range (addr/range.hpp).
#pragma once

#include <compare>
#include <cstdint>

namespace iopt {

template <class Tag>
class address {
public:
  using value_type = std::uint64_t;

  constexpr address() noexcept = default;
  constexpr explicit address(std::uint64_t value) noexcept : value_(value) {}

  [[nodiscard]] constexpr std::uint64_t value() const noexcept { return value_; }

  friend constexpr bool operator==(address, address) noexcept = default;
  friend constexpr auto operator<=>(address, address) noexcept = default;

  // A byte offset within one address space.
  friend constexpr address operator+(address a, std::uint64_t offset) noexcept {
    return address(a.value_ + offset);
  }
  friend constexpr address operator-(address a, std::uint64_t offset) noexcept {
    return address(a.value_ - offset);
  }
  // The distance between two addresses of the same kind.
  friend constexpr std::uint64_t operator-(address a, address b) noexcept {
    return a.value_ - b.value_;
  }

private:
  std::uint64_t value_ = 0;
};

struct ioba_tag {};
struct gpa_tag {};
struct ua_tag {};
struct hpa_tag {};

using ioba = address<ioba_tag>;
using gpa = address<gpa_tag>;
using ua = address<ua_tag>;
using hpa = address<hpa_tag>;

// Where sPAPR places the DMA windows of a partitionable endpoint: the
// default 32-bit window at bus address 0, the 64-bit window at 1 << 59.
inline constexpr std::uint64_t huge_window_bus_offset = std::uint64_t{1} << 59;

} // namespace iopt
