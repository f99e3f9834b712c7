// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// Pinning strategies: what mapping and unmapping an IOMMU page do to memory.
//
//   pin_on_map     sPAPR VFIO "v1": every map charges and pins its page,
//                  every unmap unpins and uncharges it.
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
#include <map>
#include <mutex>

#include <iopt/addr/address.hpp>
#include <iopt/format/permission.hpp>
#include <iopt/prereg/accounting.hpp>
#include <iopt/prereg/backend.hpp>
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

template <pinning_backend Backend, accounting_policy Accounting>
class pin_on_map {
public:
  static constexpr bool needs_shadow = true;
  static constexpr memory_model model = memory_model::v1_pin_on_map;
  pin_on_map(Backend& backend, Accounting& accounting, dirty_hook dirty = {}) noexcept
      : backend_(&backend), accounting_(&accounting), dirty_(dirty) {}

  // Charges then pins (a page already pinned by another mapping is only
  // counted: pins do not nest in the kernel), then translates.
  status map_page(ua page, unsigned page_shift, permission, hpa& target) noexcept {
    const std::uint64_t bytes = std::uint64_t{1} << page_shift;
    if (!is_aligned(page, backend_->host_page_shift()) ||
        !is_aligned(bytes, backend_->host_page_shift()))
      return status::not_aligned;
    if (const status s = accounting_->charge(bytes); s != status::ok)
      return s;
    std::lock_guard<std::mutex> lock(pins_lock_);
    auto& count = pins_[page.value()];
    if (count == 0) {
      if (const status s = backend_->pin(page, bytes); s != status::ok) {
        pins_.erase(page.value());
        accounting_->uncharge(bytes);
        return s;
      }
    }
    const auto translated = backend_->translate(page);
    if (!translated) {
      if (count == 0) {
        backend_->unpin(page, bytes);
        pins_.erase(page.value());
      }
      accounting_->uncharge(bytes);
      return translated.error();
    }
    ++count;
    target = *translated;
    return status::ok;
  }
  void unmap_page(ua page, unsigned page_shift, permission perm) noexcept {
    const std::uint64_t bytes = std::uint64_t{1} << page_shift;
    dirty_(page, bytes, perm);
    {
      std::lock_guard<std::mutex> lock(pins_lock_);
      const auto it = pins_.find(page.value());
      IOPT_ASSERT(it != pins_.end());
      if (--it->second == 0) {
        backend_->unpin(page, bytes);
        pins_.erase(it);
      }
    }
    accounting_->uncharge(bytes);
  }
  result<hpa> translate_page(ua page, unsigned) noexcept { return backend_->translate(page); }

  [[nodiscard]] std::size_t pinned_pages() const noexcept {
    std::lock_guard<std::mutex> lock(pins_lock_);
    return pins_.size();
  }

private:
  Backend* backend_;
  Accounting* accounting_;
  dirty_hook dirty_;
  mutable std::mutex pins_lock_;
  std::map<std::uint64_t, std::uint64_t> pins_; // user page -> mappings of it
};

static_assert(pinning_strategy<no_pinning>);
static_assert(pinning_strategy<pin_on_map<simulated_backend, counted_accounting>>);
static_assert(
    pinning_strategy<preregistered<prereg_registry<simulated_backend, counted_accounting>>>);

} // namespace iopt
