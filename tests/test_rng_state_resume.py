"""RNGStateHook on resume: it records what exactness depends on besides the RNG states, says when
a resume cannot be bit-exact (and claims exactness only when it is), and refuses a malformed
``checkpoint['rng_state']`` before touching any RNG. Tiny in-process mmengine runs (seconds)."""
import copy
import logging
import random
import re

import numpy as np
import pytest
import torch
from mmengine.model import BaseModel
from test_rng_state_hook import load_with_torch_types_only
from torch.utils.data import Dataset

import mmseg_ext  # noqa: F401
import mmseg_ext.engine.rng_state_hook as hook_mod
from mmseg_ext.checkpoint import weights_only_load
from mmseg_ext.engine import RNGStateError, get_rng_state, set_rng_state

SETTINGS = dict(world_size=1, num_workers=0, persistent_workers=False, batch_size=2,
                drop_last=False, dataset_length=10, sampler='DefaultSampler', shuffle=True,
                sampler_seed=0)
CLAIM = re.compile(r'bit for bit|same data order', re.I)


class _Augmented(Dataset):
    """``n`` samples whose values carry random noise, as a random augmentation does (torch's RNG:
    in the main process it is also the dropout's, in a dataloader worker it is seeded apart)."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return dict(inputs=torch.full((4,), i / 10) + torch.rand(4))


class _Toy(BaseModel):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.fc(torch.nn.functional.dropout(torch.stack(inputs), 0.5, self.training))
        return {'loss': out.pow(2).mean()} if mode == 'loss' else out


def _runner(work_dir, name, batch_size=2, num_workers=0, length=10, resume_from=None, seed=0):
    """4 iterations of SGD with momentum, a checkpoint every 2, RNGStateHook."""
    from mmengine.runner import Runner
    return Runner(
        model=_Toy(), work_dir=str(work_dir), experiment_name=name, default_scope='mmengine',
        train_dataloader=dict(dataset=_Augmented(length), batch_size=batch_size,
                              num_workers=num_workers,
                              sampler=dict(type='DefaultSampler', shuffle=True)),
        train_cfg=dict(by_epoch=False, max_iters=4),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False)),
        log_processor=dict(by_epoch=False), custom_hooks=[dict(type='RNGStateHook')],
        randomness=dict(seed=seed), load_from=None if resume_from is None else str(resume_from),
        resume=resume_from is not None)


@pytest.fixture(scope='module')
def full_run(tmp_path_factory):
    """The uninterrupted run's work dir (iter_2.pth, iter_4.pth)."""
    work = tmp_path_factory.mktemp('rng_full')
    _runner(work, f'rng_full_{work.name}').train()
    return work


@pytest.fixture
def hook_logs(monkeypatch):
    logs = []
    monkeypatch.setattr(hook_mod, 'print_log',
                        lambda msg, logger=None, level=logging.INFO: logs.append((msg, level)))
    return logs


def _resume(full_run, tmp_path, checkpoint=None, **settings):
    work = tmp_path / 'resumed'
    _runner(work, f'rng_resumed_{tmp_path.name}', resume_from=checkpoint or full_run / 'iter_2.pth',
            **settings).train()
    return weights_only_load(work / 'iter_4.pth', map_location='cpu')['state_dict']


def _same_weights(full_run, weights):
    full = weights_only_load(full_run / 'iter_4.pth', map_location='cpu')['state_dict']
    return all(torch.equal(full[k], weights[k]) for k in full)


def test_checkpoint_records_the_settings_as_plain_values(full_run):
    state = weights_only_load(full_run / 'iter_2.pth', map_location='cpu')['rng_state']
    assert state['resume_settings'] == SETTINGS
    assert all(type(v) in (int, str, bool) for v in state['resume_settings'].values())
    # the whole rng_state loads with torch's own weights-only types (no allow-list entry)
    loaded = load_with_torch_types_only({'rng_state': state})
    assert loaded['rng_state']['resume_settings'] == SETTINGS


def test_unchanged_settings_keep_the_claim_and_are_bit_exact(full_run, tmp_path, hook_logs):
    weights = _resume(full_run, tmp_path)
    assert [level for _, level in hook_logs] == [logging.INFO], hook_logs
    msg = hook_logs[0][0]
    assert 'continues it bit for bit' in msg and 'num_workers=0, persistent_workers=False' in msg
    assert _same_weights(full_run, weights)  # the claim is true


@pytest.mark.parametrize('setting, change, fix', [
    (dict(num_workers=1), 'train_dataloader.num_workers: 0 -> 1',
     '--cfg-options train_dataloader.num_workers=0'),
    (dict(batch_size=4), 'train_dataloader.batch_size: 2 -> 4',
     '--cfg-options train_dataloader.batch_size=2'),
    (dict(length=12), 'train dataset length: 10 -> 12', 'the same train dataset length (10)'),
], ids=['num_workers', 'batch_size', 'dataset_length'])
def test_changed_setting_warns_not_exact_and_claims_nothing(full_run, tmp_path, hook_logs,
                                                            setting, change, fix):
    weights = _resume(full_run, tmp_path, **setting)
    warnings = [msg for msg, level in hook_logs if level == logging.WARNING]
    assert len(warnings) == 1, hook_logs
    assert 'CANNOT be bit-exact with the uninterrupted one' in warnings[0]
    assert change in warnings[0] and fix in warnings[0]
    assert not [msg for msg, _ in hook_logs if CLAIM.search(msg)], hook_logs
    assert not _same_weights(full_run, weights)  # the warning is true


def test_resume_started_with_another_seed_is_rebuilt_then_claimed(full_run, tmp_path, hook_logs):
    """The resumed run builds its dataloader with seed 1 before mmengine adopts the checkpoint's 0;
    the hook rebuilds it, and only then compares the settings (the sampler's seed among them)."""
    weights = _resume(full_run, tmp_path, seed=1)
    assert [level for _, level in hook_logs] == [logging.INFO, logging.INFO], hook_logs
    assert "rebuilt the train dataloader with the checkpoint's seed 0" in hook_logs[0][0]
    assert 'continues it bit for bit' in hook_logs[1][0] and 'sampler_seed=0' in hook_logs[1][0]
    assert _same_weights(full_run, weights)


def test_checkpoint_of_the_older_hook_cannot_be_checked(full_run, tmp_path, hook_logs):
    ckpt = weights_only_load(full_run / 'iter_2.pth', map_location='cpu')
    del ckpt['rng_state']['resume_settings']  # what the hook wrote before it recorded them
    old = tmp_path / 'old_iter_2.pth'
    torch.save(ckpt, old)
    _resume(full_run, tmp_path, checkpoint=old)
    assert [level for _, level in hook_logs] == [logging.WARNING], hook_logs
    assert 'cannot be checked' in hook_logs[0][0] and 'older RNGStateHook' in hook_logs[0][0]
    assert not CLAIM.search(hook_logs[0][0])


def test_differences_name_each_setting_and_how_to_set_it_back():
    saved = dict(SETTINGS, world_size=2, sampler_seed=5)
    current = dict(SETTINGS, persistent_workers=True, num_workers=2)
    diffs = hook_mod.settings_differences(saved, current)
    assert diffs == [('world_size', 2, 1), ('num_workers', 0, 2),
                     ('persistent_workers', False, True), ('sampler_seed', 5, 0)]
    msg = hook_mod.not_exact_message(diffs, 6)
    assert 'number of processes: 2 -> 1' in msg and 'train_dataloader.sampler.seed: 5 -> 0' in msg
    assert ('--cfg-options train_dataloader.num_workers=0 '
            'train_dataloader.persistent_workers=False train_dataloader.sampler.seed=5') in msg
    assert 'the same number of processes (2) as the run that wrote the checkpoint' in msg
    assert hook_mod.settings_differences(SETTINGS, dict(SETTINGS)) == []


def _tamper(field, value):
    def apply(state):
        *path, last = field
        for key in path:
            state = state[key]
        if value is KeyError:
            del state[last]
        else:
            state[last] = value(state[last]) if callable(value) else value
    return apply


TAMPERED = {
    'torch_size': (('torch',), torch.zeros(10, dtype=torch.uint8), "['torch']"),
    'torch_dtype': (('torch',), lambda t: t.to(torch.int64), "['torch']"),
    'python_length': (('python', 'state'), lambda t: t[:600], "['python']['state']"),
    'python_position': (('python', 'state'), lambda t: torch.cat([t[:-1], t.new_tensor([9999])]),
                        "['python']['state']"),
    'numpy_keys_length': (('numpy', 'keys'), lambda t: t[:623], "['numpy']['keys']"),
    'numpy_keys_values': (('numpy', 'keys'), lambda t: t - 2 ** 40, "['numpy']['keys']"),
    'numpy_pos': (('numpy', 'pos'), 1000, "['numpy']['pos']"),
    'numpy_missing': (('numpy',), KeyError, ''),
    'settings': (('resume_settings',), ['not', 'a', 'dict'], "['resume_settings']"),
}


@pytest.mark.parametrize('name', list(TAMPERED))
def test_tampered_state_is_refused_naming_the_field_with_no_rng_changed(name):
    field, value, shown = TAMPERED[name]
    state = dict(get_rng_state(), resume_settings=dict(SETTINGS))
    bad = copy.deepcopy(state)
    _tamper(field, value)(bad)
    torch.rand(3), np.random.rand(3), random.random()  # move every RNG away from `state`
    before = get_rng_state()
    with pytest.raises(RNGStateError) as err:
        set_rng_state(bad)
    msg = str(err.value)
    assert msg.startswith(f"checkpoint['rng_state']{shown} ") and field[-1] in msg, msg
    assert 'Resume from another checkpoint' in msg and "delete its 'rng_state' key" in msg
    after = get_rng_state()  # nothing was restored, not even the valid parts
    assert torch.equal(after['torch'], before['torch'])
    assert torch.equal(after['python']['state'], before['python']['state'])
    assert torch.equal(after['numpy']['keys'], before['numpy']['keys'])
    assert after['numpy']['pos'] == before['numpy']['pos']
    set_rng_state(state)  # the untampered state still restores


def test_resume_from_tampered_checkpoint_fails_before_touching_the_rngs(full_run, tmp_path,
                                                                        monkeypatch):
    ckpt = weights_only_load(full_run / 'iter_2.pth', map_location='cpu')
    ckpt['rng_state']['numpy']['keys'] = ckpt['rng_state']['numpy']['keys'][:623]
    bad = tmp_path / 'bad_iter_2.pth'
    torch.save(ckpt, bad)
    seen = []
    before_train = hook_mod.RNGStateHook.before_train

    def spy(self, runner):  # the RNG states as the hook finds them
        seen.append(get_rng_state())
        before_train(self, runner)

    monkeypatch.setattr(hook_mod.RNGStateHook, 'before_train', spy)
    runner = _runner(tmp_path / 'resumed', f'rng_bad_{tmp_path.name}', resume_from=bad)
    with pytest.raises(RNGStateError, match=re.escape("checkpoint['rng_state']['numpy']['keys']")):
        runner.train()
    before, after = seen[0], get_rng_state()
    assert torch.equal(after['torch'], before['torch'])
    assert torch.equal(after['numpy']['keys'], before['numpy']['keys'])
    assert torch.equal(after['python']['state'], before['python']['state'])
