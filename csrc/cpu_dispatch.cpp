// Run-time choice between the builds of synth_cpu.cpp and frame_cpu.cpp: one wheel runs everywhere and still
// uses AVX2 where the processor has it (8 float lanes instead of SSE2's 4, and byte shuffles). Both builds
// compute bit-identical results: the arithmetic is IEEE float32 without FMA contraction in both.
// UPTAL_CPU_VARIANT=baseline in the environment forces the baseline build, so that tests (and anyone who
// suspects the AVX2 one) can compare the two on an AVX2 machine; it is read at every call.
#include <cstdlib>
#include <cstring>

#include "frame.h"
#include "synth.h"

namespace uptal {

namespace {
bool use_avx2() {
#if defined(UPTAL_HAVE_AVX2_VARIANT) && (defined(__x86_64__) || defined(__i386__))
  const char* forced = std::getenv("UPTAL_CPU_VARIANT");
  if (forced != nullptr && std::strcmp(forced, "baseline") == 0) return false;
  return __builtin_cpu_supports("avx2");
#else
  return false;
#endif
}
}  // namespace

const char* synthesize_cpu_variant() { return use_avx2() ? "avx2" : "baseline"; }

void synthesize_cpu(const SynthArgs& args, int num_threads) {
#if defined(UPTAL_HAVE_AVX2_VARIANT)
  if (use_avx2()) return synthesize_cpu_avx2(args, num_threads);
#endif
  synthesize_cpu_baseline(args, num_threads);
}

void planes_to_rgb(PlaneView r, PlaneView g, PlaneView b, int64_t height, int64_t width, uint8_t* out,
                   int64_t out_row_stride) {
#if defined(UPTAL_HAVE_AVX2_VARIANT)
  if (use_avx2()) return planes_to_rgb_avx2(r, g, b, height, width, out, out_row_stride);
#endif
  planes_to_rgb_baseline(r, g, b, height, width, out, out_row_stride);
}

}  // namespace uptal
