// Fault sweeps over the posix backend on real memory: every system call it
// makes that can fail (mlock, the pagemap reads) and every allocation (its
// pin counts, its read buffer) is a point of the plan, as are the charges,
// the registry's and the table's allocations. A failure must leave pins,
// locked memory, charges and mappings as they were: for example a v1 map
// whose translation fails after its pages were pinned and charged, which is
// what a process without CAP_SYS_ADMIN meets on every map.
#include "posix_memory.hpp"
#include "sweep.hpp"

#include <iopt/iopt.hpp>
#include <iopt/testing/fault_injecting_accounting.hpp>
#include <iopt/testing/fault_injecting_allocator.hpp>
#include <iopt/testing/fault_injecting_system_calls.hpp>

#include <doctest/doctest.h>

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <vector>

using namespace iopt;
using iopt_test::locked_kib;
using iopt_test::mlock_is_real;
using iopt_test::sweep;

namespace {

using faulty_accounting = fault_injecting_accounting<counted_accounting, fault_plan>;
using faulty_posix = basic_posix_backend<fault_injecting_system_calls, fault_injecting_allocator>;
using faulty_registry = prereg_registry<faulty_posix, faulty_accounting, fault_injecting_allocator>;
using v1_strategy = pin_on_map<faulty_posix, faulty_accounting, fault_injecting_allocator>;
using v2_strategy = preregistered<faulty_registry>;

// Whether pagemap shows frames to this process (it needs CAP_SYS_ADMIN).
bool frames_visible() {
  static const bool visible = [] {
    static int probe = 1;
    posix_backend backend;
    return backend.translate(ua{reinterpret_cast<std::uintptr_t>(&probe)}).error() !=
           status::not_permitted;
  }();
  return visible;
}

// Anonymous memory, touched so that every page is present.
struct touched_memory {
  std::uint64_t bytes;
  void* at = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  explicit touched_memory(std::uint64_t n) : bytes(n) {
    REQUIRE(at != MAP_FAILED);
    std::memset(at, 0x3c, bytes);
  }
  ~touched_memory() { ::munmap(at, bytes); }
  touched_memory(const touched_memory&) = delete;
  touched_memory& operator=(const touched_memory&) = delete;
  ua first() const { return ua{reinterpret_cast<std::uintptr_t>(at)}; }
};

// A container on the posix backend; `lock_error` is the errno an mlock made
// to fail gives, `hide_frames` makes pagemap show no frames.
template <class Strategy, int LockError = ENOMEM, bool HideFrames = false>
struct posix_world {
  static constexpr bool v1 = Strategy::model == memory_model::v1_pin_on_map;
  // The kernel picks the memory's address (8192 pages cover 8 or 9 chunks of
  // the pin counts, and the directory may grow) and its physical runs (a
  // registered region's run array grows with them), so the number of points
  // differs from one world to the next.
  static constexpr bool points_vary = true;

  fault_plan plan;
  faulty_posix backend{fault_injecting_system_calls(plan, LockError, HideFrames),
                       fault_injecting_allocator(plan)};
  std::uint64_t host_page = std::uint64_t{1} << backend.host_page_shift();
  // 8192 host pages: more than one pagemap read.
  touched_memory memory{8192 * host_page};
  counted_accounting pin_limit{std::uint64_t{1} << 40}, table_limit{std::uint64_t{1} << 40};
  faulty_accounting pins{pin_limit, plan}, tables{table_limit, plan};
  faulty_registry registry{backend, pins, fault_injecting_allocator(plan)};
  Strategy strategy = make_strategy();
  dma_container<Strategy, faulty_accounting, config_4k, config_huge_window> container{strategy,
                                                                                      tables};
  std::uint64_t locked_before = locked_kib();

  posix_world() {
    (void)container.query(); // the default window exists before the operation
    if constexpr (v1)
      REQUIRE(container.enable() == status::ok);
  }
  Strategy make_strategy() {
    if constexpr (v1)
      return Strategy(backend, pins, {}, fault_injecting_allocator(plan));
    else
      return Strategy(registry);
  }

  struct state {
    std::size_t table_bytes;
    std::uint64_t pinned, pin_charge, table_charge, regions, locked_kib;
    std::vector<mapped_run> runs;
    friend bool operator==(const state&, const state&) = default;
  };
  state snapshot() {
    state s{container.table_bytes(),
            backend.pinned_pages(),
            pins.charged(),
            tables.charged(),
            registry.region_count(),
            locked_kib(),
            {}};
    for (std::uint64_t k = 0; k < 8192; k += 97)
      if (const auto t = container.translate(ioba{k << 12}))
        s.runs.push_back(mapped_run{ioba{k << 12}, t->target, 1, t->perm});
    return s;
  }
  void teardown() {
    REQUIRE(container.reset() == status::ok);
    (void)container.remove_window(ioba{0});
    if (registry.region_count() != 0)
      REQUIRE(registry.unregister_region(memory.first(), memory.bytes) == status::ok);
    CHECK(backend.pinned_pages() == 0);
    CHECK(pins.charged() == 0);
    CHECK(tables.charged() == 0);
    if (mlock_is_real)
      CHECK(locked_kib() == locked_before);
  }
};

} // namespace

TEST_CASE("posix sweep: register memory (mlock, pagemap reads, pin counts, read buffer)") {
  if (!frames_visible()) {
    MESSAGE("no CAP_SYS_ADMIN: frame numbers are hidden, skipped");
    return;
  }
  using world = posix_world<v2_strategy>;
  const auto points = sweep<world>(
      [](world& w) { return w.container.register_memory(w.memory.first(), w.memory.bytes); });
  // record, index, charge; the pin counts' directory and 8 chunks, one
  // mlock; the read buffer, two pagemap reads; the run array.
  MESSAGE(points << " points");
  CHECK(points >= 15);
}

TEST_CASE(
    "posix sweep: v1 map_dma pins, charges, then translates (a failing read gives all back)") {
  if (!frames_visible()) {
    MESSAGE("no CAP_SYS_ADMIN: frame numbers are hidden, skipped");
    return;
  }
  using world = posix_world<v1_strategy>;
  const auto points = sweep<world>([](world& w) {
    // 8192 IOMMU pages of 4 KiB from the start of the default window.
    return w.container.map_dma(ioba{0}, w.memory.first(), w.memory.bytes, permission::read_write);
  });
  MESSAGE(points << " points");
  CHECK(points >= 14);
}

TEST_CASE("posix: each mlock error gives its status and leaves nothing locked") {
  // mlock locks one page and then fails with each errno the kernel gives;
  // the range is mapped, or has a hole in its middle.
  struct errno_case {
    int error;
    bool hole;
    status expected;
  };
  const errno_case cases[] = {{EPERM, false, status::not_permitted},
                              {EAGAIN, false, status::no_memory},
                              {ENOMEM, false, status::no_memory}, // RLIMIT_MEMLOCK
                              {ENOMEM, true, status::fault}};
  for (const errno_case& c : cases) {
    CAPTURE(c.error);
    CAPTURE(c.hole);
    const std::uint64_t host_page = std::uint64_t{1} << posix_backend{}.host_page_shift();
    touched_memory memory(64 * host_page);
    // The points of a pin that succeeds: the count table's, then one mlock.
    fault_plan plan;
    std::uint64_t points = 0;
    {
      faulty_posix counting{fault_injecting_system_calls(plan), fault_injecting_allocator(plan)};
      plan.reset_counts();
      REQUIRE(counting.pin(memory.first(), memory.bytes) == status::ok);
      points = plan.points;
      counting.unpin(memory.first(), memory.bytes);
    }
    if (c.hole)
      REQUIRE(::munmap(static_cast<char*>(memory.at) + 40 * host_page, host_page) == 0);
    faulty_posix backend{fault_injecting_system_calls(plan, c.error),
                         fault_injecting_allocator(plan)};
    const std::uint64_t locked_before = locked_kib();
    plan.fail_nth(points); // the mlock
    CHECK(backend.pin(memory.first(), memory.bytes) == c.expected);
    plan.never_fail();
    CHECK(plan.failures == 1);
    CHECK(backend.pinned_pages() == 0);
    CHECK(backend.pin_count(memory.first()) == 0);
    if (mlock_is_real)
      CHECK(locked_kib() == locked_before); // the page mlock locked was unlocked
  }
}

TEST_CASE("posix: frames hidden from the process refuse a v1 map and give the pins back") {
  // What an unprivileged process meets: pagemap answers, without frames.
  using world = posix_world<v1_strategy, ENOMEM, /*HideFrames=*/true>;
  world w;
  const auto before = w.snapshot();
  CHECK(w.container.map_dma(ioba{0}, w.memory.first(), 16 * w.host_page, permission::read) ==
        status::not_permitted);
  CHECK(w.snapshot() == before);
  CHECK(w.backend.pinned_pages() == 0);
  CHECK(w.pins.charged() == 0);
  w.teardown();
}

TEST_CASE("posix: a backend that could not open pagemap refuses translations, not pins") {
  fault_plan plan;
  plan.fail_nth(1); // the first point: opening pagemap
  faulty_posix backend{fault_injecting_system_calls(plan), fault_injecting_allocator(plan)};
  plan.never_fail();
  touched_memory memory(4 * (std::uint64_t{1} << backend.host_page_shift()));
  CHECK(backend.translate(memory.first()).error() == status::not_permitted);
  REQUIRE(backend.pin(memory.first(), memory.bytes) == status::ok);
  CHECK(backend.pinned_pages() == 4);
  backend.unpin(memory.first(), memory.bytes);
  CHECK(backend.pinned_pages() == 0);
}
