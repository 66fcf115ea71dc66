// The PAL synthesis op: raw-pointer interface shared by the CPU and CUDA implementations.
// Python (uptal/ops/synthesize.py) validates every argument before calling in; nothing here checks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace uptal {

struct SynthArgs {
  const uint8_t* videos;  // [N, T, H, W, 3] uint8, contiguous
  int64_t num_videos, max_frames, height, width;
  const int32_t* sources;  // [M, 2] background video, action video
  const int32_t* frames;   // [M, 2, JF] background frame, action frame (-1: nothing pasted)
  const float* params;     // [M, P] see synth_params.h
  int64_t num_outputs, frames_per_video, num_params;
  const float* norm;  // [2, 3] per-channel scale and shift of the float output
  int64_t size;       // S
  void* out;          // [M, 3, JF, S, S] of out_dtype, contiguous
  int out_dtype;      // OutDtype
};

// SynthArgs from the integer addresses and sizes that the Python bindings receive, in the order of
// uptal/ops/synthesize.py's _pointer_args (shared by uptal._C, _C_cuda and _C_cuda_emulated).
inline SynthArgs synth_args_from_addresses(uintptr_t videos, int64_t num_videos, int64_t max_frames, int64_t height,
                                           int64_t width, uintptr_t sources, uintptr_t frames, uintptr_t params,
                                           int64_t num_outputs, int64_t frames_per_video, int64_t num_params,
                                           uintptr_t norm, int64_t size, uintptr_t out, int out_dtype) {
  return SynthArgs{reinterpret_cast<const uint8_t*>(videos), num_videos, max_frames, height, width,
                   reinterpret_cast<const int32_t*>(sources), reinterpret_cast<const int32_t*>(frames),
                   reinterpret_cast<const float*>(params), num_outputs, frames_per_video, num_params,
                   reinterpret_cast<const float*>(norm), size, reinterpret_cast<void*>(out), out_dtype};
}

// CPU: OpenMP over output frames; num_threads <= 0 means the OpenMP default. Dispatches at run time to the
// widest build of synth_cpu.cpp the processor runs: AVX-512, AVX2, or the baseline x86-64 (or native) one.
void synthesize_cpu(const SynthArgs& args, int num_threads);
const char* synthesize_cpu_variant();   // the build in use: "baseline", "avx2" or "avx512"
std::vector<std::string> runnable_cpu_variants();   // the builds this processor runs, narrowest first

// The builds of synth_cpu.cpp (one per instruction set; see CMakeLists.txt).
void synthesize_cpu_baseline(const SynthArgs& args, int num_threads);
void synthesize_cpu_avx2(const SynthArgs& args, int num_threads);
void synthesize_cpu_avx512(const SynthArgs& args, int num_threads);

}  // namespace uptal
