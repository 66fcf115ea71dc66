// uptal._C: the CPU kernels. No libtorch: tensors arrive as data pointers with their sizes, already
// validated by uptal/ops (dtype, shape, contiguity, device, index ranges).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "frame.h"
#include "synth.h"
#include "synth_params.h"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace py = pybind11;

namespace {

template <class T>
T* as_ptr(uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

void synthesize(uintptr_t videos, int64_t num_videos, int64_t max_frames, int64_t height, int64_t width,
                uintptr_t sources, uintptr_t frames, uintptr_t params, int64_t num_outputs, int64_t frames_per_video,
                int64_t num_params, uintptr_t norm, int64_t size, uintptr_t out, int out_dtype, int num_threads) {
  const uptal::SynthArgs a = uptal::synth_args_from_addresses(videos, num_videos, max_frames, height, width, sources,
                                                              frames, params, num_outputs, frames_per_video,
                                                              num_params, norm, size, out, out_dtype);
  py::gil_scoped_release release;  // DataLoader threads and the training loop keep running
  uptal::synthesize_cpu(a, num_threads);
}

void planes_to_rgb(uintptr_t r, int64_t r_line_size, uintptr_t g, int64_t g_line_size, uintptr_t b,
                   int64_t b_line_size, int64_t height, int64_t width, uintptr_t out, int64_t out_row_stride) {
  py::gil_scoped_release release;  // extraction decodes in threads
  uptal::planes_to_rgb({as_ptr<const uint8_t>(r), r_line_size}, {as_ptr<const uint8_t>(g), g_line_size},
                       {as_ptr<const uint8_t>(b), b_line_size}, height, width, as_ptr<uint8_t>(out), out_row_stride);
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

int max_threads() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "uptal CPU kernels (C++17, OpenMP); see uptal/ops for the checked Python entry points";
  m.def("synthesize", &synthesize, "PAL synthesis into a caller-provided output buffer (raw pointers)");
  m.def("planes_to_rgb", &planes_to_rgb, "packed RGB rows from R, G, B planes (raw pointers, line sizes)");
  m.def("param_columns", &param_columns, "column of each packed plan parameter");
  m.def("max_threads", &max_threads, "OpenMP's default thread count (1 without OpenMP)");
  m.def("cpu_variant", &uptal::synthesize_cpu_variant, "instruction-set build of the kernels in use");
  m.def("cpu_variants", &uptal::runnable_cpu_variants, "the builds this processor runs (UPTAL_CPU_VARIANT)");
#if defined(_OPENMP)
  m.attr("openmp") = true;
#else
  m.attr("openmp") = false;
#endif
}
