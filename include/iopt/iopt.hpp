// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// Everything in one include.
#pragma once

#include <iopt/hook.hpp>
#include <iopt/settings.hpp>
#include <iopt/status.hpp>
#include <iopt/version.hpp>

#include <iopt/addr/address.hpp>
#include <iopt/addr/align.hpp>
#include <iopt/addr/page_size.hpp>
#include <iopt/addr/range.hpp>

#include <iopt/format/byte_order.hpp>
#include <iopt/format/example_format.hpp>
#include <iopt/format/guest_tce.hpp>
#include <iopt/format/hardware_tce.hpp>
#include <iopt/format/permission.hpp>
#include <iopt/format/tce_format.hpp>
#include <iopt/format/traits.hpp>

#include <iopt/table/allocator.hpp>
#include <iopt/table/change_tracker.hpp>
#include <iopt/table/example_config.hpp>
#include <iopt/table/geometry.hpp>
#include <iopt/table/level_tree.hpp>
#include <iopt/table/list_runs.hpp>
#include <iopt/table/mappings.hpp>
#include <iopt/table/run_collector.hpp>
#include <iopt/table/table_config.hpp>
#include <iopt/table/tce_table.hpp>
#include <iopt/table/walk.hpp>

#include <iopt/prereg/accounting.hpp>
#include <iopt/prereg/backend.hpp>
#include <iopt/prereg/page_counts.hpp>
#include <iopt/prereg/pinning.hpp>
#include <iopt/prereg/posix_backend.hpp>
#include <iopt/prereg/region_index.hpp>
#include <iopt/prereg/registry.hpp>
#include <iopt/prereg/target_log.hpp>

#include <iopt/window/charging_allocator.hpp>
#include <iopt/window/container.hpp>
#include <iopt/window/dirty_log.hpp>
#include <iopt/window/dma_window.hpp>
#include <iopt/window/vfio_errno.hpp>

#include <iopt/migrate/container_stream.hpp>
#include <iopt/migrate/table_stream.hpp>

#include <iopt/hcall/change_hook.hpp>
#include <iopt/hcall/guest_memory.hpp>
#include <iopt/hcall/tce_hcalls.hpp>

#include <iopt/listener/flat_view.hpp>
#include <iopt/listener/listener.hpp>
#include <iopt/listener/memory_map.hpp>
#include <iopt/listener/sinks.hpp>
#include <iopt/notify/notifier.hpp>

#include <iopt/configs.hpp>
