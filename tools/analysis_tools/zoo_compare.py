# Copyright (c) mmseg_ext contributors. All rights reserved.
"""Compare project configs with their twins in the installed mmseg model zoo.

For every project config this finds the closest entry of the *installed* mmseg's model zoo
(``<site-packages>/mmseg/.mim/configs/**/metafile.yaml``; the zoo configs themselves are parsed
with ``mmengine.Config.fromfile``) and prints one table with:

* the twin config and how it matched (which of dataset, crop, iterations, batch per GPU, backbone
  type / depth / output stride agree; the differences are named);
* the zoo's mIoU (single scale and ms+flip where the metafile lists it);
* our mIoU, read from the work dir's evaluation output (mmengine's
  ``<work_dir>/<timestamp>/vis_data/scalars.json``, else the ``<timestamp>.log``) of the run
  that trained this config (its recorded ``vis_data/config.py`` has the same model and
  ``train_cfg``; a complete run first, then the newest; see :func:`read_work_dir`), or
  "not trained"; the column "our run" says which run was read and which were passed over;
* the paper's number (from our own ``configs/<algo>/metafile.yaml``);
* parameters (always) and FLOPs (``--flops``) of both models, counted the same way:
  ``mmengine.analysis.get_model_complexity_info`` on the inference model (SyncBN -> BN, no
  auxiliary head) at one image of the crop size (one multiply-add = one FLOP, mmengine's rule);
* training memory (zoo metafile ``Memory (GB)``; ours: the ``memory`` mmengine logs on CUDA)
  and inference time where the zoo metafile lists one (mmseg 1.2.2's metafiles list none).

Matching is done on the parsed configs, never on file names: the dataset type and data root of
``train_dataloader``, the crop of the ``RandomCrop`` in its pipeline, ``train_cfg.max_iters``,
``train_dataloader.batch_size`` and the backbone type, depth and output stride. The zoo
families tried first are the head's natural baselines (GFFHead -> PSPNet, SNLHead -> NonLocal,
SAHead -> PSPNet then FCN); if none of them has an exact twin, every zoo entry on the same
dataset with the same backbone architecture is parsed too and the best-scoring one is listed.

    python tools/analysis_tools/zoo_compare.py \
        configs/gffnet/gffnet_r101-d8_4xb2-80k_cityscapes-512x1024.py
    python tools/analysis_tools/zoo_compare.py CFG1 CFG2 --work-dir WD1 WD2 --flops --format csv
"""
from __future__ import annotations

import argparse
import csv
import glob
import io
import json
import os.path as osp
import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Dict, List, Optional, Sequence

# zoo families tried first, per decode-head type (issue #6: PSPNet for GFFNet, NonLocal for
# SSANet, PSPNet/FCN for SANet; mmseg's own heads map to their own family)
PREFERRED_FAMILIES = {
    'GFFHead': ['pspnet'],
    'SNLHead': ['nonlocal_net'],
    'SAHead': ['pspnet', 'fcn'],
    'PSPHead': ['pspnet'],
    'FCNHead': ['fcn'],
    'NLHead': ['nonlocal_net'],
    'DAHead': ['danet'],
    'CCHead': ['ccnet'],
    'EncHead': ['encnet'],
    'ASPPHead': ['deeplabv3'],
    'DepthwiseSeparableASPPHead': ['deeplabv3plus'],
}

# weights of the agreeing fields in the match score (the dataset must agree)
FIELD_WEIGHTS = {
    'backbone': 8,  # type + depth, e.g. ResNetV1c-101
    'crop': 4,
    'iters': 4,
    'output_stride': 2,
    'batch': 1,
    'data_root': 1,
}


def mmseg_root() -> str:
    import mmseg
    return osp.join(osp.dirname(mmseg.__file__), '.mim')


# --------------------------------------------------------------------------------------------
# config parsing
# --------------------------------------------------------------------------------------------
@dataclass
class Setting:
    """What a config trains: the fields compared when matching."""
    dataset: Optional[str]
    data_root: Optional[str]
    crop: Optional[tuple]
    iters: Optional[int]
    batch: Optional[int]
    backbone: Optional[str]  # 'ResNetV1c-101'
    output_stride: Optional[int]
    head: Optional[str]

    def describe(self) -> str:
        crop = 'x'.join(map(str, self.crop)) if self.crop else '?'
        return (f'{self.dataset} {crop} {self.iters} iters, b{self.batch}/GPU, {self.backbone} '
                f'OS{self.output_stride}')


def _unwrap_dataset(ds: dict) -> dict:
    # RepeatDataset / ConcatDataset wrappers (e.g. the VOC aug configs)
    while isinstance(ds, dict) and 'type' in ds and 'dataset' in ds:
        ds = ds['dataset']
    if isinstance(ds, dict) and 'datasets' in ds:
        ds = ds['datasets'][0]
    return ds


def _crop_of(cfg, ds: dict) -> Optional[tuple]:
    for step in ds.get('pipeline', []) or []:
        if step.get('type') == 'RandomCrop':
            return tuple(int(v) for v in step['crop_size'])
    crop = cfg.get('crop_size')
    return tuple(int(v) for v in crop) if crop else None


def _output_stride(backbone: dict) -> Optional[int]:
    strides = backbone.get('strides')
    if strides is None:
        return None
    prod = 1
    for s in strides:
        prod *= int(s)
    if 'ResNe' in backbone.get('type', ''):
        return 4 * prod  # stem conv (/2) + max pool (/2)
    if backbone.get('type') == 'MobileNetV2':
        return 2 * prod  # stem conv (/2)
    return None


def _backbone_name(backbone: dict) -> str:
    name = backbone.get('type', '?')
    if 'depth' in backbone:
        name += f'-{backbone["depth"]}'
    elif 'widen_factor' in backbone:
        name += f'-x{backbone["widen_factor"]}'
    return name


def setting_of(cfg) -> Setting:
    """The compared fields of a loaded ``mmengine.Config``."""
    ds = _unwrap_dataset(cfg.train_dataloader.dataset)
    backbone = cfg.model.get('backbone', {}) or {}
    train_cfg = cfg.get('train_cfg', {}) or {}
    return Setting(
        dataset=ds.get('type'),
        data_root=(ds.get('data_root') or '').rstrip('/') or None,
        crop=_crop_of(cfg, ds),
        iters=train_cfg.get('max_iters'),
        batch=cfg.train_dataloader.get('batch_size'),
        backbone=_backbone_name(backbone),
        output_stride=_output_stride(backbone),
        head=(cfg.model.get('decode_head') or {}).get('type'),
    )


@lru_cache(maxsize=None)
def load_config(path: str):
    from mmengine.config import Config
    return Config.fromfile(path)


@lru_cache(maxsize=None)
def zoo_setting(rel_config: str) -> Optional[Setting]:
    path = osp.join(mmseg_root(), rel_config)
    if not osp.isfile(path):
        return None
    try:
        return setting_of(load_config(path))
    except Exception:  # a zoo config this parser does not understand is no candidate
        return None


# --------------------------------------------------------------------------------------------
# metafiles
# --------------------------------------------------------------------------------------------
@dataclass
class ZooEntry:
    name: str
    family: str
    config: str  # relative to mmseg's .mim, e.g. configs/pspnet/xxx.py
    dataset: Optional[str]
    metrics: Dict[str, float]
    metadata: dict = field(default_factory=dict)

    @property
    def architecture(self) -> List[str]:
        return [str(a) for a in (self.metadata.get('Architecture') or [])]


def _results(model: dict) -> Optional[dict]:
    res = model.get('Results')
    if isinstance(res, list):
        res = res[0] if res else None
    return res


@lru_cache(maxsize=None)
def zoo_entries() -> tuple:
    import yaml
    entries = []
    for meta in sorted(glob.glob(osp.join(mmseg_root(), 'configs', '*', 'metafile.yaml'))):
        family = osp.basename(osp.dirname(meta))
        with open(meta) as f:
            data = yaml.safe_load(f) or {}
        for model in data.get('Models', []) or []:
            res = _results(model) or {}
            entries.append(ZooEntry(
                name=model.get('Name'), family=family, config=model.get('Config'),
                dataset=res.get('Dataset'), metrics=dict(res.get('Metrics') or {}),
                metadata=dict(model.get('Metadata') or {})))
    return tuple(entries)


@lru_cache(maxsize=None)
def dataset_types() -> Dict[str, str]:
    """Metafile dataset name (``Results.Dataset``) -> dataset type of its configs.

    Learnt from the zoo itself: the first parseable config of each dataset name.
    """
    out = {}
    for e in zoo_entries():
        if e.dataset and e.dataset not in out and e.config:
            s = zoo_setting(e.config)
            if s is not None and s.dataset:
                out[e.dataset] = s.dataset
    return out


def zoo_entry(name: str) -> Optional[ZooEntry]:
    for e in zoo_entries():
        if e.name == name:
            return e
    return None


def paper_entry(config_path: str) -> Optional[dict]:
    """Our own metafile's entry for ``config_path`` (the folder's ``metafile.yaml``)."""
    import yaml
    meta = osp.join(osp.dirname(osp.abspath(config_path)), 'metafile.yaml')
    if not osp.isfile(meta):
        return None
    with open(meta) as f:
        data = yaml.safe_load(f) or {}
    for model in data.get('Models', []) or []:
        if osp.basename(model.get('Config', '')) == osp.basename(config_path):
            return model
    return None


# --------------------------------------------------------------------------------------------
# matching
# --------------------------------------------------------------------------------------------
@dataclass
class Match:
    entry: Optional[ZooEntry]
    setting: Optional[Setting]
    score: int
    exact: bool
    how: str


def _arch_tag(s: Setting) -> Optional[str]:
    """The metafile's architecture tag prefix of a backbone (used only to shortlist entries)."""
    if s.backbone and s.backbone.startswith('ResNet') and '-' in s.backbone:
        return f'R-{s.backbone.split("-")[1]}'  # R-101, R-101-D8, R-101-D16, ...
    if s.backbone and s.backbone.startswith('MobileNetV2'):
        return 'M-V2'
    return None


def _has_tag(entry: ZooEntry, tag: Optional[str]) -> bool:
    return tag is None or any(a == tag or a.startswith(tag + '-') for a in entry.architecture)


def compare(ours: Setting, zoo: Setting):
    """(score, agreeing field names, differences) of a zoo setting against ours."""
    same, diff = [], []

    def chk(name, a, b, fmt=str):
        if a == b:
            same.append(name)
        else:
            diff.append(f'{name} {fmt(b)} vs ours {fmt(a)}')

    def crop_fmt(c):
        return 'x'.join(map(str, c)) if c else '?'
    chk('backbone', ours.backbone, zoo.backbone)
    chk('crop', ours.crop, zoo.crop, crop_fmt)
    chk('iters', ours.iters, zoo.iters)
    chk('output_stride', ours.output_stride, zoo.output_stride)
    chk('batch', ours.batch, zoo.batch)
    chk('data_root', ours.data_root, zoo.data_root)
    score = sum(FIELD_WEIGHTS[n] for n in same)
    return score, same, diff


def _distance(ours: Setting, zoo: Setting) -> float:
    """|log ratio| of crop areas plus |log ratio| of iterations (0 when both agree)."""
    import math
    d = 0.0
    if ours.crop and zoo.crop:
        d += abs(math.log((ours.crop[0] * ours.crop[1]) / (zoo.crop[0] * zoo.crop[1])))
    if ours.iters and zoo.iters:
        d += abs(math.log(ours.iters / zoo.iters))
    return d


def find_twin(ours: Setting, prefer: Sequence[str] = ()) -> Match:
    """The best zoo twin of ``ours``: an exact match in a preferred family, else the best score."""
    prefer = list(prefer) or PREFERRED_FAMILIES.get(ours.head or '', [])
    rank = {fam: i for i, fam in enumerate(prefer)}
    full = sum(FIELD_WEIGHTS.values())

    def scored(cands):
        out = []
        for e in cands:
            s = zoo_setting(e.config) if e.config else None
            if s is None or s.dataset != ours.dataset:
                continue
            score, same, diff = compare(ours, s)
            out.append((score, -rank.get(e.family, len(rank)), -_distance(ours, s), e, s, same,
                        diff))
        return out

    # shortlist by the metafile's dataset name (each name's dataset type learnt from the zoo's
    # configs); every shortlisted config is then parsed and compared field by field
    names = {n for n, t in dataset_types().items() if t == ours.dataset}
    on_dataset = [e for e in zoo_entries() if e.dataset in names]
    if not on_dataset:
        return Match(None, None, 0, False,
                     f'unmatched: no zoo entry trains on {ours.dataset} (checked '
                     f'{len(zoo_entries())} metafile entries)')
    results = scored([e for e in on_dataset if e.family in rank])
    if not any(r[0] == full for r in results):
        # widen to every family, entries with our backbone architecture tag (e.g. R-101-D8)
        tag = _arch_tag(ours)
        results += scored([e for e in on_dataset if e.family not in rank
                           and _has_tag(e, tag)])
        if not results:  # nothing with our architecture: any backbone on the dataset
            results = scored(on_dataset)
    if not results:
        return Match(None, None, 0, False,
                     f'unmatched: none of the {len(on_dataset)} zoo configs on {ours.dataset} '
                     'could be parsed')
    # most agreeing fields, then preferred family, then closest crop area and schedule length
    results.sort(key=lambda r: r[:3], reverse=True)
    score, _, _, entry, zs, same, diff = results[0]
    exact = score == full
    pref = 'preferred family' if entry.family in rank else 'not a preferred family'
    if exact:
        how = (f'exact ({pref} {entry.family}): dataset, crop, iters, batch/GPU, backbone, OS '
               f'all agree ({ours.describe()})')
    else:
        how = (f'partial ({pref} {entry.family}): same dataset, ' + ', '.join(same or ['-'])
               + '; differs: ' + '; '.join(diff))
    return Match(entry, zs, score, exact, how)


# --------------------------------------------------------------------------------------------
# our results from a work dir
# --------------------------------------------------------------------------------------------
_LOG_MIOU = re.compile(r'\bmIoU:\s*([0-9.]+)')
_LOG_TRAIN_ITER = re.compile(r'Iter\(train\)\s*\[\s*(\d+)/(\d+)\]')
_LOG_CHECKPOINT = re.compile(r'Load checkpoint from (\S+)')


def config_difference(run_cfg, cfg) -> Optional[str]:
    """Where the config a run recorded trains another model or schedule than ``cfg`` (None: the
    same): ``model`` and ``train_cfg`` compared by
    :func:`mmseg_ext.utils.config_diff.config_difference` (SyncBN counted as BN, the run's value
    first)."""
    from mmseg_ext.utils.config_diff import config_difference as difference
    return difference(run_cfg, cfg, ('model', 'train_cfg'))


def _read_scalars(path: str):
    """(mIoU of the last validation, its step, [memory]) of a ``vis_data/scalars.json``."""
    miou, step, mem = None, None, []
    with open(path) as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if 'mIoU' in rec:
                miou, step = float(rec['mIoU']), rec.get('step')
            if 'memory' in rec:
                mem.append(float(rec['memory']))
    return miou, step, mem


def _run_result(run: str, max_iters: Optional[int]) -> Optional[dict]:
    """The evaluation one mmengine run (``<work_dir>/<timestamp>``) recorded, or None.

    ``complete``: True when the last validation was at ``max_iters``, False when earlier, None
    when unknown (a ``tools/test.py`` run, or the schedule unknown).
    """
    scalars = osp.join(run, 'vis_data', 'scalars.json')
    if osp.isfile(scalars):
        miou, step, mem = _read_scalars(scalars)
        if miou is not None:
            complete = None if not (max_iters and isinstance(step, int)) else step >= max_iters
            return dict(mIoU=miou, source=scalars, memory_gb=max(mem) / 1024 if mem else None,
                        complete=complete,
                        what=(f'validation at iteration {step}' if step is not None else
                              'last validation') + (f' of {max_iters}' if max_iters else ''))
    for log in sorted(glob.glob(osp.join(run, '*.log')), reverse=True):
        with open(log, errors='replace') as f:
            text = f.read()
        found = _LOG_MIOU.findall(text)
        if not found:
            continue
        iters = _LOG_TRAIN_ITER.findall(text[:text.rfind('mIoU:')])
        if iters:
            done, total = (int(v) for v in iters[-1])
            return dict(mIoU=float(found[-1]), source=log, memory_gb=None,
                        complete=done >= total,
                        what=f'validation at iteration {done} of {total}')
        ckpt = _LOG_CHECKPOINT.findall(text)
        if 'Iter(test)' in text or ckpt:  # a tools/test.py run
            return dict(mIoU=float(found[-1]), source=log, memory_gb=None, complete=None,
                        checkpoint=ckpt[-1] if ckpt else None,
                        what='test of ' + (ckpt[-1] if ckpt else 'an unnamed checkpoint'))
        return dict(mIoU=float(found[-1]), source=log, memory_gb=None, complete=None,
                    what='an evaluation in its log')
    return None


def checkpoint_training(path: str):
    """(training config, iteration) that an mmengine checkpoint's ``meta`` records (the
    runner saves the config's text and the iteration); (None, None) when it records neither."""
    from mmengine.config import Config

    from mmseg_ext.checkpoint import safe_load
    ckpt = safe_load(path, map_location='cpu')
    meta = (ckpt.get('meta') if isinstance(ckpt, dict) else None) or {}
    text = meta.get('cfg')
    return (Config.fromstring(text, '.py') if text else None), meta.get('iter')


def _test_run(res: dict, cfg, work_dir: str):
    """A ``tools/test.py`` run judged by the checkpoint it tested (its recorded config is only
    the one given to test.py): ``(res, None)`` with ``complete`` set, or ``(None, why)``."""
    ckpt = res['checkpoint']
    if ckpt is None:
        return None, 'a test of a checkpoint its log does not name'
    path = ckpt if osp.isfile(ckpt) else osp.join(work_dir, osp.basename(ckpt))
    try:
        train_cfg, it = checkpoint_training(path)
    except Exception as e:  # missing or unreadable: what it was trained with is unknown
        return None, f'a test of {ckpt}, which cannot be read ({type(e).__name__})'
    if train_cfg is None:
        return None, f'a test of {ckpt}, which records no training config'
    diff = config_difference(train_cfg, cfg) if cfg is not None else None
    if diff:
        return None, f'a test of {ckpt}, trained with {diff}'
    max_iters = (train_cfg.get('train_cfg') or {}).get('max_iters')
    done = isinstance(it, int) and isinstance(max_iters, int)
    return dict(res, complete=(it >= max_iters) if done else None,
                what=f'test of {ckpt} (saved at iteration {it} of {max_iters})'), None


def read_work_dir(work_dir: Optional[str], cfg=None) -> dict:
    """Our result from mmengine's output in ``work_dir``: ``{'mIoU', 'memory_gb', 'source',
    'run'}`` (``run`` says which run was read and why, and what was passed over).

    A work dir holds one ``<timestamp>`` folder per run (a training, a short trial, a
    ``tools/test.py``), each with the config it ran (``vis_data/config.py``). Runs whose
    recorded config trains another model or schedule than ``cfg`` (:func:`config_difference`)
    are passed over, and so is a ``tools/test.py`` run whose checkpoint's own training config
    (:func:`checkpoint_training`) does (e.g. a test of a 4-iteration trial's checkpoint under
    the full config); of the rest, a complete run (last validation at ``max_iters``) wins over
    a ``tools/test.py`` run over an incomplete one, then a run whose config matches over one
    that recorded none, then the newest.
    """
    out = {'mIoU': None, 'memory_gb': None, 'source': None, 'run': None}
    if not work_dir or not osp.isdir(work_dir):
        return out
    from mmengine.config import Config
    candidates, passed = [], []
    for run in sorted(d for d in glob.glob(osp.join(work_dir, '*')) if osp.isdir(d)):
        recorded = osp.join(run, 'vis_data', 'config.py')
        try:
            run_cfg = Config.fromfile(recorded) if osp.isfile(recorded) else None
        except Exception as e:  # a run that cannot say what it trained is not reported as ours
            passed.append(f'{osp.basename(run)} (its config.py cannot be read: '
                          f'{type(e).__name__})')
            continue
        schedule = run_cfg if run_cfg is not None else cfg
        max_iters = ((schedule.get('train_cfg') if schedule is not None else None)
                     or {}).get('max_iters')
        res = _run_result(run, max_iters)
        if res is None:
            continue
        if 'checkpoint' in res:  # a tools/test.py run: judged by the checkpoint it tested
            res, why = _test_run(res, cfg, work_dir)
            matched, how = True, "its checkpoint's training config matches"
        else:
            why = config_difference(run_cfg, cfg) if None not in (run_cfg, cfg) else None
            matched, how = run_cfg is not None, 'its recorded config matches'
        if cfg is None or not matched:
            how = 'config recorded' if matched else 'no recorded config to check'
        if why:
            passed.append(f'{osp.basename(run)} ({why})')
            continue
        rank = ({True: 2, None: 1, False: 0}[res['complete']], matched)
        candidates.append((rank, osp.basename(run), how, res))
    skipped = (f'; passed over {len(passed)} run(s) not of this config: ' + ', '.join(passed)
               if passed else '')
    if not candidates:
        out['run'] = ('no evaluated run' + (' of this config' if passed else '')) + skipped
        return out
    (_, name, how, res) = max(candidates, key=lambda c: (c[0], c[1]))
    state = {True: 'complete', None: 'completeness unknown', False: 'INCOMPLETE'}[res['complete']]
    out.update(mIoU=res['mIoU'], memory_gb=res['memory_gb'], source=res['source'],
               run=f'run {name}: {res["what"]}, {state}; {how}{skipped}')
    return out


# --------------------------------------------------------------------------------------------
# complexity
# --------------------------------------------------------------------------------------------
def build_inference_model(cfg):
    from mmseg_ext.apis import build_segmentor
    # the auxiliary head is counted as used at inference
    return build_segmentor(cfg, weights='offline', cfg_options={'model.auxiliary_head': None})


def complexity(cfg, crop, with_flops: bool) -> dict:
    """``{'params': int, 'flops': int|None, 'note': str}`` of the inference model at one ``crop``
    image."""
    model = build_inference_model(cfg)
    params = sum(p.numel() for p in model.parameters())
    flops, note = None, ''
    if with_flops:
        from mmseg_ext.utils.flops import count_flops
        try:
            res = count_flops(model, crop)
            flops = res['flops']
            if res['extra']:
                note = 'sparse non-local op counted by its handle (4 corners x K x (C + Cv))'
        except Exception as e:  # reported in the table
            note = f'FLOPs n/a ({type(e).__name__}: {str(e)[:80]})'
    return {'params': params, 'flops': flops, 'note': note}


# --------------------------------------------------------------------------------------------
# table
# --------------------------------------------------------------------------------------------
COLUMNS = ['config', 'twin (mmseg zoo)', 'match', 'zoo mIoU', 'zoo mIoU ms+flip', 'our mIoU',
           'our run', 'paper mIoU', 'params ours / twin (M)', 'FLOPs ours / twin (G)',
           'train mem zoo / ours (GB)', 'inference time zoo']


def _fmt(v, spec='.2f', none='-'):
    return none if v is None else format(v, spec)


def _inference_time(meta: dict) -> Optional[str]:
    for k, v in meta.items():
        if re.search(r'inference|fps', str(k), re.I):
            return f'{v} ({k})'
    return None


def compare_config(config: str, work_dir: Optional[str], with_flops: bool) -> dict:
    cfg = load_config(osp.abspath(config))
    ours = setting_of(cfg)
    match = find_twin(ours)
    stem = osp.splitext(osp.basename(config))[0]
    work_dir = work_dir or osp.join('work_dirs', stem)
    res = read_work_dir(work_dir, cfg)
    paper = paper_entry(config)
    paper_miou = None
    if paper:
        paper_miou = ((_results(paper) or {}).get('Metrics') or {}).get('mIoU')
    row = {
        'config': stem,
        'setting': ours.describe(),
        'twin (mmseg zoo)': match.entry.name if match.entry else 'unmatched',
        'match': match.how,
        'zoo mIoU': _fmt(match.entry.metrics.get('mIoU')) if match.entry else '-',
        'zoo mIoU ms+flip': _fmt(match.entry.metrics.get('mIoU(ms+flip)')) if match.entry else '-',
        'our mIoU': _fmt(res['mIoU'], none='not trained'),
        'our run': res['run'] or f'no work dir {work_dir}',
        'paper mIoU': ('not reported for this setting' if paper_miou is None
                       else format(float(paper_miou), '.2f')),
        'source of our mIoU': res['source'] or '-',
    }
    ours_c = complexity(cfg, ours.crop, with_flops)
    if match.entry:
        twin_cfg = load_config(osp.join(mmseg_root(), match.entry.config))
        twin_c = complexity(twin_cfg, ours.crop, with_flops)
    else:
        twin_c = {'params': None, 'flops': None, 'note': ''}

    def pair(a, b, scale):
        return f'{_fmt(a and a / scale)} / {_fmt(b and b / scale)}'

    row['params ours / twin (M)'] = pair(ours_c['params'], twin_c['params'], 1e6)
    row['FLOPs ours / twin (G)'] = (pair(ours_c['flops'], twin_c['flops'], 1e9)
                                    if with_flops else 'use --flops')
    notes = '; '.join(n for n in (ours_c.get('note'), twin_c.get('note')) if n)
    if notes:
        row['FLOPs ours / twin (G)'] += f' ({notes})'
    zoo_mem = match.entry.metadata.get('Memory (GB)') if match.entry else None
    row['train mem zoo / ours (GB)'] = f'{_fmt(zoo_mem, "")} / {_fmt(res["memory_gb"])}'
    row['inference time zoo'] = (_inference_time(match.entry.metadata) if match.entry else None) \
        or 'not listed'
    row['_params'] = (ours_c['params'], twin_c['params'])
    row['_flops'] = (ours_c['flops'], twin_c['flops'])
    row['_entry'] = match.entry
    row['_exact'] = match.exact
    return row


def render(rows: List[dict], fmt: str, crop_note: str = '') -> str:
    cols = COLUMNS
    if fmt == 'csv':
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(cols)
        for r in rows:
            w.writerow([r[c] for c in cols])
        return buf.getvalue()
    def esc(s):
        return str(s).replace('|', '\\|')
    lines = ['| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
    for r in rows:
        lines.append('| ' + ' | '.join(esc(r[c]) for c in cols) + ' |')
    notes = [
        '',
        'zoo numbers: the installed mmseg\'s metafile.yaml; params/FLOPs: inference model (SyncBN '
        '-> BN, no auxiliary head) at one crop-size image, mmengine.analysis (1 multiply-add = 1 '
        'FLOP); SSANet\'s sparse attention op, which jit tracing cannot enter, is counted '
        'analytically (B*H*W*K*(C+Cv) multiply-adds); inference times: mmseg 1.2.2\'s metafiles '
        'list none.',
    ]
    return '\n'.join(lines + notes) + '\n'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('configs', nargs='+', help='project config files')
    parser.add_argument('--work-dir', nargs='*', default=None,
                        help='work dirs, one per config in order (default work_dirs/<stem>)')
    parser.add_argument('--format', choices=['md', 'csv'], default='md')
    parser.add_argument('--flops', action='store_true',
                        help='also count FLOPs (R101 at 512x1024: ~20 s per model on CPU)')
    args = parser.parse_args(argv)
    work_dirs = list(args.work_dir or [])
    if work_dirs and len(work_dirs) != len(args.configs):
        parser.error(f'--work-dir got {len(work_dirs)} dirs for {len(args.configs)} configs: '
                     'give one per config, in the same order')
    rows = []
    for i, config in enumerate(args.configs):
        if not osp.isfile(config):
            parser.error(f'config not found: {config}')
        missing = [k for k in ('model', 'train_dataloader') if k not in load_config(
            osp.abspath(config))]
        if missing:
            parser.error(f'{config} defines no {" and no ".join(missing)}: zoo_compare needs a '
                         'full config (model and training data), e.g. configs/gffnet/'
                         'gffnet_r101-d8_4xb2-80k_cityscapes-512x1024.py, not a _base_ part')
        rows.append(compare_config(config, work_dirs[i] if work_dirs else None, args.flops))
    sys.stdout.write(render(rows, args.format))
    return rows


if __name__ == '__main__':
    main()
