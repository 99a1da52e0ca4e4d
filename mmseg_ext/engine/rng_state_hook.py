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
"""
from __future__ import annotations

import logging
import random
from typing import Optional

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS
from mmengine.runner.loops import _InfiniteDataloaderIterator

CHECKPOINT_KEY = 'rng_state'


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


def set_rng_state(state: dict) -> None:
    """Restore what :func:`get_rng_state` returned."""
    torch.set_rng_state(state['torch'].cpu())
    py = state['python']
    random.setstate((py['version'], tuple(int(v) for v in py['state'].tolist()), py['gauss_next']))
    npy = state['numpy']
    np.random.set_state((npy['kind'], npy['keys'].numpy().astype(np.uint32), npy['pos'],
                         npy['has_gauss'], npy['cached_gaussian']))
    cuda = state.get('cuda')
    if cuda and torch.cuda.is_available():
        if len(cuda) != torch.cuda.device_count():
            raise RuntimeError(
                f'the checkpoint holds the RNG states of {len(cuda)} CUDA devices, this process '
                f'sees {torch.cuda.device_count()}: resume with the same devices for a bit-exact '
                'continuation, or remove RNGStateHook from custom_hooks to resume anyway')
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


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


def reseed_train_dataloader(runner, built_seed: Optional[int]) -> None:
    """Rebuild ``runner.train_loop``'s dataloader (and iterator) with ``runner.seed`` when it was
    built with ``built_seed`` (the seed before ``Runner.resume`` adopted the checkpoint's)."""
    seed = runner.seed
    if built_seed is None or built_seed == seed:
        return
    loop, cfg = runner.train_loop, getattr(runner, '_train_dataloader', None)
    old_iter = getattr(loop, 'dataloader_iterator', None)
    if not isinstance(cfg, dict) or not hasattr(loop, 'dataloader') or not (
            old_iter is None or type(old_iter) is _InfiniteDataloaderIterator):
        print_log(f'RNGStateHook: the train dataloader was built with seed {built_seed} before '
                  f'--resume adopted the checkpoint\'s seed {seed}, and it cannot be rebuilt (it was '
                  'passed as a built DataLoader, or the train loop is not one of mmengine\'s): the '
                  'data order and dataloader-worker seeds differ from the uninterrupted run, so the '
                  f'resumed run will NOT reproduce it. Resume with --cfg-options randomness.seed={seed}',
                  logger='current', level=logging.WARNING)
        return
    if old_iter is not None:  # stop its workers now rather than at garbage collection
        shutdown = getattr(getattr(old_iter, '_iterator', None), '_shutdown_workers', None)
        if callable(shutdown):
            shutdown()
    loop.dataloader = runner.build_dataloader(
        cfg, seed=seed, diff_rank_seed=runner._randomness_cfg.get('diff_rank_seed', False))
    if old_iter is not None:
        loop.dataloader_iterator = _InfiniteDataloaderIterator(loop.dataloader)
    print_log(f'RNGStateHook: rebuilt the train dataloader with the checkpoint\'s seed {seed} (it was '
              f'built with seed {built_seed} before --resume adopted the checkpoint\'s), so the '
              'resumed run draws the same data order and worker seeds as the uninterrupted one',
              logger='current', level=logging.INFO)


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
        checkpoint[CHECKPOINT_KEY] = get_rng_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._pending = checkpoint.get(CHECKPOINT_KEY)
        self._pending_iter = checkpoint.get('meta', {}).get('iter', -1)

    def before_train(self, runner) -> None:
        state, self._pending = self._pending, None
        if runner.iter == 0 or runner.iter != self._pending_iter:
            return  # a fresh run, or load_from (not resume)
        reseed_train_dataloader(runner, self._built_seed)
        if state is None:
            print_log(f'the resumed checkpoint has no {CHECKPOINT_KEY!r} (saved without '
                      'RNGStateHook): the run continues with freshly seeded RNGs, so it will not '
                      'reproduce the uninterrupted run exactly', logger='current',
                      level=logging.WARNING)
            return
        loop = runner.train_loop
        if hasattr(loop, 'dataloader_iterator'):  # IterBasedTrainLoop advances it by runner.iter
            loop.dataloader_iterator = _RestoreBeforeNextBatch(loop, state, runner.iter)
        else:  # EpochBasedTrainLoop resumes at an epoch boundary: no batches are skipped
            set_rng_state(state)

    def before_val(self, runner) -> None:
        self._val_state = get_rng_state()

    def after_val(self, runner) -> None:
        if self._val_state is not None:
            set_rng_state(self._val_state)
            self._val_state = None
