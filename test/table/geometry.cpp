// Geometry derived from log2 inputs, and the configurations' contracts.
#include <iopt/configs.hpp>
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

TEST_CASE("slot masks and spans follow from the level bits") {
  CHECK(huge::slot_mask(0) == 0x3fff);
  CHECK(huge::slot_mask(1) == 0x1ff);
  CHECK(huge::slot_span_mask(1) == 0x3fff);
  CHECK(huge::slot_span_mask(2) == (std::uint64_t{1} << 23) - 1);
}
