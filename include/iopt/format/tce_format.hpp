// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// The TCE format concept: how one 8-byte Translation Control Entry encodes a
// target address and its permissions, and how it is stored in table memory.
//
// A TCE *value* is a 64-bit number: the target address aligned to the IOMMU
// page, OR'd with permission bits. The *memory* form is what lies in the table
// (big-endian on hardware, native for a guest-visible table). All of iopt's
// algorithms work on values; a format converts at the boundary.
//
// Required members of a format F (format/example_format.hpp documents each):
//   F::read_bit, F::write_bit   single, distinct bits below 4096
//   F::to_memory(v)             value -> memory form, constexpr and noexcept;
//                               it keeps the bytes of the value (a table in
//                               the host's byte order) or reverses them (the
//                               other byte order), nothing else, so that runs
//                               of entries can be written and scanned in bulk
//   F::from_memory(m)           memory form -> value, noexcept
// Optional members, defaulted by format_traits (format/traits.hpp):
//   F::normalize(v)             canonical value (hardware: write implies read);
//                               constexpr, and it may change only the
//                               permission bits, as a function of them, so
//                               that lists of values can be normalized in
//                               bulk
//   F::address_mask             bits a target address may use
#pragma once

#include <concepts>
#include <cstdint>
#include <type_traits>

namespace iopt {

namespace detail {
constexpr bool is_single_bit(std::uint64_t v) noexcept { return v != 0 && (v & (v - 1)) == 0; }

// Whether F::to_memory is a constant expression that keeps the bytes of a
// value or reverses them.
template <class F>
constexpr bool keeps_or_reverses_bytes() noexcept {
  constexpr std::uint64_t sample = 0x0102'0304'0506'0708;
  if constexpr (requires { typename std::integral_constant<std::uint64_t, F::to_memory(sample)>; })
    return F::to_memory(sample) == sample || F::to_memory(sample) == __builtin_bswap64(sample);
  else
    return false;
}

// Whether F::normalize (if F has one) changes only permission bits, and
// only as they say: normalize(target | p) == target | normalize(p), with
// normalize(p) holding permission bits alone. Sampled over every
// combination of the two bits and targets across the address bits.
template <class F>
constexpr bool rewrites_only_permissions() noexcept {
  constexpr std::uint64_t permissions = F::read_bit | F::write_bit;
  constexpr std::uint64_t targets[] = {0, 0x1000, 0x7654'3210'f000, 0x8000'0000'0000'0000,
                                       ~std::uint64_t{0xfff}};
  for (const std::uint64_t p : {std::uint64_t{0}, F::read_bit, F::write_bit, permissions}) {
    const std::uint64_t bits = F::normalize(p);
    if ((bits & ~permissions) != 0)
      return false;
    for (const std::uint64_t t : targets)
      if (F::normalize(t | p) != (t | bits))
        return false;
  }
  return true;
}
template <class F>
constexpr bool normalizes_permissions_only() noexcept {
  if constexpr (!requires(std::uint64_t v) { F::normalize(v); })
    return true;
  else if constexpr (requires {
                       typename std::integral_constant<bool, rewrites_only_permissions<F>()>;
                     })
    return rewrites_only_permissions<F>();
  else
    return false; // not constexpr
}
} // namespace detail

// F is a TCE format: read_bit and write_bit are distinct single bits below
// 4096, to_memory and from_memory are noexcept, and to_memory is constexpr and
// keeps or reverses the bytes of a value.
template <class F>
concept tce_format = requires(std::uint64_t v) {
  { F::read_bit } -> std::convertible_to<std::uint64_t>;
  { F::write_bit } -> std::convertible_to<std::uint64_t>;
  { F::to_memory(v) }
  noexcept->std::same_as<std::uint64_t>;
  { F::from_memory(v) }
  noexcept->std::same_as<std::uint64_t>;
  requires detail::is_single_bit(F::read_bit);
  requires detail::is_single_bit(F::write_bit);
  requires F::read_bit != F::write_bit;
  requires(F::read_bit | F::write_bit) < 4096; // fit below the smallest IOMMU page
  requires detail::keeps_or_reverses_bytes<F>();
  requires detail::normalizes_permissions_only<F>();
};

} // namespace iopt
