// Geometry derived from log2 inputs, and the configurations' contracts.
#include <iopt/configs.hpp>
#include <iopt/format/example_format.hpp>
#include <iopt/table/example_config.hpp>
#include <iopt/table/geometry.hpp>

#include <doctest/doctest.h>

using namespace iopt;

using huge = table_geometry<config_huge_window>;
static_assert(huge::levels == 3 && huge::top == 2);
static_assert(huge::page_shift == 16);
static_assert(huge::index_shift(0) == 0 && huge::index_shift(1) == 14 &&
              huge::index_shift(2) == 23);
static_assert(huge::block_bytes(0) == 128 * 1024 && huge::block_bytes(1) == 4096);
static_assert(huge::max_entries_bits == 36 && huge::max_window_shift == 52);
// A 128 TiB window (2^31 pages) has a top level of 2^8 entries: 2 KiB.
static_assert(huge::top_bits(31) == 8);
static_assert(huge::hardware_index_bits(31) + huge::page_shift < hardware_index_limit_bits);
// A window smaller than what the lower levels index keeps a one-entry top.
static_assert(huge::top_bits(10) == 0 && huge::hardware_index_bits(10) == 23);

using flat = table_geometry<config_4k>;
static_assert(flat::levels == 1 && flat::max_window_shift == 32); // 4 GiB of 4 KiB pages
static_assert(flat::top_bits(18) == 18);                          // 1 GiB: 2^18 entries

using two = table_geometry<config_64k>;
static_assert(two::max_window_shift == 42 && !table_traits<config_64k>::levels_on_demand);

using sixteen = table_geometry<config_16m>;
static_assert(sixteen::max_window_shift == 54 && sixteen::page_shift == 24);

static_assert(table_traits<config_huge_window>::levels_on_demand);
static_assert(std::is_same_v<table_traits<config_huge_window>::allocator, heap_allocator>);
static_assert(!table_traits<config_huge_window>::free_empty_levels);

// Every named configuration, its guest-format twin and the documented
// example satisfy the concept; broken ones do not.
static_assert(table_config<config_4k> && table_config<config_64k> &&
              table_config<config_huge_window> && table_config<config_16m> &&
              table_config<config_16m_flat>);
static_assert(table_config<config_4k_guest> && table_config<config_64k_guest> &&
              table_config<config_huge_window_guest> && table_config<config_16m_guest> &&
              table_config<config_16m_flat_guest>);
static_assert(table_config<example_config>);
static_assert(std::is_same_v<table_traits<config_huge_window_guest>::format, guest_tce> &&
              !table_traits<config_huge_window_guest>::hardware_index_limit);
static_assert(table_geometry<config_huge_window_guest>::max_window_shift == huge::max_window_shift);
static_assert(tce_format<example_format>);

namespace concept_checks {
struct no_levels {
  using format = hardware_tce;
  using page_size = page_4k;
};
struct six_levels : config_4k {
  static constexpr std::array<unsigned, 6> level_bits{4, 4, 4, 4, 4, 4};
};
struct empty_level : config_4k {
  static constexpr std::array<unsigned, 2> level_bits{9, 0};
};
struct past_2_63 : config_16m {
  using page_size = page_16g;
  static constexpr std::array<unsigned, 2> level_bits{16, 16};
};
struct rotating_format {
  static constexpr std::uint64_t read_bit = 1, write_bit = 2;
  static constexpr std::uint64_t to_memory(std::uint64_t v) noexcept { return v << 8 | v >> 56; }
  static constexpr std::uint64_t from_memory(std::uint64_t m) noexcept { return m >> 8 | m << 56; }
};
struct runtime_format {
  static constexpr std::uint64_t read_bit = 1, write_bit = 2;
  static std::uint64_t to_memory(std::uint64_t v) noexcept { return v; }
  static std::uint64_t from_memory(std::uint64_t m) noexcept { return m; }
};
struct with_rotating_format : config_4k {
  using format = rotating_format;
};
static_assert(!table_config<no_levels> && !table_config<six_levels> && !table_config<empty_level> &&
              !table_config<past_2_63> && !table_config<with_rotating_format>);
static_assert(!tce_format<rotating_format> && !tce_format<runtime_format>);
} // namespace concept_checks

TEST_CASE("slot masks and spans follow from the level bits") {
  CHECK(huge::slot_mask(0) == 0x3fff);
  CHECK(huge::slot_mask(1) == 0x1ff);
  CHECK(huge::slot_span_mask(1) == 0x3fff);
  CHECK(huge::slot_span_mask(2) == (std::uint64_t{1} << 23) - 1);
}
