// The fault sweep the sweep suites share: run a composite operation once to
// count its fault points, then once per point with that point failing.
#pragma once

#include <iopt/status.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>

namespace iopt_test {

// Runs `op` on fresh worlds: once to count, then failing at each point. A
// world has a fault_plan `plan`, a snapshot() of everything a failure must
// leave as it was, and a teardown() that undoes the operation and checks
// that every counter is back to zero. Returns the number of points.
//
// A world whose number of points depends on something outside the test
// (real memory, whose address and physical runs the kernel picks) says so with `static constexpr
// bool points_vary = true`. Each of its worlds may then pass fewer points than the counting one; an
// operation that did not reach the point to fail must then have succeeded with every point it
// passed, and the sweep goes on to the larger counts. Every other world must reach every point,
// every time.
template <class World>
constexpr bool points_vary = requires {
  requires World::points_vary;
};

template <class World, class Op>
std::uint64_t sweep(Op op) {
  // A world that varies is counted a few times, for the most points.
  std::uint64_t points = 0;
  for (int count = 0; count < (points_vary<World> ? 4 : 1); ++count) {
    World w;
    w.plan.reset_counts();
    REQUIRE(op(w) == iopt::status::ok);
    points = std::max(points, w.plan.points);
    w.teardown();
  }
  REQUIRE(points >= 1);
  std::uint64_t reached = 0; // failing runs that reached their point
  for (std::uint64_t n = 1; n <= points; ++n) {
    CAPTURE(n);
    World w;
    const auto before = w.snapshot();
    w.plan.fail_nth(n);
    const iopt::status s = op(w);
    w.plan.never_fail();
    if (points_vary<World> && w.plan.failures == 0) {
      // This world's operation passed fewer points than n.
      CHECK(w.plan.points < n);
      CHECK(s == iopt::status::ok);
    } else {
      ++reached;
      CHECK(s != iopt::status::ok);
      CHECK(w.plan.failures == 1);
      CHECK(w.snapshot() == before);
    }
    w.teardown();
  }
  if (reached < points)
    MESSAGE((points - reached) << " of " << points << " points not reached: the world varies");
  return points;
}

} // namespace iopt_test
