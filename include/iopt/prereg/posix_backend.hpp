// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// A real pinning backend for Linux: pins with mlock/munlock, translates a
// user address to a host physical address through /proc/self/pagemap, and
// finds the page size backing a range (hugetlbfs, THP) in /proc/self/smaps.
//
// mlock does not nest: locking a page twice and unlocking it once unlocks
// it. The registry never pins overlapping ranges, and the pin-on-map strategy
// counts its own pins per page, so neither pins a page twice.
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

#include <iopt/addr/address.hpp>
#include <iopt/prereg/backend.hpp>
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
    if (::mlock(address(first), bytes) == 0)
      return status::ok;
    const int error = errno;
    ::munlock(address(first), bytes); // mlock may have locked part of the range
    if (error == EPERM)
      return status::not_permitted;
    if (error == ENOMEM && !mapped(first, bytes))
      return status::fault;
    return status::no_memory;
  }
  void unpin(ua first, std::uint64_t bytes) noexcept { ::munlock(address(first), bytes); }

  result<hpa> translate(ua page) noexcept {
    if (pagemap_ < 0)
      return status::not_permitted;
    std::uint64_t entry = 0;
    const auto offset = static_cast<off_t>((page.value() >> page_shift_) * sizeof entry);
    if (::pread(pagemap_, &entry, sizeof entry, offset) != static_cast<ssize_t>(sizeof entry))
      return status::fault;
    constexpr std::uint64_t present = std::uint64_t{1} << 63;
    constexpr std::uint64_t frame_mask = (std::uint64_t{1} << 55) - 1;
    if ((entry & present) == 0)
      return status::fault;
    const std::uint64_t frame = entry & frame_mask;
    if (frame == 0)
      return status::not_permitted; // frames hidden without CAP_SYS_ADMIN
    return hpa{frame << page_shift_};
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
  static void* address(ua a) noexcept { return reinterpret_cast<void*>(a.value()); }
  bool mapped(ua first, std::uint64_t bytes) const noexcept {
    // msync on an unmapped range fails with ENOMEM.
    return ::msync(address(first), bytes, MS_ASYNC) == 0;
  }

  unsigned page_shift_;
  int pagemap_;
};

static_assert(pinning_backend<posix_backend>);

} // namespace iopt
