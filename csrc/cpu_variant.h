// Functions compiled once per instruction set (CMakeLists.txt: uptal_cpu_variant) carry the variant's name:
// UPTAL_VARIANT_NAME(synthesize_cpu_) is synthesize_cpu_avx2 in the AVX2 build.
#pragma once

#ifndef UPTAL_CPU_VARIANT
#error "compile with -DUPTAL_CPU_VARIANT=<name> (see CMakeLists.txt)"
#endif
#define UPTAL_CONCAT_(a, b) a##b
#define UPTAL_CONCAT(a, b) UPTAL_CONCAT_(a, b)
#define UPTAL_VARIANT_NAME(prefix) UPTAL_CONCAT(prefix, UPTAL_CPU_VARIANT)
