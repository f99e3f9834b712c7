// iopt — IOMMU page-table algorithms for the POWER sPAPR IOMMU.
// SPDX-License-Identifier: MIT
//
// Runs of leaf entries written and scanned in bulk.
//
// A run of a mapping is the arithmetic sequence value, value + step, ...
// (step is the page size for contiguous targets, 0 for a fill or a clear),
// each term stored in the format's memory byte order. Written one 8-byte
// atomic at a time, such a run goes at one or two entries a cycle, a quarter
// of what memset reaches; scanned one atomic at a time, at a third of a
// memory scan.
//
//   store_run<Swap>(dst, n, value, step)
//       dst[k] = mem(value + k * step) for k in [0, n)
//   match_run<Swap>(src, n, value, step)
//       the number of leading k in [0, n) with src[k] == mem(value + k * step)
//
// where mem() swaps the bytes of each value when Swap is true (a big-endian
// format on a little-endian host) and keeps them otherwise.
//
// On x86-64 built with GCC or Clang these move 8 entries per aligned 64-byte
// AVX-512 access or 4 per aligned 32-byte AVX2 access, whichever the
// processor has (checked once, at run time, so a build for generic x86-64
// gets them too). No entry is torn: entries are 8-byte aligned, the vendors
// document aligned 16-byte vector accesses as atomic on processors with AVX,
// and wider aligned accesses are carried out as such parts on every
// implementation (a practice, not a documented promise), so a concurrent
// reader sees each entry either old or new, as with the scalar atomics. The
// C++ memory model does not describe mixed vector and atomic access, and
// ThreadSanitizer checks that model, so a TSan build uses the scalar
// atomics, as does any other target and a build that defines
// IOPT_SCALAR_ENTRIES (for a hypervisor that wants only documented
// guarantees).
#pragma once

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>

#include <iopt/settings.hpp>

// 1 when the vector paths are built (x86-64 with GCC or Clang, no
// ThreadSanitizer, IOPT_SCALAR_ENTRIES not defined) and taken where the
// processor has AVX2 or AVX-512; 0 for scalar atomics only.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) &&                            \
    !defined(IOPT_SCALAR_ENTRIES)
#if defined(__SANITIZE_THREAD__)
#define IOPT_VECTOR_ENTRIES 0
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define IOPT_VECTOR_ENTRIES 0
#endif
#endif
#ifndef IOPT_VECTOR_ENTRIES
#define IOPT_VECTOR_ENTRIES 1
#endif
#else
#define IOPT_VECTOR_ENTRIES 0
#endif

#if IOPT_VECTOR_ENTRIES
#include <immintrin.h>
#endif

namespace iopt::detail {

// The widest entry access the processor offers, best last.
// `automatic` asks for the best the processor has, found out only when a
// run is long enough to use it.
enum class vector_width : std::uint8_t { scalar, avx2, avx512, automatic };

inline vector_width detect_vector_width() noexcept {
#if IOPT_VECTOR_ENTRIES
  __builtin_cpu_init(); // safe to call more than once; needed before static constructors
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw"))
    return vector_width::avx512;
  if (__builtin_cpu_supports("avx2"))
    return vector_width::avx2;
#endif
  return vector_width::scalar;
}

inline vector_width best_vector_width() noexcept {
  static const vector_width width = detect_vector_width();
  return width;
}

// v with its bytes reversed when Swap is true: to memory form and back.
template <bool Swap>
IOPT_ALWAYS_INLINE constexpr std::uint64_t swapped_if(std::uint64_t v) noexcept {
  return Swap ? __builtin_bswap64(v) : v;
}

// ---- scalar: one atomic per entry ----------------------------------------

template <bool Swap>
IOPT_ALWAYS_INLINE void store_run_scalar(std::uint64_t* dst, std::size_t n, std::uint64_t value,
                                         std::uint64_t step) noexcept {
  for (std::size_t k = 0; k < n; ++k, value += step)
    std::atomic_ref<std::uint64_t>(dst[k]).store(swapped_if<Swap>(value),
                                                 std::memory_order_relaxed);
}

template <bool Swap>
IOPT_ALWAYS_INLINE std::size_t match_run_scalar(const std::uint64_t* src, std::size_t n,
                                                std::uint64_t value, std::uint64_t step) noexcept {
  std::size_t k = 0;
  for (; k < n; ++k, value += step)
    if (std::atomic_ref<std::uint64_t>(const_cast<std::uint64_t&>(src[k])) // NOLINT
            .load(std::memory_order_relaxed) != swapped_if<Swap>(value))
      break;
  return k;
}

#if IOPT_VECTOR_ENTRIES
#define IOPT_AVX2 __attribute__((target("avx2")))
#define IOPT_AVX512 __attribute__((target("avx512f,avx512bw")))

// ---- AVX2: 4 entries per aligned 32-byte access --------------------------

// The byte shuffle that reverses each 64-bit lane, as the two 64-bit halves
// of each 128 bits of the mask: byte i of the result is byte mask[i].
inline constexpr long long bswap_mask_low = 0x0001'0203'0405'0607;
inline constexpr long long bswap_mask_high = 0x0809'0a0b'0c0d'0e0f;

template <bool Swap>
IOPT_AVX2 inline __m256i avx2_form(__m256i v) noexcept {
  if constexpr (Swap)
    return _mm256_shuffle_epi8(
        v, _mm256_setr_epi64x(bswap_mask_low, bswap_mask_high, bswap_mask_low, bswap_mask_high));
  else
    return v;
}

IOPT_AVX2 inline __m256i avx2_sequence(std::uint64_t value, std::uint64_t step) noexcept {
  return _mm256_setr_epi64x(static_cast<long long>(value), static_cast<long long>(value + step),
                            static_cast<long long>(value + 2 * step),
                            static_cast<long long>(value + 3 * step));
}

// n counts whole vectors; dst is 32-byte aligned.
template <bool Swap>
IOPT_AVX2 inline void store_run_avx2(std::uint64_t* dst, std::size_t n, std::uint64_t value,
                                     std::uint64_t step) noexcept {
  __m256i v = avx2_sequence(value, step);
  const __m256i inc = _mm256_set1_epi64x(static_cast<long long>(4 * step));
  for (std::size_t i = 0; i < n; ++i, dst += 4, v = _mm256_add_epi64(v, inc))
    _mm256_store_si256(reinterpret_cast<__m256i*>(dst), avx2_form<Swap>(v));
}

// The number of leading whole vectors that match, then the matching entries
// of the first vector that does not (so the result counts entries).
template <bool Swap>
IOPT_AVX2 inline std::size_t match_run_avx2(const std::uint64_t* src, std::size_t n,
                                            std::uint64_t value, std::uint64_t step) noexcept {
  __m256i v = avx2_sequence(value, step);
  const __m256i inc = _mm256_set1_epi64x(static_cast<long long>(4 * step));
  for (std::size_t i = 0; i < n; ++i, src += 4, v = _mm256_add_epi64(v, inc)) {
    const __m256i equal = _mm256_cmpeq_epi64(
        _mm256_load_si256(reinterpret_cast<const __m256i*>(src)), avx2_form<Swap>(v));
    const auto mask = static_cast<unsigned>(_mm256_movemask_pd(_mm256_castsi256_pd(equal)));
    if (mask != 0xf)
      return 4 * i + static_cast<std::size_t>(std::countr_one(mask));
  }
  return 4 * n;
}

// ---- AVX-512: 8 entries per aligned 64-byte access -----------------------

template <bool Swap>
IOPT_AVX512 inline __m512i avx512_form(__m512i v) noexcept {
  if constexpr (Swap)
    return _mm512_shuffle_epi8(v, _mm512_set_epi64(bswap_mask_high, bswap_mask_low, bswap_mask_high,
                                                   bswap_mask_low, bswap_mask_high, bswap_mask_low,
                                                   bswap_mask_high, bswap_mask_low));
  else
    return v;
}

IOPT_AVX512 inline __m512i avx512_sequence(std::uint64_t value, std::uint64_t step) noexcept {
  return _mm512_set_epi64(
      static_cast<long long>(value + 7 * step), static_cast<long long>(value + 6 * step),
      static_cast<long long>(value + 5 * step), static_cast<long long>(value + 4 * step),
      static_cast<long long>(value + 3 * step), static_cast<long long>(value + 2 * step),
      static_cast<long long>(value + step), static_cast<long long>(value));
}

// n counts whole vectors; dst is 64-byte aligned.
template <bool Swap>
IOPT_AVX512 inline void store_run_avx512(std::uint64_t* dst, std::size_t n, std::uint64_t value,
                                         std::uint64_t step) noexcept {
  __m512i v = avx512_sequence(value, step);
  const __m512i inc = _mm512_set1_epi64(static_cast<long long>(8 * step));
  std::size_t i = 0;
  // Four vectors a step (a cache line each), so that the loop's own work
  // stays out of the way of the stores.
  const __m512i inc2 = _mm512_add_epi64(inc, inc);
  for (; i + 4 <= n; i += 4, dst += 32) {
    const __m512i v1 = _mm512_add_epi64(v, inc);
    const __m512i v2 = _mm512_add_epi64(v, inc2);
    const __m512i v3 = _mm512_add_epi64(v1, inc2);
    _mm512_store_si512(dst, avx512_form<Swap>(v));
    _mm512_store_si512(dst + 8, avx512_form<Swap>(v1));
    _mm512_store_si512(dst + 16, avx512_form<Swap>(v2));
    _mm512_store_si512(dst + 24, avx512_form<Swap>(v3));
    v = _mm512_add_epi64(v2, inc2);
  }
  for (; i < n; ++i, dst += 8, v = _mm512_add_epi64(v, inc))
    _mm512_store_si512(dst, avx512_form<Swap>(v));
}

// The bits in which the vector at `at` differs from `want` (in memory form).
template <bool Swap>
IOPT_AVX512 inline __m512i avx512_differs(const std::uint64_t* at, __m512i want) noexcept {
  return _mm512_xor_si512(_mm512_load_si512(at), avx512_form<Swap>(want));
}

template <bool Swap>
IOPT_AVX512 inline std::size_t match_run_avx512(const std::uint64_t* src, std::size_t n,
                                                std::uint64_t value, std::uint64_t step) noexcept {
  __m512i v = avx512_sequence(value, step);
  const __m512i inc = _mm512_set1_epi64(static_cast<long long>(8 * step));
  std::size_t i = 0;
  // Eight vectors a step, their differences ORed into one (a chain of
  // masked compares would wait on each other), so that a long run goes at
  // the speed of the loads; the first eight that hold a mismatch are looked
  // at again one vector at a time below.
  const __m512i inc2 = _mm512_add_epi64(inc, inc);
  const __m512i inc4 = _mm512_add_epi64(inc2, inc2);
  for (; i + 8 <= n; i += 8, src += 64) {
    const __m512i v1 = _mm512_add_epi64(v, inc);
    const __m512i v2 = _mm512_add_epi64(v, inc2);
    const __m512i v3 = _mm512_add_epi64(v1, inc2);
    const __m512i v4 = _mm512_add_epi64(v, inc4);
    const __m512i v5 = _mm512_add_epi64(v1, inc4);
    const __m512i v6 = _mm512_add_epi64(v2, inc4);
    const __m512i v7 = _mm512_add_epi64(v3, inc4);
    const __m512i d0123 = _mm512_or_si512(
        _mm512_or_si512(avx512_differs<Swap>(src, v), avx512_differs<Swap>(src + 8, v1)),
        _mm512_or_si512(avx512_differs<Swap>(src + 16, v2), avx512_differs<Swap>(src + 24, v3)));
    const __m512i d4567 = _mm512_or_si512(
        _mm512_or_si512(avx512_differs<Swap>(src + 32, v4), avx512_differs<Swap>(src + 40, v5)),
        _mm512_or_si512(avx512_differs<Swap>(src + 48, v6), avx512_differs<Swap>(src + 56, v7)));
    const __m512i differ = _mm512_or_si512(d0123, d4567);
    if (_mm512_test_epi64_mask(differ, differ) != 0)
      break;
    v = _mm512_add_epi64(v4, inc4);
  }
  for (; i < n; ++i, src += 8, v = _mm512_add_epi64(v, inc)) {
    const auto mask = static_cast<unsigned>(
        _mm512_cmpeq_epi64_mask(_mm512_load_si512(src), avx512_form<Swap>(v)));
    if (mask != 0xff)
      return 8 * i + static_cast<std::size_t>(std::countr_one(mask));
  }
  return 8 * n;
}

#undef IOPT_AVX2
#undef IOPT_AVX512
#endif // IOPT_VECTOR_ENTRIES

// ---- the entry points ------------------------------------------------------

// Runs shorter than this stay scalar: setting up the vectors would not pay.
inline constexpr std::size_t min_vector_run = 16;

template <bool Swap>
IOPT_ALWAYS_INLINE void store_run(std::uint64_t* dst, std::size_t n, std::uint64_t value,
                                  std::uint64_t step,
                                  vector_width width = vector_width::automatic) noexcept {
#if IOPT_VECTOR_ENTRIES
  if (n >= min_vector_run) {
    if (width == vector_width::automatic)
      width = best_vector_width();
    if (width != vector_width::scalar) {
      const std::size_t lanes = width == vector_width::avx512 ? 8 : 4;
      // Scalar entries up to the first aligned vector, whole vectors, then the rest.
      const std::size_t head = (lanes - reinterpret_cast<std::uintptr_t>(dst) / 8) & (lanes - 1);
      store_run_scalar<Swap>(dst, head, value, step);
      dst += head;
      n -= head;
      value += head * step;
      const std::size_t vectors = n / lanes;
      if (width == vector_width::avx512)
        store_run_avx512<Swap>(dst, vectors, value, step);
      else
        store_run_avx2<Swap>(dst, vectors, value, step);
      dst += vectors * lanes;
      n -= vectors * lanes;
      value += vectors * lanes * step;
    }
  }
#else
  (void)width;
#endif
  store_run_scalar<Swap>(dst, n, value, step);
}

// Runs often end early (a list of short runs, a block with a few entries),
// so the first `scalar_prefix` entries (min_vector_run unless the caller
// expects a long run) are compared one by one and only a run that goes on
// past them pays for setting up the vectors.
template <bool Swap>
IOPT_ALWAYS_INLINE std::size_t match_run(const std::uint64_t* src, std::size_t n,
                                         std::uint64_t value, std::uint64_t step,
                                         vector_width width = vector_width::automatic,
                                         std::size_t scalar_prefix = min_vector_run) noexcept {
  const std::size_t prefix = n < scalar_prefix ? n : scalar_prefix;
  std::size_t k = match_run_scalar<Swap>(src, prefix, value, step);
#if IOPT_VECTOR_ENTRIES
  if (k == prefix && n > k) {
    if (width == vector_width::automatic)
      width = best_vector_width();
    if (width != vector_width::scalar) {
      const std::size_t lanes = width == vector_width::avx512 ? 8 : 4;
      const std::size_t head =
          (lanes - reinterpret_cast<std::uintptr_t>(src + k) / 8) & (lanes - 1);
      const std::size_t aligned = k + head < n ? k + head : n;
      k += match_run_scalar<Swap>(src + k, aligned - k, value + k * step, step);
      if (k < aligned || k == n)
        return k;
      const std::size_t vectors = (n - k) / lanes;
      const std::size_t matched =
          width == vector_width::avx512
              ? match_run_avx512<Swap>(src + k, vectors, value + k * step, step)
              : match_run_avx2<Swap>(src + k, vectors, value + k * step, step);
      k += matched;
      if (matched < vectors * lanes)
        return k;
    }
  }
#else
  (void)width;
#endif
  if (k < prefix)
    return k;
  return k + match_run_scalar<Swap>(src + k, n - k, value + k * step, step);
}

} // namespace iopt::detail
