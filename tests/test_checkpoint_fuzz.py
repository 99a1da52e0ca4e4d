"""The loader under mutation: a fixed-seed fuzzer over real checkpoints, in a subprocess so that a
crash or a hang fails the test instead of the suite (see :func:`checkpoint_craft.fuzz`)."""
import json
import os.path as osp
import subprocess
import sys

import pytest

import mmseg_ext  # noqa: F401
from mmseg_ext.checkpoint import allowlist

TESTS = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(TESTS)


@pytest.mark.parametrize('restricted', [False, True], ids=['native', 'restricted'])
def test_fuzzed_checkpoints_are_refused_cleanly_or_load(tmp_path, restricted):
    if not restricted and not allowlist.NATIVE_ALLOWLIST:
        pytest.skip('torch < 2.6: the restricted unpickler is the only one')
    code = ('import json, sys; sys.path[:0] = [%r, %r]; import checkpoint_craft as c; '
            'print("FUZZ " + json.dumps(c.fuzz(seed=0, count=300, workdir=%r, restricted=%r)))'
            % (TESTS, REPO, str(tmp_path), restricted))
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=600, cwd=REPO)
    assert proc.returncode == 0, f'the fuzzing process died ({proc.returncode}): ' \
        f'{proc.stderr[-3000:]}'
    report = json.loads(proc.stdout.rsplit('FUZZ ', 1)[1])
    assert report['failures'] == [], report
    outcomes = report['outcomes']
    assert sum(outcomes.values()) == 300
    # every kind of mutation was tried, and both refusals and loads happened
    kinds = {k.split(':')[0] for k in outcomes}
    assert len(kinds) == 8, outcomes
    assert any(k.endswith(':unsafe') for k in outcomes) and any(k.endswith(':loaded')
                                                                for k in outcomes), outcomes
