// uptal._C_cuda_emulated: the CUDA kernels of synth_cuda.cu compiled for the CPU against cuda_emulation.h, for
// the tests (CMake option UPTAL_CUDA_EMULATION). Slow (every block's threads are fibers on one thread): for
// small batches only. Same pointer arguments as uptal._C.synthesize, all host memory.
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "synth_cuda.cu"   // the kernels, in this one translation unit (cuda_emulation.h defines a symbol)

namespace py = pybind11;

namespace {

// optin_shared_bytes: the shared memory per block the emulated device reports
// (cudaDevAttrMaxSharedMemoryPerBlockOptin), which picks the kernels as on a GPU with that much: 232448 as an
// H100, 166912 as an A100 (at S = 112 the frame kernel without padded rows), less than a frame needs: the tile
// kernels.
void synthesize(uintptr_t videos, int64_t num_videos, int64_t max_frames, int64_t height, int64_t width,
                uintptr_t sources, uintptr_t frames, uintptr_t params, int64_t num_outputs, int64_t frames_per_video,
                int64_t num_params, uintptr_t norm, int64_t size, uintptr_t out, int out_dtype,
                int optin_shared_bytes) {
  const uptal::SynthArgs a = uptal::synth_args_from_addresses(videos, num_videos, max_frames, height, width, sources,
                                                              frames, params, num_outputs, frames_per_video,
                                                              num_params, norm, size, out, out_dtype);
  namespace emulation = uptal::emulation;
  emulation::optin_shared_bytes = optin_shared_bytes;
  emulation::max_dynamic_shared.clear();   // as a fresh process: no kernel has raised its limit yet
  cudaGetLastError();   // no error or message left from an earlier call
  emulation::last_error_message.clear();
  std::vector<int64_t> workspace(num_outputs * frames_per_video, -1);
  const cudaError_t err = uptal::synthesize_cuda(a, workspace.data(), nullptr);
  if (err != cudaSuccess) {
    throw std::runtime_error("uptal._C_cuda_emulated.synthesize: error " + std::to_string((int)err) + ": " +
                             cudaGetErrorString(err));
  }
}

}  // namespace

PYBIND11_MODULE(_C_cuda_emulated, m) {
  m.doc() = "uptal's CUDA kernels run on the CPU by an emulation of the CUDA runtime (tests only)";
  m.def("synthesize", &synthesize, "the CUDA synthesis kernels on host buffers");
}
