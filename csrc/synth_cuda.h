// The PAL synthesis op on CUDA: same arguments and bit-identical results as synthesize_cpu (synth.h).
#pragma once

#if defined(UPTAL_CUDA_EMULATION)
#include "cuda_emulation.h"   // the kernels on a CPU, for the tests
#else
#include <cuda_runtime.h>
#endif

#include <cstdint>

#include "synth.h"

namespace uptal {

// Enqueues the whole op on `stream` (no synchronisation, no allocation) and returns the first launch error.
// Every pointer in `args` is device memory. `workspace` is a device buffer of num_outputs * frames_per_video
// int64 (the exact contrast sums of the tile kernels; unused when frames fit one block), overwritten here; it
// must stay alive until the stream has run the op.
cudaError_t synthesize_cuda(const SynthArgs& args, int64_t* workspace, cudaStream_t stream);

}  // namespace uptal
