// Each IOPT_BAD_CONFIG value is a configuration that cannot work; the test
// suite compiles this file once per value and expects the compiler to stop
// with the static_assert message that names the broken requirement.
#include <iopt/format/hardware_tce.hpp>
#include <iopt/table/tce_table.hpp>

#include <array>
#include <cstdint>

namespace {

#if IOPT_BAD_CONFIG == 1 // six levels
struct config {
  using format = iopt::hardware_tce;
  using page_size = iopt::page_4k;
  static constexpr std::array<unsigned, 6> level_bits{4, 4, 4, 4, 4, 4};
};
#elif IOPT_BAD_CONFIG == 2 // a level with no index bits
struct config {
  using format = iopt::hardware_tce;
  using page_size = iopt::page_4k;
  static constexpr std::array<unsigned, 2> level_bits{9, 0};
};
#elif IOPT_BAD_CONFIG == 3 // indexes past 2^63 bytes
struct config {
  using format = iopt::hardware_tce;
  using page_size = iopt::page_16g;
  static constexpr std::array<unsigned, 2> level_bits{16, 16};
};
#elif IOPT_BAD_CONFIG == 4 // not a TCE format
struct config {
  using format = int;
  using page_size = iopt::page_4k;
  static constexpr std::array<unsigned, 1> level_bits{10};
};
#elif IOPT_BAD_CONFIG == 5 // no page size
struct config {
  using format = iopt::hardware_tce;
  static constexpr std::array<unsigned, 1> level_bits{10};
};
#elif IOPT_BAD_CONFIG == 6 // an allocator that is not one
struct config {
  using format = iopt::hardware_tce;
  using page_size = iopt::page_4k;
  static constexpr std::array<unsigned, 1> level_bits{10};
  struct allocator {
    void* allocate(std::size_t) { return nullptr; }
  };
};
#elif IOPT_BAD_CONFIG == 7 // a format whose memory form is neither byte order
struct rotating_format {
  static constexpr std::uint64_t read_bit = 1, write_bit = 2;
  static constexpr std::uint64_t to_memory(std::uint64_t v) noexcept { return v << 8 | v >> 56; }
  static constexpr std::uint64_t from_memory(std::uint64_t m) noexcept { return m >> 8 | m << 56; }
};
struct config {
  using format = rotating_format;
  using page_size = iopt::page_4k;
  static constexpr std::array<unsigned, 1> level_bits{10};
};
#elif IOPT_BAD_CONFIG == 8 // a normalize that moves the target
struct shifting_format {
  static constexpr std::uint64_t read_bit = 1, write_bit = 2;
  static constexpr std::uint64_t to_memory(std::uint64_t v) noexcept { return v; }
  static constexpr std::uint64_t from_memory(std::uint64_t m) noexcept { return m; }
  static constexpr std::uint64_t normalize(std::uint64_t v) noexcept {
    return (v & write_bit) ? (v | read_bit) + 0x1000 : v;
  }
};
struct config {
  using format = shifting_format;
  using page_size = iopt::page_4k;
  static constexpr std::array<unsigned, 1> level_bits{10};
};
#endif

} // namespace

int main() {
  auto t = iopt::tce_table<config>::create(iopt::ioba{0}, std::uint64_t{1} << 22);
  return t.has_value() ? 0 : 1;
}
