// The posix backend on real memory.
#include "posix_memory.hpp"
#include "support.hpp"
#include <iopt/prereg/accounting.hpp>
#include <iopt/prereg/pinning.hpp>
#include <iopt/prereg/posix_backend.hpp>
#include <iopt/prereg/registry.hpp>

#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <set>
#include <vector>

using namespace iopt;

using iopt_test::locked_kib;
using iopt_test::mlock_is_real;

TEST_CASE("pinned pages show as locked in the process, and translate when allowed") {
  posix_backend backend;
  unlimited_accounting accounting;
  const std::uint64_t page = std::uint64_t{1} << backend.host_page_shift();
  const std::uint64_t bytes = 64 * page;
  void* memory = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(memory != MAP_FAILED);
  std::memset(memory, 0x5a, bytes);
  const ua first{reinterpret_cast<std::uintptr_t>(memory)};

  const std::uint64_t before = locked_kib();
  {
    prereg_registry<posix_backend, unlimited_accounting> registry(backend, accounting);
    const status s = registry.register_region(first, bytes);
    if (s == status::not_permitted || s == status::no_memory) {
      MESSAGE("mlock refused here (" << to_string(s) << "): skipped the locked-memory check");
    } else {
      REQUIRE(s == status::ok);
      if (mlock_is_real)
        CHECK(locked_kib() == before + bytes / 1024);
      else
        MESSAGE("AddressSanitizer makes mlock a no-op: skipped the locked-memory check");
      CHECK(registry.lookup(first, bytes)->max_page_shift >= backend.host_page_shift());

      auto held = registry.acquire(first, bytes);
      REQUIRE(held);
      std::set<std::uint64_t> frames;
      bool translated = true;
      for (std::uint64_t i = 0; i < 64 && translated; ++i) {
        const auto a = registry.translate(**held, first + i * page, backend.host_page_shift());
        if (a.error() == status::not_permitted) {
          translated = false;
          break;
        }
        REQUIRE(a);
        CHECK(is_aligned(*a, backend.host_page_shift()));
        CHECK(registry.translate(**held, first + i * page, backend.host_page_shift())->value() ==
              a->value());
        frames.insert(a->value());
      }
      if (translated)
        CHECK(frames.size() == 64); // distinct pages, distinct frames
      else
        MESSAGE("no CAP_SYS_ADMIN: frame numbers are hidden, skipped the translation checks");
      registry.release(*held);
      REQUIRE(registry.unregister_region(first, bytes) == status::ok);
      if (mlock_is_real)
        CHECK(locked_kib() == before);
    }
  }
  CHECK(accounting.charged() == 0);
  ::munmap(memory, bytes);
}

TEST_CASE("pinning memory that is not mapped fails cleanly") {
  posix_backend backend;
  const std::uint64_t page = std::uint64_t{1} << backend.host_page_shift();
  void* memory =
      ::mmap(nullptr, 4 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(memory != MAP_FAILED);
  ::munmap(memory, 4 * page);
  const status s = backend.pin(ua{reinterpret_cast<std::uintptr_t>(memory)}, 4 * page);
  if (mlock_is_real)
    CHECK(s != status::ok);
  else
    MESSAGE("AddressSanitizer makes mlock a no-op: skipped");
}

namespace {
// AnonHugePages of the mapping that holds `at`, in KiB (THP in use there).
std::uint64_t anon_huge_kib(const void* at) {
  std::FILE* f = std::fopen("/proc/self/smaps", "r");
  REQUIRE(f != nullptr);
  const auto a = reinterpret_cast<std::uintptr_t>(at);
  char line[512];
  bool inside = false;
  std::uint64_t kib = 0;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    unsigned long start = 0, end = 0;
    if (std::sscanf(line, "%lx-%lx ", &start, &end) == 2)
      inside = start <= a && a < end;
    else if (inside && std::sscanf(line, "AnonHugePages: %lu kB", &kib) == 1)
      break;
  }
  std::fclose(f);
  return inside ? kib : 0;
}

using v1_posix = pin_on_map<posix_backend, unlimited_accounting>;
} // namespace

TEST_CASE("posix pins nest per host page: munlock only when the last pin goes") {
  posix_backend backend;
  const std::uint64_t page = std::uint64_t{1} << backend.host_page_shift();
  void* memory =
      ::mmap(nullptr, 8 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(memory != MAP_FAILED);
  std::memset(memory, 1, 8 * page);
  const ua first{reinterpret_cast<std::uintptr_t>(memory)};
  const std::uint64_t before = locked_kib();
  if (backend.pin(first, 4 * page) != status::ok) {
    MESSAGE("mlock refused here: skipped");
    ::munmap(memory, 8 * page);
    return;
  }
  REQUIRE(backend.pin(first + 2 * page, 4 * page) == status::ok); // overlaps pages 2 and 3
  CHECK(backend.pin_count(first + 2 * page) == 2);
  CHECK(backend.pinned_pages() == 6);
  backend.unpin(first, 4 * page);
  CHECK(backend.pinned_pages() == 4);
  CHECK(backend.pin_count(first) == 0);
  CHECK(backend.pin_count(first + 3 * page) == 1);
  if (mlock_is_real)
    CHECK(locked_kib() == before + 4 * page / 1024); // pages 2..5 stay locked
  backend.unpin(first + 2 * page, 4 * page);
  CHECK(backend.pinned_pages() == 0);
  if (mlock_is_real)
    CHECK(locked_kib() == before);
  ::munmap(memory, 8 * page);
}

TEST_CASE("posix translate keeps the offset inside the host page") {
  posix_backend backend;
  const std::uint64_t page = std::uint64_t{1} << backend.host_page_shift();
  void* memory = ::mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(memory != MAP_FAILED);
  std::memset(memory, 1, page);
  const ua first{reinterpret_cast<std::uintptr_t>(memory)};
  REQUIRE(backend.pin(first, page) == status::ok);
  const auto base = backend.translate(first);
  if (base.error() == status::not_permitted) {
    MESSAGE("no CAP_SYS_ADMIN: frame numbers are hidden, skipped");
  } else {
    REQUIRE(base);
    CHECK(is_aligned(*base, backend.host_page_shift()));
    CHECK(backend.translate(first + 0x123)->value() == base->value() + 0x123);
    CHECK(backend.translate(first + (page - 8))->value() == base->value() + page - 8);
  }
  backend.unpin(first, page);
  ::munmap(memory, page);
}

TEST_CASE("posix backend on transparent huge pages") {
  posix_backend backend;
  unlimited_accounting accounting;
  constexpr std::uint64_t huge = std::uint64_t{1} << 21;
  const std::uint64_t bytes = 4 * huge;
  void* raw = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(raw != MAP_FAILED);
  const std::uint64_t aligned = (reinterpret_cast<std::uintptr_t>(raw) + huge - 1) & ~(huge - 1);
  auto* at = reinterpret_cast<unsigned char*>(aligned);
  ::madvise(at, 2 * huge, MADV_HUGEPAGE);
  std::memset(at, 1, 2 * huge);
  if (anon_huge_kib(at) < 2048) {
    MESSAGE("no transparent huge page was given here (THP off or no memory): skipped");
    ::munmap(raw, bytes);
    return;
  }
  const ua first{aligned};
  const unsigned base = backend.host_page_shift();
  // A THP is not reported as a backing page: it can be split and its pages
  // moved, so iopt treats it as ordinary pages (stricter than the kernel's
  // v1, which accepts any compound page; as strict as its v2).
  CHECK(backend.backing_page_shift(first, huge) == base);
  v1_posix v1(backend, accounting);
  hpa target{};
  CHECK(map_one(v1, first, 21, permission::read, target) == status::not_permitted);
  CHECK(backend.pinned_pages() == 0);
  // IOMMU pages of the host page size over it: pins nest, targets are the
  // frames with their offsets.
  const status s = map_one(v1, first + 0x5000, base, permission::read, target);
  if (s == status::not_permitted) {
    MESSAGE("no CAP_SYS_ADMIN: frame numbers are hidden, skipped the translation checks");
    ::munmap(raw, bytes);
    return;
  }
  REQUIRE(s == status::ok);
  CHECK(target.value() == backend.translate(first + 0x5000)->value());
  hpa again{};
  REQUIRE(map_one(v1, first + 0x5000, base, permission::read, again) == status::ok);
  CHECK(again == target);
  CHECK(v1.pin_count(first + 0x5000) == 2);
  CHECK(backend.pin_count(first + 0x5000) == 2); // nested; mlocked once
  CHECK(accounting.charged() == std::uint64_t{1} << base);
  // The whole THP is physically contiguous (what makes it a huge page).
  const std::uint64_t frame0 = backend.translate(first)->value();
  bool contiguous = true;
  for (std::uint64_t off = 0; off < huge; off += std::uint64_t{1} << base)
    contiguous = contiguous && backend.translate(first + off)->value() == frame0 + off;
  CHECK(contiguous);
  v1.unmap_pages(first + 0x5000, 1, base, permission::read);
  v1.unmap_pages(first + 0x5000, 1, base, permission::read);
  CHECK(backend.pinned_pages() == 0);
  CHECK(accounting.charged() == 0);
  ::munmap(raw, bytes);
}

TEST_CASE("posix backend on hugetlbfs pages the test reserves itself") {
  // Needs root (to reserve pages through vm.nr_hugepages) and free memory.
  std::FILE* f = std::fopen("/proc/sys/vm/nr_hugepages", "r+");
  unsigned long reserved = 0;
  if (f == nullptr || std::fscanf(f, "%lu", &reserved) != 1) {
    if (f != nullptr)
      std::fclose(f);
    MESSAGE("vm.nr_hugepages cannot be read or written here: skipped the hugetlbfs checks");
    return;
  }
  std::fclose(f);
  auto set_reserved = [](unsigned long n) {
    std::FILE* w = std::fopen("/proc/sys/vm/nr_hugepages", "w");
    if (w == nullptr)
      return false;
    const bool ok = std::fprintf(w, "%lu\n", n) > 0;
    return std::fclose(w) == 0 && ok;
  };
  const bool raised = set_reserved(reserved + 2);
  constexpr std::uint64_t huge = std::uint64_t{1} << 21;
  void* memory = ::mmap(nullptr, 2 * huge, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
  if (memory == MAP_FAILED) {
    if (raised)
      set_reserved(reserved);
    MESSAGE("no 2 MiB hugetlbfs pages could be had (not root, or no memory): skipped");
    return;
  }
  std::memset(memory, 1, 2 * huge);
  {
    posix_backend backend;
    unlimited_accounting accounting;
    const ua first{reinterpret_cast<std::uintptr_t>(memory)};
    CHECK(backend.backing_page_shift(first, 2 * huge) == 21);
    {
      prereg_registry<posix_backend, unlimited_accounting> registry(backend, accounting);
      REQUIRE(registry.register_region(first, 2 * huge) == status::ok);
      CHECK(registry.lookup(first, 2 * huge)->max_page_shift == 21);
      REQUIRE(registry.unregister_region(first, 2 * huge) == status::ok);
    }
    v1_posix v1(backend, accounting);
    hpa target{};
    const status s = map_one(v1, first + huge, 21, permission::read_write, target);
    if (s == status::not_permitted) {
      MESSAGE("no CAP_SYS_ADMIN: frame numbers are hidden, skipped the translation checks");
    } else {
      REQUIRE(s == status::ok);
      CHECK(is_aligned(target, 21)); // one huge page: a 2 MiB IOMMU page can start there
      CHECK(target.value() == backend.translate(first + huge)->value());
      CHECK(backend.pinned_pages() == huge >> backend.host_page_shift());
      CHECK(accounting.charged() == huge);
      v1.unmap_pages(first + huge, 1, 21, permission::read_write);
    }
    CHECK(backend.pinned_pages() == 0);
    CHECK(accounting.charged() == 0);
  }
  ::munmap(memory, 2 * huge);
  if (raised)
    set_reserved(reserved);
}

namespace {
// The frame of one host page, read from pagemap one entry at a time: the
// kernel's own per-page answer, which translate_runs must join exactly.
std::uint64_t frame_of_page(int pagemap, std::uint64_t address, unsigned shift) {
  std::uint64_t entry = 0;
  const auto offset = static_cast<off_t>((address >> shift) * sizeof entry);
  REQUIRE(::pread(pagemap, &entry, sizeof entry, offset) == static_cast<ssize_t>(sizeof entry));
  REQUIRE((entry >> 63) == 1); // present
  return entry & ((std::uint64_t{1} << 55) - 1);
}
} // namespace

TEST_CASE("posix translate_runs joins pagemap into maximal runs across read batches") {
  posix_backend backend;
  const unsigned shift = backend.host_page_shift();
  const std::uint64_t page = std::uint64_t{1} << shift;
  constexpr std::uint64_t huge = std::uint64_t{1} << 21;
  // 24 MiB: more than one read batch of entries, partly in transparent huge
  // pages (long runs), partly in pages faulted in backwards (short runs).
  const std::uint64_t bytes = 12 * huge;
  void* raw =
      ::mmap(nullptr, bytes + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(raw != MAP_FAILED);
  auto* at = reinterpret_cast<unsigned char*>((reinterpret_cast<std::uintptr_t>(raw) + huge - 1) &
                                              ~(huge - 1));
  ::madvise(at, 6 * huge, MADV_HUGEPAGE);
  ::madvise(at + 6 * huge, 6 * huge, MADV_NOHUGEPAGE);
  std::memset(at, 1, 6 * huge);
  for (std::uint64_t off = 12 * huge; off != 6 * huge; off -= page)
    at[off - page] = 1;
  const int pagemap = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  REQUIRE(pagemap >= 0);
  if (backend.translate(ua{reinterpret_cast<std::uintptr_t>(at)}).error() ==
      status::not_permitted) {
    MESSAGE("no CAP_SYS_ADMIN: frame numbers are hidden, skipped");
  } else {
    // Whole pages, and a range that starts and ends inside pages.
    const std::uint64_t starts[] = {0, 0x123, 6 * huge - 3 * page + 8};
    for (const std::uint64_t start : starts) {
      const std::uint64_t length = bytes - start - (start == 0 ? 0 : 0x321);
      CAPTURE(start);
      const ua first{reinterpret_cast<std::uintptr_t>(at) + start};
      std::vector<frame_run> runs;
      REQUIRE(backend.translate_runs(first, length,
                                     [&](const frame_run& r) { runs.push_back(r); }) == status::ok);
      // The runs cover the range in order, each byte at the frame the
      // kernel names for its page, and no two neighbours could be joined.
      REQUIRE(!runs.empty());
      CHECK(runs.front().first == first);
      std::uint64_t covered = 0;
      for (std::size_t i = 0; i < runs.size(); ++i) {
        const frame_run& r = runs[i];
        CHECK(r.first.value() == first.value() + covered);
        covered += r.bytes;
        if (i + 1 < runs.size())
          CHECK(r.target.value() + r.bytes != runs[i + 1].target.value());
        // Every page the run touches, at its first byte inside the run.
        for (std::uint64_t off = 0; off < r.bytes;) {
          const std::uint64_t address = r.first.value() + off;
          const std::uint64_t expected =
              (frame_of_page(pagemap, address, shift) << shift) + (address & (page - 1));
          REQUIRE(r.target.value() + off == expected);
          off += page - (address & (page - 1));
        }
      }
      CHECK(covered == length);
    }
    // A page that is not mapped ends the translation with a fault.
    REQUIRE(::munmap(at + 9 * huge, page) == 0);
    std::uint64_t handed = 0;
    CHECK(backend.translate_runs(ua{reinterpret_cast<std::uintptr_t>(at)}, bytes,
                                 [&](const frame_run& r) { handed += r.bytes; }) == status::fault);
    CHECK(handed <= 9 * huge);
  }
  ::close(pagemap);
  ::munmap(raw, bytes + huge);
}
