#include <iopt/format/example_format.hpp>
#include <iopt/format/guest_tce.hpp>
#include <iopt/format/hardware_tce.hpp>
#include <iopt/format/tce_format.hpp>

#include <doctest/doctest.h>

#include <cstdint>

using iopt::tce_format;

static_assert(tce_format<iopt::hardware_tce>);
static_assert(tce_format<iopt::guest_tce>);
static_assert(tce_format<iopt::example_format>);

namespace bad {
struct missing_write {
  static constexpr std::uint64_t read_bit = 1;
  static constexpr std::uint64_t to_memory(std::uint64_t v) noexcept { return v; }
  static constexpr std::uint64_t from_memory(std::uint64_t v) noexcept { return v; }
};
struct same_bits {
  static constexpr std::uint64_t read_bit = 1;
  static constexpr std::uint64_t write_bit = 1;
  static constexpr std::uint64_t to_memory(std::uint64_t v) noexcept { return v; }
  static constexpr std::uint64_t from_memory(std::uint64_t v) noexcept { return v; }
};
struct two_bit_read {
  static constexpr std::uint64_t read_bit = 3;
  static constexpr std::uint64_t write_bit = 4;
  static constexpr std::uint64_t to_memory(std::uint64_t v) noexcept { return v; }
  static constexpr std::uint64_t from_memory(std::uint64_t v) noexcept { return v; }
};
struct bit_above_smallest_page {
  static constexpr std::uint64_t read_bit = 1;
  static constexpr std::uint64_t write_bit = 0x1000;
  static constexpr std::uint64_t to_memory(std::uint64_t v) noexcept { return v; }
  static constexpr std::uint64_t from_memory(std::uint64_t v) noexcept { return v; }
};
struct throwing_conversion {
  static constexpr std::uint64_t read_bit = 1;
  static constexpr std::uint64_t write_bit = 2;
  static std::uint64_t to_memory(std::uint64_t v) { return v; } // not noexcept
  static constexpr std::uint64_t from_memory(std::uint64_t v) noexcept { return v; }
};
struct no_from_memory {
  static constexpr std::uint64_t read_bit = 1;
  static constexpr std::uint64_t write_bit = 2;
  static constexpr std::uint64_t to_memory(std::uint64_t v) noexcept { return v; }
};
struct narrow_conversion {
  static constexpr std::uint64_t read_bit = 1;
  static constexpr std::uint64_t write_bit = 2;
  static constexpr std::uint32_t to_memory(std::uint64_t v) noexcept {
    return static_cast<std::uint32_t>(v);
  }
  static constexpr std::uint64_t from_memory(std::uint64_t v) noexcept { return v; }
};
} // namespace bad

static_assert(!tce_format<bad::missing_write>);
static_assert(!tce_format<bad::same_bits>);
static_assert(!tce_format<bad::two_bit_read>);
static_assert(!tce_format<bad::bit_above_smallest_page>);
static_assert(!tce_format<bad::throwing_conversion>);
static_assert(!tce_format<bad::no_from_memory>);
static_assert(!tce_format<bad::narrow_conversion>);
static_assert(!tce_format<int>);

TEST_CASE("format concept membership is decided at compile time") {
  CHECK(tce_format<iopt::hardware_tce>);
  CHECK_FALSE(tce_format<bad::same_bits>);
}
