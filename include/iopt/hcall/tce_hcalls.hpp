// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// The guest hypercall front end: H_PUT_TCE, H_PUT_TCE_INDIRECT and
// H_STUFF_TCE, answered against the guest-visible windows of one guest.
//
// A guest names a window by its LIOBN (logical I/O bus number). The front end
// keeps a small routing table from LIOBN to window; windows of different
// configurations (a 4 KiB default window, a 64 KiB huge window) live side by
// side.
//
// Every call validates all of its input before it writes anything, and
// writes all of it or nothing. Checks come in KVM's order, and the first
// that fails gives the status: the LIOBN, then the request's shape (a count
// of 0, or above 512 for a list; a list address not 4 KiB aligned), then the
// bus range, then the values (each TCE's format before its target's RAM):
//   - every page of a multi-page request lies inside the window (as KVM's
//     H_PUT_TCE_INDIRECT and H_STUFF_TCE check it; only the VFIO driver's
//     map/unmap ioctls look at the first page alone);
//   - H_PUT_TCE_INDIRECT reads and checks all TCEs of the list before it
//     writes any (as KVM validates a whole list first; QEMU's emulation can
//     leave part of a list applied);
//   - a TCE that maps memory must point at guest RAM.
// On the fast path nothing allocates and nothing faults: a missing table
// level or a list page that would have to be faulted in gives too_hard with
// nothing changed, and the same call on the slow path then completes it.
//
// An accessor may also tell a range that is all guest RAM (known_ram(), see
// hcall/guest_memory.hpp); H_PUT_TCE_INDIRECT then vets the targets inside
// it eight at a time instead of asking is_ram for each. An accessor that can
// show guest memory in place (view()) spares the copy of a list that is one
// run, the pages of one buffer: the common list, read once instead of
// copied and read again.
//
// Outcomes are status values; to_hcall (status.hpp) gives the PAPR return
// code: H_SUCCESS, H_PARAMETER, H_TOO_HARD or H_HARDWARE. An unknown LIOBN is
// status::not_found (H_PARAMETER). Unlike the kernel, a request for zero pages
// is refused as invalid_parameter rather than silently succeeding.
//
// A TCE without read or write permission is stored as the guest wrote it (so
// the guest reads back its own value) and maps nothing.
#pragma once

#include <algorithm>
#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <variant>
#include <vector>

#include <iopt/addr/address.hpp>
#include <iopt/format/byte_order.hpp>
#include <iopt/hcall/change_hook.hpp>
#include <iopt/hcall/guest_memory.hpp>
#include <iopt/status.hpp>
#include <iopt/table/tce_table.hpp>

namespace iopt {

// PAPR limits: one indirect list holds at most 512 TCEs in one 4 KiB page.
inline constexpr std::uint64_t max_indirect_tces = 512;
// The guest physical address of an indirect list must be aligned to this many
// bytes (one 4 KiB page), so that a list never crosses a page; not_aligned
// otherwise.
inline constexpr std::uint64_t indirect_list_alignment = 4096;

// How the front end answers where PAPR and QEMU differ.
struct hcall_options {
  // PAPR says H_STUFF_TCE clears: by default a value with read or write
  // permission is a parameter error. QEMU accepts any value; set this to
  // behave the same.
  bool stuff_accepts_mappings = false;
};

// The hypercall front end for one guest: answers its TCE hypercalls on the
// windows attached under their LIOBNs (tables of any of `Configs`), reading
// guest memory through `Memory`. Attach and detach must not run concurrently
// with the calls.
template <guest_memory Memory, class... Configs>
class tce_hcalls {
  static_assert(sizeof...(Configs) >= 1, "tce_hcalls: name at least one window configuration");

public:
  // Reads guest memory through `memory`, which is kept by reference and must
  // outlive the front end; `options` are fixed from here on.
  explicit tce_hcalls(Memory& memory, hcall_options options = {}) noexcept
      : memory_(&memory), options_(options) {}

  // Who hears what each successful call changed (set it before the calls
  // begin; it is read, not guarded, by concurrent calls).
  void set_change_hook(tce_change_hook changes) noexcept { changes_ = changes; }

  // ---- routing (not concurrent with the calls below) ----------------------

  // Routes calls for `liobn` to `window`, which is kept by reference and must
  // stay until detach; exists when `liobn` is routed already. Config must be
  // one of Configs.
  template <class Config>
  status attach(std::uint64_t liobn, tce_table<Config>& window) {
    if (find(liobn) != nullptr)
      return status::exists;
    routes_.push_back(route{liobn, &window});
    return status::ok;
  }
  // Stops routing `liobn` (the window keeps its entries); not_found when it
  // was not routed.
  status detach(std::uint64_t liobn) noexcept {
    const auto it = std::find_if(routes_.begin(), routes_.end(),
                                 [liobn](const route& r) { return r.liobn == liobn; });
    if (it == routes_.end())
      return status::not_found;
    routes_.erase(it);
    return status::ok;
  }

  // The options given at construction.
  [[nodiscard]] const hcall_options& options() const noexcept { return options_; }

  // ---- the hypercalls ------------------------------------------------------

  // H_PUT_TCE: one entry. A TCE without permissions unmaps.
  status put_tce(std::uint64_t liobn, std::uint64_t ioba_value, std::uint64_t tce,
                 hcall_path path) noexcept {
    return on_window(liobn, [&](auto& window) {
      if (const auto span = window.locate(ioba{ioba_value}, 1); IOPT_UNLIKELY(!span))
        return span.error();
      if (const status s = check_target(window, tce); IOPT_UNLIKELY(s != status::ok))
        return s;
      return reported(liobn, ioba{ioba_value}, 1,
                      window.put(ioba{ioba_value}, tce, allocation_for(path)));
    });
  }

  // H_PUT_TCE_INDIRECT: npages (1..512) TCEs read from a 4 KiB-aligned list
  // in guest memory, written to consecutive entries from ioba.
  status put_tce_indirect(std::uint64_t liobn, std::uint64_t ioba_value, std::uint64_t list_gpa,
                          std::uint64_t npages, hcall_path path) noexcept {
    return on_window(liobn, [&](auto& window) {
      using table_type = std::remove_reference_t<decltype(window)>;
      if (npages == 0 || npages > max_indirect_tces)
        return status::invalid_parameter;
      if ((list_gpa & (indirect_list_alignment - 1)) != 0)
        return status::not_aligned;
      // The whole range first: every page, not only the first.
      const auto span = window.locate(ioba{ioba_value}, npages);
      if (!span)
        return span.error();
      // In place, where the accessor offers a view and the list is one run
      // that passes every check: each value is read once and the run is
      // written as computed, so the guest cannot change what was checked.
      if constexpr (requires(const Memory& m) {
                      { m.view(gpa{}, std::uint64_t{}, hcall_path::fast) }
                      noexcept->std::same_as<const std::byte*>;
                    }) {
        const std::byte* in_place =
            memory_->view(gpa{list_gpa}, npages * sizeof(std::uint64_t), path);
        if (in_place != nullptr && reinterpret_cast<std::uintptr_t>(in_place) % 8 == 0)
          if (const auto done = window.put_list_in_place(
                  *span,
                  big_endian_values{{reinterpret_cast<const std::uint64_t*>(in_place), npages}},
                  allocation_for(path), ram_check<table_type>{this}))
            return reported(liobn, ioba{ioba_value}, npages, *done);
      }
      // Otherwise a private copy: validating in guest memory and reading it
      // again to write would let the guest change entries in between. It
      // stays big-endian, as PAPR lays it out; the table reads it in that
      // form.
      alignas(64) std::array<std::uint64_t, max_indirect_tces> list;
      const std::span<std::uint64_t> wanted(list.data(), npages);
      if (const status s = memory_->read(gpa{list_gpa}, std::as_writable_bytes(wanted), path);
          s != status::ok)
        return s;
      return reported(liobn, ioba{ioba_value}, npages,
                      window.put_list(*span, big_endian_values{wanted}, allocation_for(path),
                                      ram_check<table_type>{this}));
    });
  }

  // H_STUFF_TCE: one value into npages consecutive entries.
  status stuff_tce(std::uint64_t liobn, std::uint64_t ioba_value, std::uint64_t value,
                   std::uint64_t npages, hcall_path path) noexcept {
    return on_window(liobn, [&](auto& window) {
      using format = typename std::remove_reference_t<decltype(window)>::format;
      if (npages == 0)
        return status::invalid_parameter;
      const auto span = window.locate(ioba{ioba_value}, npages);
      if (!span)
        return span.error();
      if (format::is_present(value) && !options_.stuff_accepts_mappings)
        return status::invalid_parameter; // PAPR: stuff clears
      if (const status s = check_target(window, value); s != status::ok)
        return s;
      return reported(liobn, ioba{ioba_value}, npages,
                      window.fill(*span, value, allocation_for(path)));
    });
  }

private:
  using window_ref = std::variant<tce_table<Configs>*...>;
  struct route {
    std::uint64_t liobn;
    window_ref window;
  };

  static constexpr allocation allocation_for(hcall_path path) noexcept {
    return path == hcall_path::fast ? allocation::forbidden : allocation::allowed;
  }

  // Runs fn on the window routed to `liobn`; not_found when there is none.
  template <class Fn>
  status on_window(std::uint64_t liobn, Fn&& fn) noexcept {
    const route* r = find(liobn);
    if (IOPT_UNLIKELY(r == nullptr))
      return status::not_found;
    return std::visit([&](auto* window) { return fn(*window); }, r->window);
  }
  // Tells the hook what a successful call changed; passes the status on.
  status reported(std::uint64_t liobn, ioba first, std::uint64_t pages, status s) noexcept {
    if (s == status::ok)
      changes_(liobn, first, pages);
    return s;
  }

  const route* find(std::uint64_t liobn) const noexcept {
    for (const route& r : routes_)
      if (r.liobn == liobn)
        return &r;
    return nullptr;
  }

  // A TCE the window's format accepts and, if it maps anything, pointing at
  // guest RAM.
  template <class Table>
  status check_target(const Table&, std::uint64_t tce) const noexcept {
    if (const status s = Table::format::check(tce, Table::page_shift);
        IOPT_UNLIKELY(s != status::ok))
      return s;
    return check_ram<Table>(tce, 1);
  }
  // Whether the `pages` pages from tce's target are guest RAM, when tce maps
  // anything (a run of an indirect list is checked in one call).
  template <class Table>
  status check_ram(std::uint64_t tce, std::uint64_t pages) const noexcept {
    using format = typename Table::format;
    if (format::is_present(tce) &&
        !memory_->is_ram(gpa{format::target(tce, Table::page_shift)}, pages << Table::page_shift))
      return status::not_permitted;
    return status::ok;
  }

  // An indirect list's check of its targets: check_ram, and the targets it
  // accepts without asking (the pages inside the accessor's known_ram(),
  // when it has one), so that lists are vetted in bulk.
  template <class Table>
  struct ram_check {
    const tce_hcalls* calls;
    status operator()(std::uint64_t tce, std::uint64_t pages) const noexcept {
      return calls->check_ram<Table>(tce, pages);
    }
    detail::accepted_targets accepted_targets() const noexcept requires requires(const Memory& m) {
      { m.known_ram() }
      noexcept->std::same_as<gpa_range>;
    }
    {
      const gpa_range ram = calls->memory_->known_ram();
      const auto first = align_up(ram.first().value(), Table::page_shift);
      if (ram.size() < Table::page_bytes || !first)
        return {}; // no whole page
      // The start of the last page that ends inside the RAM (first may pass it).
      return {*first, align_down(ram.last().value() - (Table::page_bytes - 1), Table::page_shift)};
    }
  };

  Memory* memory_;
  tce_change_hook changes_{};
  hcall_options options_;
  std::vector<route> routes_;
};

} // namespace iopt
