// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// format_traits<F>: everything the algorithms need from a TCE format, with the
// optional hooks filled in with defaults in this one place. Algorithms use the
// traits, never F directly, so a format only writes what differs.
//
// Instantiating format_traits with a type that is not a format fails with one
// static_assert per missing requirement, each naming it.
#pragma once

#include <cstdint>

#include <iopt/addr/align.hpp>
#include <iopt/format/permission.hpp>
#include <iopt/format/tce_format.hpp>
#include <iopt/status.hpp>

namespace iopt {

// What the algorithms use of a TCE format F: its members, the optional ones
// defaulted, and the conversions between values, permissions and targets.
template <class F>
struct format_traits {
  static_assert(
      requires { F::read_bit; }, "TCE format: static member read_bit is missing");
  static_assert(
      requires { F::write_bit; }, "TCE format: static member write_bit is missing");
  static_assert(
      requires(std::uint64_t v) {
        { F::to_memory(v) }
        noexcept->std::same_as<std::uint64_t>;
      },
      "TCE format: static std::uint64_t to_memory(std::uint64_t) noexcept is missing");
  static_assert(
      requires(std::uint64_t v) {
        { F::from_memory(v) }
        noexcept->std::same_as<std::uint64_t>;
      },
      "TCE format: static std::uint64_t from_memory(std::uint64_t) noexcept is missing");
  static_assert(detail::normalizes_permissions_only<F>(),
                "TCE format: normalize must be constexpr and change only the permission bits, "
                "as a function of them");
  static_assert(!detail::keeps_or_reverses_bytes<F>() ||
                    !detail::normalizes_permissions_only<F>() || tce_format<F>,
                "TCE format: read_bit and write_bit must be distinct single bits below 4096");

  // The format these traits describe.
  using format = F;

  // Whether to_memory reverses the bytes of a value (a table in the other
  // byte order than the host's) rather than keeping them, so that runs of
  // entries can be written and scanned in bulk (table/bulk_entries.hpp).
  static constexpr bool memory_swaps_bytes = [] {
    constexpr std::uint64_t sample = 0x0102'0304'0506'0708;
    if constexpr (detail::keeps_or_reverses_bytes<F>())
      return F::to_memory(sample) == __builtin_bswap64(sample);
    else
      return false;
  }();
  static_assert(detail::keeps_or_reverses_bytes<F>(),
                "TCE format: to_memory must be constexpr and either keep the bytes of a value "
                "or reverse them");

  // F::read_bit: the bit that lets the device read the target page.
  static constexpr std::uint64_t read_bit = F::read_bit;
  // F::write_bit: the bit that lets the device write the target page.
  static constexpr std::uint64_t write_bit = F::write_bit;
  // Both permission bits; an entry with neither is empty.
  static constexpr std::uint64_t permission_bits = read_bit | write_bit;

  // Optional: bits a target address may use. Default: all of them.
  static constexpr std::uint64_t address_mask = [] {
    if constexpr (requires { F::address_mask; })
      return static_cast<std::uint64_t>(F::address_mask);
    else
      return ~std::uint64_t{0};
  }();

  // Optional: the canonical form of a value. Default: kept verbatim.
  static constexpr std::uint64_t normalize(std::uint64_t v) noexcept {
    if constexpr (requires { F::normalize(v); })
      return F::normalize(v);
    else
      return v;
  }

  // F::to_memory: a value in the form the table stores.
  static constexpr std::uint64_t to_memory(std::uint64_t v) noexcept { return F::to_memory(v); }
  // F::from_memory: a stored entry as a value.
  static constexpr std::uint64_t from_memory(std::uint64_t m) noexcept { return F::from_memory(m); }

  // The format's permission bits for p, before normalize (so a write-only p
  // gives write_bit alone).
  static constexpr std::uint64_t permission_to_bits(permission p) noexcept {
    return (can_read(p) ? read_bit : 0) | (can_write(p) ? write_bit : 0);
  }
  // The permissions a value grants, read from its permission bits alone.
  static constexpr permission permissions(std::uint64_t v) noexcept {
    return ((v & read_bit) ? permission::read : permission::none) |
           ((v & write_bit) ? permission::write : permission::none);
  }
  // An entry translates only when it grants read or write.
  static constexpr bool is_present(std::uint64_t v) noexcept { return (v & permission_bits) != 0; }

  // The TCE value for a page-aligned target with the given permissions.
  static constexpr std::uint64_t make(std::uint64_t target, permission p) noexcept {
    return normalize(target | permission_to_bits(p));
  }
  // The target address of a value: v with its low page_shift bits (the
  // permission bits among them) cleared. page_shift is log2 of the IOMMU page.
  static constexpr std::uint64_t target(std::uint64_t v, unsigned page_shift) noexcept {
    return align_down(v, page_shift);
  }

  // Whether a value is a TCE this format can hold for the given page size:
  // below the page only permission bits, above it only address bits.
  static constexpr status check(std::uint64_t v, unsigned page_shift) noexcept {
    const std::uint64_t page_mask = low_mask(page_shift);
    if ((v & page_mask & ~permission_bits) != 0)
      return status::not_aligned;
    if ((v & ~page_mask & ~address_mask) != 0)
      return status::bad_permission;
    return status::ok;
  }
};

} // namespace iopt
