"""Save and restore the random number generators with the checkpoint, for bit-exact resume.

mmengine's checkpoints hold the weights, the optimizer, the schedulers and the message hub, but not
the RNG states: a run resumed at iteration ``k`` re-seeds and so draws different dropout masks and
augmentations than the uninterrupted run did after ``k``. :class:`RNGStateHook` stores, in
``checkpoint['rng_state']``, the states of torch's CPU generator, every CUDA device's generator,
numpy's global ``RandomState`` and Python's ``random``, as tensors, ints and floats only (so they
load under ``torch.load(weights_only=True)`` with no allow-list entry). On resume it puts them back
just before the first batch after the checkpoint is drawn, i.e. after mmengine has advanced the
dataloader past the iterations already trained (which draws augmentation randomness too).

Validation runs between a checkpoint and the next training iteration in mmengine's loops; the hook
saves the RNG states before validation and restores them after it, so that a resumed run (which
does not repeat that validation) and the uninterrupted one draw the same numbers.

The seed: mmengine 0.10.7's ``Runner.train`` builds the train loop, and with it the dataloader
(sampler order, dataloader-worker seeds), from the run's seed (``randomness.seed``, or a random one
when the config sets none) before ``Runner.resume`` adopts the checkpoint's seed. When the two
differ, the hook rebuilds the train dataloader with the checkpoint's seed before the skipped
batches are drawn, so a resumed run continues the uninterrupted one whatever seed it was started
with (or warns where it cannot rebuild it).

What else exactness depends on: the RNG states reproduce the uninterrupted run only when the
resumed run draws its batches the same way. Each checkpoint therefore also records, in
``checkpoint['rng_state']['resume_settings']`` (plain ints, strings and bools), the train
dataloader's settings (num_workers, persistent_workers, batch size, drop_last, dataset length,
sampler type, shuffle and seed) and the number of processes; on resume the hook compares them with
the resumed run's and says in the log whether the continuation is bit-exact: a WARNING naming each
setting that differs (checkpoint's -> this run's) and how to set it back, or, for a checkpoint
written before these records, that exactness cannot be checked.

A stored state is checked (structure, types, sizes) before anything is restored: a malformed
``checkpoint['rng_state']`` raises :class:`RNGStateError` naming the field, with no RNG changed.
"""
from __future__ import annotations

import logging
import numbers
import random
from typing import Optional

import numpy as np
import torch
from mmengine.dist import get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS
from mmengine.runner.loops import BaseLoop, _InfiniteDataloaderIterator

CHECKPOINT_KEY = 'rng_state'
SETTINGS_KEY = 'resume_settings'  # in checkpoint[CHECKPOINT_KEY]: what exactness depends on
_WHERE = f'checkpoint[{CHECKPOINT_KEY!r}]'


class RNGStateError(ValueError):
    """A checkpoint's ``rng_state`` that cannot be restored (altered, truncated or written by
    another program); raised before any RNG state is changed."""


def get_rng_state() -> dict:
    """The global RNG states as tensors/ints/floats (loadable with ``weights_only=True``)."""
    version, py_state, gauss_next = random.getstate()
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        'torch': torch.get_rng_state(),
        'python': {'version': version, 'state': torch.tensor(py_state, dtype=torch.int64),
                   'gauss_next': gauss_next},
        'numpy': {'kind': kind, 'keys': torch.from_numpy(keys.astype(np.int64)), 'pos': int(pos),
                  'has_gauss': int(has_gauss), 'cached_gaussian': float(cached_gaussian)},
    }
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f'a {value.dtype} tensor of shape {tuple(value.shape)}'
    text = repr(value)
    return f'{type(value).__name__} {text if len(text) <= 60 else text[:57] + "..."}'


def _refuse(field: str, problem: str) -> RNGStateError:
    return RNGStateError(
        f'{_WHERE}{field} cannot be restored: {problem}. The checkpoint was altered or written by '
        'another program; no RNG state was changed. Resume from another checkpoint, or resume '
        f'without a bit-exact continuation: delete its {CHECKPOINT_KEY!r} key (ckpt = '
        'mmseg_ext.checkpoint.weights_only_load(path); del ckpt[\'rng_state\']; '
        'torch.save(ckpt, path)) or remove RNGStateHook from custom_hooks')


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_float(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_int_tensor(value, field: str, numel: int, low: int, high: int,
                      last_high: Optional[int] = None) -> None:
    """``value`` is a 1-d int64 tensor of ``numel`` values in [low, high) (its last value in
    [low, last_high] when given)."""
    expected = f'a 1-d int64 tensor of {numel} values in [{low}, {high})'
    if last_high is not None:
        expected += f' (the last one, the position, in [{low}, {last_high}])'
    if not (isinstance(value, torch.Tensor) and value.dtype == torch.int64 and value.dim() == 1
            and value.numel() == numel):
        raise _refuse(field, f'expected {expected}, got {_describe(value)}')
    body = value[:-1] if last_high is not None else value
    if body.numel() and (int(body.min()) < low or int(body.max()) >= high) or (
            last_high is not None and not low <= int(value[-1]) <= last_high):
        raise _refuse(field, f'expected {expected}, got values in [{int(value.min())}, '
                             f'{int(value.max())}]')


def _check_dict(value, field: str, keys) -> None:
    if not isinstance(value, dict):
        raise _refuse(field, f'expected a dict with keys {list(keys)}, got {_describe(value)}')
    missing = [k for k in keys if k not in value]
    if missing:
        raise _refuse(field, f'it has no {", ".join(repr(k) for k in missing)} (expected keys '
                             f'{list(keys)}, got {list(value)})')


def validate_rng_state(state) -> None:
    """Raise :class:`RNGStateError`, naming the field of ``checkpoint['rng_state']``, unless
    ``state`` has the structure, types and sizes :func:`get_rng_state` writes and this process's
    generators take. Changes no RNG state."""
    _check_dict(state, '', ('torch', 'python', 'numpy'))
    value = state['torch']
    numel = torch.get_rng_state().numel()
    if not (isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.dim() == 1
            and value.numel() == numel):
        raise _refuse("['torch']", f"expected torch's CPU generator state, a 1-d uint8 tensor of "
                                   f'{numel} bytes, got {_describe(value)}')

    py = state['python']
    _check_dict(py, "['python']", ('version', 'state', 'gauss_next'))
    version, py_state, _ = random.getstate()
    if not (_is_int(py['version']) and py['version'] == version):
        raise _refuse("['python']['version']", f"expected Python's random state version {version}, "
                                               f"got {_describe(py['version'])}")
    _check_int_tensor(py['state'], "['python']['state']", len(py_state), 0, 2 ** 32,
                      last_high=len(py_state) - 1)
    if not (py['gauss_next'] is None or _is_float(py['gauss_next'])):
        raise _refuse("['python']['gauss_next']", 'expected None or a float, got '
                                                  f"{_describe(py['gauss_next'])}")

    npy = state['numpy']
    _check_dict(npy, "['numpy']", ('kind', 'keys', 'pos', 'has_gauss', 'cached_gaussian'))
    kind, keys = np.random.get_state()[:2]
    if not (isinstance(npy['kind'], str) and npy['kind'] == kind):
        raise _refuse("['numpy']['kind']", f'expected {kind!r}, got {_describe(npy["kind"])}')
    _check_int_tensor(npy['keys'], "['numpy']['keys']", len(keys), 0, 2 ** 32)
    if not (_is_int(npy['pos']) and 0 <= npy['pos'] <= len(keys)):
        raise _refuse("['numpy']['pos']", f'expected an int in [0, {len(keys)}], got '
                                          f"{_describe(npy['pos'])}")
    if not (_is_int(npy['has_gauss']) and npy['has_gauss'] in (0, 1)):
        raise _refuse("['numpy']['has_gauss']",
                      f"expected 0 or 1, got {_describe(npy['has_gauss'])}")
    if not _is_float(npy['cached_gaussian']):
        raise _refuse("['numpy']['cached_gaussian']", 'expected a float, got '
                                                      f"{_describe(npy['cached_gaussian'])}")

    cuda = state.get('cuda')
    if cuda is not None:
        if not (isinstance(cuda, (list, tuple)) and all(
                isinstance(s, torch.Tensor) and s.dtype == torch.uint8 and s.dim() == 1
                for s in cuda)):
            raise _refuse("['cuda']", 'expected a list of 1-d uint8 tensors (one CUDA generator '
                                      f'state per device), got {_describe(cuda)}')
        if cuda and torch.cuda.is_available():
            if len(cuda) != torch.cuda.device_count():
                raise RNGStateError(
                    f"{_WHERE}['cuda'] holds the RNG states of {len(cuda)} CUDA devices, this "
                    f'process sees {torch.cuda.device_count()}: resume with the same devices for a '
                    'bit-exact continuation, or remove RNGStateHook from custom_hooks to resume '
                    'anyway')
            for i, s in enumerate(cuda):
                numel = torch.cuda.get_rng_state(i).numel()
                if s.numel() != numel:
                    raise _refuse(f"['cuda'][{i}]", f'expected a CUDA generator state of {numel} '
                                                    f'bytes, got {_describe(s)}')

    settings = state.get(SETTINGS_KEY)
    if settings is not None and not (isinstance(settings, dict) and all(
            isinstance(k, str) and isinstance(v, (bool, int, float, str))
            for k, v in settings.items())):
        raise _refuse(f'[{SETTINGS_KEY!r}]', 'expected a dict of setting names to ints, strings '
                                             f'and bools, got {_describe(settings)}')


def set_rng_state(state: dict) -> None:
    """Restore what :func:`get_rng_state` returned, after :func:`validate_rng_state` (so a
    malformed state raises :class:`RNGStateError` and changes nothing)."""
    validate_rng_state(state)
    torch.set_rng_state(state['torch'].cpu())
    py = state['python']
    random.setstate((py['version'], tuple(int(v) for v in py['state'].tolist()), py['gauss_next']))
    npy = state['numpy']
    np.random.set_state((npy['kind'], npy['keys'].numpy().astype(np.uint32), npy['pos'],
                         npy['has_gauss'], npy['cached_gaussian']))
    cuda = state.get('cuda')
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


# --------------------------------------------------------------------------------------------
# What a bit-exact resume depends on besides the RNG states: how the batches are drawn.
# --------------------------------------------------------------------------------------------

# setting: (how the log names it, the --cfg-options key that sets it back, or None)
_SETTINGS = {
    'world_size': ('number of processes', None),
    'num_workers': ('train_dataloader.num_workers', 'train_dataloader.num_workers'),
    'persistent_workers': ('train_dataloader.persistent_workers',
                           'train_dataloader.persistent_workers'),
    'batch_size': ('train_dataloader.batch_size', 'train_dataloader.batch_size'),
    'drop_last': ('train_dataloader.drop_last', 'train_dataloader.drop_last'),
    'batch_sampler': ('train_dataloader.batch_sampler.type', 'train_dataloader.batch_sampler.type'),
    'dataset_length': ('train dataset length', None),
    'sampler': ('train_dataloader.sampler.type', 'train_dataloader.sampler.type'),
    'shuffle': ('train_dataloader.sampler.shuffle', 'train_dataloader.sampler.shuffle'),
    'sampler_seed': ('train_dataloader.sampler.seed', 'train_dataloader.sampler.seed'),
    'dataloader_seed': ('train dataloader seed', 'randomness.seed'),
}


def dataloader_settings(loader) -> dict:
    """What a resumed run must share with the uninterrupted one, besides the RNG states, to draw
    the same batches from ``loader`` (the train dataloader): the number of processes, the
    dataloader's workers, batch size and dataset length, and the sampler's type, shuffle and seed,
    as plain ints, strings and bools (``weights_only``-loadable). Settings that do not apply
    (e.g. a sampler without a seed) are left out."""
    settings = {'world_size': int(get_world_size()),
                'num_workers': int(getattr(loader, 'num_workers', 0)),
                'persistent_workers': bool(getattr(loader, 'persistent_workers', False))}
    sampler = getattr(loader, 'sampler', None)
    batch_sampler = getattr(loader, 'batch_sampler', None)
    if getattr(loader, 'batch_size', None) is not None:
        settings.update(batch_size=int(loader.batch_size), drop_last=bool(loader.drop_last))
    elif batch_sampler is not None:  # a custom batch sampler draws the batches from its sampler
        settings['batch_sampler'] = type(batch_sampler).__name__
        if _is_int(getattr(batch_sampler, 'batch_size', None)):
            settings['batch_size'] = int(batch_sampler.batch_size)
        if isinstance(getattr(batch_sampler, 'drop_last', None), bool):
            settings['drop_last'] = batch_sampler.drop_last
        sampler = getattr(batch_sampler, 'sampler', sampler)
    try:
        settings['dataset_length'] = int(len(loader.dataset))
    except TypeError:  # an IterableDataset without a length
        pass
    if sampler is not None:
        settings['sampler'] = type(sampler).__name__
        if isinstance(getattr(sampler, 'shuffle', None), bool):
            settings['shuffle'] = sampler.shuffle
        if _is_int(getattr(sampler, 'seed', None)):
            settings['sampler_seed'] = int(sampler.seed)
    return settings


def train_settings(runner) -> Optional[dict]:
    """:func:`dataloader_settings` of ``runner``'s built train loop, or None when it has none."""
    loop = getattr(runner, '_train_loop', None)
    if not isinstance(loop, BaseLoop) or getattr(loop, 'dataloader', None) is None:
        return None
    return dataloader_settings(loop.dataloader)


def _plain(settings: dict) -> str:
    return ', '.join(f'{k}={v}' for k, v in settings.items())


def settings_differences(saved: dict, current: dict) -> list:
    """``[(setting, checkpoint's value, this run's value)]`` for each setting that differs (a
    value missing on one side is None)."""
    order = [k for k in _SETTINGS if k in saved or k in current]
    order += sorted(k for k in {*saved, *current} if k not in _SETTINGS)
    return [(k, saved.get(k), current.get(k)) for k in order if saved.get(k) != current.get(k)]


def not_exact_message(differences: list, iteration: int) -> str:
    """The WARNING for a resume whose settings differ from the checkpoint's: each setting, old ->
    new, and how to set it back."""
    def shown(value):
        return 'not recorded' if value is None else value

    changes = '; '.join(f'{_SETTINGS.get(k, (k,))[0]}: {shown(old)} -> {shown(new)}'
                        for k, old, new in differences)
    options = [f'{_SETTINGS[k][1]}={old}' for k, old, _ in differences
               if k in _SETTINGS and _SETTINGS[k][1] and old is not None]
    other = [_SETTINGS.get(k, (k,))[0] + ('' if old is None else f' ({old})')
             for k, old, _ in differences
             if k not in _SETTINGS or not _SETTINGS[k][1] or old is None]
    fix = []
    if options:
        fix.append('--cfg-options ' + ' '.join(options))
    if other:
        fix.append('the same ' + ', '.join(other) + ' as the run that wrote the checkpoint')
    return (f'RNGStateHook: resuming at iteration {iteration}, this run CANNOT be bit-exact with '
            'the uninterrupted one: settings that decide which batches, augmentations and '
            f'dataloader-worker seeds it draws differ from the checkpoint\'s ({changes}; '
            'checkpoint -> this run). The RNG states are restored all the same, but the run after '
            'the checkpoint will differ from the uninterrupted run. For a bit-exact continuation '
            'resume with ' + ' and '.join(fix))


class _RestoreBeforeNextBatch:
    """Wraps a loop's dataloader iterator: the ``skip``-th ``next`` (the first batch after the
    resumed iterations) first restores ``state``, then the wrapper removes itself."""

    def __init__(self, loop, state: dict, skip: int):
        self.loop, self.inner, self.state, self.left = loop, loop.dataloader_iterator, state, skip

    def __iter__(self):
        return self

    def __next__(self):
        if self.left > 0:
            self.left -= 1
            return next(self.inner)
        set_rng_state(self.state)
        self.loop.dataloader_iterator = self.inner
        return next(self.inner)


def reseed_train_dataloader(runner, built_seed: Optional[int]) -> Optional[bool]:
    """Rebuild ``runner.train_loop``'s dataloader (and iterator) with ``runner.seed`` when it was
    built with ``built_seed`` (the seed before ``Runner.resume`` adopted the checkpoint's).
    Returns None when there was nothing to do, True when it was rebuilt, False (after a warning)
    when it cannot be."""
    seed = runner.seed
    if built_seed is None or built_seed == seed:
        return None
    loop, cfg = runner.train_loop, getattr(runner, '_train_dataloader', None)
    old_iter = getattr(loop, 'dataloader_iterator', None)
    if not isinstance(cfg, dict) or not hasattr(loop, 'dataloader') or not (
            old_iter is None or type(old_iter) is _InfiniteDataloaderIterator):
        print_log(f'RNGStateHook: the train dataloader was built with seed {built_seed} before '
                  f'--resume adopted the checkpoint\'s seed {seed}, and it cannot be rebuilt (it '
                  'was passed as a built DataLoader, or the train loop is not one of '
                  'mmengine\'s): the data order and dataloader-worker seeds differ from the '
                  'uninterrupted run, so the resumed run will NOT reproduce it. Resume with '
                  f'--cfg-options randomness.seed={seed}',
                  logger='current', level=logging.WARNING)
        return False
    if old_iter is not None:  # stop its workers now rather than at garbage collection
        shutdown = getattr(getattr(old_iter, '_iterator', None), '_shutdown_workers', None)
        if callable(shutdown):
            shutdown()
    loop.dataloader = runner.build_dataloader(
        cfg, seed=seed, diff_rank_seed=runner._randomness_cfg.get('diff_rank_seed', False))
    if old_iter is not None:
        loop.dataloader_iterator = _InfiniteDataloaderIterator(loop.dataloader)
    # whether the data order then matches the uninterrupted run's depends on the other settings
    # too: RNGStateHook.before_train says so (or not) once it has compared them
    print_log(f'RNGStateHook: rebuilt the train dataloader with the checkpoint\'s seed {seed} '
              f'(it was built with seed {built_seed} before --resume adopted the checkpoint\'s)',
              logger='current', level=logging.INFO)
    return True


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Put the torch (CPU and CUDA), numpy and Python RNG states in each checkpoint and restore
    them on resume, so that a killed and resumed run reproduces the uninterrupted one bit for bit
    (with the same seed, ``deterministic=True`` where needed, and the same number of processes).

    A checkpoint loaded with ``load_from`` (not resumed) leaves the RNGs alone. Only rank 0 writes
    the checkpoint, so on resume every process gets rank 0's states: exact when the processes'
    main RNGs agree, i.e. the same seed on every rank (mmengine's default ``diff_rank_seed=False``)
    and augmentation in dataloader workers (``num_workers > 0``; mmengine seeds each worker from
    the seed, rank and worker id), as in the project's configs.

    The config need not fix ``randomness.seed``: when the seed the train dataloader was built with
    differs from the checkpoint's (which mmengine adopts on resume, also over an explicit
    ``randomness.seed``, with its own warning), the dataloader is rebuilt with the checkpoint's
    (:func:`reseed_train_dataloader`).

    Each checkpoint also records the settings that decide which batches are drawn
    (:func:`dataloader_settings`, in ``checkpoint['rng_state']['resume_settings']``); a resume
    compares them with its own and logs either that it continues the uninterrupted run bit for
    bit, or a WARNING that it cannot, naming each differing setting (checkpoint's -> this run's),
    or, for a checkpoint written before these records, that exactness cannot be checked. A
    malformed ``rng_state`` raises :class:`RNGStateError` before any RNG state is changed.
    """

    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        self._pending: Optional[dict] = None
        self._pending_iter = -1
        self._val_state: Optional[dict] = None
        self._built_seed: Optional[int] = None

    def before_run(self, runner) -> None:
        # Runner.train has built the train loop (and dataloader) with this seed; resume follows
        self._built_seed = runner.seed

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = get_rng_state()
        settings = train_settings(runner)
        if settings is not None:
            state[SETTINGS_KEY] = settings
        checkpoint[CHECKPOINT_KEY] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._pending = checkpoint.get(CHECKPOINT_KEY)
        self._pending_iter = checkpoint.get('meta', {}).get('iter', -1)

    def before_train(self, runner) -> None:
        state, self._pending = self._pending, None
        if runner.iter == 0 or runner.iter != self._pending_iter:
            return  # a fresh run, or load_from (not resume)
        if state is not None:  # refuse a malformed state now, not after the skipped batches
            validate_rng_state(state)
        reseeded = reseed_train_dataloader(runner, self._built_seed)
        if state is None:
            print_log(f'the resumed checkpoint has no {CHECKPOINT_KEY!r} (saved without '
                      'RNGStateHook): the run continues with freshly seeded RNGs, so it will not '
                      'reproduce the uninterrupted run exactly', logger='current',
                      level=logging.WARNING)
            return
        self._report_exactness(runner, state.get(SETTINGS_KEY), reseeded)
        loop = runner.train_loop
        if hasattr(loop, 'dataloader_iterator'):  # IterBasedTrainLoop advances it by runner.iter
            loop.dataloader_iterator = _RestoreBeforeNextBatch(loop, state, runner.iter)
        else:  # EpochBasedTrainLoop resumes at an epoch boundary: no batches are skipped
            set_rng_state(state)

    def _report_exactness(self, runner, saved: Optional[dict], reseeded: Optional[bool]) -> None:
        """Log whether the resumed run can continue the uninterrupted one bit for bit: compare
        the settings the checkpoint recorded with this run's (after the dataloader's reseed)."""
        current = train_settings(runner)
        if saved is None or current is None:
            missing = ('the checkpoint was written by an older RNGStateHook, which did not record '
                       'them' if saved is None else 'this run\'s train loop has no dataloader')
            print_log(f'RNGStateHook: restoring the checkpoint\'s RNG states at iteration '
                      f'{runner.iter}, but whether the resumed run is bit-exact with the '
                      'uninterrupted one cannot be checked: it is only if the number of processes '
                      'and the train dataloader\'s num_workers, persistent_workers, batch size, '
                      'dataset and sampler (type, shuffle, seed) are those of the run that wrote '
                      f'the checkpoint, and {missing}', logger='current', level=logging.WARNING)
            return
        differences = settings_differences(saved, current)
        if reseeded is False:  # its warning said why; the data order differs
            differences.append(('dataloader_seed', runner.seed, self._built_seed))
        if differences:
            print_log(not_exact_message(differences, runner.iter), logger='current',
                      level=logging.WARNING)
            return
        print_log(f'RNGStateHook: resuming at iteration {runner.iter} with the settings the '
                  f'checkpoint was written with ({_plain(current)}): the resumed run draws the '
                  'same data order and worker seeds as the uninterrupted one, and with the RNG '
                  'states restored before its first new batch it continues it bit for bit (on GPUs '
                  'with randomness.deterministic=True)', logger='current', level=logging.INFO)

    def before_val(self, runner) -> None:
        self._val_state = get_rng_state()

    def after_val(self, runner) -> None:
        if self._val_state is not None:
            set_rng_state(self._val_state)
            self._val_state = None
