// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// The two sinks a VMM needs, each driven by the same memory_listener:
//
//   prereg_sink   registers guest RAM with the preregistration registry at
//                 the host page size (e.g. 64 KiB) and unregisters it when
//                 the RAM goes. Device RAM is not registered (its pages are
//                 not ordinary memory that can be pinned).
//   dma_sink      maps guest RAM and device RAM through a DMA container at
//                 the IOMMU page size (e.g. 4 KiB), guest physical address
//                 as the bus address, and unmaps it when it goes.
//
// Neither drops anything in silence: unaligned fragments and failed
// additions and removals are kept where the caller can read them.
#pragma once

#include <cstdint>
#include <vector>

#include <iopt/addr/address.hpp>
#include <iopt/format/permission.hpp>
#include <iopt/listener/listener.hpp>
#include <iopt/status.hpp>

namespace iopt {

struct sink_failure {
  gpa first{};
  std::uint64_t size = 0;
  status error = status::ok;
  bool on_remove = false;
  friend bool operator==(const sink_failure&, const sink_failure&) = default;
};

// What both sinks keep for the caller.
struct sink_log {
  std::vector<unaligned_event> unaligned;
  std::vector<sink_failure> failures;

  void unaligned_fragment(const unaligned_event& e) { unaligned.push_back(e); }
  void failed(gpa first, std::uint64_t size, status s, bool on_remove) {
    failures.push_back(sink_failure{first, size, s, on_remove});
  }
};

template <class Registry>
class prereg_sink {
public:
  explicit prereg_sink(Registry& registry) noexcept : registry_(&registry) {}

  bool wants(region_kind kind) const noexcept { return kind == region_kind::ram; }
  status add_range(gpa, ua host, std::uint64_t size) {
    return registry_->register_region(host, size);
  }
  void remove_range(gpa first, ua host, std::uint64_t size) {
    if (const status s = registry_->unregister_region(host, size); s != status::ok)
      log.failed(first, size, s, true); // e.g. busy: TCEs still map it
  }
  void unaligned(const unaligned_event& e) { log.unaligned_fragment(e); }
  void add_failed(gpa first, std::uint64_t size, status s) { log.failed(first, size, s, false); }

  sink_log log;

private:
  Registry* registry_;
};

template <class Container>
class dma_sink {
public:
  explicit dma_sink(Container& container) noexcept : container_(&container) {}

  bool wants(region_kind kind) const noexcept {
    return kind == region_kind::ram || kind == region_kind::device_ram;
  }
  status add_range(gpa first, ua host, std::uint64_t size) {
    return container_->map_dma(ioba{first.value()}, host, size, permission::read_write);
  }
  void remove_range(gpa first, ua, std::uint64_t size) {
    const auto unmapped = container_->unmap_dma(ioba{first.value()}, size);
    if (!unmapped)
      log.failed(first, size, unmapped.error(), true);
  }
  void unaligned(const unaligned_event& e) { log.unaligned_fragment(e); }
  void add_failed(gpa first, std::uint64_t size, status s) { log.failed(first, size, s, false); }

  sink_log log;

private:
  Container* container_;
};

} // namespace iopt
