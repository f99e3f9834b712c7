// v1 (pin on map) against v2 (preregistered) on the same scenario, and no_pinning.
#include "support.hpp"
#include <iopt/prereg/pinning.hpp>

#include <doctest/doctest.h>

#include <vector>

using namespace iopt;

namespace {
constexpr unsigned shift = 16;
constexpr std::uint64_t page = std::uint64_t{1} << shift;

struct dirty_log {
  std::vector<std::uint64_t> pages;
  static void record(void* self, ua first, std::uint64_t) noexcept {
    static_cast<dirty_log*>(self)->pages.push_back(first.value());
  }
  dirty_hook hook() { return dirty_hook{&record, this}; }
};

// Map four pages (one of them twice), then unmap everything.
template <class Strategy>
void scenario(Strategy& s, std::vector<hpa>& targets) {
  const ua pages[] = {ua{0x100000}, ua{0x110000}, ua{0x120000}, ua{0x100000}};
  const permission perms[] = {permission::read, permission::read_write, permission::write,
                              permission::read};
  for (int i = 0; i < 4; ++i) {
    hpa t{};
    REQUIRE(map_one(s, pages[i], shift, perms[i], t) == status::ok);
    targets.push_back(t);
  }
  for (int i = 3; i >= 0; --i)
    s.unmap_pages(pages[i], 1, shift, perms[i]);
}
} // namespace

TEST_CASE("v1 pins and charges at map time; v2 only counts mappings") {
  // v1
  simulated_backend backend1;
  counted_accounting accounting1(64 * page);
  dirty_log dirty1;
  pin_on_map<simulated_backend, counted_accounting> v1(backend1, accounting1, dirty1.hook());
  hpa t{};
  REQUIRE(map_one(v1, ua{0x100000}, shift, permission::read, t) == status::ok);
  CHECK(backend1.pinned_pages() == 1);
  CHECK(accounting1.charged() == page);
  REQUIRE(map_one(v1, ua{0x100000}, shift, permission::read, t) == status::ok); // same page again
  CHECK(backend1.pinned_pages() == 1);          // one host page, pinned by both mappings
  CHECK(v1.pin_count(ua{0x100000}) == 2);       // counted twice: the pins nest
  CHECK(backend1.pin_count(ua{0x100000}) == 2); // in the backend too, as page references do
  CHECK(accounting1.charged() == page);         // the charge follows the pinned pages
  v1.unmap_pages(ua{0x100000}, 1, shift, permission::read);
  CHECK(backend1.pinned_pages() == 1);
  v1.unmap_pages(ua{0x100000}, 1, shift, permission::read);
  CHECK(backend1.pinned_pages() == 0);
  std::vector<hpa> v1_targets;
  scenario(v1, v1_targets);
  CHECK(backend1.pinned_pages() == 0);
  CHECK(accounting1.charged() == 0);

  // v2: the same scenario over registered memory.
  simulated_backend backend2;
  counted_accounting accounting2(64 * page);
  prereg_registry<simulated_backend, counted_accounting> registry(backend2, accounting2);
  REQUIRE(registry.register_region(ua{0x100000}, 16 * page) == status::ok);
  const std::uint64_t pinned_by_registration = backend2.pinned_pages();
  dirty_log dirty2;
  preregistered<decltype(registry)> v2(registry, dirty2.hook());
  REQUIRE(map_one(v2, ua{0x110000}, shift, permission::read, t) == status::ok);
  CHECK(backend2.pinned_pages() == pinned_by_registration); // nothing pinned at map time
  CHECK(registry.unregister_region(ua{0x100000}, 16 * page) == status::busy);
  v2.unmap_pages(ua{0x110000}, 1, shift, permission::read);
  std::vector<hpa> v2_targets;
  scenario(v2, v2_targets);
  CHECK(accounting2.charged() == 16 * page);
  CHECK(registry.unregister_region(ua{0x100000}, 16 * page) == status::ok);
  CHECK(backend2.pinned_pages() == 0);

  // Both translate the same user pages to the same (simulated) frames, and
  // both report the same pages dirtied: the writable ones.
  CHECK(v1_targets == v2_targets);
  CHECK(dirty1.pages == dirty2.pages);
  CHECK(dirty2.pages == std::vector<std::uint64_t>{0x120000, 0x110000});
}

TEST_CASE("v2 refuses memory that is not registered, or pages larger than its region backs") {
  simulated_backend backend;
  unlimited_accounting accounting;
  prereg_registry<simulated_backend, unlimited_accounting> registry(backend, accounting);
  REQUIRE(registry.register_region(ua{0x100000}, 4 * page) == status::ok);
  preregistered<decltype(registry)> v2(registry);
  hpa t{};
  CHECK(map_one(v2, ua{0x200000}, shift, permission::read, t) == status::not_found);
  CHECK(map_one(v2, ua{0x100000}, shift + 1, permission::read, t) ==
        status::unsupported); // 64K-backed
  CHECK(map_one(v2, ua{0x100000 + 4 * page}, shift, permission::read, t) == status::not_found);
  CHECK(registry.unregister_region(ua{0x100000}, 4 * page) == status::ok); // no count was leaked
}

TEST_CASE("v1 failures leave nothing charged or pinned") {
  simulated_backend backend;
  counted_accounting accounting(page);
  pin_on_map<simulated_backend, counted_accounting> v1(backend, accounting);
  hpa t{};
  REQUIRE(map_one(v1, ua{0x100000}, shift, permission::read, t) == status::ok);
  CHECK(map_one(v1, ua{0x110000}, shift, permission::read, t) ==
        status::no_memory); // over the limit
  CHECK(backend.pinned_pages() == 1);
  v1.unmap_pages(ua{0x100000}, 1, shift, permission::read);
  backend.fail_nth_pin(1);
  CHECK(map_one(v1, ua{0x110000}, shift, permission::read, t) == status::no_memory); // pin fails
  CHECK(accounting.charged() == 0);
  CHECK(v1.pinned_pages() == 0);
  CHECK(map_one(v1, ua{0x110001}, shift, permission::read, t) == status::not_aligned);
}

TEST_CASE("no_pinning maps the user address itself and still reports dirty pages") {
  dirty_log dirty;
  no_pinning none(dirty.hook());
  hpa t{};
  REQUIRE(map_one(none, ua{0x7000'0000}, shift, permission::read_write, t) == status::ok);
  CHECK(t == hpa{0x7000'0000});
  none.unmap_pages(ua{0x7000'0000}, 1, shift, permission::read_write);
  CHECK(dirty.pages.size() == 1);
  static_assert(!no_pinning::needs_shadow);
}
