// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// An accounting policy for tests: it wraps another and lets a fault plan
// (testing/fault_injecting_allocator.hpp) fail chosen charges, each charge
// one point of the plan.
#pragma once

#include <cstdint>

#include <iopt/prereg/accounting.hpp>
#include <iopt/status.hpp>

namespace iopt {

template <accounting_policy Inner, class Plan>
class fault_injecting_accounting {
public:
  fault_injecting_accounting(Inner& inner, Plan& plan) noexcept : inner_(&inner), plan_(&plan) {}
  status charge(std::uint64_t bytes) noexcept {
    if (plan_->next_point_fails())
      return status::no_memory;
    return inner_->charge(bytes);
  }
  void uncharge(std::uint64_t bytes) noexcept { inner_->uncharge(bytes); }
  std::uint64_t charged() const noexcept { return inner_->charged(); }

private:
  Inner* inner_;
  Plan* plan_;
};

} // namespace iopt
