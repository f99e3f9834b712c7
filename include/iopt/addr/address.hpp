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

// A 64-bit address in the address space named by Tag (use the aliases ioba,
// gpa, ua and hpa below). Kinds do not mix: no implicit conversion between them.
template <class Tag>
class address {
public:
  // The integer type that holds the address.
  using value_type = std::uint64_t;

  // Address 0.
  constexpr address() noexcept = default;
  // The address with this integer value; explicit so a raw integer (or an
  // address of another kind, via value()) never becomes one by accident.
  constexpr explicit address(std::uint64_t value) noexcept : value_(value) {}

  // The address as a plain integer.
  [[nodiscard]] constexpr std::uint64_t value() const noexcept { return value_; }

  // Equal when the integer values are; only between addresses of one kind.
  friend constexpr bool operator==(address, address) noexcept = default;
  // Ordered as the integer values; only between addresses of one kind.
  friend constexpr auto operator<=>(address, address) noexcept = default;

  // The address offset bytes higher in the same address space; wraps modulo
  // 2^64 like unsigned integers (checked_add refuses to).
  friend constexpr address operator+(address a, std::uint64_t offset) noexcept {
    return address(a.value_ + offset);
  }
  // The address offset bytes lower; wraps modulo 2^64 below 0.
  friend constexpr address operator-(address a, std::uint64_t offset) noexcept {
    return address(a.value_ - offset);
  }
  // The distance in bytes from b up to a, of two addresses of the same kind;
  // wraps modulo 2^64 when b is above a.
  friend constexpr std::uint64_t operator-(address a, address b) noexcept {
    return a.value_ - b.value_;
  }

private:
  std::uint64_t value_ = 0;
};

// Tag of the I/O bus address space (ioba); carries no data.
struct ioba_tag {};
// Tag of the guest physical address space (gpa); carries no data.
struct gpa_tag {};
// Tag of the user-space (host virtual) address space (ua); carries no data.
struct ua_tag {};
// Tag of the host physical address space (hpa); carries no data.
struct hpa_tag {};

// An I/O bus address: what a device puts on the bus, translated by a TCE table.
using ioba = address<ioba_tag>;
// A guest physical address: what the guest sees as physical memory.
using gpa = address<gpa_tag>;
// A user-space (host virtual) address in the process that backs the guest.
using ua = address<ua_tag>;
// A host physical address: what a hardware TCE finally points at.
using hpa = address<hpa_tag>;

// Where sPAPR places the DMA windows of a partitionable endpoint: the
// default 32-bit window at bus address 0, the 64-bit window at 1 << 59.
inline constexpr std::uint64_t huge_window_bus_offset = std::uint64_t{1} << 59;

} // namespace iopt
