// PAL synthesis on the CPU: one output frame per OpenMP task, processed row by row so that each pixel row
// goes through all its steps while it is in L1 (see synthesize_frame):
//   1. bilinear crop/resize/flip of the background and (inside the pasted region) the action row, blend;
//      separable: each source row is interpolated horizontally once and reused by the output rows that need it
//   2. colour jitter in the plan's order and grayscale (contrast first needs the exact quantised grey of the
//      whole frame, so the ops from contrast on wait for a second pass over the frame's rows)
//   3. separable Gaussian blur, streamed: each row horizontally one row after it is finished, each output row's
//      columns as soon as its source rows are (see Blur);  4. clamp + convert + store.
// The arithmetic is csrc/synth_math.h, identical to the reference and the CUDA kernel: fusing the passes
// changes the order in which pixels are visited, never the operations on a pixel.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <new>
#include <vector>

#include "cpu_variant.h"
#include "synth.h"
#include "synth_math.h"
#include "synth_params.h"

#if defined(_OPENMP)
#include <omp.h>
#endif
#if defined(__AVX512F__) || defined(__AVX2__)
#define UPTAL_WINDOWS 1   // row sampling through permute windows (see RowCache::sample_through_windows)
#endif
#if defined(__AVX2__) && !defined(__AVX512F__)
#define UPTAL_BYTE_PICKS 1   // row sampling by byte shuffles of the uint8 row (see RowCache::sample_through_byte_picks)
#define UPTAL_STREAM_STORES 1   // float32 output rows written with non-temporal stores (see store_row)
#endif
#if defined(__AVX__) || defined(__AVX512F__)
#include <immintrin.h>
#elif defined(__SSE__)
#include <xmmintrin.h>
#endif

namespace uptal {

// float32 lanes of one vector register as one value: 16 in the avx512 build, 8 in the avx2 one, 4 (SSE) in
// the baseline one. Its arithmetic is lane-wise IEEE float32 like scalar code, not contracted (-ffp-contract=off).
#if defined(__AVX512F__)
typedef float Lanes __attribute__((vector_size(64)));
#elif defined(__AVX__)
typedef float Lanes __attribute__((vector_size(32)));
#else
typedef float Lanes __attribute__((vector_size(16)));
#endif
constexpr int64_t kLanes = sizeof(Lanes) / sizeof(float);

// The per-pixel functions of synth_math.h on registers of pixels: maxps / minps are a > b ? a : b and
// a < b ? a : b lane by lane, one instruction each.
template <>
inline Lanes splat<Lanes>(float x) {
  return Lanes{} + x;
}
#if defined(__AVX2__) && !defined(__AVX512F__)
// The AVX2 build takes max_of / min_of as the signed-integer max / min of the float bits (vpmaxsd / vpminsd).
// Why: on AMD's Zen 3 (the CI machine), maxps / minps issue on the two vector pipes that also run every float
// addition, subtraction, comparison and conversion, the busier pair in this op, while integer max / min issue
// on all four (a microbenchmark of independent instructions, min of six runs: four vmaxps and four vaddps take
// as long as eight vaddps, twice as long as eight vpmaxsd). The hue rotation, its heaviest op, ran 0.90x as
// long on an L1-resident row. Intel's AVX2 cores run both kinds on the same ports.
// Why it is exact: for floats that are not NaN and not both negative, the signed order of their bits is
// their float order, except for -0 against +0, which the op never compares (a pixel's zero channels are all +0
// or, after a brightness factor of -0, all -0). Two different negatives meet only inside the hue weights, whose
// clamp at 0 (clamp01) takes either to 0. A NaN occurs only in the hue of a grey pixel (0 / 0), whose weight
// then comes out 0 or 1 instead of 1: it multiplies the pixel's chroma, +0, so the channel is its max as
// before.
template <>
inline Lanes max_of<Lanes>(Lanes a, Lanes b) {
  return _mm256_castsi256_ps(_mm256_max_epi32(_mm256_castps_si256(a), _mm256_castps_si256(b)));
}
template <>
inline Lanes min_of<Lanes>(Lanes a, Lanes b) {
  return _mm256_castsi256_ps(_mm256_min_epi32(_mm256_castps_si256(a), _mm256_castps_si256(b)));
}
#elif defined(__AVX512F__) || defined(__SSE__)
#if defined(__AVX512F__)
#define UPTAL_MAX_PS _mm512_max_ps
#define UPTAL_MIN_PS _mm512_min_ps
#else
#define UPTAL_MAX_PS _mm_max_ps
#define UPTAL_MIN_PS _mm_min_ps
#endif
template <>
inline Lanes max_of<Lanes>(Lanes a, Lanes b) {
  return UPTAL_MAX_PS(a, b);
}
template <>
inline Lanes min_of<Lanes>(Lanes a, Lanes b) {
  return UPTAL_MIN_PS(a, b);
}
#endif  // elsewhere the generic ternaries (a compare and a select per lane)

namespace {  // each ISA variant has its own copy of these helpers

// A register's worth of floats at any float-aligned address (the may_alias type is how GCC and Clang spell an
// unaligned vector access).
typedef float UnalignedLanes __attribute__((vector_size(sizeof(Lanes)), aligned(alignof(float)), may_alias));

inline Lanes load_lanes(const float* p) { return *reinterpret_cast<const UnalignedLanes*>(p); }

inline void store_lanes(float* p, Lanes v) { *reinterpret_cast<UnalignedLanes*>(p) = v; }

// The lanes of v in reverse order (lane j gets lane kLanes - 1 - j).
inline Lanes reversed(Lanes v) {
#if defined(__AVX512F__)
  return _mm512_permutexvar_ps(_mm512_set_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), v);
#elif defined(__AVX__)
  const __m256 halves_swapped = _mm256_permute2f128_ps(v, v, 1);
  return _mm256_permute_ps(halves_swapped, _MM_SHUFFLE(0, 1, 2, 3));
#elif defined(__SSE__)
  return _mm_shuffle_ps(v, v, _MM_SHUFFLE(0, 1, 2, 3));
#else
  Lanes out;
  for (int64_t j = 0; j < kLanes; ++j) out[j] = v[kLanes - 1 - j];
  return out;
#endif
}

// A register of pixels in [0, 255] stored as uint8 and as bfloat16, lane by lane the same as to_uint8 and
// to_bfloat16_bits (synth_math.h).
typedef int32_t IntLanes __attribute__((vector_size(sizeof(Lanes))));
typedef uint32_t BitLanes __attribute__((vector_size(sizeof(Lanes))));
typedef uint8_t ByteLanes __attribute__((vector_size(kLanes)));
typedef uint16_t HalfLanes __attribute__((vector_size(2 * kLanes)));

// rintf: v + 2^23 has no bits below the units, so the addition rounds v to an integer (ties to even, in the
// default rounding mode, as rintf); subtracting 2^23 is exact. Then integer -> uint8, exact for 0..255.
inline void store_uint8_lanes(uint8_t* p, Lanes v) {
  const Lanes rounded = (v + 0x1p23f) - 0x1p23f;
  const ByteLanes bytes = __builtin_convertvector(__builtin_convertvector(rounded, IntLanes), ByteLanes);
  std::memcpy(p, &bytes, sizeof bytes);
}

inline void store_bfloat16_lanes(uint16_t* p, Lanes v) {
  const BitLanes bits = (BitLanes)v;   // the float32 bits (a vector cast keeps the bits)
  const BitLanes rounded = (bits + (0x7fffu + ((bits >> 16) & 1u))) >> 16;
  const HalfLanes halves = __builtin_convertvector(rounded, HalfLanes);
  std::memcpy(p, &halves, sizeof halves);
}

// std::vector storage aligned to a cache line: a register-wide load or store at a multiple of a register's
// width then never splits across two lines (a split access costs about twice as much, and every AVX-512
// access of a 16-byte-aligned buffer would split).
template <class T>
struct CacheLineAllocator {
  using value_type = T;
  CacheLineAllocator() = default;
  template <class U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(64)); }
  template <class U>
  bool operator==(const CacheLineAllocator<U>&) const { return true; }
  template <class U>
  bool operator!=(const CacheLineAllocator<U>&) const { return false; }
};
template <class T>
using AlignedVector = std::vector<T, CacheLineAllocator<T>>;

// Column taps of a frame as flat arrays: offsets of the two source pixels (in floats of a row converted to
// float32, channel-interleaved as stored) and their weights, plus the span of the row the taps read.
struct ColumnTaps {
  std::vector<int32_t> offset0, offset1;
  std::vector<float> weight0, weight1;
  int32_t first = 0, end = 0;  // the taps read values first .. end - 1 of a row
  // cols: the taps of the output columns in a row of `width` pixels
  void set(const std::vector<Tap>& cols, int64_t width) {
    const size_t n = cols.size();
    offset0.resize(n), offset1.resize(n), weight0.resize(n), weight1.resize(n);
    first = INT32_MAX, end = 0;
    for (size_t x = 0; x < n; ++x) {
      offset0[x] = cols[x].i0 * 3;
      offset1[x] = cols[x].i1 * 3;
      weight0[x] = 1.0f - cols[x].w1;
      weight1[x] = cols[x].w1;
      first = std::min(first, offset0[x]);
      end = std::max(end, offset1[x] + 3);
    }
#if defined(UPTAL_WINDOWS)
    set_windows(cols);
#endif
#if defined(UPTAL_BYTE_PICKS)
    set_byte_picks(cols, width);
#endif
    (void)width;
  }
#if defined(UPTAL_WINDOWS)
  // The columns in groups of a register (16 in the AVX-512 build, 8 in AVX2; the last group moved back to end
  // at S), each group reading its pixels from a window of two registers of source pixels that starts at
  // window_start[g]; window_index0/1 [g * kGroup + j] are column x_g + j's two pixels within it. windows_fit:
  // every group's pixels span at most a window (a crop at most twice as wide as the output), otherwise the
  // rows are sampled as in the baseline build.
  std::vector<int32_t> window_start, window_index0, window_index1;
  bool windows_fit = false;
  static constexpr int64_t kGroup = kLanes, kWindow = 2 * kLanes;

  static int64_t group_x(int64_t group, int64_t size) { return std::min(group * kGroup, size - kGroup); }

  void set_windows(const std::vector<Tap>& cols) {
    const int64_t size = (int64_t)cols.size(), groups = (size + kGroup - 1) / kGroup;
    windows_fit = size >= kGroup;
    if (!windows_fit) return;
    window_start.resize(groups), window_index0.resize(groups * kGroup), window_index1.resize(groups * kGroup);
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t x = group_x(g, size);
      int32_t start = INT32_MAX, last = 0;
      for (int64_t j = 0; j < kGroup; ++j) {
        start = std::min(start, cols[x + j].i0);
        last = std::max(last, cols[x + j].i1);
      }
      // A window that starts at a multiple of a register is two whole registers as deinterleave stored them,
      // so its loads take their values from the store buffer; a window across three stores waits for them to
      // reach the cache (a store-forwarding stall, twice per channel and group).
      const int32_t aligned_start = start / kGroup * kGroup;
      if (last - aligned_start < kWindow) start = aligned_start;
      if (last - start >= kWindow) windows_fit = false;
      window_start[g] = start;
      for (int64_t j = 0; j < kGroup; ++j) {
        window_index0[g * kGroup + j] = cols[x + j].i0 - start;
        window_index1[g * kGroup + j] = cols[x + j].i1 - start;
      }
    }
  }
#endif
#if defined(UPTAL_BYTE_PICKS)
  // The columns in the same groups of a register (8), each 128-bit half of the register (4 columns) taking
  // a tap's bytes out of 16 bytes of the uint8 row that start at pick_start[(g * 2 + tap) * 2 + half]: one
  // byte shuffle per tap and channel (pick_control [g][tap][channel][32]; -128: a zero byte) puts each
  // column's byte in the low byte of its 32-bit lane. The two taps share their 16 bytes (one load per half)
  // where a half's pixels span at most 5 pixels, which holds wherever the crop is at most as wide as the
  // output; else each tap has 16 bytes of its own (pick_per_tap; crops up to 4/3 of the output's width).
  // byte_picks_fit: one of the two fits every half; otherwise the rows are sampled through windows.
  std::vector<int32_t> pick_start;
  AlignedVector<int8_t> pick_control;
  bool byte_picks_fit = false, pick_per_tap = false;
  static constexpr int64_t kHalfColumns = kGroup / 2, kHalfBytes = 16;

  void set_byte_picks(const std::vector<Tap>& cols, int64_t width) {
    byte_picks_fit = (int64_t)cols.size() >= kGroup && 3 * width >= kHalfBytes;
    if (!byte_picks_fit) return;
    pick_per_tap = false;
    if (set_pick_windows(cols, width)) return;
    pick_per_tap = true;
    byte_picks_fit = set_pick_windows(cols, width);
  }

  // Whether every half's bytes fit its 16 (shared by the taps, or one per tap if pick_per_tap); if they do,
  // pick_start and pick_control are set.
  bool set_pick_windows(const std::vector<Tap>& cols, int64_t width) {
    const int64_t size = (int64_t)cols.size(), groups = (size + kGroup - 1) / kGroup;
    pick_start.resize(groups * 2 * 2);
    pick_control.assign(groups * 2 * 3 * 32, (int8_t)-128);
    for (int64_t g = 0; g < groups; ++g) {
      for (int64_t half = 0; half < 2; ++half) {
        const Tap* taps = cols.data() + group_x(g, size) + half * kHalfColumns;
        for (int tap = 0; tap < 2; ++tap) {
          int32_t first = INT32_MAX, end = 0;   // bytes [first, end) of the row hold the pixels needed
          for (int64_t j = 0; j < kHalfColumns; ++j) {
            for (int t = 0; t < 2; ++t) {
              if (!pick_per_tap || t == tap) {
                first = std::min(first, 3 * pixel(taps[j], t));
                end = std::max(end, 3 * pixel(taps[j], t) + 3);
              }
            }
          }
          // moved back so that the 16 bytes end at the row's end at the latest: nothing past a row is read
          const int32_t start = std::min<int32_t>(first, (int32_t)(3 * width - kHalfBytes));
          if (end - start > kHalfBytes) return false;
          pick_start[(g * 2 + tap) * 2 + half] = start;
          for (int c = 0; c < 3; ++c) {
            int8_t* control = pick_control.data() + ((g * 2 + tap) * 3 + c) * 32 + half * 16;
            for (int64_t j = 0; j < kHalfColumns; ++j) control[4 * j] = (int8_t)(3 * pixel(taps[j], tap) + c - start);
          }
        }
      }
    }
    return true;
  }

  static int32_t pixel(const Tap& tap, int which) { return which == 0 ? tap.i0 : tap.i1; }
#endif
};

#if defined(UPTAL_WINDOWS)
// Splitting channel-interleaved uint8 pixels into float32 planes, a register of pixels at a time: the
// 3 * kLanes bytes are spread so that each 128-bit lane holds four whole pixels (12 bytes and a 32-bit word
// not used), then one byte shuffle per channel zero-extends that channel's four bytes in every lane to 32-bit
// integers, pixel by pixel in order. Four shuffles per register of pixels where splitting them as floats took
// nine (vpermt2ps).
struct PixelSplit {
  alignas(64) int32_t spread[16];      // 32-bit word w of the spread register: word spread[w] of the bytes
  alignas(64) int8_t channel[3][64];   // byte shuffles (the same in every 128-bit lane; -128: a zero byte)
};
constexpr PixelSplit pixel_split() {
  PixelSplit split{};
  for (int lane = 0; lane < 4; ++lane) {
    for (int w = 0; w < 4; ++w) split.spread[4 * lane + w] = w < 3 ? 3 * lane + w : 0;
    for (int c = 0; c < 3; ++c) {
      for (int j = 0; j < 16; ++j) split.channel[c][16 * lane + j] = (int8_t)(j % 4 == 0 ? 3 * (j / 4) + c : -128);
    }
  }
  return split;
}
constexpr PixelSplit kPixelSplit = pixel_split();

#if defined(__AVX512F__)
// kLanes pixels, 3 * kLanes bytes (nothing past them is read) -> float32 r, g, b.
constexpr int64_t kSplitBytes = 3 * kLanes;   // the bytes split_pixels reads
inline void split_pixels(const uint8_t* bytes, float* r, float* g, float* b) {
  const __m512i words = _mm512_maskz_loadu_epi32((__mmask16)0x0FFF, bytes);
  const __m512i spread = _mm512_permutexvar_epi32(_mm512_load_si512(kPixelSplit.spread), words);
  float* planes[3] = {r, g, b};
  for (int c = 0; c < 3; ++c) {
    const __m512i values = _mm512_shuffle_epi8(spread, _mm512_load_si512(kPixelSplit.channel[c]));
    store_lanes(planes[c], _mm512_cvtepi32_ps(values));
  }
}

// Window positions of a group's taps, and the values of a window (two registers) at them.
struct WindowIndex {
  __m512i index;
};
inline WindowIndex window_index(const int32_t* index) { return WindowIndex{_mm512_loadu_si512(index)}; }
inline Lanes pick(Lanes low, Lanes high, WindowIndex at) { return _mm512_permutex2var_ps(low, at.index, high); }
#else
// kLanes pixels and the 8 bytes after them (read, not used) -> float32 r, g, b. A whole-register load: the
// masked load of the 24 bytes alone (vpmaskmovd) made the whole op 1.06x as long on an AMD EPYC (Zen 3).
constexpr int64_t kSplitBytes = 4 * kLanes;
inline void split_pixels(const uint8_t* bytes, float* r, float* g, float* b) {
  const __m256i words = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bytes));
  const __m256i spread = _mm256_permutevar8x32_epi32(words, _mm256_load_si256((const __m256i*)kPixelSplit.spread));
  float* planes[3] = {r, g, b};
  for (int c = 0; c < 3; ++c) {
    const __m256i values = _mm256_shuffle_epi8(spread, _mm256_load_si256((const __m256i*)kPixelSplit.channel[c]));
    store_lanes(planes[c], _mm256_cvtepi32_ps(values));
  }
}

// vpermps permutes within one register: each tap is picked from both halves of the window and the one its
// index names kept (bit 3 of the index, moved into the sign bit that blendv reads).
struct WindowIndex {
  __m256i index;
  __m256 from_high;
};
inline WindowIndex window_index(const int32_t* index) {
  const __m256i at = _mm256_loadu_si256((const __m256i*)index);
  return WindowIndex{at, _mm256_castsi256_ps(_mm256_slli_epi32(at, 28))};
}
inline Lanes pick(Lanes low, Lanes high, WindowIndex at) {
  return _mm256_blendv_ps(_mm256_permutevar8x32_ps(low, at.index), _mm256_permutevar8x32_ps(high, at.index),
                          at.from_high);
}
#endif
#endif

// Horizontally interpolated source rows, cached by source row index (output rows mostly reuse them).
class RowCache {
 public:
  void reset(int64_t size) {
    size_ = size;
    for (int s = 0; s < 2; ++s) {
      rows_[s].resize(3 * size);
      index_[s] = -1;
    }
    next_ = 0;
    next_prefetch_ = 0;
  }

  // Software prefetch of the bytes the column taps read (cols.first .. cols.end) of the two source rows an
  // output row reads (`tap`), those not prefetched yet (rows come in order; synthesize_frame calls this 4
  // output rows ahead). The hardware prefetchers do not cross a 4 KiB page, and a 171-pixel frame's rows cross
  // one every 8 rows: before this, perf put 45% of the row sampling's samples at the first load of each
  // group's source bytes. AMD EPYC (Zen 3), AVX2 build, bench/ab_synthesis.py new / old medians against no
  // prefetch, 1 thread then 2: default batch 0.916 and 0.910 (21 rounds), and 0.926 / 0.924, 0.848 / 0.868,
  // 0.871 / 0.847 for an earlier version that prefetched every row up to the last one needed (nearly the same
  // rows at this batch's scale); 2 and 8 output rows ahead were within the noise of 4. Sources of 720 x 1280
  // (8 videos x 96 frames, 11 rounds): 0.912 and 0.943, where the earlier version, prefetching the ~6 rows per
  // output row that sampling skips, took 1.151 and 1.105. SSE2 build, default batch: 0.912 and 1.003.
  void prefetch_rows(const uint8_t* frame, int64_t width, Tap tap, const ColumnTaps& cols) {
    prefetch_row(frame, width, tap.i0, cols);
    prefetch_row(frame, width, tap.i1, cols);
  }
  // Returns [3][S] planar: row `y` of `frame` sampled at the column taps.
  const float* get(const uint8_t* frame, int64_t width, int y, const ColumnTaps& cols) {
    for (int s = 0; s < 2; ++s)
      if (index_[s] == y) return rows_[s].data();
    const int slot = next_;
    next_ ^= 1;
    index_[slot] = y;
    float* out = rows_[slot].data();
    const uint8_t* row = frame + (size_t)y * width * 3;
#if defined(UPTAL_BYTE_PICKS)
    if (cols.byte_picks_fit) {
      if (cols.pick_per_tap) sample_through_byte_picks<true>(row, cols, out);
      else sample_through_byte_picks<false>(row, cols, out);
      return out;
    }
#endif
#if defined(UPTAL_WINDOWS)
    if (cols.windows_fit) {
      sample_through_windows(row, width, cols, out);
      return out;
    }
#endif
    sample_transposed(row, width, cols, out);
    return out;
  }

 private:
  // The part of the row the taps read is converted to float32 first, in one vectorised loop; the taps then
  // read floats (the same values: every uint8 is exact in float32), four columns per step where SSE is.
  void sample_transposed(const uint8_t* row, int64_t width, const ColumnTaps& cols, float* red) {
    float* green = red + size_;
    float* blue = green + size_;
    values_.resize(width * 3 + 1);   // + 1: the 4-float load of the last pixel reads one value past it
    float* values = values_.data();
    // converted up to one value past the span: a 4-float load of the span's last pixel reads it
    const int32_t end = std::min<int32_t>(cols.end + 1, (int32_t)(width * 3));
    for (int32_t i = cols.first; i < end; ++i) values[i] = (float)row[i];
    values[width * 3] = 0.0f;   // past the row's end: read (and unused) for the row's last pixel
    const int32_t *o0 = cols.offset0.data(), *o1 = cols.offset1.data();
    const float *w0 = cols.weight0.data(), *w1 = cols.weight1.data();
    int64_t x = 0;
#if defined(__SSE__)
    // Four columns at a time: one 4-float load per source pixel (r, g, b and a value not used), transposed
    // into r, g, b vectors of the four columns; the products and sums are the scalar loop's, lane by lane.
    for (; x + 4 <= size_; x += 4) {
      __m128 a0 = _mm_loadu_ps(values + o0[x]), a1 = _mm_loadu_ps(values + o0[x + 1]);
      __m128 a2 = _mm_loadu_ps(values + o0[x + 2]), a3 = _mm_loadu_ps(values + o0[x + 3]);
      __m128 b0 = _mm_loadu_ps(values + o1[x]), b1 = _mm_loadu_ps(values + o1[x + 1]);
      __m128 b2 = _mm_loadu_ps(values + o1[x + 2]), b3 = _mm_loadu_ps(values + o1[x + 3]);
      _MM_TRANSPOSE4_PS(a0, a1, a2, a3);   // a0 = r of the four columns, a1 = g, a2 = b
      _MM_TRANSPOSE4_PS(b0, b1, b2, b3);
      const __m128 weight0 = _mm_loadu_ps(w0 + x), weight1 = _mm_loadu_ps(w1 + x);
      _mm_storeu_ps(red + x, _mm_add_ps(_mm_mul_ps(a0, weight0), _mm_mul_ps(b0, weight1)));
      _mm_storeu_ps(green + x, _mm_add_ps(_mm_mul_ps(a1, weight0), _mm_mul_ps(b1, weight1)));
      _mm_storeu_ps(blue + x, _mm_add_ps(_mm_mul_ps(a2, weight0), _mm_mul_ps(b2, weight1)));
    }
#endif
    for (; x < size_; ++x) {
      const float* a = values + o0[x];
      const float* b = values + o1[x];
      red[x] = a[0] * w0[x] + b[0] * w1[x];
      green[x] = a[1] * w0[x] + b[1] * w1[x];
      blue[x] = a[2] * w0[x] + b[2] * w1[x];
    }
  }

#if defined(UPTAL_WINDOWS)
  // The pixels the taps read, converted to float32 planes (deinterleave); then per group of kGroup columns
  // and channel, two permutes (pick) take the taps' pixels out of the group's window. The products and sums
  // are the scalar loop's, lane by lane.
  void sample_through_windows(const uint8_t* row, int64_t width, const ColumnTaps& cols, float* out) {
    constexpr int64_t kGroup = ColumnTaps::kGroup, kWindow = ColumnTaps::kWindow;
    const int64_t stride = (width + kWindow + kGroup - 1) / kGroup * kGroup;   // a window may start at the last pixel
    planes_.resize(3 * stride);
    deinterleave(row, cols.first / 3 / kGroup * kGroup, cols.end / 3, width, stride);
    // Locals, not members: a vector store may alias any float, so a member read after one is read again.
    const int64_t size = size_, groups = (size + kGroup - 1) / kGroup;
    const float* planes = planes_.data();
    const int32_t *starts = cols.window_start.data(), *indices0 = cols.window_index0.data(),
                  *indices1 = cols.window_index1.data();
    const float *weights0 = cols.weight0.data(), *weights1 = cols.weight1.data();
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t x = ColumnTaps::group_x(g, size);
      const WindowIndex index0 = window_index(indices0 + g * kGroup), index1 = window_index(indices1 + g * kGroup);
      const Lanes w0 = load_lanes(weights0 + x), w1 = load_lanes(weights1 + x);
      const float* window = planes + starts[g];
      for (int c = 0; c < 3; ++c) {
        const Lanes low = load_lanes(window + c * stride), high = load_lanes(window + c * stride + kLanes);
        store_lanes(out + c * size + x, pick(low, high, index0) * w0 + pick(low, high, index1) * w1);
      }
    }
  }

#if defined(UPTAL_BYTE_PICKS)
  // Per group of kGroup columns: the 16 bytes of each half (see ColumnTaps::set_byte_picks) in one register
  // (two if kPerTap: one per tap), then per channel one byte shuffle per tap picks its pixels' values,
  // zero-extended to 32 bits, and they are converted to float32 (exact). No deinterleave and no float
  // permutes. The products and sums are the scalar loop's, lane by lane.
  template <bool kPerTap>
  void sample_through_byte_picks(const uint8_t* row, const ColumnTaps& cols, float* out) {
    const int64_t size = size_, groups = (size + ColumnTaps::kGroup - 1) / ColumnTaps::kGroup;
    const int32_t* starts = cols.pick_start.data();
    const int8_t* controls = cols.pick_control.data();
    const float *weights0 = cols.weight0.data(), *weights1 = cols.weight1.data();
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t x = ColumnTaps::group_x(g, size);
      const int32_t* start = starts + g * 4;   // [tap][half]
      const __m256i bytes0 = load_halves(row + start[0], row + start[1]);
      const __m256i bytes1 = kPerTap ? load_halves(row + start[2], row + start[3]) : bytes0;
      const Lanes w0 = load_lanes(weights0 + x), w1 = load_lanes(weights1 + x);
      const int8_t* control = controls + g * 2 * 3 * 32;   // [tap][channel][32]
      for (int c = 0; c < 3; ++c) {
        const Lanes a = pick_bytes(bytes0, control + c * 32), b = pick_bytes(bytes1, control + (3 + c) * 32);
        store_lanes(out + c * size + x, a * w0 + b * w1);
      }
    }
  }

  static __m256i load_halves(const uint8_t* low, const uint8_t* high) {
    return _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(high), reinterpret_cast<const __m128i*>(low));
  }

  static Lanes pick_bytes(__m256i bytes, const int8_t* control) {
    const __m256i values = _mm256_shuffle_epi8(bytes, _mm256_load_si256(reinterpret_cast<const __m256i*>(control)));
    return _mm256_cvtepi32_ps(values);
  }
#endif

  // Pixels [first, end) of a channel-interleaved uint8 row of `width` pixels -> float32 planes [3][stride],
  // indexed by pixel, in whole registers of pixels from `first` (the last one may go past `end`, up to
  // stride; past the row's end it holds zeros).
  void deinterleave(const uint8_t* row, int64_t first, int64_t end, int64_t width, int64_t stride) {
    float* r = planes_.data();
    float* g = r + stride;
    float* b = g + stride;
    alignas(16) uint8_t tail[kSplitBytes];
    for (int64_t p = first; p < end; p += kLanes) {
      const uint8_t* bytes = row + 3 * p;
      if (3 * p + kSplitBytes > 3 * width) {   // the row's last pixels: the split would read past the row
        std::memset(tail, 0, sizeof tail);
        std::memcpy(tail, bytes, 3 * std::min<int64_t>(width - p, kLanes));
        bytes = tail;
      }
      split_pixels(bytes, r + p, g + p, b + p);
    }
  }
#endif

  int64_t size_ = 0;
  AlignedVector<float> rows_[2];
  std::vector<float> values_;  // [W * 3 + 1] the row being sampled, as float32
#if defined(UPTAL_WINDOWS)
  AlignedVector<float> planes_;  // [3][W + 2 registers, rounded up to one] the pixels being sampled, as planes
#endif
  int index_[2] = {-1, -1};
  int next_ = 0;
  int next_prefetch_ = 0;   // rows below it are prefetched or not needed

  void prefetch_row(const uint8_t* frame, int64_t width, int y, const ColumnTaps& cols) {
    if (y < next_prefetch_) return;
    next_prefetch_ = y + 1;
    const uint8_t* row = frame + (size_t)y * width * 3;
    for (int32_t byte = cols.first; byte < cols.end; byte += 64) __builtin_prefetch(row + byte);
    __builtin_prefetch(row + cols.end - 1);   // the last line, where the span does not end on a step
  }
};

// Row `tap` of a source frame sampled at the column taps: the vertical blend of two cached rows, written as
// one planar row [3][S] (the cached rows have that layout too).
void sample_row(const uint8_t* frame, int64_t width, Tap tap, const ColumnTaps& cols, int64_t size,
                RowCache& cache, float* out) {
  const float* top = cache.get(frame, width, tap.i0, cols);
  const float* bottom = cache.get(frame, width, tap.i1, cols);
  const float w0 = 1.0f - tap.w1, w1 = tap.w1;
  for (int64_t i = 0; i < 3 * size; ++i) out[i] = top[i] * w0 + bottom[i] * w1;
}

// Row `tap` of the action frame blended into the background frame's (blend in synth_math.h: beta * action +
// (1 - beta) * background), both sampled as sample_row does, in one loop: the two sampled rows are never
// stored and read back.
void sample_blended_row(const uint8_t* background, const uint8_t* action, int64_t width, Tap tap,
                        const ColumnTaps& cols, int64_t size, RowCache& background_cache, RowCache& action_cache,
                        float beta, float* out) {
  const float* top = background_cache.get(background, width, tap.i0, cols);
  const float* bottom = background_cache.get(background, width, tap.i1, cols);
  const float* action_top = action_cache.get(action, width, tap.i0, cols);
  const float* action_bottom = action_cache.get(action, width, tap.i1, cols);
  const float w0 = 1.0f - tap.w1, w1 = tap.w1, omb = 1.0f - beta;
  for (int64_t i = 0; i < 3 * size; ++i) {
    const float sampled_background = top[i] * w0 + bottom[i] * w1;
    const float sampled_action = action_top[i] * w0 + action_bottom[i] * w1;
    out[i] = beta * sampled_action + omb * sampled_background;
  }
}

// Applies op (a generic lambda of one RgbOf<V>) to every pixel of a planar row of n pixels: a register of
// pixels at a time, then the remaining pixels one by one. (Row loops here start their one-by-one tail at
// `whole`, not where the register loop stopped: GCC then sees that the tail is empty in the copy compiled for
// S = 112, where it otherwise warned that the tail might run 2^62 times.)
template <class Op>
void for_each_pixel(float* row, int64_t n, Op op) {
  float *r = row, *g = row + n, *b = row + 2 * n;
  const int64_t whole = n / kLanes * kLanes;   // pixels in whole registers
  for (int64_t i = 0; i < whole; i += kLanes) {
    const RgbOf<Lanes> v = op(RgbOf<Lanes>{load_lanes(r + i), load_lanes(g + i), load_lanes(b + i)});
    store_lanes(r + i, v.r);
    store_lanes(g + i, v.g);
    store_lanes(b + i, v.b);
  }
  for (int64_t i = whole; i < n; ++i) {
    const Rgb v = op(Rgb{r[i], g[i], b[i]});
    r[i] = v.r;
    g[i] = v.g;
    b[i] = v.b;
  }
}

// The per-pixel ops of one synthetic video, in the order they apply: the colour jitter's four in the plan's
// order, then grayscale.
constexpr int kOpGrey = 4;   // after the JitterOp values
struct PixelOp {
  int kind;     // JitterOp or kOpGrey
  float value;  // the jitter factor (hue: the shift); unused by grayscale
};
struct PixelOps {
  PixelOp op[5];
  int count = 0;
  int contrast = -1;   // index of the contrast op, -1 if none: it needs the frame's mean grey first
};

PixelOps pixel_ops(const float* prm) {
  PixelOps ops;
  if (prm[kJitterOn] > 0.0f) {
    for (int k = 0; k < 4; ++k) {
      const int kind = (int)prm[kOrder0 + k];
      if (kind == kOpBrightness) ops.op[ops.count++] = {kOpBrightness, prm[kBrightness]};
      else if (kind == kOpContrast) ops.contrast = ops.count, ops.op[ops.count++] = {kOpContrast, prm[kContrast]};
      else if (kind == kOpSaturation) ops.op[ops.count++] = {kOpSaturation, prm[kSaturation]};
      else ops.op[ops.count++] = {kOpHue, prm[kHue]};
    }
  }
  if (prm[kGrayscale] > 0.0f) ops.op[ops.count++] = {kOpGrey, 0.0f};
  return ops;
}

// The hue rotation of a planar row of n pixels in two loops (see hue_angle): every register's rotated hue,
// max and chroma into `angles` [3][n], then every register's channels rebuilt from them; the remaining pixels
// one by one. The same operations on every pixel as hue(); the two shorter loops take about 0.7x the time of
// one (a microbenchmark on one L1-resident row, AVX-512). kAtMost255: see hue_rebuild.
template <bool kAtMost255>
void hue_row(float* row, int64_t n, float shift, float* angles) {
  float *r = row, *g = row + n, *b = row + 2 * n;
  float *h6 = angles, *maxc = angles + n, *chroma = angles + 2 * n;
  const int64_t whole = n / kLanes * kLanes;
  for (int64_t i = 0; i < whole; i += kLanes) {
    const HueAngle<Lanes> a = hue_angle(RgbOf<Lanes>{load_lanes(r + i), load_lanes(g + i), load_lanes(b + i)}, shift);
    store_lanes(h6 + i, a.h6), store_lanes(maxc + i, a.maxc), store_lanes(chroma + i, a.chroma);
  }
  for (int64_t i = 0; i < whole; i += kLanes) {
    const HueAngle<Lanes> a{load_lanes(h6 + i), load_lanes(maxc + i), load_lanes(chroma + i)};
    const RgbOf<Lanes> v =
        hue_rebuild<kAtMost255>(RgbOf<Lanes>{load_lanes(r + i), load_lanes(g + i), load_lanes(b + i)}, a);
    store_lanes(r + i, v.r), store_lanes(g + i, v.g), store_lanes(b + i, v.b);
  }
  for (int64_t i = whole; i < n; ++i) {
    const Rgb v = hue_rebuild<kAtMost255>(Rgb{r[i], g[i], b[i]}, hue_angle(Rgb{r[i], g[i], b[i]}, shift));
    r[i] = v.r, g[i] = v.g, b[i] = v.b;
  }
}

// Applies ops.op[first .. end) to a planar row of n pixels; contrast uses `contrast_mean`, hue `angles` [3][n]
// as scratch.
void apply_ops(const PixelOps& ops, int first, int end, float* row, int64_t n, float contrast_mean,
               float* angles) {
  for (int i = first; i < end; ++i) {
    const float f = ops.op[i].value;
    switch (ops.op[i].kind) {
      case kOpBrightness: for_each_pixel(row, n, [f](auto v) { return brightness(v, f); }); break;
      case kOpContrast: {
        const float mean = contrast_mean;
        for_each_pixel(row, n, [f, mean](auto v) { return contrast(v, f, mean); });
        break;
      }
      case kOpSaturation: for_each_pixel(row, n, [f](auto v) { return saturation(v, f); }); break;
      case kOpHue:
        // after any other op the channels are in [0, 255]: brightness, contrast and saturation clamp them
        if (i > 0) hue_row<true>(row, n, f, angles);
        else hue_row<false>(row, n, f, angles);
        break;
      default: for_each_pixel(row, n, [](auto v) { return to_grey(v); }); break;
    }
  }
}

// The row's share of the exact contrast mean (see quantised_grey), a register of pixels at a time into int32
// lanes (integer sums do not depend on their order): a lane adds at most n / 4 values of at most 65280, which
// fits for rows of up to 32768 pixels; longer ones add one by one into int64. (Adding every pixel into int64,
// which AVX2 cannot convert a float to, took 1.4% more of the op's instructions on the default batch.)
int64_t row_grey_sum(const float* row, int64_t n) {
  const float *r = row, *g = row + n, *b = row + 2 * n;
  const int64_t whole = n <= 32768 ? n / kLanes * kLanes : 0;
  IntLanes lanes{};
  for (int64_t i = 0; i < whole; i += kLanes) {
    lanes += __builtin_convertvector(grey(load_lanes(r + i), load_lanes(g + i), load_lanes(b + i)) * 256.0f, IntLanes);
  }
  int64_t sum = 0;
  for (int64_t j = 0; j < kLanes; ++j) sum += lanes[j];
  for (int64_t i = whole; i < n; ++i) sum += quantised_grey(Rgb{r[i], g[i], b[i]});
  return sum;
}

// out[x .. x + R * kLanes) = taps[0] * rows[0][offset + x..] + taps[1] * rows[1][offset + x..] + ..., added
// in that order for every pixel (as the reference). R registers of sums stay in registers across the taps:
// their additions are independent, so they issue back to back where one register would wait out the latency
// of each addition.
template <int64_t R>
inline void weighted_block(const float* const* rows, int64_t offset, const float* taps, int k_taps, int64_t x,
                           float* out) {
  Lanes sum[R];
  for (int64_t j = 0; j < R; ++j) sum[j] = taps[0] * load_lanes(rows[0] + offset + x + j * kLanes);
  for (int k = 1; k < k_taps; ++k) {
    const float w = taps[k];
    const float* row = rows[k] + offset + x;
    for (int64_t j = 0; j < R; ++j) sum[j] = sum[j] + w * load_lanes(row + j * kLanes);
  }
  for (int64_t j = 0; j < R; ++j) store_lanes(out + x + j * kLanes, sum[j]);
}

// The same with seven named registers: GCC 12 keeps an array of seven registers on the stack and copies it
// out through memory after the last tap (bit-identical; the whole op 0.94x as long with this).
template <>
inline void weighted_block<7>(const float* const* rows, int64_t offset, const float* taps, int k_taps, int64_t x,
                              float* out) {
  const float* first = rows[0] + offset + x;
  const float t = taps[0];
  Lanes s0 = t * load_lanes(first), s1 = t * load_lanes(first + kLanes), s2 = t * load_lanes(first + 2 * kLanes),
        s3 = t * load_lanes(first + 3 * kLanes), s4 = t * load_lanes(first + 4 * kLanes),
        s5 = t * load_lanes(first + 5 * kLanes), s6 = t * load_lanes(first + 6 * kLanes);
  for (int k = 1; k < k_taps; ++k) {
    const float w = taps[k];
    const float* row = rows[k] + offset + x;
    s0 = s0 + w * load_lanes(row), s1 = s1 + w * load_lanes(row + kLanes), s2 = s2 + w * load_lanes(row + 2 * kLanes);
    s3 = s3 + w * load_lanes(row + 3 * kLanes), s4 = s4 + w * load_lanes(row + 4 * kLanes);
    s5 = s5 + w * load_lanes(row + 5 * kLanes), s6 = s6 + w * load_lanes(row + 6 * kLanes);
  }
  store_lanes(out + x, s0), store_lanes(out + x + kLanes, s1), store_lanes(out + x + 2 * kLanes, s2);
  store_lanes(out + x + 3 * kLanes, s3), store_lanes(out + x + 4 * kLanes, s4);
  store_lanes(out + x + 5 * kLanes, s5), store_lanes(out + x + 6 * kLanes, s6);
}

// weighted_block over a row of n pixels: blocks of R registers, the last one moved back to end at n. The
// pixels it computes twice get the same value twice, so a size that is not a multiple of the block costs at
// most one extra block, never a latency-bound tail of single registers.
template <int64_t R>
inline void weighted_blocks(const float* const* rows, int64_t offset, const float* taps, int k_taps, int64_t n,
                            float* out) {
  constexpr int64_t kWidth = R * kLanes;
  for (int64_t x = 0; x < n; x += kWidth) weighted_block<R>(rows, offset, taps, k_taps, std::min(x, n - kWidth), out);
}

// out[x] = taps[0] * rows[0][offset + x] + taps[1] * rows[1][offset + x] + ... for x < n. Blocks of seven
// registers of sums (a 112-pixel row is one block in the AVX-512 build, two in AVX2), of one for rows narrower
// than that.
void weighted_rows(const float* const* rows, int64_t offset, const float* taps, int k_taps, int64_t n,
                   float* out) {
  constexpr int64_t kRegisters = 7;
  if (n >= kRegisters * kLanes) return weighted_blocks<kRegisters>(rows, offset, taps, k_taps, n, out);
  if (n >= kLanes) return weighted_blocks<1>(rows, offset, taps, k_taps, n, out);
  for (int64_t x = 0; x < n; ++x) {
    float sum = taps[0] * rows[0][offset + x];
    for (int k = 1; k < k_taps; ++k) sum = sum + taps[k] * rows[k][offset + x];
    out[x] = sum;
  }
}

// The output size S in the copy of the per-frame code compiled for one size (kSize > 0; see synthesize_frame),
// else the runtime value: with S a constant, GCC unrolls each row's loops and folds their addresses.
template <int64_t kSize>
inline int64_t row_size(int64_t size) {
  return kSize > 0 ? kSize : size;
}

// Separable Gaussian blur of one frame, streamed: rows go in in order 0..S-1 (add_row) and each output row
// comes out as soon as the rows it needs are in, so the whole blur works on a few rows that stay in L1:
//   1. add_row copies pixel row y into a row padded with its reflection (no edge repeat), one of two;
//   2. then blurs row y - 1 horizontally into a ring of 2R + 1 rows: tap k reads the padded row shifted by k
//      floats, and each such load spans two of the stores that wrote it; one row later those stores have
//      reached the cache (a load across stores still pending waits for them: a store-forwarding stall; blurring
//      each row right after it was written made the pass 1.8x as long in a microbenchmark);
//   3. then blurs the columns of every output row whose 2R + 1 source rows (reflected at the frame's edges, all
//      within R rows of it) are in the ring, and hands it to the caller.
// Taps are accumulated in order k = 0..2R for every pixel, as in the reference, except zero taps (the planner
// zeroes the outer ones, see gaussian_taps): their products are +0 (every value is finite and >= 0) and
// adding +0 leaves a sum unchanged, so skipping them changes no bit.
class Blur {
 public:
  void set(const float* all_taps, int radius, int64_t size) {
    radius_ = radius, size_ = size;
    taps_.clear(), shifts_.clear();
    for (int k = 0; k < 2 * radius + 1; ++k) {
      if (all_taps[k] != 0.0f) taps_.push_back(all_taps[k]), shifts_.push_back(k);
    }
    if (taps_.empty()) taps_.push_back(0.0f), shifts_.push_back(0);   // all zero (a hand-made plan): sums of +0
    // each channel's row starts at a register boundary, after `margin_` >= R floats, in a padded row of
    // `stride_` floats (a multiple of a register) with at least R and a register after the row (reflect_margins)
    margin_ = (radius + kLanes - 1) / kLanes * kLanes;
    stride_ = (margin_ + size + std::max<int64_t>(radius, kLanes) + kLanes - 1) / kLanes * kLanes;
    padded_.resize(2 * 3 * stride_);
    ring_.resize((2 * radius + 1) * 3 * size);
    out_row_.resize(3 * size);
    ring_offset_.resize(size);
    for (int64_t y = 0; y < size; ++y) ring_offset_[y] = y % (2 * radius + 1) * 3 * size;   // no division per row
    rows_.resize(taps_.size());
  }

  // Before each frame's first add_row. grey: the frame's three channels are equal (grayscale), so only the
  // first is blurred and the blurred row copied into the other two (the same taps on the same values give
  // the same sums).
  void start_frame(bool grey) {
    next_output_ = 0;
    channels_ = grey ? 1 : 3;
  }

  // Pixel row y [3][S] (rows in order from 0); store(row, o) receives each output row o [3][S] that this row
  // completes (row valid until the next call). kSize: see row_size.
  template <int64_t kSize, class Store>
  void add_row(const float* row, int64_t y, Store store) {
    pad_row<kSize>(row, padded_.data() + (y & 1) * 3 * stride_);
    if (y > 0) horizontal_row<kSize>(y - 1);
    emit_rows<kSize>(y - 1, store);
    if (y == row_size<kSize>(size_) - 1) {
      horizontal_row<kSize>(y);
      emit_rows<kSize>(y, store);
    }
  }

 private:
  template <int64_t kSize>
  void pad_row(const float* row, float* padded) {
    const int64_t size = row_size<kSize>(size_);
    for (int c = 0; c < channels_; ++c) {
      const float* in = row + c * size;
      float* out = padded + c * stride_ + margin_;
      for (int64_t x = 0; x < size; ++x) out[x] = in[x];
      reflect_margins(in, out, size);
    }
  }

  // out[-1 - i] = in[1 + i] and out[size + i] = in[size - 2 - i] for i < R: the reflection without edge repeat.
  // Up to a register's worth (R <= kLanes, as the default R = 5), one lane-reversed register per side, written
  // whole: the margins hold at least a register (margin_, stride_) and taps read only R of it. (The loop of
  // R scalar copies per side, which GCC vectorised with overlap checks for a trip count of 5, was 2.8% of the
  // op's instructions.)
  void reflect_margins(const float* in, float* out, int64_t size) const {
    const int radius = radius_;
    if (radius == 0) return;
    if (radius <= kLanes && size > kLanes) {
      store_lanes(out - kLanes, reversed(load_lanes(in + 1)));
      store_lanes(out + size, reversed(load_lanes(in + size - 1 - kLanes)));
      return;
    }
    for (int i = 0; i < radius; ++i) out[-1 - i] = in[1 + i], out[size + i] = in[size - 2 - i];
  }

  float* ring_row(int64_t y) { return ring_.data() + ring_offset_[y]; }

  template <int64_t kSize>
  void horizontal_row(int64_t y) {
    const int64_t size = row_size<kSize>(size_);
    const float* padded = padded_.data() + (y & 1) * 3 * stride_;
    float* out = ring_row(y);
    const int num_taps = (int)taps_.size();
    for (int k = 0; k < num_taps; ++k) rows_[k] = padded + margin_ - radius_ + shifts_[k];
    for (int c = 0; c < channels_; ++c) {
      weighted_rows(rows_.data(), c * stride_, taps_.data(), num_taps, size, out + c * size);
    }
  }

  // Output rows whose source rows (up to row o + R, or the last) are all blurred horizontally, up to `last`.
  template <int64_t kSize, class Store>
  void emit_rows(int64_t last, Store store) {
    float* out_row = out_row_.data();
    const int64_t size = row_size<kSize>(size_);
    const int num_taps = (int)taps_.size();
    for (; next_output_ < size && std::min<int64_t>(next_output_ + radius_, size - 1) <= last; ++next_output_) {
      const int64_t o = next_output_;
      for (int k = 0; k < num_taps; ++k) rows_[k] = ring_row(reflect((int)o + shifts_[k] - radius_, (int)size));
      for (int c = 0; c < channels_; ++c) {
        weighted_rows(rows_.data(), c * size, taps_.data(), num_taps, size, out_row + c * size);
      }
      for (int c = channels_; c < 3; ++c) std::memcpy(out_row + c * size, out_row, size * sizeof(float));
      store(out_row, o);
    }
  }

  int radius_ = 0, channels_ = 3;
  int64_t size_ = 0, margin_ = 0, stride_ = 0, next_output_ = 0;
  std::vector<float> taps_;            // non-zero taps
  std::vector<int> shifts_;            // tap index k of each kept tap
  AlignedVector<float> padded_;        // [2][3][stride_] rows y - 1 and y, each channel reflect-padded
  AlignedVector<float> ring_;          // [2R + 1][3][S] horizontally blurred rows, row y in slot y % (2R + 1)
  AlignedVector<float> out_row_;       // [3][S]
  std::vector<int64_t> ring_offset_;   // [S] where row y starts in the ring
  std::vector<const float*> rows_;
};

// Whether a float32 output row of n values at p covers whole cache lines (64 bytes): store_row writes those
// with non-temporal stores.
inline bool whole_lines(const float* p, int64_t n) {
  return reinterpret_cast<uintptr_t>(p) % 64 == 0 && n * sizeof(float) % 64 == 0;
}

// Clamp at 255 (at_most255) + convert one planar row [3][S] and write it as row y of output frame t of video m.
// The AVX2 build writes float32 rows that cover whole cache lines (S a multiple of 16, as 112, in an output
// aligned to 64 bytes, as torch allocates) with non-temporal stores: the op never reads its output back and it
// does not fit a cache (308 MB for the default batch); a plain store first reads the line it writes into the
// cache (read for ownership), which a streaming store of a whole line skips. Default batch, AMD EPYC (Zen 3),
// bench/ab_synthesis.py new / old medians in four runs of 15 to 31 rounds: 0.90x to 0.98x the time with 1
// thread, 0.94x to 0.99x with 2. Measured and not used: streamed bfloat16 rows (224 bytes: two rows share a
// line) took 1.14x and 1.09x; on an Intel Xeon the AVX-512 build was slower with streamed float32 rows (1.088x,
// see the README), so it keeps plain stores. finish_frame orders the streamed stores (sfence).
template <int64_t kSize>
void store_row(const float* row, const SynthArgs& a, int64_t m, int64_t t, int64_t y) {
  const int64_t size = row_size<kSize>(a.size);
  const int64_t whole = size / kLanes * kLanes;   // pixels in whole registers; the rest one by one (see for_each_pixel)
  for (int c = 0; c < 3; ++c) {
    const float* src = row + c * size;
    const int64_t offset = ((m * 3 + c) * a.frames_per_video + t) * size * size + y * size;
    if (a.out_dtype == kOutUInt8) {
      uint8_t* dst = static_cast<uint8_t*>(a.out) + offset;
      for (int64_t i = 0; i < whole; i += kLanes) store_uint8_lanes(dst + i, at_most255(load_lanes(src + i)));
      for (int64_t i = whole; i < size; ++i) dst[i] = to_uint8(at_most255(src[i]));
    } else {
      const float scale = a.norm[c], shift = a.norm[3 + c];
      if (a.out_dtype == kOutFloat32) {
        float* dst = static_cast<float*>(a.out) + offset;
        // registers: at_most255 is then minps (GCC vectorised the scalar loop with blends)
        auto value = [&](int64_t i) { return at_most255(load_lanes(src + i)) * scale + shift; };
        int64_t i = 0;
#if defined(UPTAL_STREAM_STORES)
        if (whole_lines(dst, size)) {
          for (; i < whole; i += kLanes) _mm256_stream_ps(dst + i, value(i));
        }
#endif
        for (; i < whole; i += kLanes) store_lanes(dst + i, value(i));
        for (i = whole; i < size; ++i) dst[i] = at_most255(src[i]) * scale + shift;
      } else {
        uint16_t* dst = static_cast<uint16_t*>(a.out) + offset;
        for (int64_t i = 0; i < whole; i += kLanes) {
          store_bfloat16_lanes(dst + i, at_most255(load_lanes(src + i)) * scale + shift);
        }
        for (int64_t i = whole; i < size; ++i) dst[i] = to_bfloat16_bits(at_most255(src[i]) * scale + shift);
      }
    }
  }
}

// After a frame's last row: store_row's non-temporal stores are weakly ordered; the fence makes them visible
// before anything the thread stores next, and before the barrier that ends the op.
inline void finish_frame() {
#if defined(UPTAL_STREAM_STORES)
  _mm_sfence();
#endif
}

// Per-thread buffers. Frames are [S][3][S]: row y, channel c starts at (y * 3 + c) * S, so a pixel row is
// contiguous (and stays in L1 while every per-row step runs on it).
struct Scratch {
  AlignedVector<float> frame;       // pixel rows waiting for the contrast mean
  AlignedVector<float> row;
  AlignedVector<float> hue_angles;  // [3][S] see hue_row
  std::vector<Tap> rows, cols;
  ColumnTaps column_taps;
  RowCache background_cache, action_cache;
  Blur blur;
  // The synthetic video whose sampling taps and blur are set: they are the same for all its frames, and a
  // thread's consecutive frames (chunks of the OpenMP loop) mostly come from one video.
  int64_t video = -1;
  explicit Scratch(int64_t size)
      : frame(3 * size * size), row(3 * size), hue_angles(3 * size), rows(size), cols(size) {}
};

// How many output rows ahead of the row being sampled synthesize_frame prefetches source rows (see
// RowCache::prefetch_rows).
constexpr int64_t kPrefetchRows = 4;

// One output frame, fused row by row so that each pixel row goes through its steps while it is in L1:
//   1. sample the background row, sample and blend the action row, apply the pixel ops before contrast;
//   2. (only with contrast, which needs the mean grey of the whole frame as step 1 leaves it) the rest of
//      the ops on the stored rows;
//   3. store the row, or blur it horizontally and, once all rows are, blur vertically and store.
// kSize > 0: the copy compiled for S = kSize (see row_size and synthesize_frame_of_any_size).
template <int64_t kSize>
void synthesize_frame(const SynthArgs& a, int64_t job, Scratch& s) {
  const int64_t jf = a.frames_per_video, size = row_size<kSize>(a.size), row_floats = 3 * size;
  const int64_t m = job / jf, t = job % jf;
  const float* prm = a.params + m * a.num_params;
  const int32_t* src = a.sources + m * 2;
  const int32_t* frm = a.frames + m * 2 * jf;
  const int64_t frame_bytes = a.height * a.width * 3;
  const int64_t video_bytes = a.max_frames * frame_bytes;

  const int radius = blur_radius_from_columns((int)a.num_params);
  const bool blurred = prm[kBlurOn] > 0.0f && blur_changes_values(prm + kBlur0, radius);
  if (s.video != m) {
    const bool flip = prm[kFlip] > 0.0f;
    for (int64_t o = 0; o < size; ++o) {
      s.rows[o] = sample_position((int)o, prm[kCropY0], prm[kScaleY], (int)a.height);
      s.cols[o] = sample_position(flip ? (int)(size - 1 - o) : (int)o, prm[kCropX0], prm[kScaleX], (int)a.width);
    }
    s.column_taps.set(s.cols, a.width);
    if (blurred) s.blur.set(prm + kBlur0, radius, size);
    s.video = m;
  }
  if (blurred) s.blur.start_frame(prm[kGrayscale] > 0.0f);
  s.background_cache.reset(size);
  s.action_cache.reset(size);
  const uint8_t* background = a.videos + src[0] * video_bytes + (int64_t)frm[t] * frame_bytes;
  const int32_t action_frame = frm[jf + t];
  const uint8_t* action =
      action_frame >= 0 ? a.videos + src[1] * video_bytes + (int64_t)action_frame * frame_bytes : nullptr;
  // A hard paste (beta 1) is the action frame alone: 1 * a + 0 * b = a for finite a, b >= 0.
  const bool action_only = action != nullptr && prm[kBeta] == 1.0f;
  const PixelOps ops = pixel_ops(prm);
  const bool two_passes = ops.contrast >= 0;

  auto store = [&](const float* row, int64_t y) { store_row<kSize>(row, a, m, t, y); };
  auto finish_row = [&](const float* row, int64_t y) {
    if (blurred) s.blur.add_row<kSize>(row, y, store);
    else store(row, y);
  };
  int64_t grey_sum = 0;
  int64_t prefetched = 0;   // output rows whose source rows are prefetched
  for (int64_t y = 0; y < size; ++y) {
    float* row = two_passes ? s.frame.data() + y * row_floats : s.row.data();
    for (; prefetched < std::min(y + kPrefetchRows + 1, size); ++prefetched) {
      const Tap tap = s.rows[prefetched];
      if (!action_only) s.background_cache.prefetch_rows(background, a.width, tap, s.column_taps);
      if (action != nullptr) s.action_cache.prefetch_rows(action, a.width, tap, s.column_taps);
    }
    if (action_only) {
      sample_row(action, a.width, s.rows[y], s.column_taps, size, s.action_cache, row);
    } else if (action == nullptr) {
      sample_row(background, a.width, s.rows[y], s.column_taps, size, s.background_cache, row);
    } else {
      sample_blended_row(background, action, a.width, s.rows[y], s.column_taps, size, s.background_cache,
                         s.action_cache, prm[kBeta], row);
    }
    apply_ops(ops, 0, two_passes ? ops.contrast : ops.count, row, size, 0.0f, s.hue_angles.data());
    if (two_passes) grey_sum += row_grey_sum(row, size);
    else finish_row(row, y);
  }
  if (two_passes) {
    const float mean = contrast_mean(grey_sum, (int)size);
    for (int64_t y = 0; y < size; ++y) {
      float* row = s.frame.data() + y * row_floats;
      apply_ops(ops, ops.contrast, ops.count, row, size, mean, s.hue_angles.data());
      finish_row(row, y);
    }
  }
  finish_frame();
}

// S = 112, the paper's size and the default, runs a copy of the per-frame code compiled for it: the default
// batch took 0.915x (1 thread) and 0.926x (2) the time of the runtime-size code (bench/ab_synthesis.py, AVX-512
// build, byte-identical).
constexpr int64_t kCompiledSize = 112;

void synthesize_frame_of_any_size(const SynthArgs& a, int64_t job, Scratch& s) {
  if (a.size == kCompiledSize) synthesize_frame<kCompiledSize>(a, job, s);
  else synthesize_frame<0>(a, job, s);
}

}  // namespace

void UPTAL_VARIANT_NAME(synthesize_cpu_)(const SynthArgs& a, int num_threads) {
  const int64_t jobs = a.num_outputs * a.frames_per_video;
#if defined(_OPENMP)
  if (num_threads <= 0) num_threads = omp_get_max_threads();
#pragma omp parallel num_threads(num_threads)
  {
    Scratch scratch(a.size);
#pragma omp for schedule(dynamic, 4)
    for (int64_t job = 0; job < jobs; ++job) synthesize_frame_of_any_size(a, job, scratch);
  }
#else
  (void)num_threads;
  Scratch scratch(a.size);
  for (int64_t job = 0; job < jobs; ++job) synthesize_frame_of_any_size(a, job, scratch);
#endif
}

}  // namespace uptal
