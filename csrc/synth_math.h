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

struct Rgb {
  float r, g, b;
};

// Written with comparisons (not fminf/fmaxf) so that compilers vectorise it; same result for non-NaN input.
UPTAL_HD float clamp255(float v) {
  v = v > 0.0f ? v : 0.0f;
  return v < 255.0f ? v : 255.0f;
}

UPTAL_HD float grey(float r, float g, float b) { return (r * kGreyR + g * kGreyG) + b * kGreyB; }

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

// Bilinear sample of one channel-interleaved uint8 frame [H, W, 3] at (row tap, column tap).
UPTAL_HD Rgb bilinear(const uint8_t* frame, int width, Tap y, Tap x) {
  const uint8_t* row0 = frame + y.i0 * width * 3;
  const uint8_t* row1 = frame + y.i1 * width * 3;
  const uint8_t* p00 = row0 + x.i0 * 3;
  const uint8_t* p01 = row0 + x.i1 * 3;
  const uint8_t* p10 = row1 + x.i0 * 3;
  const uint8_t* p11 = row1 + x.i1 * 3;
  const float wx0 = 1.0f - x.w1, wy0 = 1.0f - y.w1;
  float v[3];
  for (int c = 0; c < 3; ++c) {
    float top = (float)p00[c] * wx0 + (float)p01[c] * x.w1;
    float bottom = (float)p10[c] * wx0 + (float)p11[c] * x.w1;
    v[c] = top * wy0 + bottom * y.w1;
  }
  return Rgb{v[0], v[1], v[2]};
}

UPTAL_HD Rgb blend(Rgb action, Rgb background, float beta) {
  const float omb = 1.0f - beta;
  return Rgb{beta * action.r + omb * background.r, beta * action.g + omb * background.g,
             beta * action.b + omb * background.b};
}

UPTAL_HD Rgb brightness(Rgb v, float factor) {
  return Rgb{clamp255(v.r * factor), clamp255(v.g * factor), clamp255(v.b * factor)};
}

// Contribution of one pixel to the exact contrast mean: floor(grey * 256) <= 65280 (grey >= 0); the frame's
// sum is taken in int64, exactly, so it does not depend on the order of summation.
UPTAL_HD int32_t quantised_grey(Rgb v) { return (int32_t)(grey(v.r, v.g, v.b) * 256.0f); }

UPTAL_HD float contrast_mean(int64_t quantised_sum, int size) {
  return (float)quantised_sum / (float)(size * size * 256);
}

UPTAL_HD Rgb contrast(Rgb v, float factor, float mean) {
  const float offset = (1.0f - factor) * mean;
  return Rgb{clamp255(factor * v.r + offset), clamp255(factor * v.g + offset), clamp255(factor * v.b + offset)};
}

UPTAL_HD Rgb saturation(Rgb v, float factor) {
  const float offset = (1.0f - factor) * grey(v.r, v.g, v.b);
  return Rgb{clamp255(factor * v.r + offset), clamp255(factor * v.g + offset), clamp255(factor * v.b + offset)};
}

// Hue rotation by `shift` turns in HSV space (torchvision's adjust_hue up to rounding), in sixths of a turn:
// hue h6 = offset + (difference of the other two channels) / chroma, rotated and wrapped into [0, 6), and
// each channel rebuilt as max - chroma * clamp(min(k, 4 - k), 0, 1) with k = (n + h6) mod 6, n = 5, 3, 1.
// Branch-free (selects only), so that it vectorises on the CPU and does not diverge on the GPU; a grey pixel
// (chroma 0) computes a NaN in the unused lane and is returned unchanged.
UPTAL_HD float hue_channel(float n, float h6, float maxc, float chroma) {
  float k = n + h6;
  const float k_wrapped = k - 6.0f;
  k = k >= 6.0f ? k_wrapped : k;
  const float k_mirror = 4.0f - k;
  float m = k < k_mirror ? k : k_mirror;
  m = m < 1.0f ? m : 1.0f;
  m = m > 0.0f ? m : 0.0f;
  return clamp255(maxc - chroma * m);
}

UPTAL_HD Rgb hue(Rgb v, float shift) {
  const float maxc = v.r > v.g ? (v.r > v.b ? v.r : v.b) : (v.g > v.b ? v.g : v.b);
  const float minc = v.r < v.g ? (v.r < v.b ? v.r : v.b) : (v.g < v.b ? v.g : v.b);
  const float chroma = maxc - minc;
  const float num_red = v.g - v.b, num_green = v.b - v.r, num_blue = v.r - v.g;
  const float num = maxc == v.r ? num_red : (maxc == v.g ? num_green : num_blue);
  const float offset = maxc == v.r ? 0.0f : (maxc == v.g ? 2.0f : 4.0f);
  float h6 = offset + num / chroma;   // [-1, 5)
  h6 = h6 + shift * 6.0f;             // [-4, 8)
  const float up = h6 + 6.0f, down = h6 - 6.0f;
  h6 = h6 < 0.0f ? up : h6;
  h6 = h6 >= 6.0f ? down : h6;
  const float r = hue_channel(5.0f, h6, maxc, chroma);
  const float g = hue_channel(3.0f, h6, maxc, chroma);
  const float b = hue_channel(1.0f, h6, maxc, chroma);
  const bool grey_pixel = chroma == 0.0f;
  return Rgb{grey_pixel ? v.r : r, grey_pixel ? v.g : g, grey_pixel ? v.b : b};
}

UPTAL_HD Rgb to_grey(Rgb v) {
  const float g = grey(v.r, v.g, v.b);
  return Rgb{g, g, g};
}

// Reflect padding without edge repeat (index -1 -> 1, S -> S-2); needs radius < size.
UPTAL_HD int reflect(int i, int size) {
  if (i < 0) i = -i;
  if (i >= size) i = 2 * (size - 1) - i;
  return i;
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
