// Decoded-frame conversion for the data path: raw-pointer interface. Python (uptal/ops/planes_to_rgb.py) checks
// the planes and the destination before calling in; nothing here checks.
#pragma once

#include <cstdint>

namespace uptal {

// One plane of a planar frame: `height` rows of `width` bytes, `line_size` bytes apart (FFmpeg pads rows).
struct PlaneView {
  const uint8_t* data;
  int64_t line_size;
};

// Packed RGB rows [height, width, 3] (rows `out_row_stride` bytes apart) from the R, G and B planes.
// Dispatches at run time like synthesize_cpu (UPTAL_CPU_VARIANT picks a narrower build).
void planes_to_rgb(PlaneView r, PlaneView g, PlaneView b, int64_t height, int64_t width, uint8_t* out,
                   int64_t out_row_stride);

// The builds of frame_cpu.cpp (one per instruction set).
void planes_to_rgb_baseline(PlaneView r, PlaneView g, PlaneView b, int64_t height, int64_t width, uint8_t* out,
                            int64_t out_row_stride);
void planes_to_rgb_avx2(PlaneView r, PlaneView g, PlaneView b, int64_t height, int64_t width, uint8_t* out,
                        int64_t out_row_stride);
void planes_to_rgb_avx512(PlaneView r, PlaneView g, PlaneView b, int64_t height, int64_t width, uint8_t* out,
                          int64_t out_row_stride);

}  // namespace uptal
