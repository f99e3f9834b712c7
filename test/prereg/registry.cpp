// The preregistration registry: every status, with the registry, the pins
// and the charge unchanged on failure.
#include "soak.hpp"

#include <iopt/prereg/registry.hpp>
#include <iopt/testing/fault_injecting_allocator.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <map>
#include <random>
#include <vector>

using namespace iopt;

namespace {

constexpr std::uint64_t page = 1 << 16; // the simulated host page: 64 KiB, as on POWER

struct fixture {
  fault_plan plan;
  simulated_backend backend{16};
  counted_accounting accounting{std::uint64_t{1} << 32};
  prereg_registry<simulated_backend, counted_accounting, fault_injecting_allocator> registry{
      backend, accounting, fault_injecting_allocator(plan)};

  struct state {
    std::size_t regions;
    std::uint64_t charged, pinned;
    friend bool operator==(const state&, const state&) = default;
  };
  state now() const {
    return {registry.region_count(), accounting.charged(), backend.pinned_pages()};
  }
};

} // namespace

TEST_CASE("register, look up and unregister") {
  fixture f;
  REQUIRE(f.registry.register_region(ua{0x100000}, 16 * page) == status::ok);
  CHECK(f.accounting.charged() == 16 * page);
  CHECK(f.backend.pinned_pages() == 16);
  const auto info = f.registry.lookup(ua{0x100000 + page}, 2 * page);
  REQUIRE(info);
  CHECK(info->first == ua{0x100000});
  CHECK(info->size == 16 * page);
  CHECK(f.registry.lookup(ua{0x100000 + 15 * page}, 2 * page).error() ==
        status::not_found); // runs past
  CHECK(f.registry.lookup(ua{0x100000 - page}, page).error() == status::not_found);
  REQUIRE(f.registry.unregister_region(ua{0x100000}, 16 * page) == status::ok);
  CHECK(f.now() == fixture::state{0, 0, 0});
}

TEST_CASE("bad registrations change nothing") {
  fixture f;
  REQUIRE(f.registry.register_region(ua{0x400000}, 8 * page) == status::ok);
  const auto before = f.now();
  CHECK(f.registry.register_region(ua{0x400000 + 0x1000}, page) == status::not_aligned);
  CHECK(f.registry.register_region(ua{0x800000}, page + 0x1000) == status::not_aligned);
  CHECK(f.registry.register_region(ua{0x800000}, 0) == status::invalid_parameter);
  CHECK(f.registry.register_region(ua{0 - 2 * page}, 4 * page) == status::wraps);
  CHECK(f.registry.register_region(ua{0x400000}, 8 * page) == status::exists); // the same
  CHECK(f.registry.register_region(ua{0x400000 + 7 * page}, 2 * page) == status::overlaps); // tail
  CHECK(f.registry.register_region(ua{0x400000 - page}, 2 * page) == status::overlaps);     // head
  CHECK(f.registry.register_region(ua{0x300000}, 64 * page) == status::overlaps);   // around
  CHECK(f.registry.register_region(ua{0x400000 + page}, page) == status::overlaps); // inside
  // A limit that the next registration would pass.
  counted_accounting tight(8 * page);
  simulated_backend backend;
  prereg_registry<simulated_backend, counted_accounting> small(backend, tight);
  REQUIRE(small.register_region(ua{0}, 6 * page) == status::ok);
  CHECK(small.register_region(ua{0x1000000}, 3 * page) == status::no_memory);
  CHECK(tight.charged() == 6 * page);
  CHECK(backend.pinned_pages() == 6);
  CHECK(f.now() == before);
  // Adjacent regions are fine.
  CHECK(f.registry.register_region(ua{0x400000 + 8 * page}, page) == status::ok);
  CHECK(f.registry.register_region(ua{0x400000 - page}, page) == status::ok);
}

TEST_CASE("unregister takes only an exact registration") {
  fixture f;
  REQUIRE(f.registry.register_region(ua{0x400000}, 8 * page) == status::ok);
  const auto before = f.now();
  CHECK(f.registry.unregister_region(ua{0x400000}, 4 * page) == status::not_found);
  CHECK(f.registry.unregister_region(ua{0x400000 + page}, 7 * page) == status::not_found);
  CHECK(f.registry.unregister_region(ua{0x900000}, page) == status::not_found);
  CHECK(f.now() == before);
}

TEST_CASE("a region with mappings is busy, stays usable, and leaks nothing") {
  fixture f;
  REQUIRE(f.registry.register_region(ua{0x400000}, 8 * page) == status::ok);
  auto held = f.registry.acquire(ua{0x400000 + page}, page);
  REQUIRE(held);
  CHECK((*held)->mappings() == 1);
  const auto before = f.now();
  CHECK(f.registry.unregister_region(ua{0x400000}, 8 * page) == status::busy);
  CHECK(f.now() == before);
  auto again = f.registry.acquire(ua{0x400000}, 2 * page); // still usable
  REQUIRE(again);
  CHECK((*again)->mappings() == 2);
  f.registry.release(*again);
  f.registry.release(*held);
  CHECK(f.registry.unregister_region(ua{0x400000}, 8 * page) == status::ok);
  CHECK(f.registry.acquire(ua{0x400000}, page).error() == status::not_found);
  CHECK(f.now() == fixture::state{0, 0, 0});
}

TEST_CASE("failing each step of register in turn leaves nothing charged or pinned") {
  fixture f;
  REQUIRE(f.registry.register_region(ua{0x100000}, page) == status::ok);
  const auto before = f.now();
  // Allocation: the region record (the index already has room after the first).
  f.plan.fail_nth(1);
  CHECK(f.registry.register_region(ua{0x800000}, 4 * page) == status::no_memory);
  CHECK(f.now() == before);
  f.plan.never_fail();
  // Accounting: a limit that refuses.
  counted_accounting refusing(0);
  simulated_backend b2;
  prereg_registry<simulated_backend, counted_accounting> r2(b2, refusing);
  CHECK(r2.register_region(ua{0x800000}, 4 * page) == status::no_memory);
  CHECK(b2.pinned_pages() == 0);
  // Pinning.
  f.backend.fail_nth_pin(1);
  CHECK(f.registry.register_region(ua{0x800000}, 4 * page) == status::no_memory);
  CHECK(f.now() == before);
  f.backend.fail_nth_pin(0);
  // Growing the index (the 17th region needs a larger array, and a note that
  // keeps the old one for readers): both allocations can fail. The region
  // record comes from the records freed by the failures above.
  for (std::uint64_t i = 1; i < 16; ++i)
    REQUIRE(f.registry.register_region(ua{0x1000000 + i * 2 * page}, page) == status::ok);
  const auto full = f.now();
  for (std::uint64_t n = 1; n <= 2; ++n) {
    CAPTURE(n);
    f.plan.fail_nth(n);
    CHECK(f.registry.register_region(ua{0x8000000}, page) == status::no_memory);
    CHECK(f.now() == full);
  }
  f.plan.never_fail();
  CHECK(f.registry.register_region(ua{0x8000000}, page) == status::ok);
  CHECK(f.registry.lookup(ua{0x8000000}, page));
  CHECK(f.registry.lookup(ua{0x1000000 + 6 * page}, page));
}

TEST_CASE("the largest IOMMU page a region can back") {
  fixture f;
  // 16 MiB aligned and sized, backed by 16 MiB pages: 16 MiB IOMMU pages.
  f.backend.back_with_huge_pages(ua{0x4000'0000}, 0x400'0000, 24);
  REQUIRE(f.registry.register_region(ua{0x4000'0000}, 0x100'0000) == status::ok);
  CHECK(f.registry.lookup(ua{0x4000'0000}, page)->max_page_shift == 24);
  // Same memory but only 64 KiB aligned in size: 64 KiB.
  REQUIRE(f.registry.register_region(ua{0x4100'0000}, 0x101'0000) == status::ok);
  CHECK(f.registry.lookup(ua{0x4100'0000}, page)->max_page_shift == 16);
  // Aligned to 1 GiB, backed by 64 KiB pages: 64 KiB.
  REQUIRE(f.registry.register_region(ua{0x8000'0000}, 0x4000'0000) == status::ok);
  CHECK(f.registry.lookup(ua{0x8000'0000}, page)->max_page_shift == 16);

  auto held = f.registry.acquire(ua{0x4000'0000}, 0x100'0000);
  REQUIRE(held);
  const auto hpa16m = f.registry.translate(**held, ua{0x4000'0000}, 24);
  REQUIRE(hpa16m);
  CHECK(f.registry.translate(**held, ua{0x4000'0000}, 30).error() == status::unsupported);
  CHECK(f.registry.translate(**held, ua{0x4001'0000}, 24).error() == status::not_aligned);
  f.registry.release(*held);
}

TEST_CASE("many regions: lookups find each one, and only it") {
  fixture f;
  std::vector<std::uint64_t> starts;
  for (std::uint64_t i = 0; i < 300; ++i) {
    const std::uint64_t start = 0x1000'0000 + i * 7 * page;
    starts.push_back(start);
    REQUIRE(f.registry.register_region(ua{start}, (1 + i % 5) * page) == status::ok);
  }
  for (std::uint64_t i = 0; i < 300; ++i) {
    const std::uint64_t size = (1 + i % 5) * page;
    CHECK(f.registry.lookup(ua{starts[i]}, size)->first == ua{starts[i]});
    CHECK(f.registry.lookup(ua{starts[i] + size - page}, page)->first == ua{starts[i]});
    CHECK(f.registry.lookup(ua{starts[i] + size}, page).error() == status::not_found); // the gap
  }
  for (std::uint64_t i = 0; i < 300; i += 2)
    REQUIRE(f.registry.unregister_region(ua{starts[i]}, (1 + i % 5) * page) == status::ok);
  for (std::uint64_t i = 0; i < 300; ++i)
    CHECK(f.registry.lookup(ua{starts[i]}, page).has_value() == (i % 2 == 1));
}

TEST_CASE("lookup agrees with a model of the regions through random churn") {
  // Regions come and go in a space of 512 pages, so index slots keep being
  // reused by other regions and every reader's last-hit slot goes stale.
  // The first 256 pages are backed by 1 MiB pages, so the largest IOMMU page
  // varies with where a region sits and how it is aligned.
  fixture f;
  constexpr std::uint64_t space = 512;
  constexpr std::uint64_t base = 0x7000'0000; // 1 MiB aligned
  constexpr unsigned huge_shift = 20;
  f.backend.back_with_huge_pages(ua{base}, 256 * page, huge_shift);
  std::map<std::uint64_t, std::uint64_t> model; // first page -> pages
  std::mt19937_64 rng(5);
  auto below = [&](std::uint64_t n) { return rng() % n; };
  auto containing = [&](std::uint64_t p) {
    auto it = model.upper_bound(p);
    if (it == model.begin())
      return model.end();
    --it;
    return p < it->first + it->second ? it : model.end();
  };
  auto expected_shift = [&](std::uint64_t first, std::uint64_t pages) {
    const std::uint64_t a = base + first * page, bytes = pages * page;
    const bool huge = first + pages <= 256;
    const auto natural = static_cast<unsigned>(std::countr_zero(a | bytes));
    return std::min(natural, huge ? huge_shift : 16u);
  };
  // An operation is one register, unregister or lookup.
  const std::uint64_t steps = iopt_test::soak_operations(40000);
  std::uint64_t found = 0;
  for (std::uint64_t step = 0; step < steps; ++step) {
    const std::uint64_t p = below(space), n = 1 + below(24);
    switch (below(8)) {
    case 0: { // register, inside the space
      const std::uint64_t pages = std::min(n, space - p);
      bool overlaps = false, same = false;
      for (const auto& [first, size] : model) {
        overlaps = overlaps || (p < first + size && first < p + pages);
        same = same || (p == first && pages == size);
      }
      REQUIRE(f.registry.register_region(ua{base + p * page}, pages * page) ==
              (same       ? status::exists
               : overlaps ? status::overlaps
                          : status::ok));
      if (!overlaps)
        model[p] = pages;
      break;
    }
    case 1: { // unregister, mostly an existing one
      auto it = model.lower_bound(p);
      if (it != model.end() && below(4) != 0) {
        REQUIRE(f.registry.unregister_region(ua{base + it->first * page}, it->second * page) ==
                status::ok);
        model.erase(it);
      } else {
        const bool exact = it != model.end() && it->first == p && it->second == n;
        CHECK(f.registry.unregister_region(ua{base + p * page}, n * page) ==
              (exact ? status::ok : status::not_found));
        if (exact)
          model.erase(it);
      }
      break;
    }
    default: { // look up a range: often the same region again, sometimes an edge
      std::uint64_t first = p, pages = 1 + below(4);
      if (!model.empty() && below(2) == 0) {
        auto it = model.lower_bound(p);
        if (it == model.end())
          it = model.begin();
        first = it->first + below(it->second + 1); // may be one past the end
        pages = 1 + below(it->second);
      }
      const auto got = f.registry.lookup(ua{base + first * page}, pages * page);
      const auto it = containing(first);
      if (it != model.end() && first + pages <= it->first + it->second) {
        REQUIRE(got);
        CHECK(got->first == ua{base + it->first * page});
        CHECK(got->size == it->second * page);
        CHECK(got->max_page_shift == expected_shift(it->first, it->second));
        ++found;
      } else {
        REQUIRE(got.error() == status::not_found);
      }
      // The region's last byte is held; a range one byte longer is not.
      if (it != model.end()) {
        const std::uint64_t end = base + (it->first + it->second) * page;
        CHECK(f.registry.lookup(ua{end - 1}, 1));
        CHECK(f.registry.lookup(ua{end - 1}, 2).error() == status::not_found);
      }
    }
    }
    REQUIRE(f.registry.region_count() == model.size());
  }
  CHECK(found > steps / 8);
  MESSAGE(steps << " operations; " << found << " lookups found their region");
  // Empty and wrapping ranges are never held.
  if (!model.empty()) {
    const std::uint64_t a = base + model.begin()->first * page;
    CHECK(f.registry.lookup(ua{a}, 0).error() == status::not_found);
    CHECK(f.registry.lookup(ua{a}, ~std::uint64_t{0}).error() == status::not_found);
    CHECK(f.registry.lookup(ua{a + page}, ~std::uint64_t{0} - page).error() == status::not_found);
  }
}
