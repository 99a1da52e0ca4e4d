#!/usr/bin/env bash
# The test suite, from a fresh machine: installs what is missing (tools/install.sh), then runs pytest on CPU.
#   bash tools/run_tests.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install.sh
VENV=${MMSEG_EXT_VENV:-$PWD/.venv}
export PATH="$VENV/bin:$PATH"   # tools/dist_train.sh calls `python`
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
start=$(date +%s)
python -m pytest tests -q -p no:cacheprovider --durations=15 "$@"
echo "test suite: $(( $(date +%s) - start ))s"
