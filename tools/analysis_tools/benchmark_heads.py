# Copyright (c) mmseg_ext contributors. All rights reserved.
"""Head-level speed and memory of the project's heads against mmseg's zoo heads.

Every head gets the same random backbone features: ResNet-50-d8 at the input size, i.e. stages
of (256, 512, 1024, 2048) channels at 1/4, 1/8, 1/8, 1/8 of the input (no backbone is run); each
head picks its own stages through its ``in_index``. The heads are built from their R50 configs:

* ours: ``configs/{sanet,ssanet,gffnet}/_base_/*_r50-d8.py`` (SAHead, SNLHead, GFFHead);
* mmseg's: ``mmseg::_base_/models/{fcn,pspnet,nonlocal,danet,ccnet,encnet,deeplabv3plus}_r50-d8.py``
  (FCNHead, PSPHead, NLHead, DAHead, CCHead, EncHead, DepthwiseSeparableASPPHead),

with SyncBN replaced by BN and 19 classes (Cityscapes), exactly as those configs set them.

Measured, each head in a fresh subprocess:

* ``fwd``: eval mode under ``torch.no_grad()``; ``fwd+bwd``: train mode, forward then backward of
  the sum of the means of all outputs (multi-output heads: every output, as their losses use
  them); median over ``--repeats`` after ``--warmup`` runs;
* peak memory over the baseline (the process after building the head and the inputs):
  CPU: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` after resetting the process's RSS high-water
  mark (``/proc/self/clear_refs``), minus the RSS at the start (glibc's mmap threshold is fixed
  at 128 KiB in the worker so freed tensors leave the RSS at once); CUDA:
  ``torch.cuda.max_memory_allocated()`` minus the allocated memory at the start.

A measurement that fails is reported in the table as ``error: ...`` and makes the tool exit
non-zero with that error (after the table); only an op without a kernel on the device (e.g. an
mmcv op with no CPU implementation, a bfloat16 kernel missing under ``--amp``, or an SNL backend
that cannot run there) reads ``n/a on <device>`` and is no failure.

``--sweep`` repeats this over input sizes from 256x256 to 1024x2048 and plots time and memory
against pixels; a size is skipped (and the table says so) when the head's previous sizes predict it
to exceed ``--budget-time`` seconds per fwd+bwd step or ``--budget-mem`` GB (the prediction
extrapolates the last two sizes with a power law, exponent clamped to [1, 2]).

``--snl-backend`` chooses the implementation of the SSANet op in every SNLHead built (head rows and
``--pair`` models): ``auto`` (the configs' default: Triton on CUDA, the sparse path on CPU),
``triton``, ``sparse`` or ``mmcv``.

``--pair OURS TWIN`` additionally times one whole-model training step (``model.loss`` +
backward, batch ``--batch`` at ``--size``) of two configs, e.g. a project config and its zoo
twin (``mmseg::pspnet/pspnet_r101-d8_4xb2-80k_cityscapes-512x1024.py``).

    python tools/analysis_tools/benchmark_heads.py --size 512 1024 --device cpu
    python tools/analysis_tools/benchmark_heads.py --heads SAHead PSPHead --size 64 64 --repeats 1
    python tools/analysis_tools/benchmark_heads.py --sweep --budget-time 20 --out-dir docs
    python tools/analysis_tools/benchmark_heads.py --device cuda --heads SNL NL \
        --snl-backend triton \
        --pair configs/ssanet/ssanet_r101-d8_4xb2-80k_cityscapes-512x1024.py \
        mmseg::nonlocal_net/nonlocal_r101-d8_4xb2-80k_cityscapes-512x1024.py
"""
from __future__ import annotations

import argparse
import json
import math
import os
import os.path as osp
import re
import subprocess
import sys
from typing import Dict, List, Optional

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# head name -> config whose decode_head is benchmarked
HEAD_CONFIGS: Dict[str, str] = {
    'SAHead': osp.join(REPO, 'configs', 'sanet', '_base_', 'sanet_r50-d8.py'),
    'SNLHead': osp.join(REPO, 'configs', 'ssanet', '_base_', 'ssanet_r50-d8.py'),
    'GFFHead': osp.join(REPO, 'configs', 'gffnet', '_base_', 'gffnet_r50-d8.py'),
    'FCNHead': 'mmseg::_base_/models/fcn_r50-d8.py',
    'PSPHead': 'mmseg::_base_/models/pspnet_r50-d8.py',
    'NLHead': 'mmseg::_base_/models/nonlocal_r50-d8.py',
    'DAHead': 'mmseg::_base_/models/danet_r50-d8.py',
    'CCHead': 'mmseg::_base_/models/ccnet_r50-d8.py',
    'EncHead': 'mmseg::_base_/models/encnet_r50-d8.py',
    'DepthwiseSeparableASPPHead': 'mmseg::_base_/models/deeplabv3plus_r50-d8.py',
}
ALIASES = {
    'SA': 'SAHead', 'SANet': 'SAHead', 'SNL': 'SNLHead', 'SSANet': 'SNLHead', 'GFF': 'GFFHead',
    'GFFNet': 'GFFHead', 'FCN': 'FCNHead', 'PSP': 'PSPHead', 'PSPNet': 'PSPHead', 'NL': 'NLHead',
    'NonLocal': 'NLHead', 'DA': 'DAHead', 'DANet': 'DAHead', 'CC': 'CCHead', 'CCNet': 'CCHead',
    'Enc': 'EncHead', 'EncNet': 'EncHead', 'DeepLabV3+': 'DepthwiseSeparableASPPHead',
    'DeepLabV3Plus': 'DepthwiseSeparableASPPHead', 'ASPP+': 'DepthwiseSeparableASPPHead',
}
DEFAULT_HEADS = list(HEAD_CONFIGS)
# ResNet-50-d8 stages: (channels, stride)
STAGES = ((256, 4), (512, 8), (1024, 8), (2048, 8))
SWEEP_SIZES = [(256, 256), (256, 512), (512, 512), (512, 1024), (768, 1536), (1024, 2048)]
# errors meaning that an op (or a dtype of it) has no kernel on the device: such a row reads
# "n/a on <device>"; every other error is a failure of the measurement (the tool exits non-zero)
UNAVAILABLE_ON_DEVICE = re.compile(
    r"implementation for device \w+ not found"  # mmcv's op registry
    r"|not implemented for '\w+'"  # a torch kernel without this dtype (e.g. AMP on CPU)
    r"|Could not run '\S+' with arguments from the '\w+' backend"  # a torch op without it
    r"|backend='\w+' cannot run here"  # mmseg_ext's SNL op backends
    r"|Torch not compiled with CUDA|No CUDA GPUs are available|not compiled with CUDA")


def resolve_head(name: str) -> str:
    head = ALIASES.get(name, name)
    if head not in HEAD_CONFIGS:
        raise ValueError(f"--heads: unknown head '{name}'; choose from "
                         f'{sorted(HEAD_CONFIGS)} (or aliases {sorted(ALIASES)})')
    return head


def resolve_config(path: str) -> str:
    if path.startswith('mmseg::'):
        import mmseg
        return osp.join(osp.dirname(mmseg.__file__), '.mim', 'configs', path[len('mmseg::'):])
    return path


# --------------------------------------------------------------------------------------------
# worker (runs in a fresh subprocess)
# --------------------------------------------------------------------------------------------
def _rss_kb() -> int:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') // 1024


class _Mem:
    """Peak memory over a baseline: getrusage on CPU, the CUDA caching allocator on CUDA."""

    def __init__(self, device):
        import torch
        self.torch = torch
        self.cuda = device.startswith('cuda')
        self.method = ('torch.cuda.max_memory_allocated' if self.cuda else
                       'getrusage ru_maxrss')

    def start(self):
        import resource
        self.resource = resource
        if self.cuda:
            self.torch.cuda.synchronize()
            self.torch.cuda.reset_peak_memory_stats()
            self.base = self.torch.cuda.memory_allocated()
        else:
            try:  # reset the RSS high-water mark so ru_maxrss is the peak from here on
                with open('/proc/self/clear_refs', 'w') as f:
                    f.write('5')
            except OSError:
                self.method = 'getrusage ru_maxrss (high-water mark not resettable)'
            self.base = _rss_kb() * 1024

    def peak_mib(self) -> float:
        if self.cuda:
            self.torch.cuda.synchronize()
            return (self.torch.cuda.max_memory_allocated() - self.base) / 2**20
        peak = self.resource.getrusage(self.resource.RUSAGE_SELF).ru_maxrss * 1024
        return max(peak - self.base, 0) / 2**20


def _flatten(out):
    if isinstance(out, (list, tuple)):
        for o in out:
            yield from _flatten(o)
    elif hasattr(out, 'float'):
        yield out


def _timed(fn, warmup, repeats, sync):
    import time
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2] if len(times) % 2 else sum(
        times[len(times) // 2 - 1:len(times) // 2 + 1]) / 2


def _autocast(device, amp):
    import contextlib

    import torch
    if not amp:
        return contextlib.nullcontext()
    dev = 'cuda' if device.startswith('cuda') else 'cpu'
    return torch.autocast(dev, dtype=torch.float16 if dev == 'cuda' else torch.bfloat16)


def _sync(device):
    import torch
    if device.startswith('cuda'):
        return torch.cuda.synchronize
    return lambda: None


def _set_snl_backend(model_cfg: dict, backend: Optional[str]) -> None:
    """Set ``backend`` on every SNLHead among the model's decode heads (in place)."""
    if backend is None:
        return
    heads = model_cfg.get('decode_head')
    for head in heads if isinstance(heads, list) else [heads]:
        if isinstance(head, dict) and head.get('type') == 'SNLHead':
            head['backend'] = backend


def _build_from_cfg(cfg_path: str, part: Optional[str], snl_backend: Optional[str] = None):
    from mmengine.config import Config

    from mmseg_ext.apis import build_segmentor
    cfg = Config.fromfile(resolve_config(cfg_path))
    _set_snl_backend(cfg.model, snl_backend)
    return build_segmentor(cfg, weights='offline', part=part).train()


def worker_head(job: dict) -> dict:
    import torch
    torch.manual_seed(0)
    device, (h, w), batch = job['device'], job['size'], job['batch']
    head = _build_from_cfg(HEAD_CONFIGS[job['head']], 'decode_head',
                           job.get('snl_backend')).to(device)
    params = sum(p.numel() for p in head.parameters())
    inputs = [torch.randn(batch, c, -(-h // s), -(-w // s), device=device) for c, s in STAGES]
    sync = _sync(device)
    mem = _Mem(device)
    res = {'params': params}

    def fwd():
        with torch.no_grad(), _autocast(device, job['amp']):
            head(inputs)

    def fwd_bwd():
        with _autocast(device, job['amp']):
            out = head(inputs)
            loss = sum(o.float().mean() for o in _flatten(out))
        loss.backward()
        head.zero_grad(set_to_none=True)

    head.eval()
    mem.start()
    res['fwd_s'] = _timed(fwd, job['warmup'], job['repeats'], sync)
    res['fwd_mem_mib'] = mem.peak_mib()
    head.train()
    mem.start()
    res['train_s'] = _timed(fwd_bwd, job['warmup'], job['repeats'], sync)
    res['train_mem_mib'] = mem.peak_mib()
    res['mem_method'] = mem.method
    return res


def worker_model(job: dict) -> dict:
    import torch
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    torch.manual_seed(0)
    device, (h, w), batch = job['device'], job['size'], job['batch']
    model = _build_from_cfg(job['config'], None, job.get('snl_backend')).to(device).train()
    params = sum(p.numel() for p in model.parameters())
    num_classes = model.decode_head.num_classes
    inputs = torch.randn(batch, 3, h, w, device=device)
    samples = []
    for _ in range(batch):
        s = SegDataSample(metainfo=dict(img_shape=(h, w), pad_shape=(h, w), ori_shape=(h, w)))
        s.gt_sem_seg = PixelData(
            data=torch.randint(0, num_classes, (1, h, w), device=device))
        samples.append(s)
    sync = _sync(device)
    mem = _Mem(device)

    def step():
        with _autocast(device, job['amp']):
            losses = model.loss(inputs, samples)
            loss, _ = model.parse_losses(losses)
        loss.backward()
        model.zero_grad(set_to_none=True)

    mem.start()
    t = _timed(step, job['warmup'], job['repeats'], sync)
    return {'params': params, 'train_s': t, 'train_mem_mib': mem.peak_mib(),
            'mem_method': mem.method}


def worker_main(job_json: str):
    job = json.loads(job_json)
    try:
        res = worker_model(job) if job.get('config') else worker_head(job)
        res['ok'] = True
    except Exception as e:  # reported in the table; the driver exits non-zero unless unavailable
        msg = str(e).strip().splitlines()
        res = {'ok': False, 'error': f'{type(e).__name__}: {msg[0] if msg else ""}'[:600],
               'unavailable': bool(UNAVAILABLE_ON_DEVICE.search(str(e)))}
    print('@@RESULT ' + json.dumps(res), flush=True)


# --------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------
def run_job(job: dict, timeout: float, threads: Optional[int]) -> dict:
    env = dict(os.environ)
    env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
    env.setdefault('PYTHONWARNINGS', 'ignore')
    # a fixed mmap threshold: glibc then returns every large freed block to the OS at once, so
    # the RSS at the start of the fwd+bwd measurement holds no freed forward buffers
    env.setdefault('MALLOC_MMAP_THRESHOLD_', str(128 * 1024))
    if threads:
        env['OMP_NUM_THREADS'] = str(threads)
    cmd = [sys.executable, osp.abspath(__file__), '--_worker', json.dumps(job)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {'ok': False, 'error': f'timed out (> {timeout:.0f} s)', 'skipped': True}
    for line in proc.stdout.splitlines():
        if line.startswith('@@RESULT '):
            return json.loads(line[len('@@RESULT '):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ['no output']
    return {'ok': False, 'error': f'worker exited {proc.returncode}: {tail[0][:200]}'}


def _status(res: dict, device: str) -> str:
    """'ok', a skip (over the time budget), 'n/a on <device> (...)' for an op without a kernel
    there (:data:`UNAVAILABLE_ON_DEVICE`), else 'error: ...' (a failure: the tool exits 1)."""
    if res.get('ok'):
        return 'ok'
    if res.get('skipped'):
        return res['error']
    if res.get('unavailable'):
        where = 'CPU' if device == 'cpu' else device
        return f'n/a on {where} ({res["error"]})'
    return f'error: {res["error"]}'


def failures(rows: List[dict], batch: int) -> List[str]:
    """'<what> <size>: <error>' of every measurement that failed (not skipped, not n/a)."""
    out = []
    for r in rows:
        if r.get('ok') or r.get('skipped') or r.get('unavailable') or 'error' not in r:
            continue
        hint = ''
        if batch == 1 and 'more than 1 value per channel' in r['error'] \
                and 'batch' not in r['error']:  # the head's own message may say it already
            hint = ' (train-mode BN of the pooled branches needs --batch >= 2)'
        out.append(f'{r.get("config") or r["head"]} {r["size"]}: {r["error"]}{hint}')
    return out


def _predict(points, pixels, key):
    """Power-law extrapolation of ``key`` from the last two (pixels, result) points."""
    pts = [(p, r[key]) for p, r in points if r.get('ok') and r.get(key)]
    if not pts:
        return None
    if len(pts) == 1:
        alpha = 1.0
    else:
        (p1, v1), (p2, v2) = pts[-2], pts[-1]
        alpha = math.log(max(v2, 1e-9) / max(v1, 1e-9)) / math.log(p2 / p1)
    alpha = min(max(alpha, 1.0), 2.0)
    p, v = pts[-1]
    return v * (pixels / p) ** alpha


def benchmark(heads, sizes, args) -> List[dict]:
    rows = []
    for head in heads:
        points = []
        for (h, w) in sizes:
            pixels = h * w
            row = {'head': head, 'size': f'{h}x{w}', 'pixels': pixels}
            t_pred = _predict(points, pixels, 'train_s')
            m_pred = _predict(points, pixels, 'train_mem_mib')
            prev = points[-1][1] if points else None
            if prev is not None and not prev.get('ok'):
                why = ('over budget' if str(prev.get('status', '')).startswith('skipped')
                       else 'failed')
                row.update(ok=False, status=f'skipped ({why} at {prev["size"]})')
            elif t_pred is not None and t_pred > args.budget_time:
                row.update(ok=False, status=f'skipped (predicted {t_pred:.0f} s per fwd+bwd > '
                           f'budget {args.budget_time:g} s)')
            elif m_pred is not None and m_pred / 1024 > args.budget_mem:
                row.update(ok=False, status=f'skipped (predicted {m_pred / 1024:.1f} GB > '
                           f'budget {args.budget_mem:g} GB)')
            else:
                job = dict(head=head, size=[h, w], batch=args.batch, device=args.device,
                           repeats=args.repeats, warmup=args.warmup, amp=args.amp,
                           snl_backend=getattr(args, 'snl_backend', None))
                timeout = 120 + 3 * (args.repeats + args.warmup) * args.budget_time
                res = run_job(job, timeout, args.threads)
                res['status'] = _status(res, args.device)
                row.update(res)
            rows.append(row)
            points.append((pixels, row))
            print(_row_line(row), file=sys.stderr, flush=True)
    return rows


def _row_line(r):
    if r.get('ok'):
        return (f'{r["head"]:>28s} {r["size"]:>10s}  fwd {r["fwd_s"] * 1e3:9.1f} ms  '
                f'fwd+bwd {r["train_s"] * 1e3:9.1f} ms  mem {r["train_mem_mib"]:8.0f} MiB')
    return f'{r["head"]:>28s} {r["size"]:>10s}  {r["status"]}'


def render_md(rows: List[dict], args=None) -> str:
    ref = {r['size']: r for r in rows if r['head'] == 'PSPHead' and r.get('ok')}
    lines = ['| head | input (HxW) | params (M) | fwd (ms) | fwd+bwd (ms) | fwd+bwd / PSPHead '
             '| fwd peak mem (MiB) | fwd+bwd peak mem (MiB) | status |',
             '|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        if r.get('ok'):
            psp = ref.get(r['size'])
            ratio = f'{r["train_s"] / psp["train_s"]:.2f}' if psp else '-'
            lines.append(f'| {r["head"]} | {r["size"]} | {r["params"] / 1e6:.2f} | '
                         f'{r["fwd_s"] * 1e3:.1f} | {r["train_s"] * 1e3:.1f} | {ratio} | '
                         f'{r["fwd_mem_mib"]:.0f} | {r["train_mem_mib"]:.0f} | ok |')
        else:
            lines.append(f'| {r["head"]} | {r["size"]} | - | - | - | - | - | - | '
                         f'{r["status"].replace("|", "/")} |')
    return '\n'.join(lines) + '\n'


def render_pairs(rows: List[dict]) -> str:
    lines = ['| config | input (HxW) | batch | params (M) | train step (ms) | peak mem (MiB) | '
             'status |', '|---|---|---|---|---|---|---|']
    for r in rows:
        if r.get('ok'):
            lines.append(f'| {r["config"]} | {r["size"]} | {r["batch"]} | '
                         f'{r["params"] / 1e6:.2f} | {r["train_s"] * 1e3:.0f} | '
                         f'{r["train_mem_mib"]:.0f} | ok |')
        else:
            lines.append(f'| {r["config"]} | {r["size"]} | {r["batch"]} | - | - | - | '
                         f'{r["status"].replace("|", "/")} |')
    return '\n'.join(lines) + '\n'


def plot(rows: List[dict], path: str, title: str):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4.8))
    heads = list(dict.fromkeys(r['head'] for r in rows))
    cmap = plt.get_cmap('tab10')
    for i, head in enumerate(heads):
        pts = [r for r in rows if r['head'] == head and r.get('ok')]
        if not pts:
            continue
        px = [r['pixels'] / 1e6 for r in pts]
        style = dict(color=cmap(i % 10), marker='o', lw=2 if head in ('SAHead', 'SNLHead',
                                                                       'GFFHead') else 1)
        ax_t.plot(px, [r['train_s'] for r in pts], label=head, **style)
        ax_m.plot(px, [r['train_mem_mib'] / 1024 for r in pts], label=head, **style)
    for ax, ylab in ((ax_t, 'fwd+bwd time (s)'), (ax_m, 'fwd+bwd peak memory over baseline '
                                                          '(GB)')):
        ax.set_xscale('log')
        ax.set_yscale('log')
        ax.set_xlabel('input pixels (M)')
        ax.set_ylabel(ylab)
        ax.grid(True, which='both', alpha=0.3)
    ax_m.legend(fontsize=8, loc='upper left')
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--heads', nargs='+', default=DEFAULT_HEADS,
                        help=f'heads (default all: {" ".join(DEFAULT_HEADS)})')
    parser.add_argument('--size', nargs=2, type=int, default=[512, 1024], metavar=('H', 'W'),
                        help='input image size; the features are 1/4 and 1/8 of it')
    parser.add_argument('--device', default='cpu', help='cpu or cuda[:N]')
    parser.add_argument('--batch', type=int, default=2,
                        help='images per batch (default 2 = the zoo\'s 4xb2 per-GPU batch; '
                        'train-mode BN needs > 1 for the 1x1 pooled branches)')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--amp', action='store_true',
                        help='autocast (float16 on CUDA, bfloat16 on CPU)')
    parser.add_argument('--sweep', action='store_true',
                        help=f'sweep the input sizes {SWEEP_SIZES} and plot')
    parser.add_argument('--budget-time', type=float, default=60.0,
                        help='sweep: skip sizes predicted above this many s per fwd+bwd step')
    parser.add_argument('--budget-mem', type=float, default=8.0,
                        help='sweep: skip sizes predicted above this many GB of peak memory')
    parser.add_argument('--threads', type=int, default=None,
                        help='OMP_NUM_THREADS of the workers (default: inherited)')
    parser.add_argument('--pair', nargs=2, metavar=('OURS', 'TWIN'), default=None,
                        help='also time one whole-model train step of two configs '
                        '(mmseg::<family>/<name>.py for zoo configs)')
    parser.add_argument('--snl-backend', default=None,
                        choices=['auto', 'triton', 'sparse', 'mmcv'],
                        help='backend of the sparse non-local op in SNLHead (default: the '
                        "config's, 'auto')")
    parser.add_argument('--out-dir', default=None,
                        help='write benchmark_heads[_sweep].{md,json} (and the sweep plot)')
    parser.add_argument('--plot', default=None,
                        help='sweep plot path (default <out-dir>/compare_sweep.png)')
    parser.add_argument('--_worker', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._worker is not None:
        return worker_main(args._worker)
    try:
        heads = [resolve_head(h) for h in args.heads]
    except ValueError as e:
        parser.error(str(e))
    if args.batch < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error('--batch and --repeats must be >= 1 and --warmup >= 0')
    if min(args.size) < 8:
        parser.error('--size: H and W must be >= 8 (the features are at 1/8)')
    if args.device.startswith('cuda'):
        import torch
        if not torch.cuda.is_available():
            parser.error('--device cuda: CUDA is not available here; use --device cpu')
    for cfg in args.pair or []:
        if not osp.isfile(resolve_config(cfg)):
            parser.error(f'--pair: config {cfg!r} not found (a project config path, or '
                         "'mmseg::<family>/<name>.py' for an mmseg zoo config)")
        from mmengine.config import Config
        if 'model' not in Config.fromfile(resolve_config(cfg)):
            parser.error(f'--pair: config {cfg!r} defines no model (a dataset, schedule or '
                         'runtime config?); give a full model config')
    sizes = SWEEP_SIZES if args.sweep else [tuple(args.size)]
    rows = benchmark(heads, sizes, args)
    amp = ', AMP' if args.amp else ''
    if args.snl_backend:
        amp += f', SNL backend {args.snl_backend}'
    header = (f'device {args.device}{amp}, batch {args.batch}, median of {args.repeats} after '
              f'{args.warmup} warm-up, ResNet-50-d8 feature shapes; memory: '
              f'{next((r["mem_method"] for r in rows if r.get("mem_method")), "-")} over the '
              'baseline\n\n')
    out = header + render_md(rows, args)
    pair_rows = []
    if args.pair:
        h, w = args.size
        for cfg in args.pair:
            job = dict(config=cfg, size=[h, w], batch=args.batch, device=args.device,
                       repeats=args.repeats, warmup=args.warmup, amp=args.amp,
                       snl_backend=args.snl_backend)
            res = run_job(job, 600, args.threads)
            res.update(config=cfg, size=f'{h}x{w}', batch=args.batch,
                       status=_status(res, args.device))
            pair_rows.append(res)
        out += '\nWhole-model train step (model.loss + backward):\n\n' + render_pairs(pair_rows)
    print(out)
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
        stem = 'benchmark_heads_sweep' if args.sweep else 'benchmark_heads'
        with open(osp.join(args.out_dir, stem + '.md'), 'w') as f:
            f.write(out)
        with open(osp.join(args.out_dir, stem + '.json'), 'w') as f:
            json.dump({'args': {k: v for k, v in vars(args).items() if k != '_worker'},
                       'rows': rows, 'pairs': pair_rows}, f, indent=1)
    if args.sweep and (args.out_dir or args.plot):
        path = args.plot or osp.join(args.out_dir, 'compare_sweep.png')
        plot(rows, path, 'Decode heads on ResNet-50-d8 features: ' + header.split(';')[0])
        print(f'plot: {path}')
    failed = failures(rows + pair_rows, args.batch)
    if failed:
        sys.exit(f'benchmark_heads: {len(failed)} measurement(s) failed:\n  ' + '\n  '.join(failed))
    return rows


if __name__ == '__main__':
    main()
