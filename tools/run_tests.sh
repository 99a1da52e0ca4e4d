#!/usr/bin/env bash
# The test suite, from a fresh machine: for each stack, install what is missing (tools/install.sh),
# then the linter (ruff, once) and pytest on CPU. Exits non-zero if the linter or any stack's
# suite fails.
#   bash tools/run_tests.sh [pytest args]                       # both stacks (what CI runs)
#   MMSEG_EXT_STACKS=current bash tools/run_tests.sh [args]     # one stack: current | classic
# Stacks (README "Supported versions"): current = torch 2.14.1 in .venv (MMSEG_EXT_VENV),
# classic = torch 2.1.2 + triton 2.1 in .venv-classic (MMSEG_EXT_CLASSIC_VENV).
# The suite runs in MMSEG_EXT_TEST_WORKERS pytest-xdist processes (default 2, one per core, one
# torch thread each; a test file stays in one process); MMSEG_EXT_TEST_WORKERS=0 runs it serially.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STACKS=${MMSEG_EXT_STACKS:-current classic}
WORKERS=${MMSEG_EXT_TEST_WORKERS:-2}
if [ "$WORKERS" = 0 ]; then
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}; parallel=()
else
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}; parallel=(-n "$WORKERS" --dist loadfile)
fi
reports=$(mktemp -d)
status=0
t0=$(date +%s)
for stack in $STACKS; do
  case "$stack" in
    current) venv=${MMSEG_EXT_VENV:-$ROOT/.venv} ;;
    classic) venv=${MMSEG_EXT_CLASSIC_VENV:-$ROOT/.venv-classic} ;;
    *) echo "MMSEG_EXT_STACKS: unknown stack '$stack' (use current and/or classic)" >&2; exit 2 ;;
  esac
  echo "=== stack $stack ($venv) ==="
  s=$(date +%s)
  if ! MMSEG_EXT_STACK=$stack MMSEG_EXT_VENV=$venv bash tools/install.sh; then
    echo "stack $stack: install failed" >&2; status=1; continue
  fi
  echo "stack $stack: install $(( $(date +%s) - s ))s"
  if [ -z "${linted:-}" ]; then  # the linter once, with the first stack's ruff (ruff.toml)
    linted=1
    if "$venv/bin/ruff" check .; then echo "ruff: clean"; else echo "ruff: lint errors" >&2; status=1; fi
  fi
  s=$(date +%s)
  # tools/dist_train.sh and the tests' subprocesses call `python`
  PATH="$venv/bin:$PATH" python -m pytest tests -q -rs -p no:cacheprovider --durations=15 \
    "${parallel[@]}" --junitxml="$reports/$stack.xml" "$@"
  rc=$?
  echo "stack $stack: test suite $(( $(date +%s) - s ))s, pytest exit $rc"
  [ $rc -eq 0 ] || status=1
done
# one closing line over the stacks' suites ("N passed, N failed, N skipped")
python3 - "$reports" <<'PY' || status=1
import glob, sys, xml.etree.ElementTree as ET
tot = dict(tests=0, failures=0, errors=0, skipped=0)
files = sorted(glob.glob(sys.argv[1] + '/*.xml'))
for f in files:
    for suite in ET.parse(f).getroot().iter('testsuite'):
        for k in tot:
            tot[k] += int(suite.get(k, 0))
failed = tot['failures'] + tot['errors']
passed = tot['tests'] - failed - tot['skipped']
print(f"stacks: {' '.join(f.rsplit('/', 1)[1][:-4] for f in files) or 'none ran'}")
print(f'total: {passed} passed, {failed} failed, {tot["skipped"]} skipped')
sys.exit(0 if files and passed > 0 and failed == 0 else 1)
PY
echo "run_tests.sh: $(( $(date +%s) - t0 ))s"
exit $status
