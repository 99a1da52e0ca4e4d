#!/usr/bin/env bash
# The main job, from a fresh machine: install, generate SynthCity, train the quickstart config, test its checkpoint.
#   bash tools/quickstart.sh [CONFIG]      (default: the FCN baseline)
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-configs/quickstart/fcn_r18tiny-d8_1xb8-1k_synthcity-128x256.py}
bash tools/install.sh
VENV=${MMSEG_EXT_VENV:-$PWD/.venv}
export PATH="$VENV/bin:$PATH"
DATA=${SYNTHCITY_ROOT:-data/synthcity}
export SYNTHCITY_ROOT=$DATA
# synthcity.json is written last (atomically): without it, a generation did not finish; start afresh
if [ ! -f "$DATA/synthcity.json" ]; then
  python tools/dataset_converters/synthcity.py --overwrite "$DATA"
fi
WORK=work_dirs/$(basename "$CONFIG" .py)
python tools/train.py "$CONFIG" --work-dir "$WORK"
python tools/test.py "$CONFIG" "$(cat "$WORK/last_checkpoint")" --work-dir "$WORK/test"
