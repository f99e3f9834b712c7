// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// Page-size policies. An IOMMU page is what one TCE translates. Sizes are
// always powers of two and are given by their shift (log2); size and mask are
// derived. A configuration fixes its page size at compile time with
// page_size<Shift>; code that learns the size at run time (a window created by
// a guest, a host hugepage size) uses runtime_page_size, which validates the
// shift once when it is made.
//
// Sizes seen on sPAPR: 4K, 64K, 2M, 16M, 256M, 1G and 16G.
#pragma once

#include <concepts>
#include <cstdint>

#include <iopt/status.hpp>

namespace iopt {

// The smallest page shift iopt accepts: 4 KiB is the smallest page any POWER
// IOMMU translates.
inline constexpr unsigned min_page_shift = 12;
// The largest page shift iopt accepts: above 2^62 a page and its mask stop
// being useful 64-bit quantities.
inline constexpr unsigned max_page_shift = 62;

// Whether shift lies in [min_page_shift, max_page_shift].
constexpr bool is_valid_page_shift(unsigned shift) noexcept {
  return shift >= min_page_shift && shift <= max_page_shift;
}

// A page-size policy: anything that can tell its page shift. The size and
// mask follow from it.
template <class P>
concept page_size_policy = requires(const P& p) {
  { p.shift() } -> std::same_as<unsigned>;
  { p.size() } -> std::same_as<std::uint64_t>;
  { p.mask() } -> std::same_as<std::uint64_t>;
};

// A page size fixed at compile time, as its shift: page_size<16> is 64 KiB.
// A Shift outside [min_page_shift, max_page_shift] does not compile.
template <unsigned Shift>
struct page_size {
  static_assert(is_valid_page_shift(Shift),
                "page_size<Shift>: Shift must lie in [min_page_shift, max_page_shift]");

  // log2 of the page size in bytes, usable in constant expressions.
  static constexpr unsigned page_shift = Shift;
  // The page size in bytes.
  static constexpr std::uint64_t bytes = std::uint64_t{1} << Shift;
  // The offset bits within a page: bytes - 1.
  static constexpr std::uint64_t offset_mask = bytes - 1;

  // log2 of the page size in bytes (page_size_policy).
  [[nodiscard]] static constexpr unsigned shift() noexcept { return Shift; }
  // The page size in bytes (page_size_policy).
  [[nodiscard]] static constexpr std::uint64_t size() noexcept { return bytes; }
  // The offset bits within a page (page_size_policy).
  [[nodiscard]] static constexpr std::uint64_t mask() noexcept { return offset_mask; }
};

// 4 KiB pages (shift 12).
using page_4k = page_size<12>;
// 64 KiB pages (shift 16).
using page_64k = page_size<16>;
// 2 MiB pages (shift 21).
using page_2m = page_size<21>;
// 16 MiB pages (shift 24).
using page_16m = page_size<24>;
// 256 MiB pages (shift 28).
using page_256m = page_size<28>;
// 1 GiB pages (shift 30).
using page_1g = page_size<30>;
// 16 GiB pages (shift 34).
using page_16g = page_size<34>;

// A page size learnt at run time, as its shift, validated once when made:
// a runtime_page_size always holds a shift in [min_page_shift, max_page_shift].
class runtime_page_size {
public:
  // The only way to make one from a shift: status::unsupported for a shift
  // outside [min_page_shift, max_page_shift].
  [[nodiscard]] static constexpr result<runtime_page_size> make(unsigned shift) noexcept {
    if (!is_valid_page_shift(shift))
      return status::unsupported;
    return runtime_page_size(shift);
  }
  // The same size as a compile-time page_size; implicit, since that size is
  // valid by construction.
  template <unsigned Shift>
  constexpr runtime_page_size(page_size<Shift>) noexcept // NOLINT: implicit widening is safe
      : shift_(Shift) {}
  // 4 KiB (min_page_shift).
  constexpr runtime_page_size() noexcept = default;

  // log2 of the page size in bytes.
  [[nodiscard]] constexpr unsigned shift() const noexcept { return shift_; }
  // The page size in bytes.
  [[nodiscard]] constexpr std::uint64_t size() const noexcept { return std::uint64_t{1} << shift_; }
  // The offset bits within a page: size() - 1.
  [[nodiscard]] constexpr std::uint64_t mask() const noexcept { return size() - 1; }

  // Equal when the shifts are.
  friend constexpr bool operator==(runtime_page_size, runtime_page_size) noexcept = default;

private:
  constexpr explicit runtime_page_size(unsigned shift) noexcept : shift_(shift) {}
  unsigned shift_ = min_page_shift;
};

static_assert(page_size_policy<page_4k>);
static_assert(page_size_policy<runtime_page_size>);

} // namespace iopt
