#include <iopt/prereg/accounting.hpp>

#include <doctest/doctest.h>

#include <sys/resource.h>

using namespace iopt;

TEST_CASE("counted accounting never passes its limit nor goes negative") {
  counted_accounting a(100);
  CHECK(a.charge(60) == status::ok);
  CHECK(a.charge(41) == status::no_memory);
  CHECK(a.charged() == 60);
  CHECK(a.charge(40) == status::ok);
  CHECK(a.charge(1) == status::no_memory);
  CHECK(a.charge(UINT64_MAX) == status::no_memory); // no wrap-around
  a.uncharge(100);
  CHECK(a.charged() == 0);
}

TEST_CASE("unlimited accounting counts") {
  unlimited_accounting a;
  CHECK(a.charge(UINT64_MAX / 2) == status::ok);
  a.uncharge(UINT64_MAX / 2);
  CHECK(a.charged() == 0);
}

TEST_CASE("process_memlock follows the real RLIMIT_MEMLOCK") {
  rlimit saved{};
  REQUIRE(getrlimit(RLIMIT_MEMLOCK, &saved) == 0);
  rlimit lowered = saved;
  lowered.rlim_cur = 1 << 20;
  if (saved.rlim_max != RLIM_INFINITY && saved.rlim_max < lowered.rlim_cur)
    lowered.rlim_cur = saved.rlim_max;
  REQUIRE(setrlimit(RLIMIT_MEMLOCK, &lowered) == 0);
  process_memlock_accounting a;
  CHECK(a.charge(lowered.rlim_cur) == status::ok);
  CHECK(a.charge(1) == status::no_memory);
  a.uncharge(lowered.rlim_cur);
  CHECK(a.charged() == 0);
  REQUIRE(setrlimit(RLIMIT_MEMLOCK, &saved) == 0);
}
