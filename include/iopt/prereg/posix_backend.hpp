// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// A real pinning backend for Linux: pins with mlock/munlock, translates a
// user address to a host physical address through /proc/self/pagemap, and
// finds the page size backing a range (hugetlbfs, THP) in /proc/self/smaps.
//
// Pins nest, as the backend concept asks, although mlock does not (locking a
// page twice and unlocking it once unlocks it): the backend counts pins per
// host page, mlocks a page when its first pin comes and munlocks it when its
// last pin goes, one call per run of such pages. So a registry and a
// pin-on-map strategy (or two of them) can share memory and a backend.
//
// The kernel shows page frame numbers only to CAP_SYS_ADMIN; without it,
// translate answers status::not_permitted (and pinning still works).
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <mutex>

#include <iopt/addr/address.hpp>
#include <iopt/prereg/backend.hpp>
#include <iopt/prereg/page_counts.hpp>
#include <iopt/status.hpp>

namespace iopt {

class posix_backend {
public:
  posix_backend() noexcept
      : page_shift_(static_cast<unsigned>(
            std::countr_zero(static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE))))),
        pagemap_(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)) {}
  ~posix_backend() {
    if (pagemap_ >= 0)
      ::close(pagemap_);
  }
  posix_backend(const posix_backend&) = delete;
  posix_backend& operator=(const posix_backend&) = delete;

  unsigned host_page_shift() const noexcept { return page_shift_; }

  status pin(ua first, std::uint64_t bytes) noexcept {
    const std::lock_guard<std::mutex> lock(lock_);
    const std::uint64_t pages = bytes >> page_shift_;
    if (!pins_.reserve(static_cast<std::size_t>(pages)))
      return status::no_memory;
    // Lock the runs of pages nobody pins yet; undo them all if one fails.
    std::uint64_t done = 0;
    status failed = status::ok;
    for_each_run(first, pages, /*pinned=*/false, [&](std::uint64_t run_first, std::uint64_t n) {
      if (failed != status::ok)
        return;
      if (::mlock(address(ua{run_first}), n << page_shift_) == 0) {
        done = run_first + (n << page_shift_) - first.value();
        return;
      }
      const int error = errno;
      ::munlock(address(ua{run_first}), n << page_shift_); // mlock may have locked part of it
      failed = error == EPERM                                                ? status::not_permitted
               : error == ENOMEM && !mapped(ua{run_first}, n << page_shift_) ? status::fault
                                                                             : status::no_memory;
    });
    if (failed != status::ok) {
      if (done != 0)
        for_each_run(first, done >> page_shift_, false, [&](std::uint64_t f, std::uint64_t n) {
          ::munlock(address(ua{f}), n << page_shift_);
        });
      return failed;
    }
    for (std::uint64_t i = 0; i < pages; ++i)
      pins_.raise((first.value() >> page_shift_) + i);
    return status::ok;
  }
  void unpin(ua first, std::uint64_t bytes) noexcept {
    const std::lock_guard<std::mutex> lock(lock_);
    const std::uint64_t pages = bytes >> page_shift_;
    for (std::uint64_t i = 0; i < pages; ++i)
      pins_.lower((first.value() >> page_shift_) + i);
    for_each_run(first, pages, false, [&](std::uint64_t f, std::uint64_t n) {
      ::munlock(address(ua{f}), n << page_shift_);
    });
  }

  // How many pins hold the host page that contains `at`.
  std::uint64_t pin_count(ua at) const noexcept {
    const std::lock_guard<std::mutex> lock(lock_);
    return pins_.count(at.value() >> page_shift_);
  }
  // Distinct host pages pinned now.
  std::uint64_t pinned_pages() const noexcept {
    const std::lock_guard<std::mutex> lock(lock_);
    return pins_.size();
  }

  result<hpa> translate(ua at) noexcept {
    if (pagemap_ < 0)
      return status::not_permitted;
    std::uint64_t entry = 0;
    const auto offset = static_cast<off_t>((at.value() >> page_shift_) * sizeof entry);
    if (::pread(pagemap_, &entry, sizeof entry, offset) != static_cast<ssize_t>(sizeof entry))
      return status::fault;
    constexpr std::uint64_t present = std::uint64_t{1} << 63;
    constexpr std::uint64_t frame_mask = (std::uint64_t{1} << 55) - 1;
    if ((entry & present) == 0)
      return status::fault;
    const std::uint64_t frame = entry & frame_mask;
    if (frame == 0)
      return status::not_permitted; // frames hidden without CAP_SYS_ADMIN
    return hpa{(frame << page_shift_) | (at.value() & ((std::uint64_t{1} << page_shift_) - 1))};
  }

  // The smallest KernelPageSize of the mappings that cover the range.
  unsigned backing_page_shift(ua first, std::uint64_t bytes) noexcept {
    std::FILE* smaps = std::fopen("/proc/self/smaps", "re");
    if (smaps == nullptr)
      return page_shift_;
    const std::uint64_t last = first.value() + (bytes - 1);
    unsigned smallest = 63;
    bool in_range = false;
    char line[512];
    while (std::fgets(line, sizeof line, smaps) != nullptr) {
      std::uint64_t start = 0, end = 0, kib = 0;
      if (std::sscanf(line, "%" SCNx64 "-%" SCNx64 " ", &start, &end) == 2) {
        in_range = start <= last && end > first.value();
      } else if (in_range && std::sscanf(line, "KernelPageSize: %" SCNu64 " kB", &kib) == 1 &&
                 kib != 0) {
        const auto shift = static_cast<unsigned>(std::countr_zero(kib * 1024));
        smallest = shift < smallest ? shift : smallest;
      }
    }
    std::fclose(smaps);
    return smallest == 63 ? page_shift_ : smallest;
  }

private:
  // Calls f(first byte, pages) for each run of the `pages` host pages from
  // `first` whose pin count is zero (pinned == false) or not.
  template <class F>
  void for_each_run(ua first, std::uint64_t pages, bool pinned, F&& f) const {
    const std::uint64_t base = first.value() >> page_shift_;
    std::uint64_t i = 0;
    while (i < pages) {
      if ((pins_.count(base + i) != 0) != pinned) {
        ++i;
        continue;
      }
      std::uint64_t n = 1;
      while (i + n < pages && (pins_.count(base + i + n) != 0) == pinned)
        ++n;
      f((base + i) << page_shift_, n);
      i += n;
    }
  }
  static void* address(ua a) noexcept { return reinterpret_cast<void*>(a.value()); }
  bool mapped(ua first, std::uint64_t bytes) const noexcept {
    // msync on an unmapped range fails with ENOMEM.
    return ::msync(address(first), bytes, MS_ASYNC) == 0;
  }

  unsigned page_shift_;
  int pagemap_;
  mutable std::mutex lock_;
  page_counts<> pins_; // host page number -> pins
};

static_assert(pinning_backend<posix_backend>);

} // namespace iopt
