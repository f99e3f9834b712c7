// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// System calls for basic_posix_backend that a test can fail: each fallible
// call (opening pagemap, mlock, a pagemap read) is a point of a fault_plan
// (testing/fault_injecting_allocator.hpp), and a failing point answers the
// way the kernel does when that call fails:
//
//   - open_pagemap: -1, as for a process that may not open the file;
//   - lock: mlock locks the first host page of the range and then gives up
//     with the errno chosen (ENOMEM by default; EPERM, EAGAIN), as the
//     kernel may lock part of a range before it fails;
//   - read_at: a short read, half of what was asked.
//
// Apart from that the calls are made for real. hide_frames makes every
// pagemap read show present pages with frame 0, as the kernel shows them
// to a process without CAP_SYS_ADMIN.
#pragma once

#include <sys/types.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include <iopt/prereg/posix_backend.hpp>
#include <iopt/testing/fault_injecting_allocator.hpp>

namespace iopt {

class fault_injecting_system_calls {
public:
  // The frame bits of a pagemap entry.
  static constexpr std::uint64_t frame_mask = (std::uint64_t{1} << 55) - 1;

  explicit fault_injecting_system_calls(fault_plan& plan, int lock_error = ENOMEM,
                                        bool hide_frames = false) noexcept
      : plan_(&plan), lock_error_(lock_error), hide_frames_(hide_frames) {}

  int open_pagemap() noexcept { return plan_->next_point_fails() ? -1 : real_.open_pagemap(); }
  void close(int fd) noexcept { real_.close(fd); }

  int lock(void* at, std::size_t bytes) noexcept {
    if (!plan_->next_point_fails())
      return real_.lock(at, bytes);
    ++locks_failed_;
    (void)real_.lock(at, bytes < first_page() ? bytes : first_page()); // locked part way
    return lock_error_;
  }
  void unlock(void* at, std::size_t bytes) noexcept { real_.unlock(at, bytes); }

  ssize_t read_at(int fd, void* into, std::size_t bytes, off_t offset) noexcept {
    if (plan_->next_point_fails())
      bytes /= 2;
    const ssize_t got = real_.read_at(fd, into, bytes, offset);
    if (hide_frames_ && got > 0) {
      auto* entries = static_cast<std::uint64_t*>(into);
      for (std::size_t i = 0; i < static_cast<std::size_t>(got) / sizeof(std::uint64_t); ++i)
        entries[i] &= ~frame_mask;
    }
    return got;
  }
  bool mapped(void* at, std::size_t bytes) noexcept { return real_.mapped(at, bytes); }

  // mlock calls made to fail so far.
  std::uint64_t locks_failed() const noexcept { return locks_failed_; }

private:
  static std::size_t first_page() noexcept {
    return static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  }

  fault_plan* plan_;
  int lock_error_;
  bool hide_frames_;
  std::uint64_t locks_failed_ = 0;
  linux_system_calls real_{};
};

} // namespace iopt
