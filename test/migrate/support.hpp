// Helpers of the migration tests: a sink that keeps a stream, a random
// table recorded in the reference model, and a fresh table of the same
// window.
#pragma once

#include "table/support.hpp"

#include <iopt/migrate/table_stream.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>
#include <random>
#include <span>
#include <vector>

namespace iopt_test {

// A sink that keeps the stream.
struct byte_sink {
  std::vector<std::byte> bytes;
  iopt::status operator()(std::span<const std::byte> piece) {
    bytes.insert(bytes.end(), piece.begin(), piece.end());
    return iopt::status::ok;
  }
};

// The little-endian word at index `word` of a stream.
inline std::uint64_t le_word(const std::vector<std::byte>& b, std::size_t word) {
  std::uint64_t w = 0;
  for (std::size_t i = 0; i < 8; ++i)
    w |= std::to_integer<std::uint64_t>(b.at(word * 8 + i)) << (8 * i);
  return w;
}

// Random writes of every kind a table has (runs, scattered pages, holes,
// single pages, raw values, exchanges, fills, unmaps), at the window's
// edges and at every level boundary, each recorded in the model.
template <class Table>
void random_writes(Table& t, reference_model<Table>& model, std::mt19937_64& rng, int operations) {
  using iopt::permission;
  using iopt::status;
  using format = typename Table::format;
  const std::vector<std::uint64_t> edges = boundary_pages(t);
  auto page = [&] { return rng() % 3 == 0 ? edges[rng() % edges.size()] : rng() % t.pages(); };
  auto target = [&] { return (rng() % (std::uint64_t{1} << 20)) << Table::page_shift; };
  auto value = [&](std::uint64_t to, permission perm) {
    return format::normalize(format::make(to, perm));
  };
  const permission perms[] = {permission::read, permission::write, permission::read_write};
  for (int i = 0; i < operations; ++i) {
    const std::uint64_t p = page();
    const permission perm = perms[rng() % 3];
    const std::uint64_t n = std::min<std::uint64_t>(1 + rng() % 700, t.pages() - p);
    switch (rng() % 8) {
    case 0: { // a run
      const std::uint64_t to = target();
      REQUIRE(t.map_range(page_address(t, p), to, n, perm) == status::ok);
      for (std::uint64_t k = 0; k < n; ++k)
        model.set(p + k, value(to + (k << Table::page_shift), perm));
      break;
    }
    case 1: { // scattered pages, some of them consecutive by chance
      std::vector<std::uint64_t> targets;
      std::uint64_t to = target();
      for (std::uint64_t k = 0; k < n; ++k) {
        to = rng() % 4 == 0 ? to + Table::page_bytes : target();
        targets.push_back(to);
      }
      REQUIRE(t.map_list(page_address(t, p), targets, perm) == status::ok);
      for (std::uint64_t k = 0; k < n; ++k)
        model.set(p + k, value(targets[k], perm));
      break;
    }
    case 2: // a hole
      REQUIRE(t.clear(page_address(t, p), std::min<std::uint64_t>(n, 40)) == status::ok);
      model.clear(p, std::min<std::uint64_t>(n, 40));
      break;
    case 3: { // one page
      const std::uint64_t to = target();
      REQUIRE(t.map(page_address(t, p), to, perm) == status::ok);
      model.set(p, value(to, perm));
      break;
    }
    case 4: { // a raw value, or a raw 0
      const std::uint64_t v = rng() % 2 == 0 ? 0 : value(target(), perm);
      REQUIRE(t.put(page_address(t, p), v) == status::ok);
      if (v == 0)
        model.clear(p, 1);
      else
        model.set(p, v);
      break;
    }
    case 5: { // an exchange
      const std::uint64_t v = value(target(), perm);
      const auto old = t.xchg(page_address(t, p), v);
      REQUIRE(old);
      CHECK(*old == model.get(p));
      model.set(p, v);
      break;
    }
    case 6: { // one value in every page of a stretch
      const std::uint64_t v = value(target(), perm);
      REQUIRE(t.fill(page_address(t, p), n, v) == status::ok);
      for (std::uint64_t k = 0; k < n; ++k)
        model.set(p + k, v);
      break;
    }
    default: { // an unmap, of a page mapped or not
      const status s = t.unmap(page_address(t, p));
      CHECK(s == (model.get(p) != 0 ? status::ok : status::not_found));
      model.clear(p, 1);
      break;
    }
    }
  }
}

// A random table (random_writes from an empty one) for `seed`.
template <class Table>
void fill_randomly(Table& t, reference_model<Table>& model, std::uint64_t seed, int operations) {
  std::mt19937_64 rng(seed);
  random_writes(t, model, rng, operations);
}

template <class Table>
Table empty_like(const Table& t) {
  auto made = Table::create(t.window().first(), t.window().size());
  REQUIRE(made);
  return std::move(made).value();
}

template <class Table>
std::vector<std::byte> stream_of(const Table& t) {
  byte_sink sink;
  REQUIRE(iopt::snapshot(t, sink) == iopt::status::ok);
  return std::move(sink.bytes);
}

} // namespace iopt_test
