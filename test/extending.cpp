// "Extending iopt" in the README: a new format and a new configuration, each
// in one short file cut out of the README, work with the whole table.
#include "my_config.hpp"

#include <iopt/table/tce_table.hpp>

#include <doctest/doctest.h>

#include <bit>
#include <cstring>
#include <vector>

using namespace iopt;

TEST_CASE("a format and a configuration from the README map, list and read back") {
  using table_type = tce_table<my_config>;
  static_assert(table_type::page_shift == 12 && table_type::levels == 2);
  static_assert(!table_type::format::memory_swaps_bytes ||
                std::endian::native != std::endian::little);
  auto made = table_type::create(ioba{0}, std::uint64_t{1} << 33); // 8 GiB: 2^21 pages
  REQUIRE(made);
  table_type& t = *made;
  const std::size_t empty = t.memory_bytes();

  REQUIRE(t.map_range(ioba{0x10'0000}, 0x8000'0000, 1024, permission::read_write) == status::ok);
  CHECK(t.memory_bytes() > empty); // a leaf came on demand
  CHECK(t.translate(ioba{0x10'0123})->target == 0x8000'0123);
  CHECK(t.translate(ioba{0x10'0123})->perm == permission::read_write);
  CHECK(*t.get(ioba{0x10'1000}) == (0x8000'1000 | 0x3));
  // Targets past the 48 address bits are refused, and change nothing.
  CHECK(t.map(ioba{0x20'0000}, std::uint64_t{1} << 48, permission::read) == status::bad_permission);
  std::vector<std::uint64_t> list(16);
  for (std::size_t i = 0; i < list.size(); ++i)
    list[i] = (0x9000'0000 + (i << 12)) | 0x1;
  REQUIRE(t.put_list(ioba{0x80'0000}, list) == status::ok);

  std::vector<mapped_run> runs;
  t.for_each_run([&](const mapped_run& r) { runs.push_back(r); });
  REQUIRE(runs.size() == 2);
  CHECK(runs[0] == mapped_run{ioba{0x10'0000}, 0x8000'0000, 1024, permission::read_write});
  CHECK(runs[1] == mapped_run{ioba{0x80'0000}, 0x9000'0000, 16, permission::read});
  REQUIRE(t.clear(t.window().first(), t.pages()) == status::ok);
  CHECK(t.mappings().empty());
}
