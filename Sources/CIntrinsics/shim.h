/* x86 operations that Swift has no spelling for, as static inline functions on Swift's SIMD types
   (clang's ext_vector_type imports as SIMD8<Float> and SIMD8<UInt32>). */
#include <immintrin.h>

typedef float cintrinsics_lanes __attribute__((ext_vector_type(8)));
typedef unsigned int cintrinsics_indices __attribute__((ext_vector_type(8)));

/* Software prefetch of every cache line of [start, start + bytes). */
static inline void cprefetch_lines_for_reading(const void *start, long bytes) {
    const char *p = (const char *)start;
    for (long offset = 0; offset < bytes; offset += 64) __builtin_prefetch(p + offset, 0, 3);
}

/* ⌊min(max(position, 0), last)⌋ as integers: vmaxps (which returns its second operand, 0, for a NaN),
   vminps and a truncating conversion, exact for positions in [0, last] with last < 2^24. Swift's
   pointwiseMin/Max and its float-to-integer conversion compile to blends and per-lane code. */
static inline cintrinsics_indices cintrinsics_clamped_floor(cintrinsics_lanes position, float last) {
    __m256 clamped = _mm256_min_ps(_mm256_max_ps((__m256)position, _mm256_setzero_ps()), _mm256_set1_ps(last));
    return (cintrinsics_indices)_mm256_cvttps_epi32(clamped);
}

/* min(max(v, low), high) lane by lane, a NaN kept: vmaxps and vminps return their second operand, v,
   when either is NaN, and for ±0 against ±0; exactly v < low ? low : (v > high ? high : v). */
static inline cintrinsics_lanes cintrinsics_clamp(cintrinsics_lanes v, float low, float high) {
    return (cintrinsics_lanes)_mm256_min_ps(_mm256_set1_ps(high), _mm256_max_ps(_mm256_set1_ps(low), (__m256)v));
}
