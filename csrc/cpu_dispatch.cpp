// Run-time choice between the builds of synth_cpu.cpp and frame_cpu.cpp: one wheel runs everywhere and still
// uses the widest vector registers the processor has (AVX-512: 16 float lanes, AVX2: 8, the baseline's SSE2:
// 4). Every build computes bit-identical results: the arithmetic is IEEE float32 without FMA contraction.
// UPTAL_CPU_VARIANT=baseline|avx2|avx512 in the environment picks a narrower build (when the processor runs
// it), so that tests (and anyone who suspects a build) can compare them on one machine; it is read at every
// call.
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "frame.h"
#include "synth.h"

namespace uptal {

namespace {

enum Variant { kBaseline, kAvx2, kAvx512, kNumVariants };
constexpr const char* kVariantNames[kNumVariants] = {"baseline", "avx2", "avx512"};

bool processor_runs(Variant variant) {
#if defined(UPTAL_HAVE_X86_VARIANTS)
  switch (variant) {
    case kAvx2:
      return __builtin_cpu_supports("avx2");
    case kAvx512:   // the build's flags: -mavx512f -mavx512bw -mavx512vl -mavx512dq (CMakeLists.txt)
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    default:
      return variant == kBaseline;
  }
#else
  return variant == kBaseline;
#endif
}

Variant chosen_variant() {
  const char* forced = std::getenv("UPTAL_CPU_VARIANT");
  if (forced != nullptr && *forced != '\0') {
    for (int v = 0; v < kNumVariants; ++v)
      if (std::strcmp(forced, kVariantNames[v]) == 0 && processor_runs(Variant(v))) return Variant(v);
  }
  Variant widest = kBaseline;
  for (int v = 0; v < kNumVariants; ++v)
    if (processor_runs(Variant(v))) widest = Variant(v);
  return widest;
}

}  // namespace

const char* synthesize_cpu_variant() { return kVariantNames[chosen_variant()]; }

std::vector<std::string> runnable_cpu_variants() {
  std::vector<std::string> names;
  for (int v = 0; v < kNumVariants; ++v)
    if (processor_runs(Variant(v))) names.push_back(kVariantNames[v]);
  return names;
}

void synthesize_cpu(const SynthArgs& args, int num_threads) {
  switch (chosen_variant()) {
#if defined(UPTAL_HAVE_X86_VARIANTS)
    case kAvx512:
      return synthesize_cpu_avx512(args, num_threads);
    case kAvx2:
      return synthesize_cpu_avx2(args, num_threads);
#endif
    default:
      return synthesize_cpu_baseline(args, num_threads);
  }
}

void planes_to_rgb(PlaneView r, PlaneView g, PlaneView b, int64_t height, int64_t width, uint8_t* out,
                   int64_t out_row_stride) {
  switch (chosen_variant()) {
#if defined(UPTAL_HAVE_X86_VARIANTS)
    case kAvx512:
      return planes_to_rgb_avx512(r, g, b, height, width, out, out_row_stride);
    case kAvx2:
      return planes_to_rgb_avx2(r, g, b, height, width, out, out_row_stride);
#endif
    default:
      return planes_to_rgb_baseline(r, g, b, height, width, out, out_row_stride);
  }
}

}  // namespace uptal
