// Column layout of the packed PAL plan (`params` [M, P] float32), one row per synthetic video.
// Mirrors python/uptal/ops/synthesize_layout.py; tests compare the two through param_columns().
#pragma once

namespace uptal {

enum ParamColumn : int {
  kBeta = 0,
  kCropY0 = 1,
  kCropX0 = 2,
  kScaleY = 3,
  kScaleX = 4,
  kFlip = 5,
  kJitterOn = 6,
  kBrightness = 7,
  kContrast = 8,
  kSaturation = 9,
  kHue = 10,
  kOrder0 = 11,  // 11..14
  kGrayscale = 15,
  kBlurOn = 16,
  kBlur0 = 17,   // 17..17+2R
};

enum JitterOp : int { kOpBrightness = 0, kOpContrast = 1, kOpSaturation = 2, kOpHue = 3 };

// Output element types, as passed from Python.
enum OutDtype : int { kOutFloat32 = 0, kOutBFloat16 = 1, kOutUInt8 = 2 };

inline int blur_radius_from_columns(int num_columns) { return (num_columns - kBlur0 - 1) / 2; }

}  // namespace uptal
