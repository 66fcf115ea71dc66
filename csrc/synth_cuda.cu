// PAL synthesis on CUDA: bit-identical to synth_cpu.cpp and to the torch reference (synthesize_ref.py).
//
// Frames of S <= 128 whose [3][S][S] float32 pixels fit in a block's shared memory (S = 112, the paper's size,
// on an H100 or A100) take one kernel, synth_frame_kernel: one block of 1024 threads per output frame. Pass 1
// samples, blends and runs the jitter ops before contrast into shared memory, adding up the frame's exact grey
// sum (a block reduction); pass 2 runs the ops from contrast on and, with blur, the horizontal pass (one warp
// per row); pass 3 the vertical pass and the typed store. Every pixel's pipeline runs once. As on the CPU, the
// blur runs over the frame's non-zero taps only, and not at all where it changes no value (synth_math.h).
//
// Other frames (larger, or a GPU with less shared memory) take two kernels, both on the caller's stream:
//   1. contrast_sums_kernel: for outputs with colour jitter, every pixel runs the pipeline up to the contrast
//      op (sample, blend, the jitter ops ordered before contrast) and adds floor(grey * 256) into the frame's
//      int64 sum in `workspace` (integer adds, so the order of the atomics does not matter).
//   2. synth_kernel: one block per 32 x 32 tile of one output frame. Without blur each thread runs the full
//      per-pixel pipeline and stores. With blur the block computes the tile plus a halo of r pixels (r: the
//      radius of the frame's non-zero taps, see nonzero_radius in synth_math.h; positions reflected as the CPU
//      blur reflects them) into shared memory [3][32 + 2r][32 + 2r], runs the horizontal pass into a
//      [3][32 + 2r][32] buffer, then the vertical pass, clamp and the typed store. Every pass spreads its pixels
//      over all 256 threads of the block (PixelWalk: pixel i -> row i / width, column i % width).
// All per-pixel arithmetic is csrc/synth_math.h (built with --fmad=false, no fast-math), in the CPU's order.
#include "synth_cuda.h"

#include <climits>
#include <cstddef>
#include <cstdint>

#include "synth_math.h"
#include "synth_params.h"

// kernel<<<grid, block, shared_bytes, stream>>> and the dynamic shared memory, spelled so that cuda_emulation.h
// can run the same code on a CPU (uptal._C_cuda_emulated, for the tests).
#if !defined(UPTAL_CUDA_EMULATION)
#define UPTAL_LAUNCH(kernel, grid, block, shared_bytes, stream) kernel<<<grid, block, shared_bytes, stream>>>
#define UPTAL_EXTERN_SHARED(type, name) extern __shared__ __align__(16) type name[]
#endif

namespace uptal {
namespace {

constexpr int kTile = 32;                     // output tile edge of synth_kernel, pixels
constexpr int kThreads = 256;                 // threads of a block (1-D) of either kernel
constexpr int kWarps = kThreads / 32;
constexpr int kSumPixels = 4 * kThreads;      // pixels per block of contrast_sums_kernel
// Blocks of a launch: every kernel loops over frames with the grid's stride. The emulation launches few, so
// that its blocks run several frames each and the barriers between a block's frames are tested too.
#if defined(UPTAL_CUDA_EMULATION)
constexpr int64_t kMaxGridY = 3;              // tile kernels: grid y
constexpr int64_t kMaxFrameBlocks = 5;        // frame kernel
#else
constexpr int64_t kMaxGridY = 65535;
constexpr int64_t kMaxFrameBlocks = INT_MAX;
#endif
constexpr size_t kDefaultSharedBytes = 48 * 1024;

// What the per-pixel pipeline needs about one output frame (m, t); every thread of a block loads the same.
struct Frame {
  const uint8_t* background;
  const uint8_t* action;  // nullptr: nothing pasted in this frame
  float beta, crop_y0, crop_x0, scale_y, scale_x;
  float brightness, contrast, saturation, hue;
  float mean;             // contrast mean (synth_kernel only)
  float scale_r, scale_g, scale_b, shift_r, shift_g, shift_b;
  int ops;                // jitter op of order slot k in bits 2k..2k+1
  int contrast_at;        // order slot of the contrast op (4: none)
  int height, width, size;
  bool flip, jitter, grayscale, blur;
};

__device__ __forceinline__ Frame load_frame(const SynthArgs& a, int64_t m, int64_t t, const int64_t* sums) {
  const int64_t jf = a.frames_per_video;
  const float* prm = a.params + m * a.num_params;
  const int32_t* src = a.sources + m * 2;
  const int32_t* frm = a.frames + m * 2 * jf;
  const int64_t frame_bytes = a.height * a.width * 3;
  const int64_t video_bytes = a.max_frames * frame_bytes;

  Frame f;
  f.background = a.videos + (int64_t)src[0] * video_bytes + (int64_t)frm[t] * frame_bytes;
  const int32_t action_frame = frm[jf + t];
  f.action = action_frame >= 0 ? a.videos + (int64_t)src[1] * video_bytes + (int64_t)action_frame * frame_bytes
                               : nullptr;
  f.beta = prm[kBeta];
  f.crop_y0 = prm[kCropY0];
  f.crop_x0 = prm[kCropX0];
  f.scale_y = prm[kScaleY];
  f.scale_x = prm[kScaleX];
  f.brightness = prm[kBrightness];
  f.contrast = prm[kContrast];
  f.saturation = prm[kSaturation];
  f.hue = prm[kHue];
  f.scale_r = a.norm[0];
  f.scale_g = a.norm[1];
  f.scale_b = a.norm[2];
  f.shift_r = a.norm[3];
  f.shift_g = a.norm[4];
  f.shift_b = a.norm[5];
  f.ops = 0;
  f.contrast_at = 4;
  for (int k = 0; k < 4; ++k) {
    // as the CPU's switch: 0, 1, 2 name their op, anything else is hue
    const int op = (int)prm[kOrder0 + k];
    const int code = (op == kOpBrightness || op == kOpContrast || op == kOpSaturation) ? op : kOpHue;
    f.ops |= code << (2 * k);
    if (code == kOpContrast && f.contrast_at == 4) f.contrast_at = k;
  }
  f.height = (int)a.height;
  f.width = (int)a.width;
  f.size = (int)a.size;
  f.flip = prm[kFlip] > 0.0f;
  f.jitter = prm[kJitterOn] > 0.0f;
  f.grayscale = prm[kGrayscale] > 0.0f;
  f.blur = prm[kBlurOn] > 0.0f;
  f.mean = (sums != nullptr && f.jitter) ? contrast_mean(sums[m * jf + t], f.size) : 0.0f;
  return f;
}

// Where output row or column o samples its source: the byte offsets of its two source rows within the frame
// (row taps) or of its two source pixels within a row (column taps, flipped when the frame is), and the weight of
// the second. 16 bytes: the frame kernel reads one from shared memory in one load.
struct alignas(16) SampleTap {
  int offset0, offset1;
  float w1;
};

__device__ __forceinline__ SampleTap row_tap(const Frame& f, int oy) {
  const Tap t = sample_position(oy, f.crop_y0, f.scale_y, f.height);
  return SampleTap{t.i0 * f.width * 3, t.i1 * f.width * 3, t.w1};
}

__device__ __forceinline__ SampleTap column_tap(const Frame& f, int ox) {
  const Tap t = sample_position(f.flip ? f.size - 1 - ox : ox, f.crop_x0, f.scale_x, f.width);
  return SampleTap{t.i0 * 3, t.i1 * 3, t.w1};
}

// Step 1-2: bilinear sample of the background (and the action frame, blended) at the output pixel of these taps.
__device__ __forceinline__ Rgb sample_at(const Frame& f, SampleTap row, SampleTap col) {
  const Rgb background = bilinear_rows(f.background + row.offset0, f.background + row.offset1, col.offset0,
                                       col.offset1, col.w1, row.w1);
  if (f.action == nullptr) return background;
  const Rgb action =
      bilinear_rows(f.action + row.offset0, f.action + row.offset1, col.offset0, col.offset1, col.w1, row.w1);
  return blend(action, background, f.beta);
}

__device__ __forceinline__ Rgb sample_pixel(const Frame& f, int oy, int ox) {
  return sample_at(f, row_tap(f, oy), column_tap(f, ox));
}

__device__ __forceinline__ Rgb jitter_op(const Frame& f, int op, Rgb v) {
  switch (op) {
    case kOpBrightness: return brightness(v, f.brightness);
    case kOpContrast: return contrast(v, f.contrast, f.mean);
    case kOpSaturation: return saturation(v, f.saturation);
    default: return hue(v, f.hue);
  }
}

// The jitter ops of order slots first..last-1, in order.
__device__ __forceinline__ Rgb jitter_slots(const Frame& f, Rgb v, int first, int last) {
#pragma unroll 1
  for (int k = first; k < last; ++k) v = jitter_op(f, (f.ops >> (2 * k)) & 3, v);
  return v;
}

// Steps 1-4: the value of output pixel (oy, ox) just before the blur.
__device__ __forceinline__ Rgb pre_blur_pixel(const Frame& f, int oy, int ox) {
  Rgb v = sample_pixel(f, oy, ox);
  if (f.jitter) v = jitter_slots(f, v, 0, 4);
  if (f.grayscale) v = to_grey(v);
  return v;
}

// Step 6: clamp, convert, store pixel (oy, ox) of frame t of output m into [M, 3, JF, S, S].
__device__ __forceinline__ void store_pixel(const SynthArgs& a, const Frame& f, int64_t m, int64_t t, int oy, int ox,
                                            Rgb v) {
  const int64_t plane = a.size * a.size;
  const int64_t channel = a.frames_per_video * plane;
  const int64_t offset = (m * 3 * a.frames_per_video + t) * plane + (int64_t)oy * a.size + ox;
  const float r = clamp255(v.r), g = clamp255(v.g), b = clamp255(v.b);
  if (a.out_dtype == kOutUInt8) {
    uint8_t* dst = static_cast<uint8_t*>(a.out) + offset;
    dst[0] = to_uint8(r);
    dst[channel] = to_uint8(g);
    dst[2 * channel] = to_uint8(b);
    return;
  }
  const float yr = r * f.scale_r + f.shift_r;
  const float yg = g * f.scale_g + f.shift_g;
  const float yb = b * f.scale_b + f.shift_b;
  if (a.out_dtype == kOutFloat32) {
    float* dst = static_cast<float*>(a.out) + offset;
    dst[0] = yr;
    dst[channel] = yg;
    dst[2 * channel] = yb;
  } else {
    uint16_t* dst = static_cast<uint16_t*>(a.out) + offset;
    dst[0] = to_bfloat16_bits(yr);
    dst[channel] = to_bfloat16_bits(yg);
    dst[2 * channel] = to_bfloat16_bits(yb);
  }
}

// The pixels tid, tid + threads, tid + 2 threads, ... of a region `cols` wide, as (row r, column c), without
// an integer division per pixel (cols is not a compile-time constant; a division costs ~20 instructions):
//   for (PixelWalk p(cols, tid); p.r < rows; p.next()) ...
struct PixelWalk {
  int r, c, cols, step_r, step_c;
  __device__ __forceinline__ PixelWalk(int cols_, int tid, int threads = kThreads)
      : r(tid / cols_), c(tid % cols_), cols(cols_), step_r(threads / cols_), step_c(threads % cols_) {}
  __device__ __forceinline__ void next() {
    r += step_r;
    c += step_c;  // < 2 cols
    if (c >= cols) {
      c -= cols;
      ++r;
    }
  }
};

// Kernel 1. Block (x: chunk of kSumPixels pixels, y: output frames, strided). 1-D blocks of kThreads.
__global__ void __launch_bounds__(kThreads) contrast_sums_kernel(SynthArgs a, unsigned long long* sums) {
  __shared__ long long warp_sums[kWarps];
  const int tid = (int)threadIdx.x;
  const int64_t jobs = a.num_outputs * a.frames_per_video;
  const int64_t pixels = a.size * a.size;
  const int64_t first = (int64_t)blockIdx.x * kSumPixels;
  for (int64_t job = blockIdx.y; job < jobs; job += gridDim.y) {
    const int64_t m = job / a.frames_per_video, t = job % a.frames_per_video;
    // block-uniform exits: no jitter, or (never after validation) no contrast op
    if (!(a.params[m * a.num_params + kJitterOn] > 0.0f)) continue;
    const Frame f = load_frame(a, m, t, nullptr);
    if (f.contrast_at >= 4) continue;
    long long local = 0;
    for (int i = tid; i < kSumPixels; i += kThreads) {
      const int64_t p = first + i;
      if (p < pixels) {
        const int oy = (int)(p / a.size), ox = (int)(p % a.size);
        const Rgb v = jitter_slots(f, sample_pixel(f, oy, ox), 0, f.contrast_at);
        local += (long long)quantised_grey(v);
      }
    }
    for (int offset = 16; offset > 0; offset >>= 1) local += __shfl_down_sync(0xffffffffu, local, offset);
    if ((tid & 31) == 0) warp_sums[tid >> 5] = local;
    __syncthreads();
    if (tid == 0) {
      long long total = 0;
      for (int w = 0; w < kWarps; ++w) total += warp_sums[w];
      // two's complement: the unsigned add is the exact int64 add
      atomicAdd(sums + job, (unsigned long long)total);
    }
    __syncthreads();  // warp_sums is reused by the next frame
  }
}

// Blur of one output pixel straight from the pipeline, no shared memory: (2R+1)^2 pipeline evaluations per
// pixel. Only for radii whose halo does not fit in shared memory. Same accumulation order as the CPU.
__device__ Rgb blur_pixel_direct(const Frame& f, const float* taps, int radius, int oy, int ox) {
  const int n = 2 * radius + 1;
  Rgb acc{0.0f, 0.0f, 0.0f};
  for (int k = 0; k < n; ++k) {
    const int iy = reflect(oy + k - radius, f.size);
    Rgb v = pre_blur_pixel(f, iy, reflect(ox - radius, f.size));
    Rgb h{taps[0] * v.r, taps[0] * v.g, taps[0] * v.b};
    for (int j = 1; j < n; ++j) {
      v = pre_blur_pixel(f, iy, reflect(ox + j - radius, f.size));
      const float w = taps[j];
      h = Rgb{h.r + w * v.r, h.g + w * v.g, h.b + w * v.b};
    }
    const float w = taps[k];
    if (k == 0) {
      acc = Rgb{w * h.r, w * h.g, w * h.b};
    } else {
      acc = Rgb{acc.r + w * h.r, acc.g + w * h.g, acc.b + w * h.b};
    }
  }
  return acc;
}

// Dynamic shared memory of synth_kernel's blur path, in floats: taps, pre-blur halo tile, horizontal result.
//   taps  [2R+1]
//   halo  [3][kTile + 2R][kTile + 2R]   pre-blur values of the tile and its halo
//   mid   [3][kTile + 2R][kTile]        horizontal pass of every halo row
__host__ __device__ __forceinline__ int64_t blur_shared_floats(int64_t radius) {
  const int64_t wide = kTile + 2 * radius;
  return (2 * radius + 1) + 3 * wide * wide + 3 * wide * kTile;
}

// One blur pass over a tile in shared memory: sum_k taps[k] * in[k * step] for each of the three planes
// (plane apart), accumulated k = 0..n-1 in order, as the reference does.
__device__ __forceinline__ Rgb tap_sum(const float* in, int step, int plane, const float* taps, int n_taps) {
  const float w0 = taps[0];
  float r = w0 * in[0], g = w0 * in[plane], b = w0 * in[2 * plane];
  for (int k = 1; k < n_taps; ++k) {
    const float w = taps[k];
    const float* at = in + k * step;
    r = r + w * at[0];
    g = g + w * at[plane];
    b = b + w * at[2 * plane];
  }
  return Rgb{r, g, b};
}

// The blurred tile (x0, y0, nx x ny valid pixels) of frame f, through shared memory (see synth_kernel).
// Called by every thread of the block (it has barriers). Halo row r / column c holds the pre-blur pixel at the
// reflected position of (y0 - R + r, x0 - R + c); only the rows and columns that valid outputs read are
// computed (they lie in [-R, S - 1 + R] and reflect into [0, S) because R < S). Each pass spreads its
// (row, column) pairs over all threads of the block, so edge tiles and halo columns leave no thread idle.
__device__ __forceinline__ void blur_tile_shared(const SynthArgs& a, const Frame& f, int64_t m, int64_t t,
                                                 const float* taps, int radius, int x0, int y0, int nx, int ny,
                                                 float* smem) {
  const int tid = (int)threadIdx.x;
  const int n_taps = 2 * radius + 1;
  const int wide = kTile + 2 * radius;
  float* s_taps = smem;
  float* halo = s_taps + n_taps;
  float* mid = halo + 3 * wide * wide;
  const int halo_plane = wide * wide;
  const int mid_plane = wide * kTile;
  const int rows = ny + 2 * radius;
  const int cols = nx + 2 * radius;

  for (int i = tid; i < n_taps; i += kThreads) s_taps[i] = taps[i];  // read after the first barrier
  for (PixelWalk p(cols, tid); p.r < rows; p.next()) {
    const Rgb v = pre_blur_pixel(f, reflect(y0 - radius + p.r, f.size), reflect(x0 - radius + p.c, f.size));
    float* dst = halo + p.r * wide + p.c;
    dst[0] = v.r;
    dst[halo_plane] = v.g;
    dst[2 * halo_plane] = v.b;
  }
  __syncthreads();

  // horizontal pass: mid[r][x] = sum_k taps[k] * halo[r][x + k], k = 0..2R in order
  for (PixelWalk p(nx, tid); p.r < rows; p.next()) {
    const Rgb h = tap_sum(halo + p.r * wide + p.c, 1, halo_plane, s_taps, n_taps);
    float* out = mid + p.r * kTile + p.c;
    out[0] = h.r;
    out[mid_plane] = h.g;
    out[2 * mid_plane] = h.b;
  }
  __syncthreads();

  // vertical pass: out[y][x] = sum_k taps[k] * mid[y + k][x], k = 0..2R in order; clamp; store
  for (PixelWalk p(nx, tid); p.r < ny; p.next()) {
    const Rgb v = tap_sum(mid + p.r * kTile + p.c, kTile, mid_plane, s_taps, n_taps);
    store_pixel(a, f, m, t, y0 + p.r, x0 + p.c, v);
  }
  __syncthreads();  // s_taps, halo and mid are reused by the block's next frame
}

// Kernel 2. Block (x: tile of kTile x kTile pixels, y: output frames, strided), kThreads threads.
// kSharedBlur false: blur straight from the pipeline (blur_pixel_direct), for radii whose halo does not fit
// in shared memory; a separate instantiation so that its registers do not burden the usual kernel.
// Registers: the shared-memory kernel is held to 64 (4 blocks of 256 threads per SM; it does not spill on
// sm_75..sm_120), which ran it in 830 us instead of 897 us with 80 registers (3 blocks) on an H200: Nsight
// Compute found both kernels bound by instruction issue (SM busy ~73%, DRAM ~9%) with few eligible warps.
// The fallback keeps 80 (it would spill at 64).
template <bool kSharedBlur>
__global__ void __launch_bounds__(kThreads, kSharedBlur ? 4 : 3)
    synth_kernel(SynthArgs a, const int64_t* sums, int radius, int tiles_x) {
  UPTAL_EXTERN_SHARED(float, smem);
  const int tid = (int)threadIdx.x;
  const int size = (int)a.size;
  const int x0 = (int)(blockIdx.x % (unsigned)tiles_x) * kTile;
  const int y0 = (int)(blockIdx.x / (unsigned)tiles_x) * kTile;
  const int nx = size - x0 < kTile ? size - x0 : kTile;  // valid columns / rows of this tile
  const int ny = size - y0 < kTile ? size - y0 : kTile;
  const int64_t jobs = a.num_outputs * a.frames_per_video;

  for (int64_t job = blockIdx.y; job < jobs; job += gridDim.y) {
    const int64_t m = job / a.frames_per_video, t = job % a.frames_per_video;
    const Frame f = load_frame(a, m, t, sums);
    const float* all_taps = a.params + m * a.num_params + kBlur0;
    if (f.blur && blur_changes_values(all_taps, radius)) {  // block-uniform
      // a blur of the non-zero taps' radius (see nonzero_radius): a narrower halo, fewer taps
      const int blur_radius = nonzero_radius(all_taps, radius);
      const float* taps = all_taps + radius - blur_radius;
      if constexpr (kSharedBlur) {
        blur_tile_shared(a, f, m, t, taps, blur_radius, x0, y0, nx, ny, smem);
      } else {
        for (PixelWalk p(nx, tid); p.r < ny; p.next()) {
          store_pixel(a, f, m, t, y0 + p.r, x0 + p.c, blur_pixel_direct(f, taps, blur_radius, y0 + p.r, x0 + p.c));
        }
      }
      continue;
    }
    for (PixelWalk p(nx, tid); p.r < ny; p.next()) {  // consecutive threads: consecutive columns of a row
      store_pixel(a, f, m, t, y0 + p.r, x0 + p.c, pre_blur_pixel(f, y0 + p.r, x0 + p.c));
    }
  }
}

// --- Kernel 3: one block per output frame, the whole frame in shared memory ----------------------------------
// The pipeline runs once per pixel: the contrast mean is a reduction within the block (no contrast_sums_kernel,
// no second evaluation of the ops before contrast) and the blur reads its neighbours from the frame in shared
// memory (no halo recomputed at tile edges). Used when S <= kMaxFrameSize and the frame fits the device's opt-in
// shared memory: with rows padded by their reflection (kPadded, 3 S (S + 2R) floats: 164 KiB at S = 112, R = 5,
// which an H100 or H200 holds), else unpadded (3 S^2 floats: 151 KiB, which an A100 holds too), whose horizontal
// blur reflects at the row ends as the vertical one does.
constexpr int kFrameThreads = 1024;
constexpr int kFrameWarps = kFrameThreads / 32;
constexpr int kMaxFrameSize = 128;  // the horizontal blur holds a row's ceil(S / 32) <= kRowChunks outputs per lane
constexpr int kRowChunks = kMaxFrameSize / 32;
static_assert(kFrameWarps == 32, "block_sum reads one warp's sum per lane");

// Dynamic shared memory of synth_frame_kernel, in bytes:
//   row_taps     [S] SampleTap       column_taps [S] SampleTap
//   warp_sums    [kFrameWarps] int64 (grey sums of the contrast mean)
//   pixels       [3][S][P + S + P] float   the frame between the passes; pixel (y, x) of a plane at
//                                          y (S + 2P) + P + x. Padded: P = R columns on either side hold the
//                                          row's reflection for the horizontal blur (no lane branches on it);
//                                          else P = 0.
//   blur_taps    [2R+1] float
__host__ __device__ __forceinline__ int64_t frame_shared_bytes(int64_t size, int64_t radius, bool padded) {
  const int64_t pad = padded ? radius : 0;
  return 2 * size * (int64_t)sizeof(SampleTap) + kFrameWarps * 8 + (3 * size * (size + 2 * pad) + 2 * radius + 1) * 4;
}

// sum_k taps[k] * line[reflect(pos + k - R) * step] for each plane (plane apart), in the order of tap_sum: for
// the pixels within R of an edge.
__device__ __forceinline__ Rgb tap_sum_reflected(const float* line, int step, int plane, int pos, int size,
                                                 const float* taps, int radius) {
  Rgb acc{0.0f, 0.0f, 0.0f};
  for (int k = 0; k <= 2 * radius; ++k) {
    const float w = taps[k];
    const float* at = line + reflect(pos + k - radius, size) * step;
    if (k == 0) {
      acc = Rgb{w * at[0], w * at[plane], w * at[2 * plane]};
    } else {
      acc = Rgb{acc.r + w * at[0], acc.g + w * at[plane], acc.b + w * at[2 * plane]};
    }
  }
  return acc;
}

// The blur tap sum at position pos of a line of `size` values `step` apart.
__device__ __forceinline__ Rgb blur_at(const float* line, int step, int plane, int pos, int size, const float* taps,
                                       int radius) {
  if (pos >= radius && pos + radius < size) {
    return tap_sum(line + (pos - radius) * step, step, plane, taps, 2 * radius + 1);
  }
  return tap_sum_reflected(line, step, plane, pos, size, taps, radius);
}

__device__ __forceinline__ void put(float* at, int plane, Rgb v) {
  at[0] = v.r;
  at[plane] = v.g;
  at[2 * plane] = v.b;
}

__device__ __forceinline__ Rgb get(const float* at, int plane) { return Rgb{at[0], at[plane], at[2 * plane]}; }

// The sum of every thread's `local` over the block, returned to every thread; warp_sums is the block's scratch.
__device__ __forceinline__ long long block_sum(long long local, long long* warp_sums) {
  const int lane = (int)threadIdx.x & 31, warp = (int)threadIdx.x >> 5;
  for (int offset = 16; offset > 0; offset >>= 1) local += __shfl_down_sync(0xffffffffu, local, offset);
  if (lane == 0) warp_sums[warp] = local;
  __syncthreads();
  long long total = warp_sums[lane];  // one warp's sum per lane (kFrameWarps == 32)
  for (int offset = 16; offset > 0; offset >>= 1) total += __shfl_xor_sync(0xffffffffu, total, offset);
  return total;
}

// Output frame (m, t) by the whole block. Every branch on f is block-uniform, so every thread meets every barrier.
template <bool kPadded>
__device__ __forceinline__ void synthesize_frame(const SynthArgs& a, int64_t m, int64_t t, int radius,
                                                 unsigned char* smem) {
  const int tid = (int)threadIdx.x;
  Frame f = load_frame(a, m, t, nullptr);
  const int pad = kPadded ? radius : 0;
  const int size = f.size, stride = size + 2 * pad, plane = size * stride;
  SampleTap* row_taps = reinterpret_cast<SampleTap*>(smem);
  SampleTap* column_taps = row_taps + size;
  long long* warp_sums = reinterpret_cast<long long*>(column_taps + size);
  float* pixels = reinterpret_cast<float*>(warp_sums + kFrameWarps);  // [3][S][P + S + P]
  float* blur_taps = pixels + 3 * plane;

  for (int i = tid; i < size; i += kFrameThreads) {
    row_taps[i] = row_tap(f, i);
    column_taps[i] = column_tap(f, i);
  }
  // The blur over the frame's non-zero taps only (blur_radius <= radius; see nonzero_radius): blur_taps holds
  // taps[radius - blur_radius .. radius + blur_radius]. The layout keeps P = radius.
  const float* taps = a.params + m * a.num_params + kBlur0;
  f.blur = f.blur && blur_changes_values(taps, radius);
  const int blur_radius = f.blur ? nonzero_radius(taps, radius) : 0;
  if (f.blur) {
    for (int i = tid; i <= 2 * blur_radius; i += kFrameThreads) blur_taps[i] = taps[radius - blur_radius + i];
  }
  __syncthreads();

  // Pass 1: sample, blend, the jitter ops before contrast (all ops and the grey conversion when there is no
  // jitter); the frame's exact grey sum for the contrast mean. A frame that needs nothing more is stored here.
  const int pre_contrast = f.jitter ? f.contrast_at : 0;
  const bool done_in_pass_1 = !f.jitter && !f.blur;
  long long grey_sum = 0;
  for (PixelWalk p(size, tid, kFrameThreads); p.r < size; p.next()) {
    Rgb v = jitter_slots(f, sample_at(f, row_taps[p.r], column_taps[p.c]), 0, pre_contrast);
    if (f.jitter) {
      grey_sum += quantised_grey(v);
    } else if (f.grayscale) {
      v = to_grey(v);
    }
    if (done_in_pass_1) {
      store_pixel(a, f, m, t, p.r, p.c, v);
    } else {
      put(pixels + p.r * stride + pad + p.c, plane, v);
    }
  }
  if (done_in_pass_1) return;
  if (f.jitter) {
    f.mean = contrast_mean(block_sum(grey_sum, warp_sums), size);  // its barrier also publishes `pixels`
  } else {
    __syncthreads();
  }

  // Pass 2 without blur: the ops from contrast on, grey conversion, store.
  if (!f.blur) {
    for (PixelWalk p(size, tid, kFrameThreads); p.r < size; p.next()) {
      Rgb v = jitter_slots(f, get(pixels + p.r * stride + pad + p.c, plane), pre_contrast, 4);
      if (f.grayscale) v = to_grey(v);
      store_pixel(a, f, m, t, p.r, p.c, v);
    }
    return;
  }

  // Pass 2 with blur: one warp per row: the ops from contrast on (when there is jitter), when padded the row's
  // reflection into its side columns (index -1 - j holds pixel 1 + j, index S + j pixel S - 2 - j), then the
  // horizontal pass in place: every lane holds its outputs until the whole row has been read.
  const int lane = tid & 31;
  for (int row = tid >> 5; row < size; row += kFrameWarps) {
    float* line = pixels + row * stride + pad;  // pixel 0 of the row
    if (f.jitter) {
      for (int c = lane; c < size; c += 32) {
        Rgb v = jitter_slots(f, get(line + c, plane), pre_contrast, 4);
        if (f.grayscale) v = to_grey(v);
        put(line + c, plane, v);
      }
      __syncwarp();
    }
    if constexpr (kPadded) {
      for (int j = lane; j < blur_radius; j += 32) {
        put(line - 1 - j, plane, get(line + 1 + j, plane));
        put(line + size + j, plane, get(line + size - 2 - j, plane));
      }
      __syncwarp();
    }
    Rgb blurred[kRowChunks];
#pragma unroll
    for (int k = 0; k < kRowChunks; ++k) {
      const int c = lane + 32 * k;
      if (c < size) {
        if constexpr (kPadded) {
          blurred[k] = tap_sum(line + c - blur_radius, 1, plane, blur_taps, 2 * blur_radius + 1);
        } else {
          blurred[k] = blur_at(line, 1, plane, c, size, blur_taps, blur_radius);
        }
      }
    }
    __syncwarp();
#pragma unroll
    for (int k = 0; k < kRowChunks; ++k) {
      const int c = lane + 32 * k;
      if (c < size) put(line + c, plane, blurred[k]);
    }
  }
  __syncthreads();

  // Pass 3: the vertical pass, clamp and store.
  for (PixelWalk p(size, tid, kFrameThreads); p.r < size; p.next()) {
    const Rgb v = blur_at(pixels + pad + p.c, stride, plane, p.r, size, blur_taps, blur_radius);
    store_pixel(a, f, m, t, p.r, p.c, v);
  }
}

// Kernel 3. Grid x: output frames (strided), kFrameThreads threads, frame_shared_bytes of dynamic shared memory.
template <bool kPadded>
__global__ void __launch_bounds__(kFrameThreads, 1) synth_frame_kernel(SynthArgs a, int radius) {
  UPTAL_EXTERN_SHARED(unsigned char, frame_smem);
  const int64_t jobs = a.num_outputs * a.frames_per_video;
  for (int64_t job = blockIdx.x; job < jobs; job += gridDim.x) {
    synthesize_frame<kPadded>(a, job / a.frames_per_video, job % a.frames_per_video, radius, frame_smem);
    __syncthreads();  // the shared memory is reused by the block's next frame
  }
}

cudaError_t max_shared_bytes_per_block(int* bytes) {
  int device = 0;
  const cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  return cudaDeviceGetAttribute(bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
}

// contrast_sums_kernel, then synth_kernel over 32 x 32 tiles: for frames that do not fit the frame kernel.
cudaError_t launch_tile_kernels(const SynthArgs& a, int64_t* workspace, int radius, int optin_bytes,
                                cudaStream_t stream) {
  const int64_t jobs = a.num_outputs * a.frames_per_video;
  const unsigned grid_y = (unsigned)(jobs < kMaxGridY ? jobs : kMaxGridY);
  cudaError_t err = cudaMemsetAsync(workspace, 0, (size_t)jobs * sizeof(int64_t), stream);
  if (err != cudaSuccess) return err;

  const int64_t pixels = a.size * a.size;
  const int64_t sum_blocks = (pixels + kSumPixels - 1) / kSumPixels;
  const int64_t tiles_x = (a.size + kTile - 1) / kTile;
  const int64_t tiles = tiles_x * tiles_x;
  if (sum_blocks > INT_MAX || tiles > INT_MAX) return cudaErrorInvalidConfiguration;

  UPTAL_LAUNCH(contrast_sums_kernel, dim3((unsigned)sum_blocks, grid_y), dim3(kThreads), 0, stream)(
      a, reinterpret_cast<unsigned long long*>(workspace));
  err = cudaGetLastError();
  if (err != cudaSuccess) return err;

  bool shared_blur = true;  // false: huge radius, blur without a shared halo (slow, same results)
  size_t shared_bytes = (size_t)blur_shared_floats(radius) * sizeof(float);
  if (shared_bytes > kDefaultSharedBytes) {
    if (shared_bytes <= (size_t)optin_bytes) {
      // the device maximum, not shared_bytes: concurrent callers with other radii never lower it under us
      err = cudaFuncSetAttribute(synth_kernel<true>, cudaFuncAttributeMaxDynamicSharedMemorySize, optin_bytes);
      if (err != cudaSuccess) return err;
    } else {
      shared_blur = false;
      shared_bytes = 0;
    }
  }
  const dim3 grid((unsigned)tiles, grid_y), block(kThreads);
  if (shared_blur) {
    UPTAL_LAUNCH(synth_kernel<true>, grid, block, shared_bytes, stream)(a, workspace, radius, (int)tiles_x);
  } else {
    UPTAL_LAUNCH(synth_kernel<false>, grid, block, 0, stream)(a, workspace, radius, (int)tiles_x);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t synthesize_cuda(const SynthArgs& a, int64_t* workspace, cudaStream_t stream) {
  const int64_t jobs = a.num_outputs * a.frames_per_video;
  if (jobs <= 0 || a.size <= 0) return cudaSuccess;
  int radius = blur_radius_from_columns((int)a.num_params);
  if (radius < 0) radius = 0;  // no blur columns
  int optin_bytes = 0;
  cudaError_t err = max_shared_bytes_per_block(&optin_bytes);
  if (err != cudaSuccess) return err;

  const bool padded = frame_shared_bytes(a.size, radius, true) <= optin_bytes;
  const int64_t frame_bytes = frame_shared_bytes(a.size, radius, padded);
  if (a.size > kMaxFrameSize || frame_bytes > optin_bytes) {
    return launch_tile_kernels(a, workspace, radius, optin_bytes, stream);
  }
  const unsigned grid = (unsigned)(jobs < kMaxFrameBlocks ? jobs : kMaxFrameBlocks);
  // the device maximum, not frame_bytes: concurrent callers with other sizes never lower it under us
  if (padded) {
    err = cudaFuncSetAttribute(synth_frame_kernel<true>, cudaFuncAttributeMaxDynamicSharedMemorySize, optin_bytes);
    if (err != cudaSuccess) return err;
    UPTAL_LAUNCH(synth_frame_kernel<true>, grid, kFrameThreads, (size_t)frame_bytes, stream)(a, radius);
  } else {
    err = cudaFuncSetAttribute(synth_frame_kernel<false>, cudaFuncAttributeMaxDynamicSharedMemorySize, optin_bytes);
    if (err != cudaSuccess) return err;
    UPTAL_LAUNCH(synth_frame_kernel<false>, grid, kFrameThreads, (size_t)frame_bytes, stream)(a, radius);
  }
  return cudaGetLastError();
}

}  // namespace uptal
