// Baseline: a multi-level TCE table updated the way the Linux powernv code
// builds entries — for every page, start again at the root, loop over the
// levels with shifts computed at run time, allocate a missing level on the
// way (compare-and-swap), then store one big-endian entry. Same layout as
// the iopt table it is compared with (same level sizes, same entry format),
// so the difference measured is the algorithm: per-entry walks from the root
// against one walk per leaf block with compile-time levels.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <vector>

namespace iopt_baseline {

class per_entry_walk_table {
public:
  // level_bits from the leaf up; the top sized for `pages`.
  per_entry_walk_table(std::vector<unsigned> level_bits, unsigned page_shift, std::uint64_t pages)
      : bits_(std::move(level_bits)), page_shift_(page_shift) {
    unsigned lower = 0;
    for (std::size_t l = 0; l + 1 < bits_.size(); ++l)
      lower += bits_[l];
    unsigned entries_bits = 0;
    while ((std::uint64_t{1} << entries_bits) < pages)
      ++entries_bits;
    bits_.back() = entries_bits > lower ? entries_bits - lower : 0;
    root_ = allocate(bits_.back());
  }
  ~per_entry_walk_table() { free_level(root_, static_cast<unsigned>(bits_.size() - 1)); }
  per_entry_walk_table(const per_entry_walk_table&) = delete;
  per_entry_walk_table& operator=(const per_entry_walk_table&) = delete;

  // Map `pages` pages from page index `first`: one walk from the root each.
  void build(std::uint64_t first, std::uint64_t pages, std::uint64_t target, std::uint64_t perm) {
    for (std::uint64_t i = 0; i < pages; ++i) {
      const std::uint64_t tce = (target + (i << page_shift_)) | perm;
      std::atomic_ref<std::uint64_t>(*entry(first + i))
          .store(__builtin_bswap64(tce), std::memory_order_relaxed);
    }
  }

private:
  std::uint64_t* entry(std::uint64_t index) {
    std::uint64_t* table = root_;
    unsigned shift = 0;
    for (std::size_t l = 0; l + 1 < bits_.size(); ++l)
      shift += bits_[l];
    for (std::size_t level = bits_.size() - 1; level > 0; --level) {
      const std::uint64_t n = (index >> shift) & ((std::uint64_t{1} << bits_[level]) - 1);
      std::uint64_t raw = __builtin_bswap64(
          std::atomic_ref<std::uint64_t>(table[n]).load(std::memory_order_acquire));
      if (raw == 0) {
        std::uint64_t* fresh = allocate(bits_[level - 1]);
        std::uint64_t expected = 0;
        const std::uint64_t desired =
            __builtin_bswap64(reinterpret_cast<std::uintptr_t>(fresh) | 3);
        if (std::atomic_ref<std::uint64_t>(table[n]).compare_exchange_strong(expected, desired)) {
          raw = reinterpret_cast<std::uintptr_t>(fresh) | 3;
        } else {
          ::operator delete (fresh, std::align_val_t{4096});
          raw = __builtin_bswap64(expected);
        }
      }
      table = reinterpret_cast<std::uint64_t*>(raw & ~std::uint64_t{3});
      shift -= bits_[level - 1];
    }
    return &table[index & ((std::uint64_t{1} << bits_[0]) - 1)];
  }

  static std::uint64_t* allocate(unsigned bits) {
    const std::size_t bytes = std::size_t{8} << bits;
    void* p = ::operator new (bytes < 4096 ? 4096 : bytes, std::align_val_t{4096});
    std::memset(p, 0, bytes < 4096 ? 4096 : bytes);
    return static_cast<std::uint64_t*>(p);
  }
  void free_level(std::uint64_t* table, unsigned level) {
    if (level > 0)
      for (std::size_t i = 0; i < (std::size_t{1} << bits_[level]); ++i)
        if (table[i] != 0)
          free_level(
              reinterpret_cast<std::uint64_t*>(__builtin_bswap64(table[i]) & ~std::uint64_t{3}),
              level - 1);
    ::operator delete (table, std::align_val_t{4096});
  }

  std::vector<unsigned> bits_;
  unsigned page_shift_;
  std::uint64_t* root_ = nullptr;
};

} // namespace iopt_baseline
