#!/usr/bin/env bash
# Everything the project measures on a lent GPU machine, in one run, tables into $OUT (issue #11).
# Not for CI. From a checkout that carries ../shared/gpu-kit as .gpu-kit (git-ignored):
#   cp -r ../shared/gpu-kit .gpu-kit && echo /.gpu-kit/ >> .git/info/exclude
#   (device) bash tools/analysis_tools/gpu_check.sh                 # all steps, at most ~9.5 min
#   (device) STEPS="op_bench pair" bash tools/analysis_tools/gpu_check.sh   # a rerun of some steps
# Each step writes $OUT/STEP.log under its own time limit; a failing step does not stop the others.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-work_dirs/gpu_check}
mkdir -p "$OUT"
. .gpu-kit/env.sh > "$OUT/gpukit.log" 2>&1 || { cat "$OUT/gpukit.log"; exit 1; }
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
STEPS=${STEPS:-tests static model op_bench op_tiles heads pair}
step() {  # step NAME TIMEOUT_S CMD...
  local name=$1 limit=$2; shift 2
  [[ " $STEPS " == *" $name "* ]] || return 0
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "[$name] rc=$? $((SECONDS - t0))s" | tee -a "$OUT/summary.txt"
}
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  python3 -c 'import torch, triton; print("torch", torch.__version__, "CUDA", torch.version.cuda, "triton", triton.__version__)'
} > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
# compiled kernels against the float64 reference, bitwise-repeatable backward, non-finite
# offsets (TRITON_INTERPRET stays unset on CUDA machines)
step tests 120 python3 -m pytest -q -p no:cacheprovider tests/test_sparse_nonlocal_op.py \
  tests/test_snl_triton.py
# registers / spills / shared memory per kernel with this machine's triton (cf. docs/benchmarks.md)
step static 25 python3 tools/analysis_tools/benchmark_snl_op.py --static --arch 90
# SASS instructions per point and the H100 model's times, beside op_bench's measured ones
step model 25 python3 tools/analysis_tools/benchmark_snl_op.py --static --per-point --arch 90
step op_bench 180 python3 tools/analysis_tools/benchmark_snl_op.py --device cuda
# tile sweep: twice the default register budgets of the row-block tiles (8 / 4 rows per program)
step op_tiles 50 python3 tools/analysis_tools/benchmark_snl_op.py --device cuda --sizes 128x256 \
  --methods triton triton_bf16 --triton-blocks 4096,2048
step heads 60 python3 tools/analysis_tools/benchmark_heads.py --device cuda --size 512 1024 --batch 2 \
  --heads SNL NL --snl-backend triton
step pair 120 python3 tools/analysis_tools/benchmark_heads.py --device cuda --size 512 1024 --batch 2 \
  --snl-backend triton --pair configs/ssanet/ssanet_r101-d8_4xb2-80k_cityscapes-512x1024.py \
  mmseg::nonlocal_net/nonlocal_r101-d8_4xb2-80k_cityscapes-512x1024.py
cat "$OUT/summary.txt"
