// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// Runs in lists of TCE values: how a table takes a guest's list (an
// H_PUT_TCE_INDIRECT page, a put_list call) in bulk where it can.
//
// A run is a present value followed by the values of the next pages (each
// target one page on, the same permission bits), or a value that maps nothing
// repeated. Lists are read list_stride values at a time: when the values
// from list[0] form a run that reaches list[list_stride], run_at gives its
// length and the run is checked and written in bulk; otherwise it gives 0 and
// the next list_stride values are taken one by one. So any run of
// 2 * list_stride values or more goes in bulk from at most list_stride - 1
// values into it, and a list of unrelated pages costs one compare per
// list_stride values. A list may be stored byte-reversed (a guest's
// big-endian list read in place): Swapped says so.
//
// Values that form no run are taken list_stride at a time too, where the
// processor has AVX2 and the caller's check says which targets it accepts
// without being asked (accepted_targets(), such as the guest RAM below the
// first hole): the format's check, that targets, and where the list maps
// anything are vetted for the eight values at once, and they are written
// four to an aligned vector store. Any value the quick look cannot vouch
// for sends its eight back to the one-by-one path, which finds the first
// bad value and its status exactly as before. The runs found while
// checking are remembered, so writing does not look for them again.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <optional>

#include <iopt/settings.hpp>
#include <iopt/status.hpp>
#include <iopt/table/bulk_entries.hpp>
#include <iopt/table/walk.hpp>

#if IOPT_VECTOR_ENTRIES
#define IOPT_LIST_AVX2 __attribute__((target("avx2")))
#define IOPT_LIST_AVX512 __attribute__((target("avx512f,avx512bw")))
#endif

namespace iopt::detail {

// The targets a caller's check of a list accepts without being called:
// every value whose page starts from `first` to `last` (none when last <
// first, as by default).
struct accepted_targets {
  std::uint64_t first = 1;
  std::uint64_t last = 0;
};

// Format is the table's format_traits; PageShift its IOMMU page shift.
template <class Format, unsigned PageShift>
struct list_runs {
  static constexpr std::uint64_t page_bytes = std::uint64_t{1} << PageShift;
  static constexpr std::size_t list_stride = 8;
  // Runs a check of one list remembers for writing it; a list has at most
  // size / (list_stride + 1) runs, so this holds every run of a hypercall's
  // 512 values. Runs past it are written value by value, which is correct,
  // only slower.
  static constexpr std::size_t planned_runs = 64;

  // The step from one value of a run to the next: a page for a present value
  // (its target moves on), none for a value that maps nothing.
  static constexpr std::uint64_t run_step(std::uint64_t value) noexcept {
    return Format::is_present(value) ? page_bytes : 0;
  }
  // How many pages a run starting at value's target can hold before it would
  // pass the last page of the 64-bit space (at least 1).
  static constexpr std::uint64_t pages_to_top(std::uint64_t value) noexcept {
    return ((UINT64_MAX - Format::target(value, PageShift)) >> PageShift) + 1;
  }

  // Stores value, value + step, ... into n entries from dst, in memory form.
  IOPT_ALWAYS_INLINE static void store_values(std::uint64_t* dst, std::size_t n,
                                              std::uint64_t value, std::uint64_t step) noexcept {
    store_run<Format::memory_swaps_bytes>(dst, n, value, step);
  }
  // How many of the n entries from src hold value, value + step, ...
  IOPT_ALWAYS_INLINE static std::size_t match_values(const std::uint64_t* src, std::size_t n,
                                                     std::uint64_t value,
                                                     std::uint64_t step) noexcept {
    return match_run<Format::memory_swaps_bytes>(src, n, value, step);
  }

  // The length of the run that starts at list[0] when it reaches
  // list[list_stride], else 0.
  template <bool Swapped>
  IOPT_ALWAYS_INLINE static std::size_t run_at(const std::uint64_t* list, std::size_t n) noexcept {
    if (!run_may_start<Swapped>(list, n))
      return 0;
    // At least 1, even if list[1] breaks the run.
    return run_length<Swapped>(list, n, swapped_if<Swapped>(list[0]));
  }
  // Whether list[list_stride] is where a run from list[0] would put it.
  template <bool Swapped>
  IOPT_ALWAYS_INLINE static bool run_may_start(const std::uint64_t* list, std::size_t n) noexcept {
    if (n <= list_stride)
      return false;
    const std::uint64_t value = swapped_if<Swapped>(list[0]);
    return list[list_stride] == swapped_if<Swapped>(value + list_stride * run_step(value));
  }
  // list[list_stride] continued the run, so it is likely long: the match
  // starts with vectors, from list[0] (which matches; an aligned list stays
  // aligned).
  template <bool Swapped>
  static std::size_t run_length(const std::uint64_t* list, std::size_t n,
                                std::uint64_t value) noexcept {
    const std::uint64_t step = run_step(value);
    if (step != 0)
      n = static_cast<std::size_t>(std::min<std::uint64_t>(n, pages_to_top(value)));
    return std::max<std::size_t>(
        1, match_run<Swapped>(list, n, value, step, vector_width::automatic, 0));
  }

  // The first value, in the host's order, when the n values from list are
  // one run (n >= 1), else nothing. For a list another thread may be
  // writing: the first value is read once and every value is compared with
  // what it must be, so a run it gives is what the list held when each was
  // read. The last value is looked at first, so a list that is no run costs
  // two loads.
  template <bool Swapped>
  static std::optional<std::uint64_t> whole_run(const std::uint64_t* list, std::size_t n) noexcept {
    const std::uint64_t head = swapped_if<Swapped>(load_entry(list[0])); // read once
    const std::uint64_t step = run_step(head);
    if (step != 0 && n > pages_to_top(head))
      return std::nullopt; // the run would pass the top of the address space
    const std::uint64_t last = head + (n - 1) * step;
    if (list[n - 1] != swapped_if<Swapped>(last) ||
        match_run<Swapped>(list, n, head, step, vector_width::automatic, 0) != n)
      return std::nullopt;
    return head;
  }

  // The format's check of every value of a run, then the caller's check of
  // the run. A run's permission bits are all alike and its targets rise
  // without wrapping, so its first and last values stand for the rest unless
  // the run leaves the format's address bits part way, which is taken one
  // value at a time to find the first bad one.
  template <bool Swapped, class Check>
  static status check_run(const std::uint64_t* run, std::size_t n, Check& check) noexcept {
    const std::uint64_t head = swapped_if<Swapped>(run[0]);
    if (const status s = Format::check(head, PageShift); IOPT_UNLIKELY(s != status::ok))
      return s;
    if (IOPT_UNLIKELY(Format::check(swapped_if<Swapped>(run[n - 1]), PageShift) != status::ok))
      return check_each<Swapped>(run, check);
    return check(head, std::uint64_t{n});
  }
  template <class Check>
  IOPT_ALWAYS_INLINE static status check_one(std::uint64_t value, Check& check) noexcept {
    if (const status s = Format::check(value, PageShift); IOPT_UNLIKELY(s != status::ok))
      return s;
    return check(value, std::uint64_t{1});
  }
  template <bool Swapped, class Check>
  IOPT_COLD static status check_each(const std::uint64_t* run, Check& check) noexcept {
    for (std::size_t k = 0;; ++k) // the run's last value fails, so this returns
      if (const status s = check_one(swapped_if<Swapped>(run[k]), check); s != status::ok)
        return s;
  }
  // The check of a caller that has none: every target is accepted.
  struct no_check_type {
    constexpr status operator()(std::uint64_t, std::uint64_t) const noexcept { return status::ok; }
    static constexpr detail::accepted_targets accepted_targets() noexcept {
      return {0, ~(page_bytes - 1)};
    }
  };
  static constexpr no_check_type no_check{};

  // ---- single values, eight at a time ---------------------------------------

  // Bits no value that passes Format::check has at this page size.
  static constexpr std::uint64_t refused_bits = (low_mask(PageShift) & ~Format::permission_bits) |
                                                (~low_mask(PageShift) & ~Format::address_mask);
  // normalize, as XOR masks on the permission bits (the format concept
  // promises it changes nothing else): a value whose permission bits are
  // fixes[k].from becomes value ^ fixes[k].flip.
  struct permission_fix {
    std::uint64_t from;
    std::uint64_t flip;
  };
  static constexpr auto fixes = [] {
    std::array<permission_fix, 4> out{};
    std::size_t n = 0;
    for (const std::uint64_t p :
         {std::uint64_t{0}, Format::read_bit, Format::write_bit, Format::permission_bits})
      if (Format::normalize(p) != p)
        out[n++] = {p, Format::normalize(p) ^ p};
    return out;
  }();
  static constexpr std::size_t fix_count = [] {
    std::size_t n = 0;
    for (const std::uint64_t p :
         {std::uint64_t{0}, Format::read_bit, Format::write_bit, Format::permission_bits})
      n += Format::normalize(p) != p ? std::size_t{1} : std::size_t{0};
    return n;
  }();

  // Whether a value normalizes to 0 only when it is 0 (then set values are
  // told apart from empty ones without normalizing them).
  static constexpr bool only_zero_normalizes_to_zero = [] {
    if (Format::normalize(0) != 0)
      return false;
    for (const std::uint64_t p : {Format::read_bit, Format::write_bit, Format::permission_bits})
      if (Format::normalize(p) == 0)
        return false;
    return true;
  }();

#if IOPT_VECTOR_ENTRIES
  IOPT_LIST_AVX2 static __m256i avx2_normalized(__m256i v) noexcept {
    const __m256i permissions =
        _mm256_and_si256(v, _mm256_set1_epi64x(static_cast<long long>(Format::permission_bits)));
    for (std::size_t k = 0; k < fix_count; ++k) {
      const __m256i hit = _mm256_cmpeq_epi64(
          permissions, _mm256_set1_epi64x(static_cast<long long>(fixes[k].from)));
      v = _mm256_xor_si256(
          v, _mm256_and_si256(hit, _mm256_set1_epi64x(static_cast<long long>(fixes[k].flip))));
    }
    return v;
  }
  // Vouches for the values of list[0, n), list_stride at a time, while
  // no run may start (run_may_start) and all eight pass the format's check
  // and map, if anything, a target in `ok`. Returns how many it vouched for
  // (a multiple of list_stride) and widens [first_set, last_set] (indexes
  // from list) over those that normalize to anything but 0.
  template <bool Swapped>
  IOPT_LIST_AVX2 static std::size_t avx2_screen(const std::uint64_t* list, std::size_t n,
                                                accepted_targets ok, std::size_t& first_set,
                                                std::size_t& last_set) noexcept {
    static_assert(list_stride == 8);
    const __m256i zero = _mm256_setzero_si256();
    const __m256i sign = _mm256_set1_epi64x(INT64_MIN);
    const __m256i refused = _mm256_set1_epi64x(static_cast<long long>(refused_bits));
    const __m256i permissions = _mm256_set1_epi64x(static_cast<long long>(Format::permission_bits));
    const __m256i page_start = _mm256_set1_epi64x(static_cast<long long>(~low_mask(PageShift)));
    const __m256i first = _mm256_set1_epi64x(static_cast<long long>(ok.first));
    // offset > last - first, unsigned: with the sign bits flipped, signed.
    const __m256i span =
        _mm256_xor_si256(_mm256_set1_epi64x(static_cast<long long>(ok.last - ok.first)), sign);
    // Lanes that map something outside `ok`.
    auto outside = [&](__m256i v) IOPT_LIST_AVX2 {
      const __m256i absent = _mm256_cmpeq_epi64(_mm256_and_si256(v, permissions), zero);
      const __m256i offset = _mm256_sub_epi64(_mm256_and_si256(v, page_start), first);
      return _mm256_andnot_si256(absent, _mm256_cmpgt_epi64(_mm256_xor_si256(offset, sign), span));
    };
    auto empty_lanes = [&](__m256i v) IOPT_LIST_AVX2 {
      if constexpr (!only_zero_normalizes_to_zero)
        v = avx2_normalized(v);
      return static_cast<unsigned>(
          _mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpeq_epi64(v, zero))));
    };
    std::size_t i = 0;
    std::size_t last_chunk = 0;
    unsigned last_chunk_set = 0;
    for (; n - i >= list_stride && !run_may_start<Swapped>(list + i, n - i); i += list_stride) {
      const __m256i lo = avx2_form<Swapped>(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(list + i))); // NOLINT
      const __m256i hi = avx2_form<Swapped>(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(list + i + 4))); // NOLINT
      const __m256i bad = _mm256_or_si256(_mm256_and_si256(_mm256_or_si256(lo, hi), refused),
                                          _mm256_or_si256(outside(lo), outside(hi)));
      if (!_mm256_testz_si256(bad, bad))
        break;
      if (const unsigned set = ~(empty_lanes(lo) | empty_lanes(hi) << 4) & 0xffu; set != 0) {
        if (last_chunk_set == 0)
          first_set = std::min(first_set, i + static_cast<std::size_t>(std::countr_zero(set)));
        last_chunk = i;
        last_chunk_set = set;
      }
    }
    if (last_chunk_set != 0)
      last_set = last_chunk + 31 - static_cast<std::size_t>(std::countl_zero(last_chunk_set));
    return i;
  }
  // dst[k] = memory form of normalize(value k of src), for n values; dst is
  // 32-byte aligned and n a multiple of 4.
  template <bool Swapped>
  IOPT_LIST_AVX2 static void avx2_store_normalized(std::uint64_t* dst, const std::uint64_t* src,
                                                   std::size_t n) noexcept {
    for (std::size_t k = 0; k < n; k += 4) {
      const __m256i v = avx2_normalized(avx2_form<Swapped>(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + k)))); // NOLINT
      _mm256_store_si256(reinterpret_cast<__m256i*>(dst + k),              // NOLINT
                         avx2_form<Format::memory_swaps_bytes>(v));
    }
  }

  // The same as avx2_normalized, avx2_screen and avx2_store_normalized,
  // eight values to a vector (dst 64-byte aligned, n a multiple of 8).
  // Swapped: the values are byte-reversed, and so are the masks; AND, XOR
  // and equality do not care in which order the bytes stand, so a list kept
  // in the memory's order is normalized without turning it round twice.
  template <bool Swapped = false>
  IOPT_LIST_AVX512 static __m512i avx512_normalized(__m512i v) noexcept {
    constexpr auto lane = [](std::uint64_t x) {
      return static_cast<long long>(swapped_if<Swapped>(x));
    };
    const __m512i permissions =
        _mm512_and_si512(v, _mm512_set1_epi64(lane(Format::permission_bits)));
    for (std::size_t k = 0; k < fix_count; ++k)
      v = _mm512_mask_xor_epi64(
          v, _mm512_cmpeq_epi64_mask(permissions, _mm512_set1_epi64(lane(fixes[k].from))), v,
          _mm512_set1_epi64(lane(fixes[k].flip)));
    return v;
  }
  template <bool Swapped>
  IOPT_LIST_AVX512 static std::size_t avx512_screen(const std::uint64_t* list, std::size_t n,
                                                    accepted_targets ok, std::size_t& first_set,
                                                    std::size_t& last_set) noexcept {
    static_assert(list_stride == 8);
    const __m512i refused = _mm512_set1_epi64(static_cast<long long>(refused_bits));
    const __m512i permissions = _mm512_set1_epi64(static_cast<long long>(Format::permission_bits));
    const __m512i first = _mm512_set1_epi64(static_cast<long long>(ok.first));
    // A value that passes the format's check has only permission bits below
    // its page, so its target lies in [first, last] exactly when the value
    // minus first is at most last - first + the page's low bits (last is a
    // page start, so nothing wraps): no mask for the target.
    const __m512i span =
        _mm512_set1_epi64(static_cast<long long>(ok.last - ok.first + low_mask(PageShift)));
    std::size_t i = 0;
    std::size_t last_chunk = 0;
    unsigned last_chunk_set = 0;
    for (; n - i >= list_stride && !run_may_start<Swapped>(list + i, n - i); i += list_stride) {
      const __m512i v = avx512_form<Swapped>(_mm512_loadu_si512(list + i));
      const __mmask8 present = _mm512_test_epi64_mask(v, permissions);
      const __mmask8 outside =
          _mm512_mask_cmpgt_epu64_mask(present, _mm512_sub_epi64(v, first), span);
      if ((_mm512_test_epi64_mask(v, refused) | outside) != 0)
        break;
      __m512i normalized = v;
      if constexpr (!only_zero_normalizes_to_zero)
        normalized = avx512_normalized(v);
      if (const unsigned set = _mm512_test_epi64_mask(normalized, normalized); set != 0) {
        if (last_chunk_set == 0)
          first_set = std::min(first_set, i + static_cast<std::size_t>(std::countr_zero(set)));
        last_chunk = i;
        last_chunk_set = set;
      }
    }
    if (last_chunk_set != 0)
      last_set = last_chunk + 31 - static_cast<std::size_t>(std::countl_zero(last_chunk_set));
    return i;
  }
  template <bool Swapped>
  IOPT_LIST_AVX512 static void avx512_store_normalized(std::uint64_t* dst, const std::uint64_t* src,
                                                       std::size_t n) noexcept {
    for (std::size_t k = 0; k < n; k += 8) {
      if constexpr (Swapped == Format::memory_swaps_bytes) // already in the memory's order
        _mm512_store_si512(dst + k, avx512_normalized<Swapped>(_mm512_loadu_si512(src + k)));
      else
        _mm512_store_si512(dst + k, avx512_form<Format::memory_swaps_bytes>(avx512_normalized(
                                        avx512_form<Swapped>(_mm512_loadu_si512(src + k)))));
    }
  }
#endif

  // How many values from list[0, n) the quick look vouches for (see
  // avx2_screen; 0 where there is no AVX2 or the check accepts no target).
  template <bool Swapped, class Check>
  IOPT_ALWAYS_INLINE static std::size_t
  screen(const std::uint64_t* list, std::size_t n, const Check& check, vector_width width,
         std::size_t& first_set, std::size_t& last_set) noexcept {
#if IOPT_VECTOR_ENTRIES
    if constexpr (requires { check.accepted_targets(); })
      if (const accepted_targets ok = check.accepted_targets();
          ok.first <= ok.last && width != vector_width::scalar)
        return width == vector_width::avx512
                   ? avx512_screen<Swapped>(list, n, ok, first_set, last_set)
                   : avx2_screen<Swapped>(list, n, ok, first_set, last_set);
#endif
    (void)list, (void)n, (void)check, (void)width, (void)first_set, (void)last_set;
    return 0;
  }
  // Writes the memory form of each normalized value of src[0, n) to dst.
  template <bool Swapped>
  IOPT_ALWAYS_INLINE static void
  store_normalized(std::uint64_t* dst, const std::uint64_t* src, std::size_t n,
                   vector_width width = vector_width::automatic) noexcept {
    std::size_t k = 0;
#if IOPT_VECTOR_ENTRIES
    if (width == vector_width::automatic && n >= 16)
      width = best_vector_width();
    if (n >= 16 && width != vector_width::scalar && width != vector_width::automatic) {
      // Scalar entries up to the first aligned vector, whole vectors, then the rest.
      const std::size_t lanes = width == vector_width::avx512 ? 8 : 4;
      const std::size_t head = (lanes - reinterpret_cast<std::uintptr_t>(dst) / 8) & (lanes - 1);
      for (; k < head; ++k)
        store_entry(dst[k], Format::to_memory(Format::normalize(swapped_if<Swapped>(src[k]))));
      const std::size_t vectors = (n - k) & ~(lanes - 1);
      if (width == vector_width::avx512)
        avx512_store_normalized<Swapped>(dst + k, src + k, vectors);
      else
        avx2_store_normalized<Swapped>(dst + k, src + k, vectors);
      k += vectors;
    }
#else
    (void)width;
#endif
    for (; k < n; ++k)
      store_entry(dst[k], Format::to_memory(Format::normalize(swapped_if<Swapped>(src[k]))));
  }

  // Checks every value of a list (see check_run) and finds the part of it
  // that maps anything: [first_set, last_set] index the first and the last
  // value that does not normalize to empty (first_set > last_set when none
  // does), so that levels are needed only there. It remembers the runs it
  // found (up to planned_runs), in order, for list_writer.
  struct run {
    std::uint32_t start;
    std::uint32_t length;
  };
  struct checked_list {
    status result = status::ok;
    std::size_t first_set = SIZE_MAX;
    std::size_t last_set = 0;
    std::size_t run_count = 0;
    std::array<run, planned_runs> runs;
    [[nodiscard]] bool maps_nothing() const noexcept { return first_set > last_set; }
  };
  template <bool Swapped, class Check>
  static void check_list(const std::uint64_t* list, std::size_t size, Check& check,
                         checked_list& out) noexcept {
    auto note_set = [&out](std::size_t from, std::size_t to) noexcept {
      out.first_set = std::min(out.first_set, from);
      out.last_set = std::max(out.last_set, to);
    };
    const vector_width width = best_vector_width();
    for (std::size_t i = 0; i < size;) {
      if (const std::size_t n = run_at<Swapped>(list + i, size - i); n != 0) {
        if (const status s = check_run<Swapped>(list + i, n, check);
            IOPT_UNLIKELY(s != status::ok)) {
          out.result = s;
          return;
        }
        if (Format::normalize(swapped_if<Swapped>(list[i])) != 0)
          note_set(i, i + n - 1);
        if (out.run_count < planned_runs)
          out.runs[out.run_count++] = {static_cast<std::uint32_t>(i),
                                       static_cast<std::uint32_t>(n)};
        i += n;
        continue;
      }
      if (size - i >= list_stride) {
        std::size_t first = SIZE_MAX, last = 0;
        if (const std::size_t n = screen<Swapped>(list + i, size - i, check, width, first, last);
            n != 0) {
          if (first <= last)
            note_set(i + first, i + last);
          i += n;
          continue;
        }
      }
      for (const std::size_t end = std::min(size, i + list_stride); i < end; ++i) {
        const std::uint64_t value = swapped_if<Swapped>(list[i]);
        if (const status s = check_one(value, check); IOPT_UNLIKELY(s != status::ok)) {
          out.result = s;
          return;
        }
        if (Format::normalize(value) != 0)
          note_set(i, i);
      }
    }
  }

  // Writes normalized values from a checked list: its planned runs in bulk,
  // the values between them in bulk too (store_normalized). Where a level is
  // missing, the list maps nothing (the caller made levels exist under every
  // value that maps anything), so the walk skips it.
  template <bool Swapped>
  struct list_writer {
    const std::uint64_t* list; // the list holds exactly the walked entries
    const checked_list* plan;
    std::size_t at = 0;       // the list index of the next entry walked
    std::size_t next_run = 0; // the first planned run not wholly written

    IOPT_ALWAYS_INLINE bool leaf(std::uint64_t* block, std::size_t lo, std::size_t hi,
                                 std::uint64_t) noexcept {
      for (std::size_t i = lo; i <= hi;) {
        const std::size_t room = hi - i + 1;
        if (next_run < plan->run_count && at >= plan->runs[next_run].start) {
          const run r = plan->runs[next_run];
          const std::size_t into = at - r.start;
          const std::size_t n = std::min<std::size_t>(r.length - into, room);
          // normalize changes only permission bits, so a run stays a run.
          const std::uint64_t value = Format::normalize(swapped_if<Swapped>(list[r.start]));
          const std::uint64_t step = run_step(value);
          store_values(block + i, n, value + into * step, step);
          if (into + n == r.length)
            ++next_run;
          at += n;
          i += n;
        } else {
          const std::size_t until =
              next_run < plan->run_count ? plan->runs[next_run].start : SIZE_MAX;
          const std::size_t n = std::min(until - at, room);
          store_normalized<Swapped>(block + i, list + at, n);
          at += n;
          i += n;
        }
      }
      return true;
    }
    template <unsigned Level>
    on_missing missing(std::uint64_t&, std::uint64_t first, std::uint64_t last) noexcept {
      const std::size_t skipped = static_cast<std::size_t>(last - first + 1);
      at += skipped;
      while (next_run < plan->run_count &&
             plan->runs[next_run].start + std::size_t{plan->runs[next_run].length} <= at)
        ++next_run;
      return on_missing::skip;
    }
  };
};

} // namespace iopt::detail

#undef IOPT_LIST_AVX2
#undef IOPT_LIST_AVX512
