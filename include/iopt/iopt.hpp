// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// Everything in one include.
#pragma once

#include <iopt/config.hpp>
#include <iopt/status.hpp>
#include <iopt/version.hpp>

#include <iopt/addr/address.hpp>
#include <iopt/addr/align.hpp>
#include <iopt/addr/page_size.hpp>
#include <iopt/addr/range.hpp>

#include <iopt/format/example_format.hpp>
#include <iopt/format/guest_tce.hpp>
#include <iopt/format/hardware_tce.hpp>
#include <iopt/format/permission.hpp>
#include <iopt/format/tce_format.hpp>
#include <iopt/format/traits.hpp>

#include <iopt/table/allocator.hpp>
#include <iopt/table/fault_injecting_allocator.hpp>
#include <iopt/table/geometry.hpp>
#include <iopt/table/mappings.hpp>
#include <iopt/table/tce_table.hpp>
#include <iopt/table/walk.hpp>

#include <iopt/configs.hpp>
