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
//
// Every system call goes through a policy (linux_system_calls here), and
// every allocation through a block_allocator, so a test can fail each of
// them in turn (testing/fault_injecting_system_calls.hpp) and check that a
// failure leaves pins, locks and charges as they were.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <type_traits>
#include <utility>

#include <iopt/addr/address.hpp>
#include <iopt/prereg/backend.hpp>
#include <iopt/prereg/page_counts.hpp>
#include <iopt/status.hpp>
#include <iopt/table/allocator.hpp>

namespace iopt {

// The system calls of the posix backend, made as they are. The fallible ones
// answer the way a test double can imitate: open_pagemap a descriptor or -1,
// lock 0 or the errno of mlock, read_at the bytes read or -1.
struct linux_system_calls {
  // Opens /proc/self/pagemap for reading: a descriptor, or -1.
  int open_pagemap() noexcept { return ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC); }
  // Closes a descriptor open_pagemap gave.
  void close(int fd) noexcept { ::close(fd); }
  // mlock of the range: 0 when it is locked, else mlock's errno (the range
  // may then be locked in part).
  int lock(void* at, std::size_t bytes) noexcept { return ::mlock(at, bytes) == 0 ? 0 : errno; }
  // munlock of the range.
  void unlock(void* at, std::size_t bytes) noexcept { ::munlock(at, bytes); }
  // pread: the bytes read, or -1.
  ssize_t read_at(int fd, void* into, std::size_t bytes, off_t offset) noexcept {
    return ::pread(fd, into, bytes, offset);
  }
  // Whether every page of the range is mapped: msync fails with ENOMEM on a
  // range with a hole.
  bool mapped(void* at, std::size_t bytes) noexcept { return ::msync(at, bytes, MS_ASYNC) == 0; }
};

// The Linux pinning backend: mlock with pins counted per host page, pagemap
// for frames, smaps for huge pages. Its members may be called from several
// threads. `System` makes the system calls (linux_system_calls' members),
// `Allocator` gives the pin counts and the pagemap read buffer their memory.
template <class System = linux_system_calls, block_allocator Allocator = heap_allocator>
class basic_posix_backend {
public:
  // A backend making its calls through `system`, allocating from
  // `allocator`; it opens pagemap now (translations answer not_permitted if
  // it cannot).
  explicit basic_posix_backend(System system = System{}, Allocator allocator = Allocator{}) noexcept
      : system_(std::move(system)), allocator_(allocator),
        page_shift_(static_cast<unsigned>(
            std::countr_zero(static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE))))),
        pagemap_(system_.open_pagemap()), pins_(allocator) {}
  ~basic_posix_backend() {
    if (pagemap_ >= 0)
      system_.close(pagemap_);
    if (entries_ != nullptr)
      allocator_.deallocate(entries_, batch * sizeof(std::uint64_t), alignof(std::uint64_t));
  }
  basic_posix_backend(const basic_posix_backend&) = delete;
  basic_posix_backend& operator=(const basic_posix_backend&) = delete;

  // log2 of the system page size.
  unsigned host_page_shift() const noexcept { return page_shift_; }

  // Pins the host pages of the host-page-aligned range `times` times more,
  // mlocking the ones nobody pinned yet. With nothing changed: not_permitted
  // when mlock needs a privilege the process lacks, fault when part of the
  // range is not mapped, no_memory otherwise (RLIMIT_MEMLOCK reached, or no
  // room for the counts).
  status pin(ua first, std::uint64_t bytes, std::uint64_t times = 1) noexcept {
    const std::lock_guard<std::mutex> lock(lock_);
    const std::uint64_t base = first.value() >> page_shift_;
    const std::uint64_t pages = bytes >> page_shift_;
    if (!pins_.reserve(base, pages))
      return status::no_memory;
    // Lock the runs of pages nobody pins yet; undo them all if one fails.
    std::uint64_t locked = 0; // pages from `base` covered by runs locked so far
    status failed = status::ok;
    pins_.for_each_run(base, pages, /*counted=*/false, [&](std::uint64_t run, std::uint64_t n) {
      if (failed != status::ok)
        return;
      void* const at = address(ua{run << page_shift_});
      const std::size_t length = n << page_shift_;
      const int error = system_.lock(at, length);
      if (error == 0) {
        locked = run + n - base;
        return;
      }
      system_.unlock(at, length); // mlock may have locked part of it
      failed = error == EPERM                                   ? status::not_permitted
               : error == ENOMEM && !system_.mapped(at, length) ? status::fault
                                                                : status::no_memory;
    });
    if (failed != status::ok) {
      pins_.for_each_run(base, locked, false, [&](std::uint64_t run, std::uint64_t n) {
        system_.unlock(address(ua{run << page_shift_}), n << page_shift_);
      });
      pins_.trim(base, pages);
      return failed;
    }
    pins_.raise(base, pages, times);
    return status::ok;
  }
  // Undoes `times` pins of each host page of the range (each must hold that
  // many), munlocking the pages whose last pin this was.
  void unpin(ua first, std::uint64_t bytes, std::uint64_t times = 1) noexcept {
    const std::lock_guard<std::mutex> lock(lock_);
    const std::uint64_t base = first.value() >> page_shift_;
    const std::uint64_t pages = bytes >> page_shift_;
    pins_.lower(base, pages, times);
    pins_.for_each_run(base, pages, false, [&](std::uint64_t run, std::uint64_t n) {
      system_.unlock(address(ua{run << page_shift_}), n << page_shift_);
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

  // The host physical address of the byte at `at`: fault when its page is not
  // present, not_permitted when pagemap is closed to the process or hides
  // frames.
  result<hpa> translate(ua at) noexcept {
    result<hpa> found = status::fault;
    const status s = translate_runs(at, 1, [&](const frame_run& r) { found = r.target; });
    if (s != status::ok)
      return s;
    return found;
  }

  // Reads the page frames of the range from pagemap in bulk, a batch of
  // entries per read, and joins consecutive frames into runs. A failure
  // part way (fault, not_permitted) comes after the runs before it were
  // reported; no_memory (no read buffer) comes before any.
  template <class OnRun>
  status translate_runs(ua first, std::uint64_t bytes, OnRun&& on_run) noexcept {
    if (pagemap_ < 0)
      return status::not_permitted;
    if (bytes == 0)
      return status::ok;
    const std::lock_guard<std::mutex> lock(read_lock_);
    if (entries_ == nullptr) { // the first read allocates the buffer
      entries_ = static_cast<std::uint64_t*>(
          allocator_.allocate(batch * sizeof(std::uint64_t), alignof(std::uint64_t)));
      if (entries_ == nullptr)
        return status::no_memory;
    }
    detail::frame_run_joiner<std::remove_reference_t<OnRun>> join(on_run);
    const std::uint64_t first_page = first.value() >> page_shift_;
    const std::uint64_t last_page = (first.value() + (bytes - 1)) >> page_shift_;
    // Hands a run of host pages on, its first and last page clipped to the
    // range.
    auto emit = [&](std::uint64_t page, std::uint64_t frame, std::uint64_t pages) {
      const std::uint64_t from = std::max(page << page_shift_, first.value());
      const std::uint64_t to =
          std::min(((page + pages) << page_shift_) - 1, first.value() + (bytes - 1));
      join.add(ua{from}, hpa{(frame << page_shift_) + (from - (page << page_shift_))},
               to - from + 1);
    };
    // The pending run, host pages [run_page, run_page + run_pages) at the
    // frames from run_frame on, lives in these locals (not in the lambda's
    // captures) so the scan below keeps it in registers.
    std::uint64_t run_page = first_page, run_frame = 0, run_pages = 0;
    for (std::uint64_t page = first_page; page <= last_page;) {
      const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(batch, last_page - page + 1));
      const auto offset = static_cast<off_t>(page * sizeof(std::uint64_t));
      const auto want = static_cast<ssize_t>(n * sizeof(std::uint64_t));
      if (system_.read_at(pagemap_, entries_, static_cast<std::size_t>(want), offset) != want)
        return status::fault;
      const std::uint64_t* entry = entries_;
      for (std::size_t i = 0; i < n;) {
        // Extend the pending run over entries present at the next frame:
        // in huge pages, nearly all of them.
        std::size_t j = i;
        if (run_pages != 0) {
          // Entry k continues the run when it reads present | (base + k).
          const std::uint64_t base = (present | (run_frame + run_pages)) - i;
          constexpr std::uint64_t kept = present | frame_mask;
          // Eight entries per test, their differences gathered without a
          // branch each.
          for (; j + 8 <= n; j += 8) {
            std::uint64_t differ = 0;
            for (std::size_t k = j; k < j + 8; ++k)
              differ |= (entry[k] & kept) ^ (base + k);
            if (differ != 0)
              break;
          }
          while (j < n && (entry[j] & kept) == base + j)
            ++j;
        }
        run_pages += j - i;
        if (j == n)
          break;
        const std::uint64_t frame = entry[j] & frame_mask;
        if (IOPT_UNLIKELY((entry[j] & present) == 0 || frame == 0))
          return (entry[j] & present) == 0
                     ? status::fault
                     : status::not_permitted; // frames hidden without CAP_SYS_ADMIN
        if (run_pages != 0)
          emit(run_page, run_frame, run_pages);
        run_page = page + j;
        run_frame = frame;
        run_pages = 1;
        i = j + 1;
      }
      page += n;
    }
    emit(run_page, run_frame, run_pages);
    join.finish();
    return status::ok;
  }

  // The smallest KernelPageSize of the mappings that cover the range.
  // /proc/self/smaps tells it, but making smaps walks the page tables of
  // every mapping of the process (most of a millisecond next to a gigabyte
  // of THP). Only hugetlb mappings have pages larger than the base page
  // here (a THP counts as base pages), and /proc/self/maps, which walks
  // nothing, shows which mappings may be hugetlb: smaps is read only then.
  unsigned backing_page_shift(ua first, std::uint64_t bytes) noexcept {
    if (!may_be_hugetlb(first, bytes))
      return page_shift_;
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
  // Pagemap entries per read. The kernel walks the same page tables
  // whatever the batch, but each read costs a system call and a walk set
  // up: 4096 entries (16 MiB of base pages) make that small and still fit
  // the first-level cache for the scan that follows; the buffer is the
  // backend's, so its pages are faulted in once, not per call.
  static constexpr std::size_t batch = 4096;
  static constexpr std::uint64_t present = std::uint64_t{1} << 63;
  static constexpr std::uint64_t frame_mask = (std::uint64_t{1} << 55) - 1;
  static void* address(ua a) noexcept { return reinterpret_cast<void*>(a.value()); }

  // Whether a mapping over the range may be hugetlb: one backed by a file
  // (hugetlbfs files, MAP_HUGETLB's "/anon_hugepage", SysV SHM_HUGETLB
  // segments) that is not on an ordinary file system. Anonymous memory,
  // the heap and the stack never are. When in doubt, yes.
  bool may_be_hugetlb(ua first, std::uint64_t bytes) const noexcept {
    std::FILE* maps = std::fopen("/proc/self/maps", "re");
    if (maps == nullptr)
      return true;
    const std::uint64_t last = first.value() + (bytes - 1);
    bool maybe = false;
    char line[4096 + 128];
    while (!maybe && std::fgets(line, sizeof line, maps) != nullptr) {
      std::uint64_t start = 0, end = 0;
      int path_at = 0;
      if (std::sscanf(line, "%" SCNx64 "-%" SCNx64 " %*s %*s %*s %*s %n", &start, &end, &path_at) <
              2 ||
          start > last || end <= first.value())
        continue;
      const char* path = line + path_at;
      if (path_at == 0 || path[0] != '/')
        continue; // anonymous, [heap], [stack]: never hugetlb
      char* newline = std::strchr(line, '\n');
      if (newline != nullptr)
        *newline = '\0';
      struct statfs fs {};
      constexpr long hugetlbfs_magic = 0x958458f6;
      maybe = ::statfs(path, &fs) != 0 || static_cast<long>(fs.f_type) == hugetlbfs_magic;
    }
    std::fclose(maps);
    return maybe;
  }

  System system_;
  [[no_unique_address]] Allocator allocator_;
  unsigned page_shift_;
  int pagemap_;
  mutable std::mutex lock_;
  page_counts<Allocator> pins_; // host page number -> pins
  std::mutex read_lock_;        // guards entries_
  std::uint64_t* entries_ = nullptr;
};

// The backend with the real system calls and the heap.
using posix_backend = basic_posix_backend<>;

static_assert(pinning_backend<posix_backend>);

} // namespace iopt
