// Fuzz target: the preregistration registry with v2 pinning, against a model
// of regions and their mapping counts; pins and charges must always equal
// what the model says is registered.
#include "fuzz_support.hpp"

#include "../prereg/support.hpp"
#include <iopt/prereg/pinning.hpp>
#include <iopt/testing/fault_injecting_allocator.hpp>

#include <map>

namespace {
using namespace iopt;
constexpr std::uint64_t page = 1 << 16;
struct region_model {
  std::uint64_t size;
  std::uint64_t mappings;
};
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  iopt_fuzz::byte_reader in(data, size);
  fault_plan plan;
  simulated_backend backend{16};
  counted_accounting accounting(256 * page);
  prereg_registry<simulated_backend, counted_accounting, fault_injecting_allocator> registry(
      backend, accounting, fault_injecting_allocator(plan));
  preregistered<decltype(registry)> strategy(registry);
  std::map<std::uint64_t, region_model> model;   // first page -> region
  std::map<std::uint64_t, std::uint64_t> mapped; // page -> how many times mapped

  auto containing = [&](std::uint64_t p) -> std::map<std::uint64_t, region_model>::iterator {
    auto it = model.upper_bound(p);
    if (it == model.begin())
      return model.end();
    --it;
    return p < it->first + it->second.size ? it : model.end();
  };
  for (int step = 0; !in.done() && step < 3000; ++step) {
    const std::uint8_t op = in.byte();
    const std::uint64_t p = in.byte() % 128;
    const std::uint64_t n = 1 + in.byte() % 16;
    if ((op & 0xf0) == 0xf0)
      plan.fail_nth(1);
    switch (op % 4) {
    case 0: {
      const status s = registry.register_region(ua{p * page}, n * page);
      bool overlaps = false, same = false;
      for (const auto& [first, r] : model) {
        overlaps = overlaps || (p < first + r.size && first < p + n);
        same = same || (p == first && n == r.size);
      }
      std::uint64_t charged = 0;
      for (const auto& [first, r] : model)
        charged += r.size;
      if (overlaps)
        IOPT_FUZZ_CHECK(s == (same ? status::exists : status::overlaps));
      else if ((charged + n) * page > accounting.limit())
        IOPT_FUZZ_CHECK(s == status::no_memory);
      if (s == status::ok)
        model[p] = {n, 0};
      break;
    }
    case 1: {
      const status s = registry.unregister_region(ua{p * page}, n * page);
      const auto it = model.find(p);
      if (it == model.end() || it->second.size != n)
        IOPT_FUZZ_CHECK(s == status::not_found);
      else if (it->second.mappings != 0)
        IOPT_FUZZ_CHECK(s == status::busy);
      else {
        IOPT_FUZZ_CHECK(s == status::ok);
        model.erase(it);
      }
      break;
    }
    case 2: {
      hpa target{};
      const status s = map_one(strategy, ua{p * page}, 16, permission::read, target);
      const auto it = containing(p);
      IOPT_FUZZ_CHECK((s == status::ok) == (it != model.end()));
      if (s == status::ok) {
        ++it->second.mappings;
        ++mapped[p];
      }
      break;
    }
    default: {
      auto m = mapped.lower_bound(p);
      if (m == mapped.end())
        break;
      strategy.unmap_pages(ua{m->first * page}, 1, 16, permission::read);
      --containing(m->first)->second.mappings;
      if (--m->second == 0)
        mapped.erase(m);
      break;
    }
    }
    plan.never_fail();
    std::uint64_t registered = 0;
    for (const auto& [first, r] : model)
      registered += r.size;
    IOPT_FUZZ_CHECK(accounting.charged() == registered * page);
    IOPT_FUZZ_CHECK(backend.pinned_pages() == registered);
    IOPT_FUZZ_CHECK(registry.region_count() == model.size());
  }
  while (!mapped.empty()) {
    strategy.unmap_pages(ua{mapped.begin()->first * page}, 1, 16, permission::read);
    if (--mapped.begin()->second == 0)
      mapped.erase(mapped.begin());
  }
  for (const auto& [first, r] : model)
    IOPT_FUZZ_CHECK(registry.unregister_region(ua{first * page}, r.size * page) == status::ok);
  IOPT_FUZZ_CHECK(accounting.charged() == 0 && backend.pinned_pages() == 0);
  return 0;
}
