"""RNGStateHook: the RNG states travel in the checkpoint, and a resumed run is bit-exact."""
import io
import logging
import os.path as osp
import random
import sys

import numpy as np
import torch
from test_tools import REPO, run, short_run

import mmseg_ext  # noqa: F401
from mmseg_ext.checkpoint import register_safe_globals, weights_only_load
from mmseg_ext.engine import get_rng_state, set_rng_state

SANET = osp.join(REPO, 'configs', 'quickstart', 'sanet_r18tiny-d8_1xb8-1k_synthcity-128x256.py')


def _draw():
    return (torch.rand(4).tolist(), np.random.rand(4).tolist(), [random.random() for _ in range(4)],
            random.gauss(0, 1), np.random.randn())


def load_with_torch_types_only(obj):
    """``obj`` saved and loaded by torch's own weights-only unpickler, with no allow-list entry
    (torch < 2.4 has no allow-list API: nothing to clear)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    if hasattr(torch.serialization, 'clear_safe_globals'):
        torch.serialization.clear_safe_globals()
    try:
        buf.seek(0)
        return torch.load(buf, weights_only=True)
    finally:
        register_safe_globals()


def test_rng_state_round_trip_needs_no_allow_list():
    random.gauss(0, 1)  # leaves a cached gaussian in python's state
    np.random.randn()   # and in numpy's
    state = get_rng_state()
    expected = _draw()
    loaded = load_with_torch_types_only({'rng_state': state})['rng_state']
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
    ckpt = weights_only_load(path, map_location='cpu')
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
    assert 'with the settings the checkpoint was written with' in out, out[-3000:]
    assert 'CANNOT be bit-exact' not in out
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
    augmentation in the config's 2 persistent dataloader workers. Resuming at 2 of 4 gives the
    uninterrupted iter_4, because the hook rebuilds the train dataloader with the checkpoint's
    seed."""
    from mmengine.config import Config
    cfg = Config.fromfile(FCN)
    assert cfg.get('randomness', {}).get('seed') is None
    workers = cfg.train_dataloader.num_workers
    assert workers > 0 and cfg.train_dataloader.persistent_workers
    train = osp.join(REPO, 'tools', 'train.py')
    # batch 2 and 4 iterations, the train dataloader's workers as shipped (persistent too)
    opts = [o for o in short_run(4, workers=workers)
            if not o.startswith('train_dataloader.persistent_workers')]
    opts += ['default_hooks.checkpoint.interval=2', 'train_cfg.val_interval=2']
    full = tmp_path / 'full'
    run([sys.executable, train, FCN, '--work-dir', str(full), '--cfg-options', *opts], tool_env)
    seed = weights_only_load(full / 'iter_2.pth', map_location='cpu')['meta']['seed']
    resumed = tmp_path / 'resumed'
    out = run([sys.executable, train, FCN, '--work-dir', str(resumed), '--resume',
               '--cfg-options', *opts, f'load_from={full / "iter_2.pth"}'], tool_env)
    # the resumed process started from another seed (else this test would not test the rebuild)
    assert f"rebuilt the train dataloader with the checkpoint's seed {seed}" in out, out[-3000:]
    # and then its settings match the checkpoint's: the log claims exactness, rightly (below)
    assert 'continues it bit for bit' in out and 'CANNOT be bit-exact' not in out, out[-3000:]
    weights, momenta = _weights(full / 'iter_4.pth')
    weights_r, momenta_r = _weights(resumed / 'iter_4.pth')
    assert _differing(weights, weights_r) == []
    assert all(torch.equal(momenta[k]['momentum_buffer'], momenta_r[k]['momentum_buffer'])
               for k in momenta)


def test_reseed_rebuilds_from_the_config_or_warns(monkeypatch):
    """The two branches of the seed fix without a training: a dataloader given as a config is
    rebuilt with the checkpoint's seed; one given as a built DataLoader cannot be, and the resume
    says loudly that it will not be exact and how to make it so."""
    from types import SimpleNamespace

    from mmengine.runner.loops import _InfiniteDataloaderIterator
    from torch.utils.data import DataLoader

    import mmseg_ext.engine.rng_state_hook as hook_mod
    logs = []
    monkeypatch.setattr(hook_mod, 'print_log', lambda msg, **kw: logs.append((msg, kw['level'])))
    built = []

    def build_dataloader(cfg, seed, diff_rank_seed):
        built.append((cfg, seed, diff_rank_seed))
        return DataLoader(list(range(4)), batch_size=2)

    def runner_with(dataloader_arg):
        loader = DataLoader(list(range(4)), batch_size=2)
        loop = SimpleNamespace(dataloader=loader,
                               dataloader_iterator=_InfiniteDataloaderIterator(loader))
        return SimpleNamespace(seed=7, train_loop=loop, _train_dataloader=dataloader_arg,
                               _randomness_cfg=dict(seed=7), build_dataloader=build_dataloader)

    runner = runner_with(dict(batch_size=2, dataset='...'))
    hook_mod.reseed_train_dataloader(runner, built_seed=7)  # same seed: nothing to do
    assert built == [] and logs == []
    old = runner.train_loop.dataloader
    hook_mod.reseed_train_dataloader(runner, built_seed=123)
    assert built == [(dict(batch_size=2, dataset='...'), 7, False)]
    assert runner.train_loop.dataloader is not old
    assert runner.train_loop.dataloader_iterator._dataloader is runner.train_loop.dataloader
    assert "rebuilt the train dataloader with the checkpoint's seed 7" in logs[-1][0]

    runner = runner_with(DataLoader(list(range(4))))  # Runner(train_dataloader=<DataLoader>)
    old = runner.train_loop.dataloader
    hook_mod.reseed_train_dataloader(runner, built_seed=123)
    assert runner.train_loop.dataloader is old and len(built) == 1
    msg, level = logs[-1]
    assert level == logging.WARNING
    assert 'built with seed 123' in msg and "checkpoint's seed 7" in msg
    assert 'will NOT reproduce it. Resume with --cfg-options randomness.seed=7' in msg
