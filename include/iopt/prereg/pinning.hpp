// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// Pinning strategies: what mapping and unmapping an IOMMU page do to memory.
//
//   pin_on_map     sPAPR VFIO "v1": a map pins the host pages under its
//                  IOMMU page (pins nest per host page) and charges those it
//                  pins first; an unmap undoes that.
//   preregistered  "v2": memory was registered beforehand; a map requires
//                  its page to lie in a registered region and raises that
//                  region's mapping count, an unmap lowers it. Nothing is
//                  pinned at map time.
//   no_pinning     nothing to pin: the user address is the device address
//                  (simulators, identity-mapped test setups).
//
// A strategy S provides:
//   static constexpr bool needs_shadow
//       whether the table must remember, per entry, the user address it
//       mapped (what unmap must undo); false means no shadow is kept.
//   status s.map_page(ua page, unsigned page_shift, permission, hpa& target) noexcept
//       ok with the target to write into the TCE, or a status with nothing
//       pinned, charged or counted.
//   void s.unmap_page(ua page, unsigned page_shift, permission) noexcept
//       undoes map_page; a writable page is reported dirtied first.
//   result<hpa> s.translate_page(ua page, unsigned page_shift) noexcept
//       the target of a page map_page already accepted, with no side effect
//       (so a caller can pin a whole range first and write it afterwards).
//
// Dirty pages: a device that could write a page may have written it, so
// live migration must copy it again. The dirty hook hears of every writable
// mapping when it is released.
#pragma once

#include <cstdint>
#include <mutex>
#include <utility>

#include <iopt/addr/address.hpp>
#include <iopt/format/permission.hpp>
#include <iopt/prereg/accounting.hpp>
#include <iopt/prereg/backend.hpp>
#include <iopt/prereg/page_counts.hpp>
#include <iopt/prereg/registry.hpp>
#include <iopt/status.hpp>

namespace iopt {

// The sPAPR VFIO memory models a strategy implements.
enum class memory_model : std::uint8_t {
  v1_pin_on_map,    // VFIO_SPAPR_TCE_IOMMU: enable first; maps pin
  v2_preregistered, // VFIO_SPAPR_TCE_v2_IOMMU: register memory first; maps look it up
  unpinned,         // nothing to enable or register
};

template <class S>
concept pinning_strategy = requires(S& s, ua page, unsigned shift, permission perm, hpa& target) {
  { S::needs_shadow } -> std::convertible_to<bool>;
  { S::model } -> std::convertible_to<memory_model>;
  { s.map_page(page, shift, perm, target) }
  noexcept->std::same_as<status>;
  { s.unmap_page(page, shift, perm) }
  noexcept;
  { s.translate_page(page, shift) }
  noexcept->std::same_as<result<hpa>>;
};

// Where dirtied pages are reported: a plain function and its context, so
// that the strategies stay free of further template parameters.
struct dirty_hook {
  void (*report)(void* context, ua first, std::uint64_t bytes) noexcept = nullptr;
  void* context = nullptr;

  void operator()(ua first, std::uint64_t bytes, permission perm) const noexcept {
    if (report != nullptr && can_write(perm))
      report(context, first, bytes);
  }
};

class no_pinning {
public:
  static constexpr bool needs_shadow = false;
  static constexpr memory_model model = memory_model::unpinned;
  explicit no_pinning(dirty_hook dirty = {}) noexcept : dirty_(dirty) {}

  status map_page(ua page, unsigned, permission, hpa& target) noexcept {
    target = hpa{page.value()};
    return status::ok;
  }
  void unmap_page(ua page, unsigned page_shift, permission perm) noexcept {
    dirty_(page, std::uint64_t{1} << page_shift, perm);
  }
  result<hpa> translate_page(ua page, unsigned) noexcept { return hpa{page.value()}; }

private:
  dirty_hook dirty_;
};

template <class Registry>
class preregistered {
public:
  static constexpr bool needs_shadow = true;
  static constexpr memory_model model = memory_model::v2_preregistered;
  explicit preregistered(Registry& registry, dirty_hook dirty = {}) noexcept
      : registry_(&registry), dirty_(dirty) {}

  // not_found when the page is not registered memory; unsupported when its
  // region cannot back pages this large.
  status map_page(ua page, unsigned page_shift, permission, hpa& target) noexcept {
    const std::uint64_t bytes = std::uint64_t{1} << page_shift;
    const auto region = registry_->acquire(page, bytes);
    if (!region)
      return region.error();
    const auto translated = registry_->translate(**region, page, page_shift);
    if (!translated) {
      registry_->release(*region);
      return translated.error();
    }
    target = *translated;
    return status::ok;
  }
  void unmap_page(ua page, unsigned page_shift, permission perm) noexcept {
    const std::uint64_t bytes = std::uint64_t{1} << page_shift;
    dirty_(page, bytes, perm);
    [[maybe_unused]] const status s = registry_->release(page, bytes);
    IOPT_ASSERT(s == status::ok);
  }
  result<hpa> translate_page(ua page, unsigned page_shift) noexcept {
    return registry_->translate(page, page_shift);
  }

  [[nodiscard]] Registry& registry() noexcept { return *registry_; }

private:
  Registry* registry_;
  dirty_hook dirty_;
};

// v1. An IOMMU page pins the host pages it covers: the one host page that
// holds it when it is smaller than a host page (its target is that page's
// frame plus its offset in it), or every host page of it when it is larger —
// allowed only where one huge page backs the whole IOMMU page, as the kernel
// requires a compound page at least as large (not_permitted otherwise: the
// device would reach memory that is not the user's).
//
// Pins are counted per host page and nest: every mapping pins the host pages
// under it once more (as the kernel takes a page reference per IOMMU page),
// and a host page stays pinned while any mapping covers it, through any
// window. Charges follow the pinned pages: a host page is charged when its
// first mapping pins it and uncharged when its last mapping goes, so the
// charge is always (distinct host pages pinned) x (host page size).
// (The kernel charges the whole default window at enable time instead; see
// test/BAD_INPUTS.md.) The count table allocates through Allocator before
// anything changes, so an allocation failure is no_memory with nothing done.
template <pinning_backend Backend, accounting_policy Accounting,
          level_allocator Allocator = heap_allocator>
class pin_on_map {
public:
  static constexpr bool needs_shadow = true;
  static constexpr memory_model model = memory_model::v1_pin_on_map;
  pin_on_map(Backend& backend, Accounting& accounting, dirty_hook dirty = {},
             Allocator alloc = {}) noexcept
      : backend_(&backend), accounting_(&accounting), dirty_(dirty), pins_(std::move(alloc)) {}

  // Checks containment, then reserves count room, charges the host pages
  // no mapping pins yet, pins the host pages and translates; each step
  // undone if a later one fails.
  status map_page(ua page, unsigned page_shift, permission, hpa& target) noexcept {
    if (!is_aligned(page, page_shift))
      return status::not_aligned;
    const unsigned host_shift = backend_->host_page_shift();
    const std::uint64_t bytes = std::uint64_t{1} << page_shift;
    if (page_shift > host_shift && backend_->backing_page_shift(page, bytes) < page_shift)
      return status::not_permitted; // no one huge page holds the whole IOMMU page
    const host_span span = host_pages_of(page, page_shift, host_shift);

    std::lock_guard<std::mutex> lock(pins_lock_);
    std::uint64_t fresh = 0; // host pages no mapping pins yet
    for (std::uint64_t i = 0; i < span.pages; ++i)
      fresh += pins_.count(span.first + i) == 0 ? 1u : 0u;
    if (!pins_.reserve(static_cast<std::size_t>(fresh)))
      return status::no_memory;
    if (fresh != 0)
      if (const status s = accounting_->charge(fresh << host_shift); s != status::ok)
        return s;
    // Every mapping pins its host pages once more, as the kernel takes a page
    // reference per IOMMU page: the backend's count is the mappings' count.
    const ua host_first{span.first << host_shift};
    const std::uint64_t host_bytes = span.pages << host_shift;
    const status pinned = backend_->pin(host_first, host_bytes);
    const auto translated = pinned == status::ok ? backend_->translate(page) : result<hpa>(pinned);
    if (!translated) {
      if (pinned == status::ok)
        backend_->unpin(host_first, host_bytes);
      if (fresh != 0)
        accounting_->uncharge(fresh << host_shift);
      return translated.error();
    }
    for (std::uint64_t i = 0; i < span.pages; ++i)
      pins_.raise(span.first + i);
    target = *translated;
    return status::ok;
  }

  void unmap_page(ua page, unsigned page_shift, permission perm) noexcept {
    dirty_(page, std::uint64_t{1} << page_shift, perm);
    const unsigned host_shift = backend_->host_page_shift();
    const host_span span = host_pages_of(page, page_shift, host_shift);
    std::lock_guard<std::mutex> lock(pins_lock_);
    backend_->unpin(ua{span.first << host_shift}, span.pages << host_shift);
    for (std::uint64_t i = 0; i < span.pages; ++i)
      if (pins_.lower(span.first + i) == 0)
        accounting_->uncharge(std::uint64_t{1} << host_shift);
  }

  result<hpa> translate_page(ua page, unsigned) noexcept { return backend_->translate(page); }

  // Distinct host pages this strategy's mappings pin.
  [[nodiscard]] std::size_t pinned_pages() const noexcept {
    std::lock_guard<std::mutex> lock(pins_lock_);
    return pins_.size();
  }
  // How many mappings cover the host page that contains `at`.
  [[nodiscard]] std::uint64_t pin_count(ua at) const noexcept {
    std::lock_guard<std::mutex> lock(pins_lock_);
    return pins_.count(at.value() >> backend_->host_page_shift());
  }

private:
  // Host page numbers [first, first + pages).
  struct host_span {
    std::uint64_t first;
    std::uint64_t pages;
  };
  static host_span host_pages_of(ua page, unsigned page_shift, unsigned host_shift) noexcept {
    const std::uint64_t first = page.value() >> host_shift;
    return {first, page_shift > host_shift ? std::uint64_t{1} << (page_shift - host_shift) : 1};
  }
  Backend* backend_;
  Accounting* accounting_;
  dirty_hook dirty_;
  mutable std::mutex pins_lock_;
  page_counts<Allocator> pins_; // host page number -> mappings that cover it
};

static_assert(pinning_strategy<no_pinning>);
static_assert(pinning_strategy<pin_on_map<simulated_backend, counted_accounting>>);
static_assert(
    pinning_strategy<preregistered<prereg_registry<simulated_backend, counted_accounting>>>);

} // namespace iopt
