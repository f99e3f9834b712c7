// The runs of a reference model of a table (page index -> TCE value), as
// the table must report them: the present entries, cut into chunks of
// neighbours, each page joining the one before it when it is the next page
// and its value the next target with the same permissions (and the target
// does not wrap past 2^64).
#pragma once

#include <iopt/table/mappings.hpp>

#include <range/v3/range/conversion.hpp>
#include <range/v3/view/chunk_by.hpp>
#include <range/v3/view/filter.hpp>
#include <range/v3/view/transform.hpp>

#include <cstdint>
#include <map>
#include <vector>

namespace iopt_test {

template <class Table>
std::vector<iopt::mapped_run> model_runs(const std::map<std::uint64_t, std::uint64_t>& entries,
                                         std::uint64_t window_start) {
  using format = typename Table::format;
  constexpr unsigned shift = Table::page_shift;
  constexpr std::uint64_t page_bytes = Table::page_bytes;
  using entry = std::pair<const std::uint64_t, std::uint64_t>;
  auto follows = [](const entry& before, const entry& after) {
    return after.first == before.first + 1 &&
           format::target(before.second, shift) <= UINT64_MAX - page_bytes &&
           after.second == before.second + page_bytes;
  };
  auto to_run = [&](auto chunk) {
    const entry& head = *ranges::begin(chunk);
    return iopt::mapped_run{
        iopt::ioba{window_start + (head.first << shift)}, format::target(head.second, shift),
        static_cast<std::uint64_t>(ranges::distance(chunk)), format::permissions(head.second)};
  };
  return entries |
         ranges::views::filter([](const entry& e) { return format::is_present(e.second); }) |
         ranges::views::chunk_by(follows) | ranges::views::transform(to_run) |
         ranges::to<std::vector>();
}

} // namespace iopt_test
