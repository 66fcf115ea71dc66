// uptal._C_cuda: the CUDA kernels. No libtorch: tensors arrive as device pointers with their sizes, already
// validated by uptal/ops, plus the caller's CUDA stream as an integer (0: the default stream).
#include <pybind11/pybind11.h>

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "synth.h"
#include "synth_cuda.h"
#include "synth_params.h"

#ifndef UPTAL_CUDA_ARCHS
#define UPTAL_CUDA_ARCHS "unknown"
#endif

namespace py = pybind11;

namespace {

template <class T>
T* as_ptr(uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

void synthesize(uintptr_t videos, int64_t num_videos, int64_t max_frames, int64_t height, int64_t width,
                uintptr_t sources, uintptr_t frames, uintptr_t params, int64_t num_outputs, int64_t frames_per_video,
                int64_t num_params, uintptr_t norm, int64_t size, uintptr_t out, int out_dtype, uintptr_t workspace,
                uintptr_t stream) {
  const uptal::SynthArgs a = uptal::synth_args_from_addresses(videos, num_videos, max_frames, height, width, sources,
                                                              frames, params, num_outputs, frames_per_video,
                                                              num_params, norm, size, out, out_dtype);
  cudaError_t err;
  {
    py::gil_scoped_release release;  // only enqueues work, but never hold the GIL across CUDA calls
    err = uptal::synthesize_cuda(a, as_ptr<int64_t>(workspace), reinterpret_cast<cudaStream_t>(stream));
  }
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("uptal._C_cuda.synthesize: ") + cudaGetErrorString(err));
  }
}

py::dict param_columns() {
  py::dict d;
  d["beta"] = (int)uptal::kBeta;
  d["crop_y0"] = (int)uptal::kCropY0;
  d["crop_x0"] = (int)uptal::kCropX0;
  d["scale_y"] = (int)uptal::kScaleY;
  d["scale_x"] = (int)uptal::kScaleX;
  d["flip"] = (int)uptal::kFlip;
  d["jitter_on"] = (int)uptal::kJitterOn;
  d["brightness"] = (int)uptal::kBrightness;
  d["contrast"] = (int)uptal::kContrast;
  d["saturation"] = (int)uptal::kSaturation;
  d["hue"] = (int)uptal::kHue;
  d["order0"] = (int)uptal::kOrder0;
  d["grayscale"] = (int)uptal::kGrayscale;
  d["blur_on"] = (int)uptal::kBlurOn;
  d["blur0"] = (int)uptal::kBlur0;
  return d;
}

// Versions and device count; never raises (a machine without a driver reports device_count 0 and why).
py::dict runtime_info() {
  int runtime_version = 0, driver_version = 0, device_count = 0;
  std::string error;
  cudaError_t err = cudaRuntimeGetVersion(&runtime_version);
  if (err != cudaSuccess) {
    runtime_version = 0;
    error = cudaGetErrorString(err);
  }
  err = cudaDriverGetVersion(&driver_version);  // 0 without a driver
  if (err != cudaSuccess) {
    driver_version = 0;
    if (error.empty()) error = cudaGetErrorString(err);
  }
  err = cudaGetDeviceCount(&device_count);
  if (err != cudaSuccess) {
    device_count = 0;
    if (error.empty()) error = cudaGetErrorString(err);
  }
  cudaGetLastError();  // clear this thread's error state so a later launch check does not report it
  py::dict d;
  d["runtime_version"] = runtime_version;
  d["driver_version"] = driver_version;
  d["device_count"] = device_count;
  d["error"] = error;
  return d;
}

}  // namespace

PYBIND11_MODULE(_C_cuda, m) {
  m.doc() = "uptal CUDA kernels; see uptal/ops for the checked Python entry points";
  m.def("synthesize", &synthesize,
        "PAL synthesis into a caller-provided device output buffer (raw pointers), enqueued on `stream`");
  m.def("param_columns", &param_columns, "column of each packed plan parameter");
  m.def("runtime_info", &runtime_info, "CUDA runtime and driver versions, device count and any error");
  m.attr("compiled_archs") = UPTAL_CUDA_ARCHS;
}
