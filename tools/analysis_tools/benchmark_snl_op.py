"""Benchmark ``mmseg_ext.ops.sparse_nonlocal_attention`` against a naive and a dense version.

Methods (all forward + backward w.r.t. every input, fp32, B=1):

* ``naive``: ``grid_sample`` the keys and values at the N*K sampling points, then einsum
  (materialises N*K*(C+Cv) floats);
* ``dense``: the dense non-local block ``softmax(Q^T K) V`` (N x N affinity);
* ``ours``: :func:`mmseg_ext.ops.sparse_nonlocal_attention`.

Every (method, size) runs in a fresh subprocess so that peak memory is not polluted by earlier
runs. The child reports its own ``ru_maxrss`` (``RUSAGE_SELF``) before running (after
``import torch``, a warm-up of the same method on an 8x8 map and creating the inputs: the
baseline) and at the end; the table shows the
total peak RSS and the increment over the baseline ("extra", what the method itself needed).
(``RUSAGE_CHILDREN`` in the parent would be the maximum over all children so far, so the
child reports its own number instead.) Runs whose estimated memory exceeds ``--max-gb`` or time
exceeds ``--max-s`` are skipped.

Usage::

    python tools/analysis_tools/benchmark_snl_op.py [--sizes 32x64 64x128 128x256]
"""
import argparse
import json
import os
import subprocess
import sys
import time

# measured / scaled estimates used only to decide what to skip (seconds and bytes at N=64x128,
# K=81, C=256, Cv=512 on a 2-core CPU), scaled with N (naive, ours) or N^2 (dense).
_REF_N = 64 * 128
_EST = dict(
    naive=dict(s=31.0, b=4.7e9, power=1),
    dense=dict(s=3.6, b=0.85e9, power=2),
    ours=dict(s=1.0, b=0.3e9, power=1),
)


def _load_op_module():
    """Load mmseg_ext/ops/sparse_nonlocal.py by path: the op is pure torch, and not importing
    mmseg/mmcv keeps the baseline RSS the same for all methods."""
    import importlib.util
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.join(root, 'mmseg_ext', 'ops', 'sparse_nonlocal.py')
    spec = importlib.util.spec_from_file_location('_snl_op', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _make_case(method, h, w, k, c, cv, op):
    """Leaf inputs, output gradient and a closure running the method's forward."""
    import torch
    import torch.nn.functional as F

    kh = kw = k
    K = kh * kw
    q = torch.randn(1, c, h, w, requires_grad=True)
    key = torch.randn(1, c, h, w, requires_grad=True)
    v = torch.randn(1, cv, h, w, requires_grad=True)
    off = (torch.randn(1, 2 * K, h, w) * 2).requires_grad_()
    if method == 'ours':

        def run():
            return op.sparse_nonlocal_attention(q, key, v, off, (kh, kw))
    elif method == 'naive':

        def run():
            sy, sx = op.sample_coordinates(off, (kh, kw))
            grid = torch.stack([sx / (w - 1) * 2 - 1, sy / (h - 1) * 2 - 1], -1)
            ks = F.grid_sample(key, grid, align_corners=True)  # (1, C, N, K)
            vs = F.grid_sample(v, grid, align_corners=True)
            s = torch.einsum('bcn,bcnk->bnk', q.flatten(2), ks).softmax(-1)
            return torch.einsum('bnk,bcnk->bcn', s, vs).view(1, cv, h, w)
    elif method == 'dense':

        def run():
            a = torch.bmm(q.flatten(2).transpose(1, 2), key.flatten(2)).softmax(-1)
            return torch.bmm(v.flatten(2), a.transpose(1, 2)).view(1, cv, h, w)
    else:
        raise ValueError(method)
    return (q, key, v, off), torch.randn(1, cv, h, w), run


def _child(method, h, w, k, c, cv, reps, seed):
    import resource

    import torch

    torch.manual_seed(seed)
    op = _load_op_module()
    # warm-up on an 8x8 map: loads the kernels / libraries the method uses (sparse, MKL, ...),
    # so that their one-off memory is part of the baseline, not of the method's peak.
    leaves, grad, run = _make_case(method, 8, 8, k, c, cv, op)
    run().backward(grad)
    del leaves, grad, run
    leaves, grad, run = _make_case(method, h, w, k, c, cv, op)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    times = []
    for _ in range(reps):
        for t in leaves:
            t.grad = None
        t0 = time.perf_counter()
        out = run()
        out.backward(grad)
        times.append(time.perf_counter() - t0)
        del out
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(dict(time=min(times), times=times, base=base, peak=peak)))


def _run_one(method, h, w, args):
    reps = 1 if method == 'naive' else args.reps
    cmd = [sys.executable, __file__, '--child', method, f'{h}x{w}', '--k', str(args.k),
           '--c', str(args.c), '--cv', str(args.cv), '--reps', str(reps)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        return dict(error=res.stderr.strip().splitlines()[-1:] or ['failed'])
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--sizes', nargs='+', default=['32x64', '64x128', '128x256'])
    p.add_argument('--methods', nargs='+', default=['naive', 'dense', 'ours'])
    p.add_argument('--k', type=int, default=9, help='kernel side, K = k*k (paper: 81)')
    p.add_argument('--c', type=int, default=256, help='query/key channels')
    p.add_argument('--cv', type=int, default=512, help='value channels')
    p.add_argument('--reps', type=int, default=3, help='timed repetitions (min is reported)')
    p.add_argument('--max-gb', type=float, default=12.0, help='skip runs estimated above')
    p.add_argument('--max-s', type=float, default=120.0, help='skip runs estimated above')
    p.add_argument('--child', nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        h, w = map(int, args.child[1].split('x'))
        _child(args.child[0], h, w, args.k, args.c, args.cv, args.reps, seed=0)
        return

    import torch
    print(f'torch {torch.__version__}, threads {torch.get_num_threads()}, K={args.k ** 2}, '
          f'C={args.c}, Cv={args.cv}, B=1, fp32, forward+backward; '
          f'load average before: {os.getloadavg()[0]:.2f}')
    rows, results = [], {}
    for size in args.sizes:
        h, w = map(int, size.split('x'))
        for m in args.methods:
            scale = (h * w / _REF_N)**_EST[m]['power']
            est_s, est_b = _EST[m]['s'] * scale, _EST[m]['b'] * scale
            if est_b > args.max_gb * 1e9 or est_s * (1 if m == 'naive' else args.reps + 1) \
                    > args.max_s:
                rows.append((m, size, f'skipped (est. {est_s:.0f} s, {est_b / 1e9:.1f} GB)',
                             '', ''))
                continue
            r = _run_one(m, h, w, args)
            if 'error' in r:
                rows.append((m, size, f'error: {r["error"]}', '', ''))
                continue
            results[(m, size)] = r
            rows.append((m, size, f'{r["time"]:.3f}', f'{r["peak"] / 2**20:.0f}',
                         f'{(r["peak"] - r["base"]) / 2**20:.0f}'))
            print(f'  done {m} {size}: {rows[-1][2]} s', file=sys.stderr, flush=True)

    print('\n| method | size (HxW) | fwd+bwd time (s) | peak RSS (MiB) '
          '| extra over baseline (MiB) |')
    print('|---|---|---|---|---|')
    for r in rows:
        print('| ' + ' | '.join(r) + ' |')
    print(f'load average after: {os.getloadavg()[0]:.2f}')
    key = '64x128'
    if all((m, key) in results for m in ('naive', 'dense', 'ours')):
        o, d, n = (results[(m, key)] for m in ('ours', 'dense', 'naive'))
        print(f'\nat {key}: time ours/dense = {o["time"] / d["time"]:.3f} (goal <= 0.5); '
              f'peak RSS ours/naive = {o["peak"] / n["peak"]:.3f}, extra memory ours/naive = '
              f'{(o["peak"] - o["base"]) / (n["peak"] - n["base"]):.3f} (goal <= 0.1)')


if __name__ == '__main__':
    main()
