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

namespace {
// The targets of `pages` pages from `first`, one per page: from the log
// map_pages filled (and for_each_target for the pages it did not keep).
template <class Strategy>
std::vector<std::uint64_t> logged_targets(Strategy& s, const target_log& log, ua first,
                                          std::uint64_t pages, unsigned page_shift) {
  std::vector<std::uint64_t> out;
  log.replay(
      [&](std::uint64_t, hpa t, std::uint64_t n) {
        for (std::uint64_t k = 0; k < n; ++k)
          out.push_back(t.value() + (k << page_shift));
      },
      [&](std::uint64_t, std::span<const std::uint64_t> targets) {
        out.insert(out.end(), targets.begin(), targets.end());
      });
  const std::uint64_t done = log.recorded_pages();
  s.for_each_target(ua{first.value() + (done << page_shift)}, pages - done, page_shift,
                    [&](std::uint64_t, hpa t, std::uint64_t n) {
                      for (std::uint64_t k = 0; k < n; ++k)
                        out.push_back(t.value() + (k << page_shift));
                    });
  return out;
}
// The same from for_each_target alone, the backend's translation of each page.
template <class Strategy>
std::vector<std::uint64_t> listed_targets(Strategy& s, ua first, std::uint64_t pages,
                                          unsigned page_shift) {
  std::vector<std::uint64_t> out;
  s.for_each_target(first, pages, page_shift, [&](std::uint64_t at, hpa t, std::uint64_t n) {
    CHECK(at == out.size());
    for (std::uint64_t k = 0; k < n; ++k)
      out.push_back(t.value() + (k << page_shift));
  });
  return out;
}
} // namespace

TEST_CASE("every strategy's log holds the targets for_each_target lists, and the highest") {
  constexpr ua first{0x1000'0000};
  constexpr std::uint64_t bytes = std::uint64_t{64} << 20; // 64 MiB
  for (const frame_layout layout : {frame_layout::contiguous, frame_layout::scattered})
    for (const std::size_t limit : {std::size_t{0}, std::size_t{300}, target_log::default_limit})
      for (const unsigned page_shift : {12U, 16U, 21U}) {
        CAPTURE(static_cast<int>(layout));
        CAPTURE(limit);
        CAPTURE(page_shift);
        simulated_backend backend(16, layout);
        backend.back_with_huge_pages(ua{first.value() + (bytes / 2)}, bytes / 2, 21);
        unlimited_accounting accounting;
        prereg_registry<simulated_backend, unlimited_accounting> registry(backend, accounting);
        REQUIRE(registry.register_region(first, bytes / 2) == status::ok);
        REQUIRE(registry.register_region(ua{first.value() + bytes / 2}, bytes / 2) == status::ok);
        pin_on_map<simulated_backend, unlimited_accounting> v1(backend, accounting);
        preregistered<decltype(registry)> v2(registry);
        no_pinning none;
        // From inside the 64K-backed half across into the huge-page half
        // (pages of 2M only in the huge half).
        const ua from{page_shift > 16 ? first.value() + bytes / 2 : first.value() + bytes / 4};
        const std::uint64_t pages = (bytes / 4) >> page_shift;
        auto check = [&](auto& s) {
          target_log log(limit);
          REQUIRE(s.map_pages(from, pages, page_shift, permission::read, log) == status::ok);
          const auto want = listed_targets(s, from, pages, page_shift);
          REQUIRE(want.size() == pages);
          CHECK(logged_targets(s, log, from, pages, page_shift) == want);
          std::uint64_t top = 0;
          for (const std::uint64_t t : want)
            top = std::max(top, t + ((std::uint64_t{1} << page_shift) - 1));
          CHECK(log.highest() == hpa{top});
          s.unmap_pages(from, pages, page_shift, permission::read);
        };
        check(v1);
        check(v2);
        check(none);
        CHECK(backend.pin_count(from) == 1); // the registration's pin only
        CHECK(v1.pinned_pages() == 0);
      }
}
