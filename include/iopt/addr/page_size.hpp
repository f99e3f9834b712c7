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

// The smallest and largest page shifts iopt accepts: 4 KiB is the smallest
// page any POWER IOMMU translates; above 2^62 a page and its mask stop being
// useful 64-bit quantities.
inline constexpr unsigned min_page_shift = 12;
inline constexpr unsigned max_page_shift = 62;

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

template <unsigned Shift>
struct page_size {
  static_assert(is_valid_page_shift(Shift),
                "page_size<Shift>: Shift must lie in [min_page_shift, max_page_shift]");

  static constexpr unsigned page_shift = Shift;
  static constexpr std::uint64_t bytes = std::uint64_t{1} << Shift;
  static constexpr std::uint64_t offset_mask = bytes - 1;

  [[nodiscard]] static constexpr unsigned shift() noexcept { return Shift; }
  [[nodiscard]] static constexpr std::uint64_t size() noexcept { return bytes; }
  [[nodiscard]] static constexpr std::uint64_t mask() noexcept { return offset_mask; }
};

using page_4k = page_size<12>;
using page_64k = page_size<16>;
using page_2m = page_size<21>;
using page_16m = page_size<24>;
using page_256m = page_size<28>;
using page_1g = page_size<30>;
using page_16g = page_size<34>;

class runtime_page_size {
public:
  // The only way to make one: refuses a shift outside the supported range.
  [[nodiscard]] static constexpr result<runtime_page_size> make(unsigned shift) noexcept {
    if (!is_valid_page_shift(shift))
      return status::unsupported;
    return runtime_page_size(shift);
  }
  template <unsigned Shift>
  constexpr runtime_page_size(page_size<Shift>) noexcept // NOLINT: implicit widening is safe
      : shift_(Shift) {}
  constexpr runtime_page_size() noexcept = default; // 4 KiB

  [[nodiscard]] constexpr unsigned shift() const noexcept { return shift_; }
  [[nodiscard]] constexpr std::uint64_t size() const noexcept { return std::uint64_t{1} << shift_; }
  [[nodiscard]] constexpr std::uint64_t mask() const noexcept { return size() - 1; }

  friend constexpr bool operator==(runtime_page_size, runtime_page_size) noexcept = default;

private:
  constexpr explicit runtime_page_size(unsigned shift) noexcept : shift_(shift) {}
  unsigned shift_ = min_page_shift;
};

static_assert(page_size_policy<page_4k>);
static_assert(page_size_policy<runtime_page_size>);

} // namespace iopt
