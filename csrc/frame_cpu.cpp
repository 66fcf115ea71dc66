// Planar RGB -> packed RGB rows, the last step of the decoder's conversion (swscale's planar output is faster
// than its packed one; see uptal/data/decode.py). A plain loop: with __restrict the compiler turns the
// three-way byte interleave into vector shuffles (the loop alone, 128 x 171 frame, this project's CPU machine:
// 5-6 us in the AVX2 build, 26-35 us in the SSE2 build, which has no byte shuffle; numpy's three strided copies
// took 32-46 us).
#include "cpu_variant.h"
#include "frame.h"

namespace uptal {

void UPTAL_VARIANT_NAME(planes_to_rgb_)(PlaneView r, PlaneView g, PlaneView b, int64_t height, int64_t width,
                                        uint8_t* out, int64_t out_row_stride) {
  for (int64_t y = 0; y < height; ++y) {
    const uint8_t* __restrict red = r.data + y * r.line_size;
    const uint8_t* __restrict green = g.data + y * g.line_size;
    const uint8_t* __restrict blue = b.data + y * b.line_size;
    uint8_t* __restrict row = out + y * out_row_stride;  // [width, 3]
    for (int64_t x = 0; x < width; ++x) {
      row[3 * x] = red[x];
      row[3 * x + 1] = green[x];
      row[3 * x + 2] = blue[x];
    }
  }
}

}  // namespace uptal
