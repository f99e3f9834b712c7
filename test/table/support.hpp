// Shared by the table tests: the configurations every conformance suite runs
// for, a window for each, a reference model and whole-state snapshots.
#pragma once

#include "table/model_runs.hpp"

#include <doctest/doctest.h>

#include <iopt/configs.hpp>
#include <iopt/format/guest_tce.hpp>
#include <iopt/table/tce_table.hpp>
#include <iopt/testing/fault_injecting_allocator.hpp>

#include <array>
#include <cstdint>
#include <map>
#include <vector>

namespace iopt_test {

// A guest-visible table: native-endian entries kept verbatim.
struct config_guest_4k {
  using format = iopt::guest_tce;
  using page_size = iopt::page_4k;
  static constexpr std::array<unsigned, 2> level_bits{9, 11};
};

// Small blocks and four levels: every level boundary is a few pages away, and
// clears give empty blocks back.
struct config_small_blocks {
  using format = iopt::hardware_tce;
  using page_size = iopt::page_4k;
  static constexpr std::array<unsigned, 4> level_bits{3, 2, 2, 6};
  static constexpr bool free_empty_levels = true;
  using allocator = iopt::fault_injecting_allocator;
};

// The window each configuration is tested with: large enough for several
// blocks at every level.
template <class Config>
struct test_window {
  static constexpr std::uint64_t offset = 0;
  static constexpr std::uint64_t bytes = std::uint64_t{1} << 30;
};
template <>
struct test_window<iopt::config_64k> {
  static constexpr std::uint64_t offset = std::uint64_t{1} << 40;
  static constexpr std::uint64_t bytes = std::uint64_t{1} << 32; // 8 leaf blocks
};
template <>
struct test_window<iopt::config_huge_window> {
  static constexpr std::uint64_t offset = iopt::huge_window_bus_offset;
  static constexpr std::uint64_t bytes = std::uint64_t{1} << 47; // 128 TiB
};
template <>
struct test_window<iopt::config_16m> {
  static constexpr std::uint64_t offset = 0;
  static constexpr std::uint64_t bytes = std::uint64_t{1} << 50; // top level of 4 entries
};
template <>
struct test_window<iopt::config_16m_flat> {
  static constexpr std::uint64_t offset = 0;
  static constexpr std::uint64_t bytes = std::uint64_t{1} << 38; // 256 GiB: 16384 entries, flat
};
template <>
struct test_window<config_guest_4k> {
  static constexpr std::uint64_t offset = std::uint64_t{1} << 32;
  static constexpr std::uint64_t bytes = std::uint64_t{1} << 31; // top of 256 entries
};
template <>
struct test_window<config_small_blocks> {
  static constexpr std::uint64_t offset = 0x1000'0000;
  static constexpr std::uint64_t bytes = std::uint64_t{1} << 24; // 2^12 pages, top of 32
};

template <class Config>
iopt::tce_table<Config> make_table() {
  auto made = iopt::tce_table<Config>::create(iopt::ioba{test_window<Config>::offset},
                                              test_window<Config>::bytes);
  REQUIRE(made.has_value());
  return std::move(made).value();
}

template <class Table>
iopt::ioba page_address(const Table& t, std::uint64_t page) {
  return t.window().first() + (page << Table::page_shift);
}

// Page indices worth testing: the window's ends and both sides of every
// block boundary of every level.
template <class Table>
std::vector<std::uint64_t> boundary_pages(const Table& t) {
  using geometry = iopt::table_geometry<typename Table::config_type>;
  std::vector<std::uint64_t> pages{0, 1, t.pages() - 2, t.pages() - 1};
  for (unsigned level = 1; level < geometry::levels; ++level) {
    const std::uint64_t span = std::uint64_t{1} << geometry::index_shift(level);
    for (std::uint64_t edge : {span, 2 * span, t.pages() / 2, t.pages() - span})
      if (edge >= 1 && edge < t.pages())
        for (std::uint64_t p : {edge - 1, edge})
          pages.push_back(p);
  }
  return pages;
}

// Everything observable about a table: its runs and the memory it holds.
struct snapshot {
  std::vector<iopt::mapped_run> runs;
  std::size_t memory_bytes = 0;
  friend bool operator==(const snapshot&, const snapshot&) = default;
};
template <class Table>
snapshot take_snapshot(const Table& t) {
  snapshot s;
  for (const iopt::mapped_run& r : t.mappings())
    s.runs.push_back(r);
  s.memory_bytes = t.memory_bytes();
  return s;
}

// The reference model: page index -> TCE value, nothing else.
template <class Table>
class reference_model {
public:
  using format = typename Table::format;
  static constexpr std::uint64_t page_bytes = Table::page_bytes;

  explicit reference_model(const Table& t) : offset_(t.window().first().value()) {}

  void set(std::uint64_t page, std::uint64_t value) {
    if (value == 0)
      entries_.erase(page);
    else
      entries_[page] = value;
  }
  std::uint64_t get(std::uint64_t page) const {
    const auto it = entries_.find(page);
    return it == entries_.end() ? 0 : it->second;
  }
  void clear(std::uint64_t first, std::uint64_t pages) {
    entries_.erase(entries_.lower_bound(first), entries_.upper_bound(first + pages - 1));
  }

  std::vector<iopt::mapped_run> runs() const { return model_runs<Table>(entries_, offset_); }
  std::size_t size() const { return entries_.size(); }

private:
  std::uint64_t offset_;
  std::map<std::uint64_t, std::uint64_t> entries_;
};

} // namespace iopt_test

// Every conformance suite runs for these: the named configurations
// (configs.hpp), then the test's own.
#define IOPT_TEST_CONFIG_ITEM(config) iopt::config,
#define IOPT_TEST_CONFIGS                                                                          \
  IOPT_NAMED_CONFIGS(IOPT_TEST_CONFIG_ITEM)                                                        \
  iopt_test::config_guest_4k, iopt_test::config_small_blocks
