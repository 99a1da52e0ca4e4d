#!/usr/bin/env bash
# Set up everything mmseg_ext needs on a fresh machine (Python 3.10-3.12, pip, gcc).
#
#   bash tools/install.sh            # venv in ./.venv, CPU ops, the current stack (torch 2.14.1)
#   MMSEG_EXT_STACK=classic bash tools/install.sh   # venv in ./.venv-classic: torch 2.1.2 + triton 2.1.0
#   FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="8.0;9.0" bash tools/install.sh   # GPU users
#
# Stacks (MMSEG_EXT_STACK; README "Supported versions"):
#   current  torch 2.14.1 + torchvision 0.29.1, mmcv 2.1.0 compiled with -std=c++20 (default)
#   classic  torch 2.1.2 + torchvision 0.16.2 (+ triton 2.1.0), mmcv 2.1.0 compiled as its sdist says
#            (-std=c++17): the stack of OpenMMLab's prebuilt mmcv 2.1.0 wheels, which most mmseg 1.2.2
#            users have. Both get mmengine 0.10.7, mmsegmentation 1.2.2, mmpretrain 1.2.0.
# Already have an mmseg environment? Do not run this: `pip install --no-deps -e .` there (README).
#
# What it does, and why (see README "Troubleshooting"):
#  1. a virtualenv (MMSEG_EXT_VENV, default ./.venv) with setuptools==80.9.0: setuptools >= 81 has no
#     pkg_resources, which mmcv's setup.py and mim import;
#  2. torch + torchvision of the stack;
#  3. mmcv==2.1.0 *with compiled ops*, built from its sdist because PyPI has no wheel of it (OpenMMLab's
#     own wheels are not on PyPI). The sdist hard-codes -std=c++17; torch 2.14's headers require C++20,
#     so for the current stack the flag is raised.
#     The wheel is cached under MMSEG_EXT_CACHE (default ~/.cache/mmseg_ext) in a folder whose name
#     carries the torch version and CPU/CUDA flavour; pip's own wheel cache is bypassed because it
#     reuses an mmcv wheel built against another torch. First build: ~20 min on 2 cores.
#  4. mmengine, mmsegmentation, mmpretrain (+ ftfy, regex, which mmseg imports undeclared);
#  5. openmim without opendatalab/openxlab (they pin setuptools~=60.2, breaking step 1);
#  6. this package, editable.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
STACK=${MMSEG_EXT_STACK:-current}
case "$STACK" in
  current) TORCH_V=2.14.1; TV_V=0.29.1; CXX_STD=c++20; DEFAULT_VENV=$ROOT/.venv ;;
  classic) TORCH_V=2.1.2;  TV_V=0.16.2; CXX_STD=c++17; DEFAULT_VENV=$ROOT/.venv-classic ;;
  *) echo "MMSEG_EXT_STACK must be 'current' (torch 2.14.1) or 'classic' (torch 2.1.2), got '$STACK'" >&2
     exit 2 ;;
esac
VENV=${MMSEG_EXT_VENV:-$DEFAULT_VENV}
CACHE=${MMSEG_EXT_CACHE:-$HOME/.cache/mmseg_ext}
MMCV_V=2.1.0
FORCE_CUDA=${FORCE_CUDA:-0}
# The compile's job count comes from the machine, not from the caller's thread settings: `nproc`
# honours OMP_NUM_THREADS / OMP_THREAD_LIMIT, which tools/run_tests.sh sets to 1 for its test
# workers, and would then compile mmcv with one job (issue #35). MAX_JOBS overrides.
CPUS=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
JOBS=${MAX_JOBS:-$CPUS}
case "$JOBS" in ''|*[!0-9]*|0) echo "MAX_JOBS must be a positive integer, got '$JOBS'" >&2; exit 2 ;; esac

log() { printf '[install %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
log "compile plan: $JOBS jobs for mmcv's ops ($CPUS CPUs on this machine${MAX_JOBS:+, MAX_JOBS=$MAX_JOBS}; OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset} does not limit it)"
# `--plan`: print the plan above and stop (nothing installed)
[ "${1:-}" = --plan ] && exit 0
[ $# -eq 0 ] || { echo "usage: bash tools/install.sh [--plan]  (got: $*)" >&2; exit 2; }

if [ ! -x "$VENV/bin/python" ]; then
  # A stack's venv takes about 6 GB (CUDA builds of torch: 6.3 GB current, 5.6 GB classic,
  # measured 2026-12-07) and pip unpacks beside it; a full disk fails pip half-way with only
  # "No space left on device" (a CI run of 2026-12-07): say so before starting.
  where=$(dirname "$VENV")
  while [ ! -d "$where" ]; do where=$(dirname "$where"); done  # venv makes missing parents
  free_gb=$(df -Pk "$where" | awk 'NR == 2 {print int($4 / 1048576)}')
  if [ "$free_gb" -lt 8 ]; then
    log "WARNING: $free_gb GB free on the disk of $where; a new venv of this stack takes about 6 GB and pip needs room to unpack: if the install fails with 'No space left on device', free space (old clones, work_dirs/, ~/.cache/pip) and run it again"
  fi
  log "creating virtualenv $VENV ($free_gb GB free on its disk)"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
PIP=("$VPY" -m pip --disable-pip-version-check)

log "base tools"
"${PIP[@]}" install -q 'pip>=23' 'setuptools==80.9.0' wheel ninja
log "stack $STACK: torch==$TORCH_V torchvision==$TV_V"
"${PIP[@]}" install -q "torch==$TORCH_V" "torchvision==$TV_V" 'setuptools==80.9.0' 'numpy<2'

# ---- mmcv with ops -------------------------------------------------------------------------
flavour=cpu; [ "$FORCE_CUDA" = 1 ] && flavour=cuda
mmcv_ok() {
  "$VPY" - <<'PY' 2>/dev/null
import mmcv, torch
from mmcv.ops import nms  # imports mmcv._ext
b = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]])
keep = nms(b, torch.tensor([0.9, 0.8]), 0.5)[1]
assert mmcv.__version__ == '2.1.0' and keep.tolist() == [0]
PY
}
if mmcv_ok; then
  log "mmcv $MMCV_V with ops already works in $VENV"
else
  WHEELDIR="$CACHE/wheels/mmcv-$MMCV_V-torch$TORCH_V-$flavour-$("$VPY" -c 'import sys;print("cp%d%d"%sys.version_info[:2])')"
  if ! ls "$WHEELDIR"/mmcv-*.whl >/dev/null 2>&1; then
    log "building mmcv $MMCV_V from source ($flavour, $JOBS jobs): ~20 min on 2 cores"
    work=$(mktemp -d)
    "${PIP[@]}" download -q --no-deps --no-binary=:all: --no-build-isolation "mmcv==$MMCV_V" -d "$work"
    tar -xzf "$work"/mmcv-$MMCV_V.tar.gz -C "$work"
    sed -i "s/-std=c++17/-std=$CXX_STD/g" "$work/mmcv-$MMCV_V/setup.py"
    grep -q -- "-std=$CXX_STD" "$work/mmcv-$MMCV_V/setup.py"
    mkdir -p "$WHEELDIR"
    ( cd "$work/mmcv-$MMCV_V" && MMCV_WITH_OPS=1 FORCE_CUDA=$FORCE_CUDA MAX_JOBS=$JOBS \
        "${PIP[@]}" wheel --no-deps --no-build-isolation --no-cache-dir -w "$WHEELDIR" . )
    rm -rf "$work"
  else
    log "using cached mmcv wheel in $WHEELDIR"
  fi
  "${PIP[@]}" install -q --no-deps --force-reinstall --no-cache-dir "$WHEELDIR"/mmcv-*.whl
  # mmcv's runtime requirements (without re-resolving torch)
  "${PIP[@]}" install -q addict packaging Pillow pyyaml yapf 'opencv-python<4.11' 'numpy<2' 'mmengine==0.10.7'
  mmcv_ok || { "$VPY" -c 'from mmcv.ops import nms' || true
               echo "mmcv $MMCV_V ops do not work; remove $WHEELDIR and re-run" >&2; exit 1; }
fi

log "OpenMMLab packages"
grep -v -E '^(torch|torchvision|mmcv)==' requirements.txt > "$VENV/requirements-rest.txt"
"${PIP[@]}" install -q -r "$VENV/requirements-rest.txt" "torch==$TORCH_V" "torchvision==$TV_V"
log "openmim (without opendatalab/openxlab; its other dependencies are in requirements.txt)"
"${PIP[@]}" install -q --no-deps openmim==0.3.9
log "mmseg_ext (editable)"
"${PIP[@]}" install -q --no-deps --no-build-isolation -e .
"$VPY" -c "import mmseg_ext, mmcv, mmseg, mmengine, torch; print('torch', torch.__version__, 'mmcv', mmcv.__version__, 'mmseg', mmseg.__version__, 'mmengine', mmengine.__version__)"
log "done: activate with  source $VENV/bin/activate"
