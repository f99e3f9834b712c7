// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// The two sinks a VMM needs, each driven by the same memory_listener:
//
//   prereg_sink   registers guest RAM with the preregistration registry at
//                 the host page size (e.g. 64 KiB), one registration per RAM
//                 region, and unregisters it when the region goes. Device
//                 RAM is not registered (its pages are not ordinary memory
//                 that can be pinned).
//   dma_sink      maps guest RAM and device RAM through a DMA container at
//                 the IOMMU page size (e.g. 4 KiB), guest physical address
//                 as the bus address, and unmaps it when it goes.
//
// Neither drops anything in silence: unaligned fragments and failed
// additions and removals are kept where the caller can read them.
//
// Attach both to one memory_map with the preregistration listener at a lower
// priority than the DMA listener (e.g. 0 and 10), so that memory is
// registered before it is mapped and unmapped before it is unregistered.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include <iopt/addr/address.hpp>
#include <iopt/format/permission.hpp>
#include <iopt/listener/listener.hpp>
#include <iopt/status.hpp>

namespace iopt {

// What both sinks keep for the caller: unaligned fragments and failed sink
// calls (each with what is needed to retry or undo it: guest and host
// address, size, status). Bounded: past `limit` entries of a kind, further
// ones are counted in `dropped` but not kept; take_* hands over what was
// kept and empties it.
struct sink_log {
  // The limit a new log starts with: entries kept of each kind.
  static constexpr std::size_t default_limit = 4096;
  // How many entries of each kind are kept; may be changed at any time.
  std::size_t limit = default_limit;
  // The unaligned fragments kept, oldest first.
  std::vector<unaligned_event> unaligned;
  // The failed sink calls kept, oldest first.
  std::vector<sink_failure> failures;
  // Entries of either kind not kept because the log was full.
  std::uint64_t dropped = 0;

  // Keeps `e`, or counts it in `dropped` when `limit` are kept already.
  void unaligned_fragment(const unaligned_event& e) { keep(unaligned, e); }
  // Keeps `f`, or counts it in `dropped` when `limit` are kept already.
  void failed(const sink_failure& f) { keep(failures, f); }
  // Hands over the failures kept and empties the list (`dropped` stays).
  [[nodiscard]] std::vector<sink_failure> take_failures() { return std::exchange(failures, {}); }
  // Hands over the unaligned fragments kept and empties the list.
  [[nodiscard]] std::vector<unaligned_event> take_unaligned() {
    return std::exchange(unaligned, {});
  }

private:
  template <class T>
  void keep(std::vector<T>& v, const T& e) {
    if (v.size() < limit)
      v.push_back(e);
    else
      ++dropped;
  }
};

// Registers each RAM region whole, as one preregistered region, while any of
// it is visible (sink_unit::regions: a registration cannot be split while
// TCEs use it, so it follows the unit that is removed independently).
template <class Registry>
class prereg_sink {
public:
  // One registration per region, whole (see sink_unit).
  static constexpr sink_unit unit = sink_unit::regions;
  // Registers with `registry`, which is kept by reference and must outlive
  // the sink.
  explicit prereg_sink(Registry& registry) noexcept : registry_(&registry) {}

  // Guest RAM only: device RAM, MMIO and IOMMU regions are not registered.
  bool wants(region_kind kind) const noexcept { return kind == region_kind::ram; }
  // Registers the host memory behind a region: `size` bytes from `host`; the
  // guest address plays no part.
  status add_range(gpa, ua host, std::uint64_t size) {
    return registry_->register_region(host, size);
  }
  // Unregisters what add_range registered; busy while TCEs still map it (it
  // stays registered, the listener counts it as held, and retry() tries again).
  status remove_range(gpa, ua host, std::uint64_t size) {
    return registry_->unregister_region(host, size);
  }
  // Keeps the fragment in `log`.
  void unaligned(const unaligned_event& e) { log.unaligned_fragment(e); }
  // Keeps the failure in `log`.
  void failed(const sink_failure& f) { log.failed(f); }

  // What the sink could not do or was not given, for the caller to read.
  sink_log log;

private:
  Registry* registry_;
};

// Maps guest RAM and device RAM at guest physical address = bus address;
// unmaps exactly the granules that go (sink_unit::ranges).
template <class Container>
class dma_sink {
public:
  // Maps through `container`, which is kept by reference and must outlive the
  // sink.
  explicit dma_sink(Container& container) noexcept : container_(&container) {}

  // Guest RAM and device RAM; MMIO and IOMMU regions are not mapped.
  bool wants(region_kind kind) const noexcept {
    return kind == region_kind::ram || kind == region_kind::device_ram;
  }
  // Maps `size` bytes at bus address `first` (the guest address) to `host`,
  // readable and writable; the container's status is passed on.
  status add_range(gpa first, ua host, std::uint64_t size) {
    return container_->map_dma(ioba{first.value()}, host, size, permission::read_write);
  }
  // Unmaps `size` bytes at bus address `first`; the host address is not
  // needed.
  status remove_range(gpa first, ua, std::uint64_t size) {
    const auto unmapped = container_->unmap_dma(ioba{first.value()}, size);
    return unmapped ? status::ok : unmapped.error();
  }
  // Keeps the fragment in `log`.
  void unaligned(const unaligned_event& e) { log.unaligned_fragment(e); }
  // Keeps the failure in `log`.
  void failed(const sink_failure& f) { log.failed(f); }

  // What the sink could not do or was not given, for the caller to read.
  sink_log log;

private:
  Container* container_;
};

} // namespace iopt
