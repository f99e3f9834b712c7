// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// memory_listener<Granularity, Sink>: one listener for both jobs a VMM has
// — registering guest RAM at the host page size and mapping it for DMA at
// the IOMMU page size — parameterized by the granularity and by the sink
// that does the work.
//
// The listener keeps two pictures: what the sink should hold (the aligned
// parts of the sections it wants, now visible) and what it holds (what its
// add_range calls gave it, less what remove_range took back). Each change
// updates the first; commit makes the second follow it, touching only the
// difference, so a section that an overlay splits, or a neighbour that is
// unplugged, leaves every mapping that survives in place: nothing is
// unmapped and mapped again under DMA in flight.
//
// On an added section the listener
//   - skips kinds the sink does not want (IOMMU sections go to the sink's
//     optional iommu hooks: the notifier path);
//   - trims the section to the granularity and reports each trimmed head or
//     tail to the sink as an `unaligned` event with its exact range, and a
//     section whose guest and host offsets within a granule differ (so that
//     no granule of it can be used) as one such event too — nothing is
//     dropped in silence.
//
// What a sink holds comes in one of two units (Sink::unit, ranges if absent):
//   ranges   guest ranges (DMA mappings): contiguous parts of one backing
//            with contiguous host addresses are given as one range, and a
//            removal takes away exactly the granules that went, splitting a
//            range where needed (unmapping part of a mapping is allowed);
//   regions  one range per memory region, its whole aligned extent, held
//            while any part of the region is visible (preregistrations:
//            they cannot be split or grown while TCEs use them, so they
//            follow what is removed independently — a region — and an
//            overlay that hides part of a region does not touch them).
//
// A sink call that fails is reported to the sink's `failed` with what is
// needed to retry or undo it (guest and host address, size, status); the
// listener keeps wanting what it could not add and keeps holding what it
// could not remove, and retry() tries both again.
//
// A sink S provides:
//   bool wants(region_kind) const
//   status add_range(gpa first, ua host, std::uint64_t size)
//   status remove_range(gpa first, ua host, std::uint64_t size)
//   void unaligned(const unaligned_event&)
//   void failed(const sink_failure&)
// and optionally `static constexpr sink_unit unit` and
// iommu_added(const flat_section&) / iommu_removed(const flat_section&).
#pragma once

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <map>
#include <utility>
#include <vector>

#include <iopt/addr/align.hpp>
#include <iopt/addr/page_size.hpp>
#include <iopt/listener/memory_map.hpp>
#include <iopt/status.hpp>

namespace iopt {

// Which part of a section an unaligned event reports, and so why the sink
// does not get it.
enum class unaligned_part : std::uint8_t {
  head,            // before the first full granule
  tail,            // after the last full granule
  whole,           // the section holds no full granule
  offset_mismatch, // guest and host offsets within a granule differ: nothing usable
};

// Bytes of an added section that alignment keeps from the sink (`part` says
// why); reported when the section is added, not on removal.
struct unaligned_event {
  // Guest physical address of the first byte left out.
  gpa first{};
  // How many bytes are left out.
  std::uint64_t size = 0;
  // Which part of the section they are.
  unaligned_part part = unaligned_part::head;
  // Id of the region the section shows.
  std::uint64_t region = 0;
  // Memberwise.
  friend bool operator==(const unaligned_event&, const unaligned_event&) = default;
};

// A sink call that failed, with what is needed to retry or undo it.
struct sink_failure {
  // Guest physical address of the range the call was given.
  gpa first{};
  // Host address of `first`.
  ua host{};
  // Length of the range in bytes.
  std::uint64_t size = 0;
  // The status the sink returned (never ok).
  status error = status::ok;
  // True when remove_range failed (the sink still holds the range), false when
  // add_range did (the sink does not hold it).
  bool on_remove = false;
  // Memberwise.
  friend bool operator==(const sink_failure&, const sink_failure&) = default;
};

// What a sink holds: `ranges`, guest ranges added and removed granule by
// granule (DMA mappings), or `regions`, one whole aligned range per region
// (preregistrations). See the file comment.
enum class sink_unit : std::uint8_t { ranges, regions };

// What memory_listener needs of its sink; see the file comment for the
// optional members.
template <class S>
concept listener_sink = requires(S& s, const S& cs, region_kind k, gpa g, ua u, std::uint64_t n,
                                 const unaligned_event& e, const sink_failure& f) {
  { cs.wants(k) } -> std::same_as<bool>;
  { s.add_range(g, u, n) } -> std::same_as<status>;
  { s.remove_range(g, u, n) } -> std::same_as<status>;
  s.unaligned(e);
  s.failed(f);
};

// The unit sink S holds: S::unit when it declares one, ranges otherwise.
template <class S>
constexpr sink_unit unit_of() noexcept {
  if constexpr (requires { S::unit; })
    return S::unit;
  else
    return sink_unit::ranges;
}

// A map_listener that keeps `Sink` holding the granule-aligned parts of the
// sections it wants, adding and removing only what each change touches.
template <page_size_policy Granularity, listener_sink Sink>
class memory_listener final : public map_listener {
  static constexpr bool by_region = unit_of<Sink>() == sink_unit::regions;

public:
  // Aligns to `granularity` (e.g. the host page size for preregistration, the
  // IOMMU page size for DMA) and drives `sink`, which is kept by reference and
  // must outlive the listener; `priority` orders it among a map's listeners.
  memory_listener(Granularity granularity, Sink& sink, int priority = 0) noexcept
      : map_listener(priority), granularity_(granularity), sink_(&sink) {}

  // A range the sink holds: [first, first + size) at host address `host`.
  struct held_range {
    // Guest physical address of the first byte.
    gpa first{};
    // Length in bytes, a multiple of the granule.
    std::uint64_t size = 0;
    // Host address of `first`.
    ua host{};
    // The backing of the region it came from.
    std::uint64_t backing = 0;
    // Memberwise.
    friend bool operator==(const held_range&, const held_range&) = default;
    // Guest address of the last byte (inclusive); only meaningful when size is
    // not 0.
    [[nodiscard]] std::uint64_t last() const noexcept { return first.value() + (size - 1); }
  };
  // Keyed by guest address (unit ranges) or by region id (unit regions).
  using range_map = std::map<std::uint64_t, held_range>;
  // A range with its key in a range_map.
  using keyed_range = std::pair<std::uint64_t, held_range>;

  // Nothing to prepare: changes are gathered as sections arrive.
  void begin() override {}

  // Records that the aligned part of `s` is wanted, reporting what alignment
  // cuts off; the sink gets it at commit_additions(). An IOMMU section the
  // sink does not want goes to its iommu_added at once, if it has one.
  void section_added(const flat_section& s) override {
    if (!sink_->wants(s.kind)) {
      if constexpr (requires { sink_->iommu_added(s); })
        if (s.kind == region_kind::iommu)
          sink_->iommu_added(s);
      return;
    }
    const held_range part = trim(s.first, s.size, s.host, s.backing, s.region, true);
    if (part.size == 0)
      return;
    if constexpr (by_region) {
      region_view& v = regions_[s.region];
      ++v.visible_parts;
      v.extent = whole_region(s);
      changed_.regions.push_back(s.region);
    } else {
      visible_[part.first.value()] = part;
      changed_.cover(part);
    }
  }

  // Records that the aligned part of `s` is no longer visible; the sink loses
  // it at commit_removals(). An IOMMU section the sink does not want goes to
  // its iommu_removed at once, if it has one.
  void section_removed(const flat_section& s) override {
    if (!sink_->wants(s.kind)) {
      if constexpr (requires { sink_->iommu_removed(s); })
        if (s.kind == region_kind::iommu)
          sink_->iommu_removed(s);
      return;
    }
    const held_range part = trim(s.first, s.size, s.host, s.backing, s.region, false);
    if (part.size == 0)
      return;
    if constexpr (by_region) {
      if (const auto it = regions_.find(s.region);
          it != regions_.end() && --it->second.visible_parts == 0)
        regions_.erase(it);
      changed_.regions.push_back(s.region);
    } else {
      visible_.erase(part.first.value());
      changed_.cover(part);
    }
  }

  // What is held but no longer wanted goes (only where this change touched).
  void commit_removals() override { remove_unwanted(false); }
  // What is wanted but not held yet comes.
  void commit_additions() override { add_wanted(false); }
  // Tries again what failed before (a commit leaves it alone, so that one
  // failure is reported once), over everything: removals, then additions.
  void retry() {
    changed_ = scope{0, UINT64_MAX, {}};
    for (const auto& [id, v] : regions_)
      changed_.regions.push_back(id);
    for (const auto& [key, r] : held_)
      changed_.regions.push_back(key);
    remove_unwanted(true);
    add_wanted(true);
  }

  // What the sink holds now.
  [[nodiscard]] const range_map& ranges() const noexcept { return held_; }
  // The page size the listener aligns sections to.
  [[nodiscard]] const Granularity& granularity() const noexcept { return granularity_; }

private:
  // Where a change touched: guest bytes [first, last] (unit ranges) or
  // region ids (unit regions). Commits compare wanted and held only there,
  // so a change costs what it touches, not what the map holds.
  struct scope {
    std::uint64_t first = UINT64_MAX, last = 0;
    std::vector<std::uint64_t> regions;
    void cover(const held_range& r) {
      first = std::min(first, r.first.value());
      last = std::max(last, r.last());
    }
  };
  struct region_view {
    std::uint64_t visible_parts = 0;
    held_range extent; // the aligned part of the whole region
  };

  void remove_unwanted(bool retrying) {
    wanted_ = wanted_in(changed_);
    apply(missing_from(held_in(changed_), wanted_), failed_removals_, retrying, true);
  }
  void add_wanted(bool retrying) {
    apply(missing_from(wanted_, held_in(changed_)), failed_additions_, retrying, false);
    wanted_.clear();
    changed_ = {};
  }

  held_range whole_region(const flat_section& s) {
    if (s.region_size == 0) // a section made by hand, without its region: the section itself
      return trim(s.first, s.size, s.host, s.backing, s.region, false);
    const ua region_host = s.host - (s.first - s.region_first);
    return trim(s.region_first, s.region_size, region_host, s.backing, s.region, false);
  }

  // What the sink should hold within `where`.
  range_map wanted_in(const scope& where) const {
    range_map want;
    if constexpr (by_region) {
      for (std::uint64_t id : where.regions)
        if (const auto it = regions_.find(id); it != regions_.end())
          want[id] = it->second.extent;
    } else {
      for_each_within(visible_, where, [&](const held_range& r) { merge_in(want, r); });
    }
    return want;
  }
  // What the sink holds within `where`.
  range_map held_in(const scope& where) const {
    range_map held;
    if constexpr (by_region) {
      for (std::uint64_t id : where.regions)
        if (const auto it = held_.find(id); it != held_.end())
          held[id] = it->second;
    } else {
      for_each_within(held_, where, [&](const held_range& r) { held[r.first.value()] = r; });
    }
    return held;
  }
  // Calls f with each range of the guest-keyed map `m` cut to `where`.
  template <class F>
  static void for_each_within(const range_map& m, const scope& where, F&& f) {
    if (where.first > where.last)
      return;
    auto it = m.upper_bound(where.first);
    if (it != m.begin())
      --it;
    for (; it != m.end() && it->first <= where.last; ++it) {
      const held_range& r = it->second;
      if (r.last() < where.first)
        continue;
      f(slice(r, std::max(r.first.value(), where.first), std::min(r.last(), where.last)));
    }
  }

  // The parts of `from` that `to` does not hold with the same host address
  // and backing, as ranges with their keys.
  static std::vector<keyed_range> missing_from(const range_map& from, const range_map& to) {
    std::vector<keyed_range> out;
    if constexpr (by_region) {
      for (const auto& [id, r] : from)
        if (const auto it = to.find(id); it == to.end() || !(it->second == r))
          out.emplace_back(id, r);
    } else {
      for (const auto& [first, r] : from) {
        std::uint64_t cursor = r.first.value(); // the first byte not yet accounted for
        bool done = false;
        auto it = to.upper_bound(r.first.value());
        if (it != to.begin())
          --it;
        for (; it != to.end() && it->first <= r.last() && !done; ++it) {
          const held_range& t = it->second;
          if (t.last() < cursor || !same_mapping(r, t))
            continue;
          const std::uint64_t from_byte = std::max(cursor, t.first.value());
          if (from_byte > cursor)
            out.emplace_back(cursor, slice(r, cursor, from_byte - 1));
          done = t.last() >= r.last();
          cursor = done ? cursor : t.last() + 1;
        }
        if (!done)
          out.emplace_back(cursor, slice(r, cursor, r.last()));
      }
    }
    return out;
  }
  // Whether the two ranges put the same host address behind each guest address.
  static bool same_mapping(const held_range& a, const held_range& b) noexcept {
    return a.backing == b.backing &&
           a.host.value() - a.first.value() == b.host.value() - b.first.value();
  }
  static held_range slice(const held_range& r, std::uint64_t first, std::uint64_t last) noexcept {
    return held_range{gpa{first}, last - first + 1, r.host + (first - r.first.value()), r.backing};
  }

  // Adds `r` to a guest-keyed map, merged with neighbours it continues.
  static void merge_in(range_map& m, held_range r) {
    if (auto before = m.lower_bound(r.first.value()); before != m.begin()) {
      --before;
      const held_range& b = before->second;
      if (b.last() + 1 == r.first.value() && same_mapping(b, r)) {
        r = held_range{b.first, b.size + r.size, b.host, b.backing};
        m.erase(before);
      }
    }
    if (r.last() != UINT64_MAX)
      if (auto after = m.find(r.last() + 1); after != m.end() && same_mapping(r, after->second)) {
        r.size += after->second.size;
        m.erase(after);
      }
    m[r.first.value()] = r;
  }

  // Asks the sink to remove or add each range, except those that failed
  // before (unless retrying); `failed` becomes the list of those that failed
  // now or were left alone.
  void apply(const std::vector<keyed_range>& todo, std::vector<keyed_range>& failed, bool retrying,
             bool removing) {
    std::vector<keyed_range> still_failing;
    for (const keyed_range& e : todo) {
      const auto& [key, r] = e;
      if (!retrying && std::find(failed.begin(), failed.end(), e) != failed.end()) {
        still_failing.push_back(e);
        continue;
      }
      const status s = removing ? sink_->remove_range(r.first, r.host, r.size)
                                : sink_->add_range(r.first, r.host, r.size);
      if (s != status::ok) {
        sink_->failed(sink_failure{r.first, r.host, r.size, s, removing});
        still_failing.push_back(e);
      } else if (removing) {
        forget(key, r);
      } else {
        remember(key, r);
      }
    }
    failed = std::move(still_failing);
  }

  // The sink now holds `r` / no longer holds `r`.
  void remember(std::uint64_t key, const held_range& r) {
    if constexpr (by_region)
      held_[key] = r;
    else
      merge_in(held_, r);
  }
  void forget(std::uint64_t key, const held_range& r) {
    if constexpr (by_region) {
      held_.erase(key);
    } else {
      // `r` lies inside one held range: cut it out, keeping what is around it.
      auto it = held_.upper_bound(r.first.value());
      IOPT_ASSERT(it != held_.begin());
      --it;
      const held_range h = it->second;
      held_.erase(it);
      if (h.first.value() < r.first.value())
        held_[h.first.value()] = slice(h, h.first.value(), r.first.value() - 1);
      if (r.last() < h.last())
        held_[r.last() + 1] = slice(h, r.last() + 1, h.last());
    }
  }

  // The aligned part of [first, first + size) at `host`; with `report`, tell
  // the sink what is cut.
  held_range trim(gpa at, std::uint64_t size, ua host, std::uint64_t backing, std::uint64_t region,
                  bool report) {
    const unsigned shift = granularity_.shift();
    const std::uint64_t mask = granularity_.mask();
    auto tell = [&](std::uint64_t from, std::uint64_t bytes, unaligned_part why) {
      if (report && bytes != 0)
        sink_->unaligned(unaligned_event{gpa{from}, bytes, why, region});
    };
    if (((at.value() ^ host.value()) & mask) != 0) {
      tell(at.value(), size, unaligned_part::offset_mismatch);
      return {};
    }
    // First full granule: align_up(first). End of the last full granule:
    // align_down(last + 1) - 1, where last + 1 may be 2^64 (aligned).
    const std::uint64_t first = at.value();
    const std::uint64_t last = first + (size - 1);
    const auto up = align_up(first, shift);
    std::uint64_t aligned_last = last;
    if (last != UINT64_MAX) {
      const std::uint64_t end = align_down(last + 1, shift);
      aligned_last = end - 1; // wraps only when end is 0, which the check below catches
      if (!up || end <= *up) {
        tell(first, size, unaligned_part::whole);
        return {};
      }
    } else if (!up) {
      tell(first, size, unaligned_part::whole);
      return {};
    }
    tell(first, *up - first, unaligned_part::head);
    tell(aligned_last + 1, last - aligned_last, unaligned_part::tail);
    return held_range{gpa{*up}, aligned_last - *up + 1, host + (*up - first), backing};
  }

  Granularity granularity_;
  Sink* sink_;
  range_map visible_; // unit ranges: aligned parts of wanted sections, by guest address
  std::map<std::uint64_t, region_view> regions_; // unit regions: by region id
  range_map held_;
  scope changed_;    // since the last commit
  range_map wanted_; // between commit_removals and commit_additions
  std::vector<keyed_range> failed_removals_, failed_additions_;
};

} // namespace iopt
