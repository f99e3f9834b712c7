// Lock-free readers against a writer that keeps registering and
// unregistering: readers always get a correct region or a clean not_found,
// and a region they hold cannot be unregistered under them. Two readers, so
// that the last-hit slot both of them write is raced as well.
#include "soak.hpp"

#include <iopt/prereg/registry.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <thread>

using namespace iopt;

TEST_CASE("readers and a churning writer") {
  constexpr std::uint64_t page = 1 << 16;
  // An operation is a writer's round or a reader's lookup. CI's run is at
  // least 3000 rounds and 20000 lookups in each reader; the soak asks for
  // IOPT_SOAK_OPERATIONS in all and gets that run, scaled up whole.
  constexpr std::uint64_t ci_rounds = 3000, ci_lookups = 20000;
  const std::uint64_t scale = iopt_test::share_of(
      iopt_test::soak_operations(ci_rounds + 2 * ci_lookups), ci_rounds + 2 * ci_lookups);
  const std::uint64_t rounds = scale * ci_rounds, least_lookups = scale * ci_lookups;
  std::uint64_t reads = 0, looks = 0;
  simulated_backend backend{16};
  unlimited_accounting accounting;
  std::atomic<std::uint64_t> wrong{0}, held_ok{0};
  {
    prereg_registry<simulated_backend, unlimited_accounting> registry(backend, accounting);
    // Stable regions the reader uses, at even slots; the writer churns odd slots.
    for (std::uint64_t i = 0; i < 64; i += 2)
      REQUIRE(registry.register_region(ua{i * 16 * page}, 8 * page) == status::ok);
    std::atomic<bool> stop{false};
    std::thread writer([&] {
      for (std::uint64_t round = 0; round < rounds; ++round) {
        const std::uint64_t slot = 1 + 2 * (round % 32);
        const ua at{slot * 16 * page};
        if (registry.register_region(at, 4 * page) == status::ok) {
          const auto churn = registry.acquire(at, page);
          if (churn) {
            if (registry.unregister_region(at, 4 * page) != status::busy)
              wrong.fetch_add(1);
            registry.release(*churn);
          }
          if (registry.unregister_region(at, 4 * page) != status::ok)
            wrong.fetch_add(1);
        }
      }
      stop = true;
    });
    std::thread reader([&] {
      std::uint64_t& i = reads;
      while (!stop.load() || i < least_lookups) {
        const std::uint64_t slot = (i++ % 32) * 2;
        const ua at{slot * 16 * page + page};
        auto held = registry.acquire(at, 2 * page);
        if (!held || (*held)->first() != ua{slot * 16 * page} || (*held)->size() != 8 * page) {
          wrong.fetch_add(1);
          continue;
        }
        held_ok.fetch_add(1);
        registry.release(*held);
        const auto odd = registry.lookup(ua{(slot + 1) * 16 * page}, page);
        if (odd && odd->size != 4 * page)
          wrong.fetch_add(1);
      }
    });
    // A second reader that only looks up, jumping between regions, so that
    // both readers keep replacing the last-hit slot while the writer shifts
    // the index under them.
    std::thread looker([&] {
      std::uint64_t& i = looks;
      while (!stop.load() || i < least_lookups) {
        const std::uint64_t slot = ((i++ * 7) % 32) * 2;
        const auto got = registry.lookup(ua{slot * 16 * page + 7 * page}, page);
        if (!got || got->first != ua{slot * 16 * page} || got->size != 8 * page ||
            got->max_page_shift != 16)
          wrong.fetch_add(1);
      }
    });
    writer.join();
    reader.join();
    looker.join();
    CHECK(registry.region_count() == 32);
  }
  CHECK(wrong.load() == 0);
  CHECK(held_ok.load() > 0);
  CHECK(accounting.charged() == 0);
  CHECK(backend.pinned_pages() == 0);
  MESSAGE((rounds + reads + looks) << " operations: " << rounds << " writer rounds, " << reads
                                   << " and " << looks << " reader lookups");
}
