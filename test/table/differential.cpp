// Random operation sequences against a std::map reference model, for every
// configuration: every status, every translation of a touched page, and the
// full list of mapped runs are compared as the sequence runs. An operation is
// one step of a sequence; the soak runs IOPT_SOAK_OPERATIONS of them for each
// configuration.
#include "soak.hpp"
#include "table/support.hpp"

#include <doctest/doctest.h>

#include <random>

using namespace iopt;
using namespace iopt_test;

namespace {

constexpr std::uint64_t ci_operations_per_config = 100'000;
constexpr std::uint64_t full_compare_every = 2'000;

template <class Table>
class random_pages {
public:
  random_pages(const Table& t, std::uint64_t seed)
      : rng_(seed), pages_(t.pages()), edges_(boundary_pages(t)) {}

  // Mostly near block boundaries and the window's ends, where bugs live.
  std::uint64_t page() {
    const auto pick = next(4);
    if (pick == 0)
      return next(pages_);
    const std::uint64_t edge = edges_[next(edges_.size())];
    const std::uint64_t jitter = next(9);
    return std::min(pages_ - 1, edge + jitter >= 4 ? edge + jitter - 4 : 0);
  }
  std::uint64_t length(std::uint64_t limit) {
    const std::uint64_t n = next(6) == 0 ? 1 + next(1024) : 1 + next(24);
    return std::min(n, limit);
  }
  std::uint64_t next(std::uint64_t bound) {
    return std::uniform_int_distribution<std::uint64_t>(0, bound - 1)(rng_);
  }

private:
  std::mt19937_64 rng_;
  std::uint64_t pages_;
  std::vector<std::uint64_t> edges_;
};

permission any_permission(std::uint64_t r) {
  return r == 0 ? permission::read : r == 1 ? permission::write : permission::read_write;
}

// One sequence of `operations` steps from an empty table; gives the number of
// entries set at its end.
template <class Config>
std::size_t random_sequence(std::uint64_t seed, std::uint64_t operations) {
  using table_type = tce_table<Config>;
  using format = typename table_type::format;
  constexpr std::uint64_t page = table_type::page_bytes;
  auto t = make_table<Config>();
  reference_model<table_type> model(t);
  random_pages<table_type> random(t, seed);

  auto check_page = [&](std::uint64_t p) {
    const std::uint64_t expected = model.get(p);
    const ioba at = page_address(t, p);
    REQUIRE(*t.get(at) == expected);
    const auto tr = t.translate(at + (page - 1));
    if (format::is_present(expected)) {
      REQUIRE(tr);
      CHECK(tr->target == format::target(expected, table_type::page_shift) + page - 1);
      CHECK(tr->perm == format::permissions(expected));
    } else {
      CHECK(tr.error() == status::not_found);
    }
  };

  for (std::uint64_t step = 0; step < operations; ++step) {
    CAPTURE(step);
    const std::uint64_t p = random.page();
    const ioba at = page_address(t, p);
    const std::uint64_t target =
        (random.next(1u << 20) + (random.next(2) ? 0 : UINT64_MAX / page - (1u << 20))) * page;
    const permission perm = any_permission(random.next(3));
    switch (random.next(10)) {
    case 0:
    case 1: {
      REQUIRE(t.map(at, target, perm) == status::ok);
      model.set(p, format::make(target, perm));
      break;
    }
    case 2: {
      const std::uint64_t n = random.length(t.pages() - p + 1); // may run one page past the end
      const status s = t.map_range(at, target, n, perm);
      if (p + n > t.pages()) {
        REQUIRE(s == status::out_of_window);
      } else if (n - 1 > (UINT64_MAX - target) / page) {
        REQUIRE(s == status::wraps);
      } else {
        REQUIRE(s == status::ok);
        for (std::uint64_t i = 0; i < n; ++i)
          model.set(p + i, format::make(target + i * page, perm));
        check_page(p + n - 1);
      }
      break;
    }
    case 3: {
      const status s = t.unmap(at);
      REQUIRE(s == (format::is_present(model.get(p)) ? status::ok : status::not_found));
      if (s == status::ok)
        model.set(p, 0);
      break;
    }
    case 4: {
      const std::uint64_t n = random.length(t.pages() - p + 1);
      const status s = t.clear(at, n);
      REQUIRE(s == (p + n > t.pages() ? status::out_of_window : status::ok));
      if (s == status::ok) {
        model.clear(p, n);
        check_page(p + n - 1);
      }
      break;
    }
    case 5: {
      const std::uint64_t value = random.next(4) == 0 ? 0 : target | random.next(4);
      REQUIRE(t.put(at, value) == status::ok);
      model.set(p, format::normalize(value));
      break;
    }
    case 6: {
      const std::uint64_t value = random.next(4) == 0 ? 0 : target | random.next(4);
      const auto old = t.xchg(at, value);
      REQUIRE(old);
      CHECK(*old == model.get(p));
      model.set(p, format::normalize(value));
      break;
    }
    case 7: {
      const std::uint64_t n = random.length(std::min<std::uint64_t>(t.pages() - p + 1, 512));
      std::vector<std::uint64_t> list(n);
      for (std::uint64_t i = 0; i < n; ++i)
        list[i] = random.next(5) == 0 ? 0 : (random.next(1u << 20) * page) | random.next(4);
      const status s = t.put_list(at, list);
      if (p + n > t.pages()) {
        REQUIRE(s == status::out_of_window);
      } else {
        REQUIRE(s == status::ok);
        for (std::uint64_t i = 0; i < n; ++i)
          model.set(p + i, format::normalize(list[i]));
        check_page(p + n - 1);
      }
      break;
    }
    case 8: {
      const std::uint64_t n = random.length(t.pages() - p + 1);
      const std::uint64_t value = random.next(2) == 0 ? 0 : target | random.next(4);
      const status s = t.fill(at, n, value);
      if (p + n > t.pages()) {
        REQUIRE(s == status::out_of_window);
      } else {
        REQUIRE(s == status::ok);
        for (std::uint64_t i = 0; i < n; ++i)
          model.set(p + i, format::normalize(value));
        check_page(p + n - 1);
      }
      break;
    }
    default: // a read anywhere
      check_page(random.next(t.pages()));
      break;
    }
    check_page(p);
    if (step % full_compare_every == 0 || step == operations - 1) {
      const std::vector<mapped_run> expected = model.runs();
      REQUIRE(take_snapshot(t).runs == expected);
      std::uint64_t via_visitor = 0;
      t.for_each_run([&](const mapped_run&) { ++via_visitor; });
      REQUIRE(via_visitor == expected.size());
    }
  }
  return model.size();
}

} // namespace

TEST_CASE_TEMPLATE("random operations agree with the reference model", Config, IOPT_TEST_CONFIGS) {
  using table_type = tce_table<Config>;
  // Past CI's count (in the soak) a new sequence, with a new seed, starts on
  // an empty table every `ci_operations_per_config` steps: one long sequence
  // would fill the huge windows with gigabytes of entries and make every full
  // compare slower than the one before.
  const std::uint64_t operations = soak_operations(ci_operations_per_config);
  const std::uint64_t seed = 0x10ba'5eed + table_type::page_shift * 7 + table_type::levels;
  std::uint64_t sequences = 0;
  std::size_t entries = 0;
  for (std::uint64_t done = 0; done < operations; done += ci_operations_per_config) {
    CAPTURE(sequences);
    entries = random_sequence<Config>(seed + (sequences << 32),
                                      std::min(ci_operations_per_config, operations - done));
    ++sequences;
  }
  MESSAGE(operations << " operations, in sequences of at most " << ci_operations_per_config << "; "
                     << entries << " entries set at the end of the last");
}
