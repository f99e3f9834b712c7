// The fault sweep the sweep suites share: run a composite operation once to
// count its fault points, then once per point with that point failing.
#pragma once

#include <iopt/status.hpp>

#include <doctest/doctest.h>

#include <cstdint>

namespace iopt_test {

// Runs `op` on fresh worlds: once to count, then failing at each point. A
// world has a fault_plan `plan`, a snapshot() of everything a failure must
// leave as it was, and a teardown() that undoes the operation and checks
// that every counter is back to zero. Returns the number of points.
template <class World, class Op>
std::uint64_t sweep(Op op) {
  std::uint64_t points = 0;
  {
    World w;
    w.plan.reset_counts();
    REQUIRE(op(w) == iopt::status::ok);
    points = w.plan.points;
    w.teardown();
  }
  REQUIRE(points >= 1);
  for (std::uint64_t n = 1; n <= points; ++n) {
    CAPTURE(n);
    World w;
    const auto before = w.snapshot();
    w.plan.fail_nth(n);
    const iopt::status s = op(w);
    w.plan.never_fail();
    CHECK(s != iopt::status::ok);
    CHECK(w.plan.failures == 1);
    CHECK(w.snapshot() == before);
    w.teardown();
  }
  return points;
}

} // namespace iopt_test
