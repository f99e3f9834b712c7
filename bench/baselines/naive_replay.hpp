// Baseline: the naive replay — every IOMMU page of the window is translated
// and each mapped page is reported on its own — which is how a replay that
// knows nothing of the table's structure must work (QEMU's generic IOMMU
// replay loop has this shape). Its cost is the window's size, mapped or not.
#pragma once

#include <cstdint>

#include <iopt/notify/notifier.hpp>

namespace iopt_baseline {

template <class Table>
void naive_replay(const Table& table, iopt::iommu_notifier& n, iopt::ioba first,
                  std::uint64_t pages) {
  for (std::uint64_t i = 0; i < pages; ++i) {
    const iopt::ioba at = first + (i << Table::page_shift);
    const auto t = table.translate(at);
    if (t)
      n.notify(iopt::iommu_event{iopt::iommu_event::kind::map,
                                 iopt::mapped_run{at, t->target, 1, t->perm}});
  }
}

template <class Table>
void naive_replay(const Table& table, iopt::iommu_notifier& n) {
  naive_replay(table, n, table.window().first(), table.pages());
}

} // namespace iopt_baseline
