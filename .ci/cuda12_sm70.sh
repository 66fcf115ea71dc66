#!/usr/bin/env bash
# Compile check: the CUDA module for V100 nodes (sm_70) against a CUDA 12.x toolkit.
#
# CUDA 13, the nvcc on the CI machine, dropped sm_70, so V100 users build uptal with a CUDA 12.x toolkit
# (cmake/cuda_architectures.cmake then adds 70-real). No nvcc 12 can be installed here: NVIDIA's PyPI wheel
# nvidia-cuda-nvcc-cu12 ships ptxas and libdevice but not the nvcc driver. So this check uses clang as the
# CUDA front end (Debian's clang-16) with the CUDA 12.6 headers and ptxas from NVIDIA's PyPI wheels:
#   device code  csrc/synth_cuda.cu -> PTX -> ptxas 12.6 for sm_70: every instruction must exist on Volta,
#                and ptxas prints registers and spills per kernel;
#   host code    csrc/synth_cuda.cu (clang, host side) and csrc/module_cuda.cpp (g++, with pybind11) against
#                the CUDA 12.6 headers: no CUDA-13-only runtime API.
# It links nothing (the wheels have no fatbinary tool nor static cudart) and runs nothing: that needs a V100.
# The flags follow CMakeLists.txt: C++17, -O3, no FMA contraction (nvcc --fmad=false is clang's
# -ffp-contract=off; clang's CUDA default would contract, breaking bit-exactness).
#
#   bash .ci/cuda12_sm70.sh            # wheels are kept in .ci/.cuda12/ (git-ignored) for the next run
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=.ci/.cuda12
TOOLKIT=$CACHE/toolkit
WHEELS=(nvidia-cuda-runtime-cu12==12.6.77 nvidia-cuda-nvcc-cu12==12.6.85 nvidia-cuda-cccl-cu12==12.6.77
        nvidia-curand-cu12==10.3.7.77)   # curand: clang's CUDA wrapper header includes its device headers

if ! command -v clang++-16 >/dev/null 2>&1; then
  echo "cuda12_sm70: installing clang-16 (Debian)"
  { apt-get install -y -qq clang-16 || { apt-get update -qq && apt-get install -y -qq clang-16; }; } >/dev/null
fi

if [ ! -x "$TOOLKIT/bin/ptxas" ]; then
  echo "cuda12_sm70: fetching the CUDA 12.6 headers and ptxas (NVIDIA's PyPI wheels)"
  rm -rf "$CACHE" && mkdir -p "$CACHE/wheels" "$TOOLKIT/bin" "$TOOLKIT/include" "$TOOLKIT/nvvm"
  python3 -m pip download -q --no-deps -d "$CACHE/wheels" "${WHEELS[@]}"
  for wheel in "$CACHE"/wheels/*.whl; do python3 -m zipfile -e "$wheel" "$CACHE/unpacked"; done
  # The toolkit layout clang expects (--cuda-path): bin/ptxas, include/, nvvm/libdevice/.
  nvidia=$CACHE/unpacked/nvidia
  cp -r "$nvidia"/cuda_nvcc/bin/. "$TOOLKIT/bin/"
  cp -r "$nvidia"/cuda_nvcc/nvvm/. "$TOOLKIT/nvvm/"
  for part in cuda_nvcc cuda_runtime cuda_cccl curand; do cp -r "$nvidia/$part/include/." "$TOOLKIT/include/"; done
  chmod +x "$TOOLKIT"/bin/*
fi
grep -m1 "define CUDA_VERSION" "$TOOLKIT/include/cuda.h"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cuda_flags=(-x cuda -std=c++17 -O3 -ffp-contract=off -fPIC -Wall -Wno-unknown-cuda-version
            --cuda-path="$TOOLKIT" --cuda-gpu-arch=sm_70 -Icsrc)

echo "cuda12_sm70: device code for sm_70 (clang-16 -> PTX -> ptxas 12.6)"
clang++-16 "${cuda_flags[@]}" --cuda-device-only -Xcuda-ptxas -v -c csrc/synth_cuda.cu -o "$out/synth_sm70.cubin" \
  2>&1 | grep -E "error|warning|entry function|registers|spill" | sed 's/_ZN5uptal12_GLOBAL__N_1//'
test -s "$out/synth_sm70.cubin"

echo "cuda12_sm70: host code against the CUDA 12.6 headers"
python3 -c "import pybind11" 2>/dev/null || python3 -m pip install -q pybind11
clang++-16 "${cuda_flags[@]}" --cuda-host-only -Werror -c csrc/synth_cuda.cu -o "$out/synth_host.o"
g++ -std=c++17 -O2 -fPIC -Wall -Werror -Icsrc -I"$TOOLKIT/include" $(python3 -m pybind11 --includes) \
  -DUPTAL_CUDA_ARCHS='"70-real"' -c csrc/module_cuda.cpp -o "$out/module_cuda.o"
echo "cuda12_sm70: ok"
