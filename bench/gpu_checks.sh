#!/usr/bin/env bash
# Every check that needs a CUDA GPU, in one run, most important first, each step under its own time limit so
# that one slow step cannot starve the rest. Meant for a lent GPU node with torch/triton/pytest already there:
#
#   WHEELS=.whl OUT=/tmp/gpu bash bench/gpu_checks.sh [extra videos folder]
#
# BUDGET_S: seconds the whole script may take (default 540): later steps get what is left, and are skipped
# when nothing is. STEPS: the steps to run (default all: build info ab_synthesis pytest_cuda
# bench_synthesis_baseline bench_synthesis ncu_synthesis bench_infonce pytest_all bench_train
# bench_train_compiled bench_train_transcoded bench_data bench_extract extract pretrain_demo), in this file's
# order. PYTEST_CUDA, PYTEST_ALL: the tests that pytest_cuda (default: below) and pytest_all (default: tests) run.
# SYNTHESIS_ARGS, TRAIN_ARGS, DATA_ARGS: extra arguments of those benchmarks. WHEELS: optional folder of wheels
# to install first (PyAV where the node lacks it). BASELINE_SRC: optional source tree of the version to compare
# against (`git archive` of a commit, carried to the node): the build step builds it too, in parallel; the
# ab_synthesis step times both builds' _C_cuda in one process, calls alternating (bench/ab_synthesis.py), and
# bench_synthesis_baseline runs the baseline's bench_synthesis.py (not saved) just before bench_synthesis.
# OUT: where logs and the benchmark JSON go: one archive, $OUT/gpu_checks.tar.gz, refreshed after every step (so
# a run cut short still returns what it did), holding <step>.log for each step and results/<gpu>/*.json (also
# written to bench/results/<gpu>/). The last lines printed are a summary of every step's exit status and time.
set -u -o pipefail
OUT=${OUT:-/tmp/uptal-gpu}
LOGS=$(mktemp -d)
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-16}
VIDEOS=${1:-}
BUDGET_S=${BUDGET_S:-540}
export PIP_NO_INDEX=1   # nodes without internet: a test that would download something fails at once, not after retries
summary=()

step() {   # step NAME SECONDS COMMAND...: run with a time limit, log, remember the exit status, pack
  local name=$1 seconds=$2; shift 2
  case " ${STEPS:-$name} " in *" $name "*) ;; *) return ;; esac
  local start=$SECONDS left=$((BUDGET_S - SECONDS - 20))   # 20 s to pack the archive before the budget ends
  if [ "$left" -lt 15 ]; then summary+=("$name: skipped (time budget spent)"); return; fi
  [ "$seconds" -gt "$left" ] && seconds=$left
  echo "=== $name (limit ${seconds}s): $*"
  timeout "$seconds" "$@" 2>&1 | tee "$LOGS/$name.log" | tail -n 15
  local rc=$?
  summary+=("$name: rc $rc in $((SECONDS - start)) s")
  printf '%s\n' "${summary[@]}" >"$LOGS/summary.txt"
  cp -r bench/results "$LOGS/" 2>/dev/null
  tar -czf "$OUT/gpu_checks.tar.gz" -C "$LOGS" .
}

if [ -n "${WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$LOGS/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$LOGS/gpu.txt"

# Build for this GPU only (the default list covers every architecture and takes minutes); any baseline beside it.
export CUDAARCHS=${CUDAARCHS:-native} BASELINE_SRC=${BASELINE_SRC:-}
install_build() {   # install_build SOURCE TARGET
  python3 -m pip install -q --no-index --no-deps --no-build-isolation --target "$2" \
    -Ccmake.define.UPTAL_CUDA=ON "$1"
}
export -f install_build
step build 240 bash -c 'if [ -n "$BASELINE_SRC" ]; then install_build "$BASELINE_SRC" /tmp/uptal-baseline & fi
  install_build . /tmp/uptal; rc=$?; wait $! 2>/dev/null || rc=1; exit $rc'
export SITE_PATH=${PYTHONPATH:-} PYTHONPATH=/tmp/uptal:${PYTHONPATH:-}
step info 60 python3 -m uptal.info
if [ -n "$BASELINE_SRC" ]; then
  step ab_synthesis 120 python3 bench/ab_synthesis.py /tmp/uptal-baseline/uptal/_C_cuda.*.so \
    /tmp/uptal/uptal/_C_cuda.*.so --device cuda --rounds 21
fi
# CUDA against the references: synthesis on every config and dtype, the Triton kernels at the paper's sizes,
# MoCo and extraction on the device; a training step with no host sync in it, a step's scalars read early.
PYTEST_CUDA=${PYTEST_CUDA:-tests/ops tests/models/test_moco.py tests/features/test_extract.py \
  tests/train/test_gpu_step.py tests/train/test_host_values.py tests/train/test_gpu_idle.py}
step pytest_cuda 240 python3 -m pytest -q -p no:cacheprovider -n 4 $PYTEST_CUDA -k "cuda or gpu" -rs
if [ -n "$BASELINE_SRC" ]; then
  step bench_synthesis_baseline 120 bash -c 'cd "$BASELINE_SRC" && PYTHONPATH=/tmp/uptal-baseline:$SITE_PATH \
    python3 bench/bench_synthesis.py --gpu-only --no-compile --no-save --repeats 20'
fi
step bench_synthesis 180 python3 bench/bench_synthesis.py --gpu-only --repeats 20 ${SYNTHESIS_ARGS:-}
# Hardware counters of the synthesis kernels (past the first call's warm-up: the frame kernel of calls 3 and 4,
# or the two tile kernels of call 2), when Nsight Compute is there; --clock-control none: virtualised nodes do
# not let it lock the clocks.
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || true)
if [ -n "$NCU" ]; then
  step ncu_synthesis 150 "$NCU" --clock-control none \
    --kernel-name regex:"synth_frame_kernel|synth_kernel|contrast_sums_kernel" --launch-skip 2 --launch-count 2 \
    --section SpeedOfLight --section Occupancy --section LaunchStats \
    --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section WarpStateStats \
    --section SchedulerStats python3 bench/bench_synthesis.py --profile-calls 4
fi
step bench_infonce 240 python3 bench/bench_infonce.py
step pytest_all 300 python3 -m pytest -q -p no:cacheprovider -n 8 --maxfail 20 ${PYTEST_ALL:-tests}
# 40 steps from an empty prefetch queue, workers at normal and low priority; the loader alone with 8 and 14
# workers (16-core nodes). TRAIN: the step as every committed GPU run measured it (channels_last_3d); the
# overrides go before the options, whose lists would take them for values.
TRAIN="train.channels_last=true ${TRAIN_ARGS:-}"
step bench_train 240 python3 bench/bench_train.py $TRAIN --workers 12 --steps 40 --worker-priority normal low \
  --loader-workers 8 14
# the same with the backbones compiled (train.compile=true), low worker priority only
step bench_train_compiled 300 python3 bench/bench_train.py $TRAIN train.compile=true --workers 12 --steps 40 \
  --worker-priority low
# the same on the demo videos' `uptal data transcode` copies: the data path users get with the README's recipe
step bench_train_transcoded 240 python3 bench/bench_train.py $TRAIN --transcoded --workers 12 --steps 40 \
  --worker-priority normal low --loader-workers 8 14
step bench_data 240 python3 bench/bench_data.py --workers 12 --batches 24 ${DATA_ARGS:-}   # on this host's cores
# extraction with I3D on the GPU: decoding in the main thread against 4 and 8 decoding threads
step bench_extract 180 python3 bench/bench_extract.py --backbone i3d --device cuda --workers 0 4 8 --repeats 2
if [ -n "$VIDEOS" ]; then
  step extract 120 python3 -m uptal.cli extract "$VIDEOS" --backbone i3d --device cuda --out /tmp/features
fi
step pretrain_demo 150 torchrun --nproc-per-node 1 -m uptal.cli pretrain --config demo train.out=/tmp/demo-run \
  train.epochs=3
echo "=== summary"
printf '%s\n' "${summary[@]}" | tee "$LOGS/summary.txt"
tar -czf "$OUT/gpu_checks.tar.gz" -C "$LOGS" .
