// PAL synthesis on the CPU: one output frame per OpenMP task, every pass over an L2-resident frame buffer.
//
// Passes per output frame (S x S pixels, planar float32 R, G, B):
//   1. bilinear crop/resize/flip of the background and (inside the pasted region) the action frame, blend;
//      separable: each source row is interpolated horizontally once and reused by the output rows that need it
//   2. colour jitter in the plan's order (contrast first sums the exact quantised grey of the frame)
//   3. grayscale;  4. separable Gaussian blur (horizontal, then vertical);  5. clamp + convert + store.
// The arithmetic is csrc/synth_math.h, identical to the reference and the CUDA kernel.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cpu_variant.h"
#include "synth.h"
#include "synth_math.h"
#include "synth_params.h"

#if defined(_OPENMP)
#include <omp.h>
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
#if defined(__AVX__) || defined(__SSE__)
#if defined(__AVX512F__)
#define UPTAL_MAX_PS _mm512_max_ps
#define UPTAL_MIN_PS _mm512_min_ps
#elif defined(__AVX__)
#define UPTAL_MAX_PS _mm256_max_ps
#define UPTAL_MIN_PS _mm256_min_ps
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

// Planar float32 image of S x S pixels.
struct Planes {
  std::vector<float> data;
  int64_t n = 0;
  void resize(int64_t pixels) {
    n = pixels;
    data.resize(3 * pixels);
  }
  float* r() { return data.data(); }
  float* g() { return data.data() + n; }
  float* b() { return data.data() + 2 * n; }
};

// Column taps of a frame as flat arrays: offsets of the two source pixels (in floats of a row converted to
// float32, channel-interleaved as stored) and their weights, plus the span of the row the taps read.
struct ColumnTaps {
  std::vector<int32_t> offset0, offset1;
  std::vector<float> weight0, weight1;
  int32_t first = 0, end = 0;  // the taps read values first .. end - 1 of a row
  void set(const std::vector<Tap>& cols) {
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
  }
};

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
  }
  // Returns [3][S] planar: row `y` of `frame` sampled at the column taps. The part of the row the taps read
  // is converted to float32 first, in one vectorised loop; the taps then read floats (the same values: every
  // uint8 is exact in float32), four columns per step where SSE is available.
  const float* get(const uint8_t* frame, int64_t width, int y, const ColumnTaps& cols) {
    for (int s = 0; s < 2; ++s)
      if (index_[s] == y) return rows_[s].data();
    const int slot = next_;
    next_ ^= 1;
    index_[slot] = y;
    float* red = rows_[slot].data();
    float* green = red + size_;
    float* blue = green + size_;
    const uint8_t* row = frame + (size_t)y * width * 3;
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
    return red;
  }

 private:
  int64_t size_ = 0;
  std::vector<float> rows_[2];
  std::vector<float> values_;  // [W * 3 + 1] the row being sampled, as float32
  int index_[2] = {-1, -1};
  int next_ = 0;
};

// Pass 1 for one source frame: planes = bilinear sample (vertical blend of two cached rows).
void sample_frame(const uint8_t* frame, int64_t width, const Tap* rows, const ColumnTaps& cols, int64_t size,
                  RowCache& cache, float* out_planes, int64_t plane_stride) {
  cache.reset(size);
  for (int64_t y = 0; y < size; ++y) {
    const Tap t = rows[y];
    const float* top = cache.get(frame, width, t.i0, cols);
    const float* bottom = cache.get(frame, width, t.i1, cols);
    const float w0 = 1.0f - t.w1, w1 = t.w1;
    for (int c = 0; c < 3; ++c) {
      const float* a = top + c * size;
      const float* b = bottom + c * size;
      float* o = out_planes + c * plane_stride + y * size;
      for (int64_t x = 0; x < size; ++x) o[x] = a[x] * w0 + b[x] * w1;
    }
  }
}

void blend_planes(Planes& into, const Planes& action, float beta) {
  const float omb = 1.0f - beta;
  float* d = into.data.data();
  const float* a = action.data.data();
  const int64_t n = 3 * into.n;
  for (int64_t i = 0; i < n; ++i) d[i] = beta * a[i] + omb * d[i];
}

inline Lanes load_lanes(const float* p) {
  Lanes v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline void store_lanes(float* p, Lanes v) { std::memcpy(p, &v, sizeof v); }

// Applies op (a generic lambda of one RgbOf<V>) to every pixel: a register of pixels at a time, then the
// remaining pixels one by one.
template <class Op>
void for_each_pixel(Planes& p, Op op) {
  float *r = p.r(), *g = p.g(), *b = p.b();
  int64_t i = 0;
  for (; i + kLanes <= p.n; i += kLanes) {
    const RgbOf<Lanes> v = op(RgbOf<Lanes>{load_lanes(r + i), load_lanes(g + i), load_lanes(b + i)});
    store_lanes(r + i, v.r);
    store_lanes(g + i, v.g);
    store_lanes(b + i, v.b);
  }
  for (; i < p.n; ++i) {
    const Rgb v = op(Rgb{r[i], g[i], b[i]});
    r[i] = v.r;
    g[i] = v.g;
    b[i] = v.b;
  }
}

float frame_contrast_mean(Planes& p, int64_t size) {
  const float *r = p.r(), *g = p.g(), *b = p.b();
  int64_t sum = 0;
  for (int64_t i = 0; i < p.n; ++i) sum += (int64_t)quantised_grey(Rgb{r[i], g[i], b[i]});
  return contrast_mean(sum, (int)size);
}

void colour_jitter(Planes& p, const float* prm, int64_t size) {
  for (int k = 0; k < 4; ++k) {
    switch ((int)prm[kOrder0 + k]) {
      case kOpBrightness: {
        const float f = prm[kBrightness];
        for_each_pixel(p, [f](auto v) { return brightness(v, f); });
        break;
      }
      case kOpContrast: {
        const float f = prm[kContrast];
        const float mean = frame_contrast_mean(p, size);
        for_each_pixel(p, [f, mean](auto v) { return contrast(v, f, mean); });
        break;
      }
      case kOpSaturation: {
        const float f = prm[kSaturation];
        for_each_pixel(p, [f](auto v) { return saturation(v, f); });
        break;
      }
      default: {
        const float shift = prm[kHue];
        for_each_pixel(p, [shift](auto v) { return hue(v, shift); });
        break;
      }
    }
  }
}

// out[x .. x + R * kLanes) = taps[0] * rows[0][x..] + taps[1] * rows[1][x..] + ..., added in that order for
// every pixel (as the reference). R registers of sums stay in registers across the taps: their additions are
// independent, so they issue back to back where one register would wait out the latency of each addition.
template <int64_t R>
inline void weighted_block(const float* const* rows, const float* taps, int k_taps, int64_t x, float* out) {
  Lanes sum[R];
  for (int64_t j = 0; j < R; ++j) sum[j] = taps[0] * load_lanes(rows[0] + x + j * kLanes);
  for (int k = 1; k < k_taps; ++k) {
    const float w = taps[k];
    const float* row = rows[k] + x;
    for (int64_t j = 0; j < R; ++j) sum[j] = sum[j] + w * load_lanes(row + j * kLanes);
  }
  for (int64_t j = 0; j < R; ++j) store_lanes(out + x + j * kLanes, sum[j]);
}

// weighted_block over a row of n pixels: blocks of R registers, the last one moved back to end at n. The
// pixels it computes twice get the same value twice, so a size that is not a multiple of the block costs at
// most one extra block, never a latency-bound tail of single registers.
template <int64_t R>
inline void weighted_blocks(const float* const* rows, const float* taps, int k_taps, int64_t n, float* out) {
  constexpr int64_t kWidth = R * kLanes;
  for (int64_t x = 0; x < n; x += kWidth) weighted_block<R>(rows, taps, k_taps, std::min(x, n - kWidth), out);
}

// out[x] = taps[0] * rows[0][x] + taps[1] * rows[1][x] + ... for x < n. Blocks of seven registers of sums (a
// 112-pixel row is one block in the AVX-512 build, two in AVX2), of one for rows narrower than that.
void weighted_rows(const float* const* rows, const float* taps, int k_taps, int64_t n, float* out) {
  constexpr int64_t kRegisters = 7;
  if (n >= kRegisters * kLanes) return weighted_blocks<kRegisters>(rows, taps, k_taps, n, out);
  if (n >= kLanes) return weighted_blocks<1>(rows, taps, k_taps, n, out);
  for (int64_t x = 0; x < n; ++x) {
    float sum = taps[0] * rows[0][x];
    for (int k = 1; k < k_taps; ++k) sum = sum + taps[k] * rows[k][x];
    out[x] = sum;
  }
}

// Separable blur of each plane: src -> tmp (horizontal) -> src (vertical). Each row is first copied into a
// reflect-padded buffer, so that tap k of the horizontal pass reads that buffer shifted by k; the vertical
// pass reads the reflected rows. Taps are accumulated in order k = 0..2R for every pixel, as in the reference,
// except zero taps (the planner zeroes negligible ones): their products are +0 (every value is finite and
// >= 0) and adding +0 leaves a sum unchanged, so skipping them changes no bit.
void blur(Planes& p, Planes& tmp, std::vector<float>& padded, std::vector<const float*>& rows,
          std::vector<float>& taps, std::vector<int>& shifts, const float* all_taps, int radius, int64_t size) {
  taps.clear(), shifts.clear();
  for (int k = 0; k < 2 * radius + 1; ++k) {
    if (all_taps[k] != 0.0f) taps.push_back(all_taps[k]), shifts.push_back(k);
  }
  if (taps.empty()) taps.push_back(0.0f), shifts.push_back(0);   // all zero (a hand-made plan): sums of +0
  const int k_taps = (int)taps.size();
  padded.resize(size + 2 * radius);
  rows.resize(k_taps);
  for (int c = 0; c < 3; ++c) {
    const float* src = p.data.data() + c * p.n;
    float* mid = tmp.data.data() + c * p.n;
    for (int64_t y = 0; y < size; ++y) {
      const float* in = src + y * size;
      float* pad = padded.data();
      std::copy(in, in + size, pad + radius);
      for (int i = 0; i < radius; ++i) {
        pad[i] = in[reflect(i - radius, (int)size)];
        pad[radius + size + i] = in[reflect((int)size + i, (int)size)];
      }
      for (int k = 0; k < k_taps; ++k) rows[k] = pad + shifts[k];
      weighted_rows(rows.data(), taps.data(), k_taps, size, mid + y * size);
    }
    float* dst = p.data.data() + c * p.n;
    for (int64_t y = 0; y < size; ++y) {
      for (int k = 0; k < k_taps; ++k) {
        rows[k] = mid + (int64_t)reflect((int)y + shifts[k] - radius, (int)size) * size;
      }
      weighted_rows(rows.data(), taps.data(), k_taps, size, dst + y * size);
    }
  }
}

void store(const Planes& p, const SynthArgs& a, int64_t m, int64_t t) {
  const int64_t plane = a.size * a.size;
  for (int c = 0; c < 3; ++c) {
    const float* src = p.data.data() + c * p.n;
    const int64_t offset = ((m * 3 + c) * a.frames_per_video + t) * plane;
    if (a.out_dtype == kOutUInt8) {
      uint8_t* dst = static_cast<uint8_t*>(a.out) + offset;
      for (int64_t i = 0; i < plane; ++i) dst[i] = to_uint8(clamp255(src[i]));
    } else {
      const float scale = a.norm[c], shift = a.norm[3 + c];
      if (a.out_dtype == kOutFloat32) {
        float* dst = static_cast<float*>(a.out) + offset;
        for (int64_t i = 0; i < plane; ++i) dst[i] = clamp255(src[i]) * scale + shift;
      } else {
        uint16_t* dst = static_cast<uint16_t*>(a.out) + offset;
        for (int64_t i = 0; i < plane; ++i) dst[i] = to_bfloat16_bits(clamp255(src[i]) * scale + shift);
      }
    }
  }
}

struct Scratch {
  Planes image, action, tmp;
  std::vector<Tap> rows, cols;
  ColumnTaps column_taps;
  std::vector<float> padded, blur_taps;
  std::vector<int> blur_shifts;
  std::vector<const float*> blur_rows;
  RowCache cache;
  explicit Scratch(int64_t size) : rows(size), cols(size) {
    image.resize(size * size);
    action.resize(size * size);
    tmp.resize(size * size);
  }
};

void synthesize_frame(const SynthArgs& a, int64_t job, Scratch& s) {
  const int64_t jf = a.frames_per_video, size = a.size;
  const int64_t m = job / jf, t = job % jf;
  const float* prm = a.params + m * a.num_params;
  const int32_t* src = a.sources + m * 2;
  const int32_t* frm = a.frames + m * 2 * jf;
  const int64_t frame_bytes = a.height * a.width * 3;
  const int64_t video_bytes = a.max_frames * frame_bytes;

  const bool flip = prm[kFlip] > 0.0f;
  for (int64_t o = 0; o < size; ++o) {
    s.rows[o] = sample_position((int)o, prm[kCropY0], prm[kScaleY], (int)a.height);
    s.cols[o] = sample_position(flip ? (int)(size - 1 - o) : (int)o, prm[kCropX0], prm[kScaleX], (int)a.width);
  }
  s.column_taps.set(s.cols);
  const uint8_t* background = a.videos + src[0] * video_bytes + (int64_t)frm[t] * frame_bytes;
  sample_frame(background, a.width, s.rows.data(), s.column_taps, size, s.cache, s.image.data.data(), s.image.n);
  const int32_t action_frame = frm[jf + t];
  if (action_frame >= 0) {
    const uint8_t* action = a.videos + src[1] * video_bytes + (int64_t)action_frame * frame_bytes;
    sample_frame(action, a.width, s.rows.data(), s.column_taps, size, s.cache, s.action.data.data(), s.action.n);
    blend_planes(s.image, s.action, prm[kBeta]);
  }
  if (prm[kJitterOn] > 0.0f) colour_jitter(s.image, prm, size);
  if (prm[kGrayscale] > 0.0f) for_each_pixel(s.image, [](auto v) { return to_grey(v); });
  if (prm[kBlurOn] > 0.0f) {
    blur(s.image, s.tmp, s.padded, s.blur_rows, s.blur_taps, s.blur_shifts, prm + kBlur0,
         blur_radius_from_columns((int)a.num_params), size);
  }
  store(s.image, a, m, t);
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
    for (int64_t job = 0; job < jobs; ++job) synthesize_frame(a, job, scratch);
  }
#else
  (void)num_threads;
  Scratch scratch(a.size);
  for (int64_t job = 0; job < jobs; ++job) synthesize_frame(a, job, scratch);
#endif
}

}  // namespace uptal
