// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// Build settings shared by every header (the table configurations are in
// configs.hpp).
//
// A project that vendors iopt can put its own settings in one header and name
// it with -DIOPT_USER_CONFIG='"my_iopt_config.hpp"'; that header is included
// first, so anything it defines below wins over the defaults.
//
//   IOPT_ASSERT(cond)  checks an internal invariant (never user input: bad
//                      input always gets a status value). The default checks
//                      only when NDEBUG is not defined, prints the failed
//                      condition and aborts. Define it to route invariant
//                      failures to a hypervisor's own panic or log.
//
//   IOPT_SCALAR_ENTRIES  when defined, runs of table entries are written and
//                      scanned one 8-byte atomic at a time even where aligned
//                      AVX2/AVX-512 accesses are available (see
//                      table/bulk_entries.hpp). ThreadSanitizer builds do so
//                      by themselves.
//
// iopt builds with -fno-exceptions -fno-rtti; nothing here needs either.
#pragma once

#ifdef IOPT_USER_CONFIG
#include IOPT_USER_CONFIG
#endif

#ifndef IOPT_ASSERT
#ifdef NDEBUG
// Checks an internal invariant; with NDEBUG, nothing: cond is not evaluated.
#define IOPT_ASSERT(cond) static_cast<void>(0)
#else
#include <cstdio>
#include <cstdlib>
namespace iopt::detail {
[[noreturn, gnu::cold, gnu::noinline]] inline void assert_failed(const char* cond, const char* file,
                                                                 int line) noexcept {
  std::fprintf(stderr, "iopt: invariant failed: %s at %s:%d\n", cond, file, line);
  std::abort();
}
} // namespace iopt::detail

// Checks an internal invariant (never user input): when cond is false, prints
// it with file and line to stderr and aborts. Compiled out under NDEBUG; a
// project may define its own before including iopt (see the top of this file).
#define IOPT_ASSERT(cond)                                                                          \
  ((cond) ? static_cast<void>(0) : ::iopt::detail::assert_failed(#cond, __FILE__, __LINE__))
#endif
#endif

// x as a bool, hinted to be usually true. With the three below, the branch and
// inlining hints: hot paths are small and inline; rare paths (allocating a
// level, rejecting input) are cold and kept out of line.
#define IOPT_LIKELY(x) __builtin_expect(!!(x), 1)
// x as a bool, hinted to be usually false (an error check on a hot path).
#define IOPT_UNLIKELY(x) __builtin_expect(!!(x), 0)
// Marks a function inline and asks the compiler to inline it at every call.
#define IOPT_ALWAYS_INLINE inline __attribute__((always_inline))
// Marks a function rarely called: optimised for size and never inlined.
#define IOPT_COLD __attribute__((cold, noinline))
