# Copyright (c) mmseg_ext contributors. All rights reserved.
"""Run records: the committed evidence of the learning checks (issue #37).

One small JSON file per finished run of ``tools/analysis_tools/learning_check.py`` — one
(config, ``--tag``/options, seed, schedule) — kept in the repository (``docs/runs/``), so the
results tables and figures can be rebuilt on any machine without the work dirs
(``tools/analysis_tools/results_tables.py``). No checkpoint is kept. A record holds:

* ``config``, ``tag``, ``train_opts``, ``seed``, ``iters`` (``--iters``, None: the config's own
  schedule): which run it is;
* ``model_record`` (every default of the code filled in, :func:`config_diff.model_record`) and
  ``compared`` (``train_cfg``, ``optim_wrapper``, ``param_scheduler`` as trained), with
  ``config_sha256`` over both: what the reuse rule compares;
* ``miou``/``iou`` (val, at the end of training), ``curve`` (every validation), ``test``
  (``{'miou', 'iou'}`` of the same final checkpoint on the held-out test split), ``tests`` (the
  ``--test-variants``, each on val and on test);
* ``params``, ``seconds`` (training wall time), ``environment`` (machine, versions, commit, date).

Val is where choices are made; test is only reported (docs/learning_check.md).
"""
import hashlib
import json
import os
import os.path as osp
import platform
import statistics
import subprocess
import time
from typing import Optional

__all__ = ['CLASSES', 'THIN', 'SMALL', 'CONTEXT', 'RECORD_FORMAT', 'record_name', 'config_sha256',
           'environment', 'write_record', 'read_record', 'read_records', 'mean_std', 'fmt',
           'group_mean']

CLASSES = ('road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light',
           'traffic sign', 'vegetation', 'terrain', 'sky', 'person', 'rider', 'car', 'truck',
           'bus', 'train', 'motorcycle', 'bicycle')
THIN = ('pole', 'traffic light', 'traffic sign', 'fence', 'bicycle')  # 1-3 px or small in SynthCity
SMALL = THIN + ('person', )  # issue #13: each must be learnt (> 5 IoU) by FCN on the benchmark set
CONTEXT = ('truck', 'bus', 'rider')  # decidable only from distant context in SynthCity

RECORD_FORMAT = 1
_REQUIRED = ('config', 'seed', 'iters', 'train_opts', 'miou', 'iou', 'test', 'model_record',
             'compared', 'config_sha256', 'seconds', 'environment')


def record_name(config: str, tag: str, seed: int, iters: Optional[int]) -> str:
    """``{config stem}[-{tag}]_seed{seed}[_iters{N}].json``: one file per run."""
    stem = osp.splitext(osp.basename(config))[0] + (f'-{tag}' if tag else '')
    return f'{stem}_seed{seed}' + (f'_iters{iters}' if iters else '') + '.json'


def config_sha256(model_record: dict, compared: dict) -> str:
    """sha256 of what the reuse rule compares, as canonical JSON."""
    text = json.dumps(dict(model=model_record, **compared), sort_keys=True,
                      separators=(',', ':'))
    return hashlib.sha256(text.encode()).hexdigest()


def _git(repo: str, *args) -> str:
    try:
        return subprocess.run(['git', '-C', repo, *args], capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ''


def _cpu_model() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(repo: str) -> dict:
    """Where and with what a run trained: CPUs, the versions of the stack, the project's commit
    (``+dirty`` when tracked files differ from it) and the UTC date."""
    import mmengine
    import torch
    versions = dict(python=platform.python_version(), torch=torch.__version__,
                    mmengine=mmengine.__version__)
    for name in ('mmcv', 'mmseg', 'numpy'):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count()
    commit = _git(repo, 'rev-parse', 'HEAD')
    if commit and _git(repo, 'status', '--porcelain', '--untracked-files=no'):
        commit += '+dirty'
    return dict(machine=dict(cpus=cpus, cpu=_cpu_model(), gpu=None,
                             omp_num_threads=os.environ.get('OMP_NUM_THREADS')),
                versions=versions, commit=commit or None,
                date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()))


def write_record(path: str, res: dict) -> None:
    """Write run record ``res`` to ``path`` (sorted keys, one space indents: stable diffs)."""
    missing = [k for k in _REQUIRED if k not in res]
    if missing:
        raise ValueError(f'a run record needs {missing} (learning_check.py writes them)')
    os.makedirs(osp.dirname(path) or '.', exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.write(json.dumps(dict(res, format=RECORD_FORMAT), indent=1, sort_keys=True) + '\n')
    os.replace(tmp, path)


def read_record(path: str) -> dict:
    """A run record, checked for the fields the tables read; ValueError names what is wrong."""
    with open(path) as f:
        try:
            rec = json.load(f)
        except ValueError as e:
            raise ValueError(f'{path} is not a run record (not JSON: {e})') from None
    if not isinstance(rec, dict) or rec.get('format') != RECORD_FORMAT:
        raise ValueError(f'{path} is not a run record of format {RECORD_FORMAT}')
    missing = [k for k in _REQUIRED if k not in rec]
    if missing:
        raise ValueError(f'{path} lacks {missing}')
    for split in (rec, rec['test']):
        if sorted(split.get('iou', {})) != sorted(CLASSES):
            raise ValueError(f'{path}: per-class IoU must name the 19 classes')
    return rec


def read_records(folder: str) -> list:
    """Every record in ``folder`` (``*.json``), by file name."""
    if not osp.isdir(folder):
        return []
    return [dict(read_record(osp.join(folder, n)), file=n)
            for n in sorted(os.listdir(folder)) if n.endswith('.json')]


def mean_std(values):
    """Mean and sample standard deviation, NaN (a class absent from a split) left out."""
    values = [v for v in values if v == v]
    if not values:
        return float('nan'), float('nan')
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt(values) -> str:
    """'mean ± std'; a single run has no spread, so just its value."""
    m, s = mean_std(values)
    if sum(v == v for v in values) == 1:
        return f'{m:.1f}'
    return f'{m:.1f} ± {s:.1f}'


def group_mean(iou: dict, classes) -> float:
    """Mean IoU over a class group (THIN or CONTEXT)."""
    return statistics.mean(iou[c] for c in classes)
