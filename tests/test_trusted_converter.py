"""tools/model_converters/trusted_to_safe.py: a trusted checkpoint the allow-list refuses becomes
one it accepts, with the same tensors; nothing happens without --trusted."""
import argparse
import os.path as osp
import subprocess
import sys

import pytest
import torch

import mmseg_ext  # noqa: F401
from mmseg_ext.checkpoint import UnsafeCheckpointError, safe_load

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOL = osp.join(REPO, 'tools', 'model_converters', 'trusted_to_safe.py')


@pytest.fixture
def old_checkpoint(tmp_path):
    path = tmp_path / 'old.pth'
    torch.save({'state_dict': {'conv.weight': torch.randn(4, 3, 1, 1),
                               'bn.num_batches_tracked': torch.tensor(7)},
                'meta': {'args': argparse.Namespace(lr=0.1, work_dir='w'), 'iter': 10},
                'optimizer': {'state': {}}}, path)
    return path


def _run(*args):
    return subprocess.run([sys.executable, TOOL, *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=REPO)


def test_refusal_names_the_converter(old_checkpoint):
    with pytest.raises(UnsafeCheckpointError, match='argparse.Namespace') as err:
        safe_load(old_checkpoint)
    assert 'tools/model_converters/trusted_to_safe.py' in str(err.value)


def test_converter_writes_a_checkpoint_the_loader_accepts(old_checkpoint, tmp_path):
    new = tmp_path / 'new.pth'
    proc = _run(old_checkpoint, new, '--trusted')
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'meta.args: Namespace -> dict of its attributes' in proc.stdout
    assert "dropped top-level keys ['optimizer']" in proc.stdout
    loaded = safe_load(new)
    old = torch.load(old_checkpoint, weights_only=False)  # the test's own file
    for k, v in old['state_dict'].items():
        assert torch.equal(loaded['state_dict'][k], v) and loaded['state_dict'][k].dtype == v.dtype
    assert loaded['meta'] == {'args': {'lr': 0.1, 'work_dir': 'w'}, 'iter': 10}


def test_converter_needs_trusted_and_a_new_destination(old_checkpoint, tmp_path):
    marker = tmp_path / 'new.pth'
    proc = _run(old_checkpoint, marker)
    assert proc.returncode == 2 and 'Add --trusted only if you know' in proc.stderr
    assert not marker.exists()
    proc = _run(old_checkpoint, old_checkpoint, '--trusted')
    assert proc.returncode == 2 and 'exists; choose a new file name' in proc.stderr
