// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// The guest-memory accessor policy: how the hypercall front end reads guest
// memory (the TCE list of H_PUT_TCE_INDIRECT) and learns whether a guest
// physical address is RAM the guest may hand to a device.
//
// A hypervisor answers TCE hypercalls first on a fast path that must neither
// sleep nor fault (in KVM, real mode) and falls back to a slow path that may.
// The accessor is told which path it serves: on the fast path a read it
// cannot do without faulting returns status::too_hard and the front end
// retries the whole call on the slow path.
//
// Requirements on an accessor M:
//   status m.read(gpa from, std::span<std::byte> to, hcall_path path) noexcept
//       ok; fault when the guest has no memory there; too_hard on the fast
//       path when reading would have to fault pages in.
//   bool m.is_ram(gpa first, std::uint64_t bytes) const noexcept
//       whether the whole range is guest RAM.
// Optional:
//   gpa_range m.known_ram() const noexcept
//       a range all of which is guest RAM (empty if none is known): the
//       front end takes targets inside it as RAM without calling is_ram, so
//       that an indirect list is checked in bulk. It must not change while
//       a call runs; RAM outside it still goes to is_ram.
//   const std::byte* m.view(gpa from, std::uint64_t bytes, hcall_path path) const noexcept
//       where the `bytes` bytes from `from` can be read in place, with the
//       alignment `from` has up to 8 bytes, or nullptr when they cannot be
//       on this path without a fault (or are not RAM): the front end then
//       calls read(), which gives the status. The memory must stay mapped
//       until the call returns; the guest may write it meanwhile, so the
//       front end takes from a view only a list it checks and writes as one
//       piece, reading each value once (a run: the pages of one buffer, as
//       a Linux guest sends them), and copies any other list with read().
#pragma once

#include <algorithm>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <set>
#include <span>
#include <vector>

#include <iopt/addr/address.hpp>
#include <iopt/addr/range.hpp>
#include <iopt/format/byte_order.hpp>
#include <iopt/status.hpp>

namespace iopt {

// Which path of the hypervisor a hypercall is answered on; the front end
// passes it to the accessor and to the table's allocations.
enum class hcall_path : std::uint8_t {
  fast, // must not allocate, sleep or fault: whatever it cannot finish is too_hard
  slow, // may do all of that
};

// What the hypercall front end needs of a guest-memory accessor (see above).
template <class M>
concept guest_memory = requires(M& m, const M& cm, gpa addr, std::span<std::byte> out,
                                hcall_path path, std::uint64_t bytes) {
  { m.read(addr, out, path) }
  noexcept->std::same_as<status>;
  { cm.is_ram(addr, bytes) }
  noexcept->std::same_as<bool>;
};

// The documented example: guest RAM held in one host buffer at a guest
// physical base, with pages that can be made to fault or to need the slow
// path. Host tests and benchmarks hand it to the front end.
class buffer_guest_memory {
public:
  // log2 of the page size (4 KiB) at which make_faulting and make_slow_only
  // work.
  static constexpr unsigned page_shift = 12;

  // `bytes` bytes of zeroed guest RAM from guest physical address `base`; the
  // range must not pass 2^64.
  buffer_guest_memory(gpa base, std::size_t bytes)
      : ram_(*gpa_range::make(base, bytes)), bytes_(bytes) {}

  // Copies to.size() bytes from `from`: fault when any of them is not RAM or
  // lies on a faulting page, too_hard on the fast path when one lies on a
  // slow-only page; nothing is copied unless the result is ok.
  status read(gpa from, std::span<std::byte> to, hcall_path path) const noexcept {
    if (const status s = reach(from, to.size(), path); s != status::ok)
      return s;
    if (!to.empty())
      std::memcpy(to.data(), bytes_.data() + ram_.offset_of(from), to.size());
    return status::ok;
  }
  // The bytes in place, where read() would copy them on this path;
  // nullptr where it would fail.
  const std::byte* view(gpa from, std::uint64_t bytes, hcall_path path) const noexcept {
    return reach(from, bytes, path) == status::ok ? bytes_.data() + ram_.offset_of(from) : nullptr;
  }

  // All of the RAM: it has no holes.
  gpa_range known_ram() const noexcept { return ram_; }
  // Whether all of [first, first + bytes) lies in the buffer's RAM (for 0
  // bytes, whether `first` does). Faulting and slow-only pages still count.
  bool is_ram(gpa first, std::uint64_t bytes) const noexcept {
    // Written so that nothing wraps: offset and size both within the RAM.
    const std::uint64_t offset = first.value() - ram_.first().value();
    return first >= ram_.first() && offset < ram_.size() && bytes <= ram_.size() - offset;
  }

  // ---- for tests ----
  // Writes guest memory; fault (nothing written) if any byte is not RAM.
  status write(gpa to, std::span<const std::byte> data) noexcept {
    if (!is_ram(to, data.size()))
      return status::fault;
    std::memcpy(bytes_.data() + ram_.offset_of(to), data.data(), data.size());
    return status::ok;
  }
  // PAPR's TCE lists are big-endian 64-bit values.
  status write_tce_list(gpa to, std::span<const std::uint64_t> tces) noexcept {
    if (!is_ram(to, tces.size() * sizeof(std::uint64_t)))
      return status::fault;
    for (std::size_t i = 0; i < tces.size(); ++i) {
      const std::uint64_t be = to_big_endian(tces[i]);
      (void)write(to + i * 8, std::as_bytes(std::span(&be, 1)));
    }
    return status::ok;
  }
  // Reads of this 4 KiB page fail (fault) on both paths.
  void make_faulting(gpa page) { faulting_.insert(page.value() >> page_shift); }
  // Reads of this 4 KiB page are too hard on the fast path.
  void make_slow_only(gpa page) { slow_only_.insert(page.value() >> page_shift); }
  // The guest physical range the buffer holds.
  [[nodiscard]] const gpa_range& ram() const noexcept { return ram_; }

private:
  // Whether `bytes` bytes from `from` can be had on this path: read()'s
  // status, before it copies.
  status reach(gpa from, std::uint64_t bytes, hcall_path path) const noexcept {
    const auto wanted = gpa_range::make(from, bytes);
    if (!wanted || !ram_.contains(*wanted))
      return status::fault;
    if (bytes == 0)
      return status::ok;
    const std::uint64_t first_page = from.value() >> page_shift;
    const std::uint64_t last_page = wanted->last().value() >> page_shift;
    for (std::uint64_t p = first_page; p <= last_page; ++p) {
      if (faulting_.count(p) != 0)
        return status::fault;
      if (path == hcall_path::fast && slow_only_.count(p) != 0)
        return status::too_hard;
    }
    return status::ok;
  }

  gpa_range ram_;
  std::vector<std::byte> bytes_;
  std::set<std::uint64_t> faulting_;
  std::set<std::uint64_t> slow_only_;
};

static_assert(guest_memory<buffer_guest_memory>);

} // namespace iopt
