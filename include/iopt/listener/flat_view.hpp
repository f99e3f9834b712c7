// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// The guest memory map and its flat view.
//
// A guest's physical address space is described by regions that may
// overlap, each with a priority: RAM, device RAM (memory a device exposes,
// mapped like RAM), MMIO, or an IOMMU region (addresses translated by a
// guest-visible IOMMU). Rendering gives the flat view: non-overlapping
// sections, each the visible part of one region. Where regions overlap the
// higher priority wins; on equal priority the region added later wins (it
// covers the ones before it, as a later mapping does).
//
// A change is published as the difference between the old and the new flat
// view: sections that disappeared first, then sections that appeared. A
// section that only moved or changed size is one removal and one addition.
// Rendering is a sweep over region boundaries with a heap of the regions
// covering the current point: O(n log n) for n regions; the difference is a
// single merge over two sorted views.
#pragma once

#include <algorithm>
#include <cstdint>
#include <queue>
#include <vector>

#include <iopt/addr/address.hpp>
#include <iopt/addr/range.hpp>
#include <iopt/status.hpp>

namespace iopt {

// What a region is: guest RAM, device RAM (memory a device exposes, mapped
// like RAM), MMIO, or an IOMMU region (addresses a guest-visible IOMMU
// translates). Sinks choose by kind which sections they act on.
enum class region_kind : std::uint8_t { ram, device_ram, mmio, iommu };

// One region of the guest's physical address space, as the caller describes
// it to memory_map::add_region.
struct memory_region {
  // The caller's name for the region; unique in a map.
  std::uint64_t id = 0;
  // Guest physical address of its first byte.
  gpa first{};
  // Length in bytes; not 0, and first + size may reach but not pass 2^64.
  std::uint64_t size = 0;
  // Where regions overlap, the higher priority shows (on a tie, the one added
  // later).
  int priority = 0;
  // What the region is.
  region_kind kind = region_kind::ram;
  // Host address of `first`, for RAM and device RAM.
  ua host{};
  // Which host memory object (RAM block) backs it: ranges are only merged
  // within one backing.
  std::uint64_t backing = 0;
};

// One section of the flat view: a stretch of guest addresses where one region
// shows (the part of it that wins there). Sections of a view do not overlap.
struct flat_section {
  // Guest physical address of its first byte.
  gpa first{};
  // Length in bytes (never 0 in a rendered view).
  std::uint64_t size = 0;
  // The kind of the region it shows.
  region_kind kind = region_kind::ram;
  // Host address of `first`.
  ua host{};
  // The backing of the region it shows.
  std::uint64_t backing = 0;
  // Id of the region it shows.
  std::uint64_t region = 0;
  // Start of the whole region the section is part of (a section can show only
  // part of it, where regions of higher priority cover the rest).
  gpa region_first{};
  // Size in bytes of that whole region; 0 in a section made by hand.
  std::uint64_t region_size = 0;

  // Memberwise: a section that moved, changed size or now shows another
  // region or host address compares unequal.
  friend bool operator==(const flat_section&, const flat_section&) = default;
  // Guest address of its last byte (inclusive, so that a section ending at
  // 2^64 has one); only meaningful when size is not 0.
  [[nodiscard]] std::uint64_t last() const noexcept { return first.value() + (size - 1); }
};

// A rendered flat view: non-overlapping sections in ascending address order.
using flat_view = std::vector<flat_section>;

// Non-overlapping sections in address order. Regions of size 0 or that would
// pass 2^64 show nothing (memory_map refuses them up front).
inline flat_view render(const std::vector<memory_region>& regions) {
  struct edge {
    std::uint64_t at; // boundary; for ends, one past the last byte (may be 2^64: flagged)
    bool reaches_top; // an end at 2^64
    bool opens;
    std::size_t index;
  };
  std::vector<edge> edges;
  edges.reserve(regions.size() * 2);
  for (std::size_t i = 0; i < regions.size(); ++i) {
    const memory_region& r = regions[i];
    if (r.size == 0 || !gpa_range::make(r.first, r.size))
      continue;
    const std::uint64_t last = r.first.value() + (r.size - 1);
    edges.push_back({r.first.value(), false, true, i});
    edges.push_back({last + 1, last == UINT64_MAX, false, i});
  }
  // Order by position (2^64 last); at one position close before open.
  std::sort(edges.begin(), edges.end(), [](const edge& a, const edge& b) {
    if (a.reaches_top != b.reaches_top)
      return b.reaches_top;
    if (a.at != b.at)
      return a.at < b.at;
    return !a.opens && b.opens;
  });
  // The winner at a point: highest priority, then the latest added.
  auto lower = [&](std::size_t a, std::size_t b) {
    if (regions[a].priority != regions[b].priority)
      return regions[a].priority < regions[b].priority;
    return a < b;
  };
  std::priority_queue<std::size_t, std::vector<std::size_t>, decltype(lower)> covering(lower);
  std::vector<bool> closed(regions.size(), false);

  flat_view view;
  auto emit = [&](std::size_t winner, std::uint64_t from, std::uint64_t to_last) {
    const memory_region& r = regions[winner];
    const std::uint64_t offset = from - r.first.value();
    if (!view.empty()) {
      flat_section& prev = view.back();
      if (prev.region == r.id && prev.last() + 1 == from) { // the same region continues
        prev.size += to_last - from + 1;
        return;
      }
    }
    view.push_back(
        {gpa{from}, to_last - from + 1, r.kind, r.host + offset, r.backing, r.id, r.first, r.size});
  };

  std::size_t e = 0;
  while (e < edges.size()) {
    const std::uint64_t at = edges[e].at;
    const bool top = edges[e].reaches_top;
    if (top)
      break; // nothing lies at or past 2^64
    for (; e < edges.size() && !edges[e].reaches_top && edges[e].at == at; ++e) {
      if (edges[e].opens)
        covering.push(edges[e].index);
      else
        closed[edges[e].index] = true;
    }
    while (!covering.empty() && closed[covering.top()])
      covering.pop();
    if (covering.empty())
      continue;
    // The winner holds from `at` up to the next boundary.
    const std::uint64_t next_last =
        e < edges.size() && !edges[e].reaches_top ? edges[e].at - 1 : UINT64_MAX;
    emit(covering.top(), at, next_last);
  }
  return view;
}

// What a change does to a flat view: removals first, then additions.
struct flat_view_change {
  // Sections of the old view that the new one lacks, in address order.
  std::vector<flat_section> removed;
  // Sections of the new view that the old one lacks, in address order.
  std::vector<flat_section> added;
};

// The change from `before` to `after`, both rendered views: a section that
// differs in any member counts as removed and added again. One linear merge.
inline flat_view_change difference(const flat_view& before, const flat_view& after) {
  flat_view_change change;
  std::size_t i = 0, j = 0;
  while (i < before.size() || j < after.size()) {
    if (j == after.size() || (i < before.size() && before[i].first < after[j].first)) {
      change.removed.push_back(before[i++]);
    } else if (i == before.size() || after[j].first < before[i].first) {
      change.added.push_back(after[j++]);
    } else if (before[i] == after[j]) {
      ++i, ++j; // unchanged
    } else {
      change.removed.push_back(before[i++]);
      change.added.push_back(after[j++]);
    }
  }
  return change;
}

} // namespace iopt
