# Copyright (c) mmseg_ext contributors. All rights reserved.
"""Train-step time of each quickstart model, eager against ``torch.compile``; prints a table.

Each model (``configs/quickstart/{fcn,pspnet,sanet,ssanet,gffnet}_r18tiny-d8_1xb8-1k_synthcity-
128x256.py``, built by :func:`mmseg_ext.apis.build_segmentor` with ``weights='offline'``, SyncBN
as BN, train mode) runs in a fresh subprocess on a random batch (``--batch`` images of
``--size``, random labels). One train step: ``zero_grad``, ``model(inputs, data_samples,
mode='loss')``, ``parse_losses``, ``backward``, an SGD step (the configs' lr 0.01, momentum 0.9,
weight decay 5e-4). Eager: ``--warmup`` steps, then the median of ``--repeats`` timed steps.
Compiled: ``torch.compile(model)`` (``--backend``, Inductor by default; the optimizer step stays
eager, as under mmengine's ``compile=True``, whose compiled ``train_step`` breaks the graph at
``backward``), the first step timed alone (compilation + one step: ``first step``), then
``--warmup - 1`` steps and the median of ``--repeats``. ``compile`` = first step - compiled
step. ``graphs`` / ``breaks``: TorchDynamo's count of graphs compiled and of graph breaks
(``torch._dynamo.utils.counters``).

Inductor's on-disk caches go to a fresh temporary directory per model (``TORCHINDUCTOR_CACHE_DIR``),
so ``compile`` is a cold compilation; ``--warm-cache`` keeps the default cache
(``/tmp/torchinductor_$USER``).

    python tools/analysis_tools/benchmark_compile.py
    python tools/analysis_tools/benchmark_compile.py --heads ssanet fcn --size 64 64 --repeats 3
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import tempfile
import time
from typing import List, Optional

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
HEADS = ('fcn', 'pspnet', 'sanet', 'ssanet', 'gffnet')
CONFIG = osp.join(REPO, 'configs', 'quickstart', '{}_r18tiny-d8_1xb8-1k_synthcity-128x256.py')


def _batch(batch: int, size, seed: int = 1):
    import torch
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(seed)
    h, w = size
    inputs = torch.randn(batch, 3, h, w, generator=g)
    samples = []
    for _ in range(batch):
        sample = SegDataSample(metainfo=dict(img_shape=(h, w), pad_shape=(h, w),
                                             ori_shape=(h, w)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 19, (1, h, w), generator=g))
        samples.append(sample)
    return inputs, samples


def worker(job: dict) -> dict:
    """One model: eager and compiled step times (seconds) and TorchDynamo's counters."""
    import copy

    import torch
    import torch._dynamo
    from torch._dynamo.utils import counters

    from mmseg_ext.apis import build_segmentor
    if job['threads']:
        torch.set_num_threads(job['threads'])
    torch.manual_seed(0)
    model = build_segmentor(CONFIG.format(job['head']), weights='offline').train()
    twin = copy.deepcopy(model)
    inputs, samples = _batch(job['batch'], job['size'])

    def stepper(module, fn):
        opt = torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

        def step():
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss, _ = module.parse_losses(fn(inputs, samples, mode='loss'))
            loss.backward()
            opt.step()
            return time.perf_counter() - t0
        return step

    def timed(step, warmup):
        for _ in range(warmup):
            step()
        return statistics.median(step() for _ in range(job['repeats']))

    eager = timed(stepper(model, model), job['warmup'])
    torch._dynamo.reset()
    counters.clear()
    step = stepper(twin, torch.compile(twin, backend=job['backend']))
    first = step()
    compiled = timed(step, max(0, job['warmup'] - 1))
    return dict(head=job['head'], eager_s=eager, compiled_s=compiled, first_s=first,
                compile_s=first - compiled,
                graphs=int(counters['stats']['unique_graphs']),
                breaks=int(sum(counters['graph_break'].values())),
                threads=torch.get_num_threads(), torch=torch.__version__)


def run(job: dict, warm_cache: bool, timeout: float) -> dict:
    """:func:`worker` in a fresh subprocess (its own TorchDynamo state and Inductor cache)."""
    env = dict(os.environ)
    env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
    with tempfile.TemporaryDirectory(prefix='benchmark_compile_') as cache:
        if not warm_cache:
            env['TORCHINDUCTOR_CACHE_DIR'] = cache
        proc = subprocess.run([sys.executable, osp.abspath(__file__), '--worker',
                               json.dumps(job)], env=env, cwd=REPO, capture_output=True,
                              text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith('RESULT ')]
    if proc.returncode != 0 or not lines:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        return dict(head=job['head'], error=' / '.join(tail)[-300:])
    return json.loads(lines[-1][len('RESULT '):])


def render(rows: List[dict]) -> str:
    lines = ['| head | eager step (s) | compiled step (s) | speed-up | first compiled step (s) '
             '| compile (s) | graphs | breaks |', '|---|---|---|---|---|---|---|---|']
    for r in rows:
        if 'error' in r:
            lines.append(f"| {r['head']} | error: {r['error']} | | | | | | |")
            continue
        lines.append(f"| {r['head']} | {r['eager_s']:.3f} | {r['compiled_s']:.3f} | "
                     f"{r['eager_s'] / r['compiled_s']:.2f}x | {r['first_s']:.1f} | "
                     f"{r['compile_s']:.1f} | {r['graphs']} | {r['breaks']} |")
    return '\n'.join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--heads', nargs='+', default=list(HEADS), choices=HEADS)
    parser.add_argument('--size', nargs=2, type=int, default=[128, 256], metavar=('H', 'W'),
                        help='input size (default: the quickstart crop, 128 256)')
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--threads', type=int, default=None,
                        help='torch threads (default: torch\'s, one per core)')
    parser.add_argument('--backend', default='inductor', help='torch.compile backend')
    parser.add_argument('--warm-cache', action='store_true',
                        help='keep Inductor\'s default on-disk cache (compile is then warm)')
    parser.add_argument('--timeout', type=float, default=3600, help='seconds per model')
    parser.add_argument('--json', help='also write the rows to this file')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.warmup < 1 or args.repeats < 1:
        parser.error('--warmup and --repeats must be >= 1')
    return args


def main(argv=None) -> Optional[List[dict]]:
    args = parse_args(argv)
    if args.worker:
        print('RESULT ' + json.dumps(worker(json.loads(args.worker))), flush=True)
        return None
    rows = []
    for head in args.heads:
        job = dict(head=head, size=args.size, batch=args.batch, warmup=args.warmup,
                   repeats=args.repeats, threads=args.threads, backend=args.backend)
        rows.append(run(job, args.warm_cache, args.timeout))
        print(f'{head}: {rows[-1]}', file=sys.stderr, flush=True)
    ok = [r for r in rows if 'error' not in r]
    print(f'train step, batch {args.batch} x 3 x {args.size[0]} x {args.size[1]}, '
          f'backend {args.backend}, {args.warmup} warm-up + median of {args.repeats} steps, '
          f'{"warm" if args.warm_cache else "cold"} Inductor cache'
          + (f', torch {ok[0]["torch"]}, {ok[0]["threads"]} threads' if ok else ''))
    print(render(rows))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(args=vars(args), rows=rows), f, indent=1)
    if len(ok) < len(rows):
        sys.exit(1)
    return rows


if __name__ == '__main__':
    main()
