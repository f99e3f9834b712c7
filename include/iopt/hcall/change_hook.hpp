// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// The hook through which the hypercall front end reports what it changed:
// after each successful call, the guest window (by LIOBN) and the range of
// it that the call wrote. Notifiers that turn these ranges into coalesced
// map/unmap runs plug in here (notify/notifier.hpp); a hypervisor that needs
// nothing sets no hook.
#pragma once

#include <cstdint>

#include <iopt/addr/address.hpp>
#include <iopt/hook.hpp>

namespace iopt {

// (liobn, first, pages): the call wrote `pages` entries (IOMMU pages of that
// window) from bus address `first` of the window the guest names `liobn`.
using tce_change_hook = hook<std::uint64_t, ioba, std::uint64_t>;

} // namespace iopt
