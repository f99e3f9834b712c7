// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// memory_listener<Granularity, Sink>: one listener for both jobs a VMM has
// — registering guest RAM at the host page size and mapping it for DMA at
// the IOMMU page size — parameterized by the granularity and by the sink
// that does the work.
//
// On an added section the listener
//   - skips kinds the sink does not want (IOMMU sections go to the sink's
//     optional iommu hooks: the notifier path);
//   - trims the section to the granularity and reports each trimmed head or
//     tail to the sink as an `unaligned` event with its exact range, and a
//     section whose guest and host addresses sit at different offsets within
//     a granule (so that no granule of it can be used) as one such event too —
//     nothing is dropped in silence;
//   - merges the aligned parts added in one change that share a backing and
//     have contiguous host addresses into one sink range.
// On a removed section it undoes exactly what the addition did: the sink
// range holding it is removed and whatever else that range held is added
// back, still merged where it can be.
//
// A sink S provides:
//   bool wants(region_kind) const
//   status add_range(gpa first, ua host, std::uint64_t size)
//   void remove_range(gpa first, ua host, std::uint64_t size)
//   void unaligned(const unaligned_event&)
//   void add_failed(gpa first, std::uint64_t size, status)
// and optionally iommu_added(const flat_section&) / iommu_removed(const flat_section&).
#pragma once

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <map>
#include <vector>

#include <iopt/addr/align.hpp>
#include <iopt/addr/page_size.hpp>
#include <iopt/listener/memory_map.hpp>

namespace iopt {

enum class unaligned_part : std::uint8_t {
  head,            // before the first full granule
  tail,            // after the last full granule
  whole,           // the section holds no full granule
  offset_mismatch, // guest and host offsets within a granule differ: nothing usable
};

struct unaligned_event {
  gpa first{};
  std::uint64_t size = 0;
  unaligned_part part = unaligned_part::head;
  std::uint64_t region = 0;
  friend bool operator==(const unaligned_event&, const unaligned_event&) = default;
};

template <class S>
concept listener_sink = requires(S& s, const S& cs, region_kind k, gpa g, ua u, std::uint64_t n,
                                 const unaligned_event& e, status st) {
  { cs.wants(k) } -> std::same_as<bool>;
  { s.add_range(g, u, n) } -> std::same_as<status>;
  s.remove_range(g, u, n);
  s.unaligned(e);
  s.add_failed(g, n, st);
};

template <page_size_policy Granularity, listener_sink Sink>
class memory_listener final : public map_listener {
public:
  memory_listener(Granularity granularity, Sink& sink) noexcept
      : granularity_(granularity), sink_(&sink) {}

  // A sink range: what the sink was given in one add_range.
  struct held_range {
    gpa first{};
    std::uint64_t size = 0;
    ua host{};
    std::uint64_t backing = 0;
    std::vector<gpa> parts; // starts of the aligned parts merged into it
  };

  void begin() override {}

  void section_added(const flat_section& s) override {
    if (!sink_->wants(s.kind)) {
      if constexpr (requires { sink_->iommu_added(s); })
        if (s.kind == region_kind::iommu)
          sink_->iommu_added(s);
      return;
    }
    const auto piece = trim(s, true);
    if (piece.size != 0)
      pending_.push_back(piece);
  }

  void section_removed(const flat_section& s) override {
    if (!sink_->wants(s.kind)) {
      if constexpr (requires { sink_->iommu_removed(s); })
        if (s.kind == region_kind::iommu)
          sink_->iommu_removed(s);
      return;
    }
    const part p = trim(s, false);
    if (p.size == 0)
      return;
    // Added and removed in the same change: it never reached the sink.
    const auto queued = std::find_if(pending_.begin(), pending_.end(),
                                     [&](const part& q) { return q.first == p.first; });
    if (queued != pending_.end()) {
      pending_.erase(queued);
      return;
    }
    auto it = ranges_.upper_bound(p.first.value());
    if (it == ranges_.begin())
      return;
    --it;
    held_range& r = it->second;
    if (p.first.value() - r.first.value() >= r.size)
      return;
    sink_->remove_range(r.first, r.host, r.size);
    // The other parts go back to the sink at commit.
    for (std::size_t i = 0; i < r.parts.size(); ++i) {
      const gpa part_first = r.parts[i];
      if (part_first == p.first)
        continue;
      const std::uint64_t end =
          i + 1 < r.parts.size() ? r.parts[i + 1].value() : r.first.value() + r.size;
      pending_.push_back(
          part{part_first, end - part_first.value(), r.host + (part_first - r.first), r.backing});
    }
    ranges_.erase(it);
  }

  void commit() override {
    std::sort(pending_.begin(), pending_.end(),
              [](const part& a, const part& b) { return a.first < b.first; });
    for (std::size_t i = 0; i < pending_.size();) {
      held_range r{pending_[i].first,
                   pending_[i].size,
                   pending_[i].host,
                   pending_[i].backing,
                   {pending_[i].first}};
      std::size_t j = i + 1;
      for (; j < pending_.size(); ++j) {
        const part& next = pending_[j];
        const bool contiguous = next.first.value() == r.first.value() + r.size &&
                                next.host.value() == r.host.value() + r.size &&
                                next.backing == r.backing;
        if (!contiguous)
          break;
        r.size += next.size;
        r.parts.push_back(next.first);
      }
      const status s = sink_->add_range(r.first, r.host, r.size);
      if (s == status::ok)
        ranges_.emplace(r.first.value(), std::move(r));
      else
        sink_->add_failed(r.first, r.size, s);
      i = j;
    }
    pending_.clear();
  }

  // What the sink holds now, by guest address.
  [[nodiscard]] const std::map<std::uint64_t, held_range>& ranges() const noexcept {
    return ranges_;
  }
  [[nodiscard]] const Granularity& granularity() const noexcept { return granularity_; }

private:
  struct part {
    gpa first{};
    std::uint64_t size = 0;
    ua host{};
    std::uint64_t backing = 0;
  };

  // The aligned part of a section; with `report`, tell the sink what is cut.
  part trim(const flat_section& s, bool report) {
    const unsigned shift = granularity_.shift();
    const std::uint64_t mask = granularity_.mask();
    auto tell = [&](std::uint64_t from, std::uint64_t bytes, unaligned_part why) {
      if (report && bytes != 0)
        sink_->unaligned(unaligned_event{gpa{from}, bytes, why, s.region});
    };
    if (((s.first.value() ^ s.host.value()) & mask) != 0) {
      tell(s.first.value(), s.size, unaligned_part::offset_mismatch);
      return {};
    }
    // First full granule: align_up(first). End of the last full granule:
    // align_down(last + 1) - 1, where last + 1 may be 2^64 (aligned).
    const std::uint64_t first = s.first.value();
    const std::uint64_t last = s.last();
    const auto up = align_up(first, shift);
    std::uint64_t aligned_last = last;
    if (last != UINT64_MAX) {
      const std::uint64_t end = align_down(last + 1, shift);
      aligned_last = end - 1; // wraps only when end is 0, which the check below catches
      if (!up || end <= *up) {
        tell(first, s.size, unaligned_part::whole);
        return {};
      }
    } else if (!up) {
      tell(first, s.size, unaligned_part::whole);
      return {};
    }
    tell(first, *up - first, unaligned_part::head);
    tell(aligned_last + 1, last - aligned_last, unaligned_part::tail);
    return part{gpa{*up}, aligned_last - *up + 1, s.host + (*up - first), s.backing};
  }

  Granularity granularity_;
  Sink* sink_;
  std::map<std::uint64_t, held_range> ranges_;
  std::vector<part> pending_;
};

} // namespace iopt
