"""RNGStateHook: the RNG states travel in the checkpoint, and a resumed run is bit-exact."""
import io
import os.path as osp
import random
import sys

import numpy as np
import pytest
import torch

import mmseg_ext  # noqa: F401
from mmseg_ext.checkpoint import register_safe_globals
from mmseg_ext.engine import get_rng_state, set_rng_state

from test_tools import REPO, run, short_run

SANET = osp.join(REPO, 'configs', 'quickstart', 'sanet_r18tiny-d8_1xb8-1k_synthcity-128x256.py')


def _draw():
    return (torch.rand(4).tolist(), np.random.rand(4).tolist(), [random.random() for _ in range(4)],
            random.gauss(0, 1), np.random.randn())


def test_rng_state_round_trip_needs_no_allow_list():
    random.gauss(0, 1)  # leaves a cached gaussian in python's state
    np.random.randn()   # and in numpy's
    state = get_rng_state()
    expected = _draw()
    buf = io.BytesIO()
    torch.save({'rng_state': state}, buf)
    torch.serialization.clear_safe_globals()  # torch's own weights-only types only
    try:
        buf.seek(0)
        loaded = torch.load(buf, weights_only=True)['rng_state']
    finally:
        register_safe_globals()
    _draw()
    set_rng_state(loaded)
    assert _draw() == expected


def test_hook_is_in_mmengine_registry():
    from mmengine.registry import HOOKS
    from mmseg.registry import HOOKS as MMSEG_HOOKS
    assert HOOKS.get('RNGStateHook') is mmseg_ext.engine.RNGStateHook
    with MMSEG_HOOKS.switch_scope_and_registry('mmseg') as registry:
        assert registry.build(dict(type='RNGStateHook')).__class__.__name__ == 'RNGStateHook'


def _weights(path):
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    return ckpt['state_dict'], ckpt['optimizer']['state']


def _differing(a, b):
    return [k for k in a if not torch.equal(a[k], b[k])]


def test_resume_at_2_of_4_is_bit_exact_with_dropout(tmp_path, tool_env):
    """SANet quickstart, seed 0, deterministic, dropout 0.1, augmentation in the main process
    (num_workers=0), validation at 2 and 4: resuming from iter_2 gives the uninterrupted iter_4."""
    from mmengine.config import Config
    assert Config.fromfile(SANET).model.decode_head.get('dropout_ratio', 0.1) > 0
    train = osp.join(REPO, 'tools', 'train.py')
    opts = [*short_run(4), 'default_hooks.checkpoint.interval=2', 'train_cfg.val_interval=2',
            'randomness.seed=0', 'randomness.deterministic=True']
    full = tmp_path / 'full'
    run([sys.executable, train, SANET, '--work-dir', str(full), '--cfg-options', *opts], tool_env)
    resumed = tmp_path / 'resumed'
    out = run([sys.executable, train, SANET, '--work-dir', str(resumed), '--resume',
               '--cfg-options', *opts, f'load_from={full / "iter_2.pth"}'], tool_env)
    assert 'Advance dataloader 2 steps' in out, out[-3000:]
    weights, momenta = _weights(full / 'iter_4.pth')
    weights_r, momenta_r = _weights(resumed / 'iter_4.pth')
    assert _differing(weights, weights_r) == []
    assert all(torch.equal(momenta[k]['momentum_buffer'], momenta_r[k]['momentum_buffer'])
               for k in momenta)
    # without the hook, the same resume differs (dropout masks and crops are drawn anew)
    control = tmp_path / 'control'
    run([sys.executable, train, SANET, '--work-dir', str(control), '--resume', '--cfg-options',
         *opts, f'load_from={full / "iter_2.pth"}', 'custom_hooks=[]'], tool_env)
    assert _differing(weights, _weights(control / 'iter_4.pth')[0])


FCN = osp.join(REPO, 'configs', 'quickstart', 'fcn_r18tiny-d8_1xb8-1k_synthcity-128x256.py')


def test_resume_of_a_shipped_config_without_seed_is_bit_exact(tmp_path, tool_env):
    """The FCN quickstart as shipped: no randomness.seed (so each process draws a random one, and
    mmengine builds the sampler and the worker seeds from it before resume adopts the checkpoint's),
    augmentation in the config's 2 dataloader workers. Resuming at 2 of 4 gives the uninterrupted
    iter_4, because the hook rebuilds the train dataloader with the checkpoint's seed."""
    from mmengine.config import Config
    cfg = Config.fromfile(FCN)
    assert cfg.get('randomness', {}).get('seed') is None
    workers = cfg.train_dataloader.num_workers
    assert workers > 0
    train = osp.join(REPO, 'tools', 'train.py')
    opts = [*short_run(4, workers=workers), 'default_hooks.checkpoint.interval=2',
            'train_cfg.val_interval=2']
    full = tmp_path / 'full'
    run([sys.executable, train, FCN, '--work-dir', str(full), '--cfg-options', *opts], tool_env)
    seed = torch.load(full / 'iter_2.pth', map_location='cpu', weights_only=True)['meta']['seed']
    resumed = tmp_path / 'resumed'
    out = run([sys.executable, train, FCN, '--work-dir', str(resumed), '--resume',
               '--cfg-options', *opts, f'load_from={full / "iter_2.pth"}'], tool_env)
    # the resumed process started from another seed (else this test would not test the rebuild)
    assert f"rebuilt the train dataloader with the checkpoint's seed {seed}" in out, out[-3000:]
    weights, momenta = _weights(full / 'iter_4.pth')
    weights_r, momenta_r = _weights(resumed / 'iter_4.pth')
    assert _differing(weights, weights_r) == []
    assert all(torch.equal(momenta[k]['momentum_buffer'], momenta_r[k]['momentum_buffer'])
               for k in momenta)
