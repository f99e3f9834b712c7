// Test helpers for pinning strategies.
#pragma once

#include <iopt/prereg/pinning.hpp>

// Maps one IOMMU page through a strategy's range interface and gives its
// target, as a container would for a one-page map_dma.
template <class Strategy>
iopt::status map_one(Strategy& s, iopt::ua page, unsigned shift, iopt::permission perm,
                     iopt::hpa& target) {
  iopt::target_log log;
  const iopt::status st = s.map_pages(page, 1, shift, perm, log);
  if (st == iopt::status::ok)
    s.for_each_target(page, 1, shift,
                      [&](std::uint64_t, iopt::hpa t, std::uint64_t) noexcept { target = t; });
  return st;
}
