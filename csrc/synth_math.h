// Per-pixel arithmetic of the PAL synthesis op, shared by the C++ (CPU) and CUDA kernels.
//
// The specification is python/uptal/ops/synthesize_ref.py. Every function here performs the same IEEE
// float32 operations in the same order as the reference, so the three implementations agree bit for bit.
// That only holds when the compiler does not contract a*b+c into an FMA or reassociate: the CPU code is
// built with -ffp-contract=off (no -ffast-math) and the CUDA code with --fmad=false.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define UPTAL_HD __host__ __device__ __forceinline__
#else
#define UPTAL_HD inline
#endif

namespace uptal {

// float32 values of 0.2989, 0.587, 0.114 (same as GREY_R/G/B in synthesize_ref.py)
constexpr float kGreyR = 0x1.3212d8p-2f;
constexpr float kGreyG = 0x1.2c8b44p-1f;
constexpr float kGreyB = 0x1.d2f1aap-4f;

// One pixel's channels: V is float (one pixel) or, in the CPU kernel, a vector register of pixels (lane-wise
// the same arithmetic; see csrc/synth_cpu.cpp).
template <class V>
struct RgbOf {
  V r, g, b;
};
using Rgb = RgbOf<float>;

// max_of(a, b) = a > b ? a : b and min_of(a, b) = a < b ? a : b, exactly (for a NaN too: then b), which is
// what x86 maxps / minps compute: the CPU kernel specialises them for vector registers with those
// instructions (as ternaries, a vectorised loop needs a compare and a blend each). select(c, a, b) = c ? a : b
// lane-wise; splat<V>(x) is x in every lane.
template <class V>
UPTAL_HD V max_of(V a, V b) {
  return a > b ? a : b;
}
template <class V>
UPTAL_HD V min_of(V a, V b) {
  return a < b ? a : b;
}
template <class C, class V>
UPTAL_HD V select(C c, V a, V b) {
  return c ? a : b;
}
template <class V>
UPTAL_HD V splat(float x);
template <>
UPTAL_HD float splat<float>(float x) {
  return x;
}

template <class V>
UPTAL_HD V clamp255(V v) {
  return min_of(max_of(v, splat<V>(0.0f)), splat<V>(255.0f));
}

// clamp255 of a value known to be >= +0, without the clamp at 0 (which returns it unchanged: max_of(v, +0) is
// v for v > 0 and +0 for v = +0). Every value the op computes is >= +0: sampling and blending add products of
// uint8 values and weights in [0, 1]; brightness multiplies by a factor and the blur by taps that are checked
// >= 0 and finite (synthesize.py); hue rebuilds channels >= 0 (see hue_rebuild); grey adds positive multiples;
// contrast and saturation, which can go below 0, clamp.
template <class V>
UPTAL_HD V at_most255(V v) {
  return min_of(v, splat<V>(255.0f));
}

template <class V>
UPTAL_HD V grey(V r, V g, V b) {
  return (r * kGreyR + g * kGreyG) + b * kGreyB;
}

// Bilinear sampling position along one axis (align_corners=False, clamped to the frame).
struct Tap {
  int i0, i1;
  float w1;  // weight of i1; i0 gets 1 - w1
};

UPTAL_HD Tap sample_position(int o, float start, float scale, int extent) {
  float f = start + ((float)o + 0.5f) * scale - 0.5f;
  f = f > 0.0f ? f : 0.0f;
  f = f < (float)(extent - 1) ? f : (float)(extent - 1);
  float fl = floorf(f);
  Tap t;
  t.i0 = (int)fl;
  t.w1 = f - fl;
  t.i1 = t.i0 + 1 < extent - 1 ? t.i0 + 1 : extent - 1;
  return t;
}

// Bilinear sample of a channel-interleaved uint8 frame [H, W, 3] from its rows row0 (weight 1 - wy1) and row1
// (weight wy1), at the columns whose pixels start at byte offsets c0 (weight 1 - wx1) and c1 (weight wx1).
UPTAL_HD Rgb bilinear_rows(const uint8_t* row0, const uint8_t* row1, int c0, int c1, float wx1, float wy1) {
  const float wx0 = 1.0f - wx1, wy0 = 1.0f - wy1;
  float v[3];
  for (int c = 0; c < 3; ++c) {
    float top = (float)row0[c0 + c] * wx0 + (float)row0[c1 + c] * wx1;
    float bottom = (float)row1[c0 + c] * wx0 + (float)row1[c1 + c] * wx1;
    v[c] = top * wy0 + bottom * wy1;
  }
  return Rgb{v[0], v[1], v[2]};
}

UPTAL_HD Rgb blend(Rgb action, Rgb background, float beta) {
  const float omb = 1.0f - beta;
  return Rgb{beta * action.r + omb * background.r, beta * action.g + omb * background.g,
             beta * action.b + omb * background.b};
}

template <class V>
UPTAL_HD RgbOf<V> brightness(RgbOf<V> v, float factor) {
  return RgbOf<V>{at_most255(v.r * factor), at_most255(v.g * factor), at_most255(v.b * factor)};
}

// Contribution of one pixel to the exact contrast mean: floor(grey * 256) <= 65280 (grey >= 0); the frame's
// sum is taken in int64, exactly, so it does not depend on the order of summation.
UPTAL_HD int32_t quantised_grey(Rgb v) { return (int32_t)(grey(v.r, v.g, v.b) * 256.0f); }

UPTAL_HD float contrast_mean(int64_t quantised_sum, int size) {
  return (float)quantised_sum / (float)(size * size * 256);
}

template <class V>
UPTAL_HD RgbOf<V> contrast(RgbOf<V> v, float factor, float mean) {
  const float offset = (1.0f - factor) * mean;
  return RgbOf<V>{clamp255(factor * v.r + offset), clamp255(factor * v.g + offset),
                  clamp255(factor * v.b + offset)};
}

template <class V>
UPTAL_HD RgbOf<V> saturation(RgbOf<V> v, float factor) {
  const V offset = (1.0f - factor) * grey(v.r, v.g, v.b);
  return RgbOf<V>{clamp255(factor * v.r + offset), clamp255(factor * v.g + offset),
                  clamp255(factor * v.b + offset)};
}

// Hue rotation by `shift` turns in HSV space (torchvision's adjust_hue up to rounding), in sixths of a turn:
// hue h6 = offset + (difference of the other two channels) / chroma, rotated and wrapped into [0, 6), and
// each channel rebuilt as max - chroma * clamp(min(k, 4 - k), 0, 1) with k = (n + h6) mod 6, n = 5, 3, 1
// (synthesize_ref._hue, the specification). Branch-free (selects only), so that it vectorises on the CPU and
// does not diverge on the GPU; a grey pixel (chroma 0) computes a NaN in the unused lane and is returned
// unchanged.
// The rebuilt channel needs no clamp at 0: with 0 <= min <= max, chroma = fl(max - min) <= max and
// fl(chroma * m) <= chroma for m in [0, 1], so max - chroma * m >= 0 exactly. It can exceed 255: bilinear
// sampling can give 255 + 2^-16 (1 - w rounds up for some weights w), so the clamp at 255 stays, unless the
// caller knows every channel is at most 255 (see hue_rebuild).
template <class V>
UPTAL_HD V clamp01(V m) {
  return max_of(min_of(m, splat<V>(1.0f)), splat<V>(0.0f));
}

// Channel n's weight clamp(min(k, 4 - k), 0, 1) at k = (n + h6) mod 6 for h6 in [0, 6), without the mod: on
// k = n + h6 in [n, n + 6) the periodic triangle is one expression per channel, each piece of it computed
// exactly where it is not clamped away (Sterbenz: k - 6 for k in [3, 12], 4 - k for k in [2, 8], 10 - k for
// k in [5, 20]), so it gives the reference's weight bit for bit (checked for every float h6 in [0, 6), the
// three channels: 3.3e9 comparisons) in 6 operations where the mod and the triangle took 8.
//   red, n = 5, k in [5, 11): 0, rising k - 6 on [6, 7], 1, falling 10 - k on [9, 10], 0
//   green and blue, n = 3 and 1, k in [n, n + 6): 1 (blue), falling 4 - k on [3, 4], 0, rising k - 6 on [6, 7], 1
// A NaN h6 (a grey pixel) gives weight 1: min_of and max_of return their second operand, the constant.
template <class V>
UPTAL_HD V hue_weight_red(V h6) {
  const V k = 5.0f + h6;
  return clamp01(min_of(k - 6.0f, 10.0f - k));
}
template <class V>
UPTAL_HD V hue_weight_green_blue(float n, V h6) {
  const V k = n + h6;
  return clamp01(max_of(4.0f - k, k - 6.0f));
}

// The hue rotation in two halves: hue_angle computes a pixel's rotated hue h6 in [0, 6) with its max and
// chroma, hue_rebuild the channels from them; hue() is one after the other. (The CPU kernel runs each half as
// a loop of its own over a row: as one loop, each register of pixels is a chain of about 40 dependent
// instructions with a division among them, more than the out-of-order core overlaps across registers.)
template <class V>
struct HueAngle {
  V h6, maxc, chroma;
};

template <class V>
UPTAL_HD HueAngle<V> hue_angle(RgbOf<V> v, float shift) {
  const V maxc = max_of(max_of(v.r, v.g), v.b);
  const V minc = min_of(min_of(v.r, v.g), v.b);
  const V chroma = maxc - minc;
  const auto max_is_red = maxc == v.r, max_is_green = maxc == v.g;
  const V num = select(max_is_red, v.g - v.b, select(max_is_green, v.b - v.r, v.r - v.g));
  const V offset = select(max_is_red, splat<V>(0.0f), select(max_is_green, splat<V>(2.0f), splat<V>(4.0f)));
  V h6 = offset + num / chroma;   // [-1, 5)
  h6 = h6 + shift * 6.0f;         // [-4, 8)
  h6 = select(h6 < 0.0f, h6 + 6.0f, h6);
  h6 = select(h6 >= 6.0f, h6 - 6.0f, h6);   // after the first wrap: -tiny + 6 rounds to 6.0, which wraps to 0
  return HueAngle<V>{h6, maxc, chroma};
}

// kAtMost255: the caller knows every channel of v is in [0, 255] (a clamping op ran before the hue). Then the
// clamp at 255 changes nothing (a rebuilt channel is at most max), and neither does the grey pixels' select:
// their NaN h6 gives weight 1, so they rebuild as max - 0 * 1 = max, which is each of their channels.
template <bool kAtMost255 = false, class V>
UPTAL_HD RgbOf<V> hue_rebuild(RgbOf<V> v, HueAngle<V> a) {
  const V r = a.maxc - a.chroma * hue_weight_red(a.h6);
  const V g = a.maxc - a.chroma * hue_weight_green_blue(3.0f, a.h6);
  const V b = a.maxc - a.chroma * hue_weight_green_blue(1.0f, a.h6);
  if (kAtMost255) return RgbOf<V>{r, g, b};
  const auto grey_pixel = a.chroma == 0.0f;
  const V top = splat<V>(255.0f);
  return RgbOf<V>{select(grey_pixel, v.r, min_of(r, top)), select(grey_pixel, v.g, min_of(g, top)),
                  select(grey_pixel, v.b, min_of(b, top))};
}

template <class V>
UPTAL_HD RgbOf<V> hue(RgbOf<V> v, float shift) {
  return hue_rebuild(v, hue_angle(v, shift));
}

template <class V>
UPTAL_HD RgbOf<V> to_grey(RgbOf<V> v) {
  const V g = grey(v.r, v.g, v.b);
  return RgbOf<V>{g, g, g};
}

// Reflect padding without edge repeat (index -1 -> 1, S -> S-2); needs radius < size.
UPTAL_HD int reflect(int i, int size) {
  if (i < 0) i = -i;
  if (i >= size) i = 2 * (size - 1) - i;
  return i;
}

// What of a blur's taps [2 radius + 1] the kernels run. A zero tap adds nothing: its product is +0 (or -0 for a
// -0 tap; every value blurred is finite and >= +0), and adding a zero leaves a sum >= +0 unchanged, so the tap
// sums over the non-zero taps alone are the reference's bit for bit. The planner zeroes the outer taps
// (gaussian_taps in pal/plan.py: 7 of 11 at sigma 1, the centre alone at 0.2).
// nonzero_radius: the least r with every non-zero tap within taps[radius - r .. radius + r].
UPTAL_HD int nonzero_radius(const float* taps, int radius) {
  int r = radius;
  while (r > 0 && taps[radius - r] == 0.0f && taps[radius + r] == 0.0f) --r;
  return r;
}

// Whether a blur changes any value: one whose only non-zero tap is a centre tap of 1 does not (1 * x = x in both
// passes); the planner gives that to a small sigma, and the frame is then not blurred.
UPTAL_HD bool blur_changes_values(const float* taps, int radius) {
  return nonzero_radius(taps, radius) > 0 || taps[radius] != 1.0f;
}

// Round half to even, as torch.round; the value is already clamped to [0, 255].
UPTAL_HD uint8_t to_uint8(float v) { return (uint8_t)rintf(v); }

// float32 -> bfloat16 bits, round to nearest even (finite inputs), as torch's .to(torch.bfloat16).
UPTAL_HD uint16_t to_bfloat16_bits(float v) {
  uint32_t bits;
#if defined(__CUDA_ARCH__)
  bits = __float_as_uint(v);
#else
  std::memcpy(&bits, &v, sizeof(bits));
#endif
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return (uint16_t)((bits + rounding) >> 16);
}

}  // namespace uptal
