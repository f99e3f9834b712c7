// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// Accounting policies: how pinned memory is charged. Pinned pages cannot be
// swapped or moved, so Linux counts them against RLIMIT_MEMLOCK; a process
// that pins for DMA must do the same or a guest can pin all of the host.
//
// A policy A provides:
//   status a.charge(std::uint64_t bytes) noexcept    ok, or no_memory with
//                                                     nothing charged
//   void a.uncharge(std::uint64_t bytes) noexcept     gives back what a charge took
//   std::uint64_t a.charged() const noexcept          bytes charged now
// The charge never goes negative (uncharging more than was charged is an
// invariant violation) and never above the limit: a charge that would pass
// it fails whole.
#pragma once

#include <sys/resource.h>

#include <atomic>
#include <concepts>
#include <cstdint>

#include <iopt/settings.hpp>
#include <iopt/status.hpp>

namespace iopt {

template <class A>
concept accounting_policy = requires(A& a, const A& ca, std::uint64_t bytes) {
  { a.charge(bytes) }
  noexcept->std::same_as<status>;
  { a.uncharge(bytes) }
  noexcept;
  { ca.charged() }
  noexcept->std::same_as<std::uint64_t>;
};

namespace detail {
// Adds `bytes` to `counter` unless that passes `limit`; lock-free.
inline status charge_up_to(std::atomic<std::uint64_t>& counter, std::uint64_t bytes,
                           std::uint64_t limit) noexcept {
  std::uint64_t now = counter.load(std::memory_order_relaxed);
  do {
    if (bytes > limit || now > limit - bytes)
      return status::no_memory;
  } while (!counter.compare_exchange_weak(now, now + bytes, std::memory_order_relaxed));
  return status::ok;
}
inline void uncharge_from(std::atomic<std::uint64_t>& counter, std::uint64_t bytes) noexcept {
  [[maybe_unused]] const std::uint64_t before = counter.fetch_sub(bytes, std::memory_order_relaxed);
  IOPT_ASSERT(before >= bytes);
}
} // namespace detail

// Counts, never refuses.
class unlimited_accounting {
public:
  // Adds `bytes` to the charge: always ok.
  status charge(std::uint64_t bytes) noexcept {
    charged_.fetch_add(bytes, std::memory_order_relaxed);
    return status::ok;
  }
  // Gives back `bytes` a charge took.
  void uncharge(std::uint64_t bytes) noexcept { detail::uncharge_from(charged_, bytes); }
  // Bytes charged now.
  std::uint64_t charged() const noexcept { return charged_.load(std::memory_order_relaxed); }

private:
  std::atomic<std::uint64_t> charged_{0};
};

// An atomic counter against a fixed limit: the documented example.
class counted_accounting {
public:
  // Nothing charged yet, against a limit of `limit_bytes` bytes.
  explicit counted_accounting(std::uint64_t limit_bytes) noexcept : limit_(limit_bytes) {}
  // Adds `bytes` unless that passes the limit (no_memory, nothing charged).
  // Lock-free.
  status charge(std::uint64_t bytes) noexcept {
    return detail::charge_up_to(charged_, bytes, limit_);
  }
  // Gives back `bytes` a charge took.
  void uncharge(std::uint64_t bytes) noexcept { detail::uncharge_from(charged_, bytes); }
  // Bytes charged now.
  std::uint64_t charged() const noexcept { return charged_.load(std::memory_order_relaxed); }
  // The limit in bytes, fixed at construction.
  std::uint64_t limit() const noexcept { return limit_; }

private:
  std::atomic<std::uint64_t> charged_{0};
  std::uint64_t limit_;
};

// Charges against the process's real RLIMIT_MEMLOCK, read at each charge
// (the limit can be raised or lowered while the process runs). The kernel
// counts all of the process's locked memory; this policy counts what goes
// through it, which is what iopt pins. An infinite limit never refuses.
class process_memlock_accounting {
public:
  // Adds `bytes` unless that passes the current limit (no_memory, nothing
  // charged). Lock-free.
  status charge(std::uint64_t bytes) noexcept {
    return detail::charge_up_to(charged_, bytes, current_limit());
  }
  // Gives back `bytes` a charge took.
  void uncharge(std::uint64_t bytes) noexcept { detail::uncharge_from(charged_, bytes); }
  // Bytes charged now.
  std::uint64_t charged() const noexcept { return charged_.load(std::memory_order_relaxed); }

  // The RLIMIT_MEMLOCK soft limit in bytes now; UINT64_MAX when it is
  // infinite or unreadable.
  static std::uint64_t current_limit() noexcept {
    rlimit limit{};
    if (getrlimit(RLIMIT_MEMLOCK, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY)
      return UINT64_MAX;
    return static_cast<std::uint64_t>(limit.rlim_cur);
  }

private:
  std::atomic<std::uint64_t> charged_{0};
};

static_assert(accounting_policy<unlimited_accounting>);
static_assert(accounting_policy<counted_accounting>);
static_assert(accounting_policy<process_memlock_accounting>);

} // namespace iopt
