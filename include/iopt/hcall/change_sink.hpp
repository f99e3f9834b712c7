// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// The hook through which the hypercall front end reports what it changed:
// after each successful call, the range of the guest window it wrote.
// Notifiers that turn these ranges into coalesced map/unmap runs plug in
// here; a hypervisor that needs nothing uses no_change_sink.
//
// Requirement on a sink S:
//   void s.tces_changed(std::uint64_t liobn, ioba first, std::uint64_t pages) noexcept
#pragma once

#include <cstdint>

#include <iopt/addr/address.hpp>

namespace iopt {

template <class S>
concept tce_change_sink = requires(S& s, std::uint64_t liobn, ioba first, std::uint64_t pages) {
  { s.tces_changed(liobn, first, pages) }
  noexcept;
};

struct no_change_sink {
  void tces_changed(std::uint64_t, ioba, std::uint64_t) noexcept {}
};

static_assert(tce_change_sink<no_change_sink>);

} // namespace iopt
