"""Benchmark ``mmseg_ext.ops.sparse_nonlocal_attention`` against a naive and a dense version.

B=1, K = k*k, C query/key channels, Cv value channels, random offsets (std 2 px); forward +
backward w.r.t. every input.

``--device cpu`` (default), fp32:

* ``naive``: ``grid_sample`` the keys and values at the N*K sampling points, then einsum
  (materialises N*K*(C+Cv) floats);
* ``dense``: the dense non-local block ``softmax(Q^T K) V`` (N x N affinity);
* ``ours``: :func:`mmseg_ext.ops.sparse_nonlocal_attention` (``backend='auto'``, on CPU the
  chunked sparse path).

The child reports its own ``ru_maxrss`` (``RUSAGE_SELF``) before running (after ``import torch``,
a warm-up of the same method on an 8x8 map and creating the inputs: the baseline) and at the
end; the table shows the total peak RSS and the increment over the baseline ("extra", what the
method itself needed). (``RUSAGE_CHILDREN`` in the parent would be the maximum over all children
so far, so the child reports its own number instead.) Runs whose estimated memory exceeds
``--max-gb`` or time exceeds ``--max-s`` are skipped. Time = fastest of ``--reps``.

``--device cuda``: forward (under ``no_grad``) and forward+backward timed separately with CUDA
events (median of ``--reps`` after ``--warmup`` runs); memory = ``torch.cuda.max_memory_allocated``
during one forward+backward minus the memory allocated before it (inputs and output gradient),
i.e. the extra memory of the method. Methods:

* ``triton`` / ``triton_bf16``: the op with ``backend='triton'``, fp32 / bf16 inputs; the fp32
  row also reports the largest difference of the output and the four gradients from
  ``backend='sparse'`` on the same inputs (relative to each tensor's largest magnitude);
* ``mmcv``: ``backend='mmcv'`` (Triton logits, mmcv's CUDA MSDA for the values), fp32;
* ``sparse``: ``backend='sparse'`` (the chunked path; slow on CUDA, not in the default list);
* ``naive``, ``dense``: as above, fp32;
* ``sdpa_bf16``: dense attention with ``F.scaled_dot_product_attention`` in bf16, value width Cv;
  ``sdpa_bf16_cv=c``: the same with Cv = C (where flash attention applies).

``--triton-blocks FWD,BWD`` overrides the register budgets of the Triton kernels' row-block
tiles (elements; default 2048,1024: 4 and 2 query rows per program at C=256, Cv=512) for a
tuning sweep. ``--static`` compiles the kernels without a GPU and prints their resource use
(registers against their budget, SASS local-memory / atomic / 16-byte load counts; see
``mmseg_ext/ops/sparse_nonlocal/triton_static.py``).

Every (method, size) runs in a fresh subprocess, so that peak memory is not polluted by earlier
runs and an out-of-memory error only costs its own row.

Usage::

    python tools/analysis_tools/benchmark_snl_op.py [--sizes 32x64 64x128 128x256]
    python tools/analysis_tools/benchmark_snl_op.py --device cuda [--sizes 64x128 128x256]
    python tools/analysis_tools/benchmark_snl_op.py --static [--arch 80 90]   # no GPU needed
    python tools/analysis_tools/benchmark_snl_op.py --static --static-shapes shipped
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# measured / scaled estimates used only to decide what to skip on CPU (seconds and bytes at
# N=64x128, K=81, C=256, Cv=512 on a 2-core CPU), scaled with N (naive, ours) or N^2 (dense).
_REF_N = 64 * 128
_EST = dict(
    naive=dict(s=31.0, b=4.7e9, power=1),
    dense=dict(s=3.6, b=0.85e9, power=2),
    ours=dict(s=1.0, b=0.3e9, power=1),
)
CPU_METHODS = ['naive', 'dense', 'ours']
CUDA_METHODS = ['triton', 'triton_bf16', 'mmcv', 'naive', 'dense', 'sdpa_bf16', 'sdpa_bf16_cv=c']
ALL_CUDA_METHODS = CUDA_METHODS + ['sparse']
# method -> (op backend or None, dtype name)
_OP_METHODS = dict(ours=('auto', 'float32'), triton=('triton', 'float32'),
                   triton_bf16=('triton', 'bfloat16'), mmcv=('mmcv', 'float32'),
                   sparse=('sparse', 'float32'))


def _load_op_module():
    """Load the package mmseg_ext/ops/sparse_nonlocal by path: the op is pure torch (plus
    triton), and not importing mmseg/mmcv keeps the baseline RSS the same for all methods."""
    import importlib.util
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    pkg = os.path.join(root, 'mmseg_ext', 'ops', 'sparse_nonlocal')
    spec = importlib.util.spec_from_file_location(
        '_snl_op', os.path.join(pkg, '__init__.py'), submodule_search_locations=[pkg])
    mod = importlib.util.module_from_spec(spec)
    sys.modules['_snl_op'] = mod  # its submodules import relatively
    spec.loader.exec_module(mod)
    return mod


def _make_case(method, h, w, k, c, cv, op, device='cpu'):
    """Leaf inputs, output gradient and a closure running the method's forward."""
    import torch
    import torch.nn.functional as F

    kh = kw = k
    K = kh * kw
    dtype = torch.bfloat16 if method.endswith('bf16') or method.startswith('sdpa') \
        else torch.float32
    if method == 'sdpa_bf16_cv=c':
        cv = c

    def leaf(*shape, scale=1.0):
        return (torch.randn(*shape, device=device) * scale).to(dtype).requires_grad_()

    if method.startswith('sdpa'):  # (B, heads, N, channels) layout, as SDPA takes it
        q, key, v = leaf(1, 1, h * w, c), leaf(1, 1, h * w, c), leaf(1, 1, h * w, cv)

        def run():
            return F.scaled_dot_product_attention(q, key, v)
        return (q, key, v), torch.randn(1, 1, h * w, cv, device=device, dtype=dtype), run
    q, key, v = leaf(1, c, h, w), leaf(1, c, h, w), leaf(1, cv, h, w)
    off = leaf(1, 2 * K, h, w, scale=2.0)
    if method in _OP_METHODS:
        backend = _OP_METHODS[method][0]

        def run():
            return op.sparse_nonlocal_attention(q, key, v, off, (kh, kw), backend=backend)
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
        raise ValueError(f'unknown method {method!r}')
    return (q, key, v, off), torch.randn(1, cv, h, w, device=device, dtype=dtype), run


def _child_cpu(method, h, w, k, c, cv, reps, seed):
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
    return dict(time=min(times), times=times, base=base, peak=peak)


def _cuda_median_s(fn, reps, warmup):
    """Median wall time of ``fn`` on the current CUDA stream, measured with CUDA events."""
    import torch
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def _max_rel_diff(a, b):
    return ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-30)).item()


def _check_against_sparse(op, leaves, grad, run, k):
    """Largest relative difference of output and gradients from ``backend='sparse'``."""
    import torch
    out = run()
    got = torch.autograd.grad(out, leaves, grad)
    ref = op.sparse_nonlocal_attention(*leaves, (k, k), backend='sparse')
    want = torch.autograd.grad(ref, leaves, grad)
    return max(_max_rel_diff(a, b) for a, b in zip((out, ) + got, (ref, ) + want))


def _set_triton_blocks(op, blocks):
    """Override the Triton launch tiles, ``blocks`` = 'FWD,BWD': the register budgets (elements
    of one row-block tile) of the forward and of the query-side backward; rows per program =
    budget // widest row, rounded down to a power of two."""
    fwd, bwd = (int(x) for x in blocks.split(','))
    tk = op._triton_module()
    tk._ROW_TILE, tk._ROW_TILE_BWD = fwd, bwd


def _child_cuda(method, h, w, k, c, cv, reps, warmup, seed, triton_blocks=None):
    import torch

    torch.manual_seed(seed)
    op = _load_op_module()
    if triton_blocks:
        _set_triton_blocks(op, triton_blocks)
    leaves, grad, run = _make_case(method, h, w, k, c, cv, op, device='cuda')

    def fwd():
        with torch.no_grad():
            run()

    def fwd_bwd():
        for t in leaves:
            t.grad = None
        run().backward(grad)

    res = dict(fwd_s=_cuda_median_s(fwd, reps, warmup))
    res['fwd_bwd_s'] = _cuda_median_s(fwd_bwd, reps, warmup)
    for t in leaves:
        t.grad = None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fwd_bwd()
    torch.cuda.synchronize()
    res['extra_mib'] = (torch.cuda.max_memory_allocated() - base) / 2**20
    if method == 'triton':
        res['max_rel_diff_vs_sparse'] = _check_against_sparse(op, leaves, grad, run, k)
    return res


def _run_one(method, h, w, args):
    reps = 1 if (method == 'naive' and args.device == 'cpu') else args.reps
    cmd = [sys.executable, os.path.abspath(__file__), '--child', method, f'{h}x{w}', '--k',
           str(args.k), '--c', str(args.c), '--cv', str(args.cv), '--reps', str(reps),
           '--warmup', str(args.warmup), '--device', args.device]
    if args.triton_blocks:
        cmd += ['--triton-blocks', args.triton_blocks]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        return dict(error=(res.stderr.strip().splitlines() or ['failed'])[-1][:200])
    return json.loads(res.stdout.strip().splitlines()[-1])


def _main_cpu(args):
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
    return results


def _cuda_goals(results):
    """Lines comparing the measured rows with the issue's goals (only those measured)."""
    lines = []

    def get(m, size, key):
        return results.get((m, size), {}).get(key)

    for size, goal in (('64x128', 1.0), ('128x256', 0.25)):
        t, d = get('triton', size, 'fwd_bwd_s'), get('dense', size, 'fwd_bwd_s')
        if t and d:
            lines.append(f'{size}: triton fp32 fwd+bwd / dense fp32 = {t / d:.3f} '
                         f'(goal <= {goal})')
        t, n = get('triton', size, 'extra_mib'), get('naive', size, 'extra_mib')
        if t is not None and n:
            lines.append(f'{size}: extra memory triton / naive = {t / n:.3f} (goal <= 0.05)')
    t = get('triton_bf16', '128x256', 'fwd_s')
    if t:
        lines.append(f'128x256: triton bf16 forward = {t * 1e3:.2f} ms (goal <= 2 ms)')
    return lines


def _main_cuda(args):
    import torch
    if not torch.cuda.is_available():
        sys.exit('--device cuda: CUDA is not available here; use --device cpu')
    blocks = f', Triton tile {args.triton_blocks}' if args.triton_blocks else ''
    print(f'{torch.cuda.get_device_name()}, torch {torch.__version__}, K={args.k ** 2}, '
          f'C={args.c}, Cv={args.cv}, B=1, median of {args.reps} after {args.warmup} warm-up '
          f'(CUDA events){blocks}; {time.strftime("%Y-%m-%d")}')
    rows, results = [], {}
    for size in args.sizes:
        h, w = map(int, size.split('x'))
        for m in args.methods:
            r = _run_one(m, h, w, args)
            if 'error' in r:
                rows.append((m, size, f'error: {r["error"]}', '', '', ''))
                continue
            results[(m, size)] = r
            diff = r.get('max_rel_diff_vs_sparse')
            rows.append((m, size, f'{r["fwd_s"] * 1e3:.2f}', f'{r["fwd_bwd_s"] * 1e3:.2f}',
                         f'{r["extra_mib"]:.0f}', '' if diff is None else f'{diff:.1e}'))
            print(f'  done {m} {size}', file=sys.stderr, flush=True)
    print('\n| method | size (HxW) | fwd (ms) | fwd+bwd (ms) | extra memory fwd+bwd (MiB) '
          '| max rel. diff vs sparse |')
    print('|---|---|---|---|---|---|')
    for r in rows:
        print('| ' + ' | '.join(r) + ' |')
    goals = _cuda_goals(results)
    if goals:
        print('\n' + '\n'.join(goals))
    return results


def _int_at_least(low, what):
    """An argparse type: an int >= ``low``; the error says what the number is."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'{what}: an integer >= {low}, got {text!r}')
        if value < low:
            raise argparse.ArgumentTypeError(f'{what}: must be >= {low}, got {value}')
        return value
    return parse


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        value = float('nan')
    if not value > 0 or value == float('inf'):
        raise argparse.ArgumentTypeError(f'a finite number > 0, got {text!r}')
    return value


def _size(text):
    """An argparse type: 'HxW' with H, W >= 1, returned as 'HxW'."""
    h, sep, w = text.lower().partition('x')
    if not (sep and h.isdigit() and w.isdigit() and int(h) >= 1 and int(w) >= 1):
        raise argparse.ArgumentTypeError(
            f'a size is HxW in pixels with H, W >= 1, e.g. 64x128; got {text!r}')
    return f'{int(h)}x{int(w)}'


def _triton_blocks(text):
    """An argparse type: 'FWD,BWD', two powers of two (register budgets of the row-block tiles)."""
    parts = text.split(',')
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 and not int(p) & (int(p) - 1)
                                  for p in parts):
        raise argparse.ArgumentTypeError(
            f'FWD,BWD: two powers of two, e.g. 4096,2048; got {text!r}')
    return text


def _main_static(args):
    """``--static``: compile every kernel of the Triton backend for each ``--arch``, shape and
    dtype as the JIT would at launch (no GPU needed) and print, per kernel, its registers
    against the budget of its occupancy target, what its SASS holds (local-memory instructions,
    atomics, 16-byte loads against what its row tiles allow), ptxas's spill bytes where ptxas
    was run, triton's shared memory and the problems found (see
    mmseg_ext/ops/sparse_nonlocal/triton_static.py)."""
    os.environ.pop('TRITON_INTERPRET', None)  # compiled kernels, also when run from the tests
    import importlib

    import torch
    import triton
    _load_op_module()
    ts = importlib.import_module('_snl_op.triton_static')
    if args.static_shapes == ['shipped']:
        cases = ts.shipped_cases()
    elif args.static_shapes:
        bad = [s for s in args.static_shapes if s not in ts.SHAPES]
        if bad:
            sys.exit(f'--static-shapes: unknown {bad}; choose from shipped '
                     f'{" ".join(ts.SHAPES)}')
        cases = [(s, ts.SHAPES[s], d) for s in args.static_shapes for d in args.dtypes]
    else:
        h, w = map(int, args.static_size.split('x'))
        shape = ts.Shape(args.c, args.cv, (args.k, args.k), (h, w), 1, '--k/--c/--cv')
        cases = [(f'c{args.c}-cv{args.cv}-k{args.k ** 2}', shape, d) for d in args.dtypes]
    if args.per_point:
        return _per_point(ts, cases, args.arch)
    t0 = time.time()
    rows, tools = ts.survey(cases, args.arch, ptxas=args.ptxas)
    print(f'triton {triton.__version__}, torch {torch.__version__}; compiled as at launch (no GPU '
          f'used); {time.strftime("%Y-%m-%d")}; SASS: {tools["nvdisasm"] or "none"} '
          f'({tools["nvdisasm_from"]}); {len(rows)} kernels in {time.time() - t0:.0f} s')
    sass = tools['nvdisasm'] is not None
    print('\n| kernel | sm | dtype | shape | rows/program | warps | registers | budget | '
          + ('LDL/STL | ATOM/RED | LDG.128 (allowed) | ' if sass else
             'atom/red (PTX) | ld.global.v4 (allowed) | ')
          + 'spill bytes (ptxas) | shared (B) | problems |')
    print('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|')
    for r in rows:
        cols = ([r['sass_local'], r['sass_atomics'], f"{r['sass_ldg128']} ({r['expected_v4']})"]
                if sass else [r['atomics'], f"{r['ld_global_v4']} ({r['expected_v4']})"])
        spill = '-' if r['spill_bytes'] is None else r['spill_bytes']
        print(f"| {r['kernel']} | {r['arch']} | {r['dtype']} | {r['shape']} | "
              f"{r['rows_per_program']} | {r['warps']} | {r['registers']} | {r['budget']} | "
              + ' | '.join(map(str, cols)) + f" | {spill} | {r['shared']} | "
              + ('; '.join(f'{k}: {v}' for k, v in r['problems'].items()) or '-') + ' |')
    if args.summary:
        _static_summary(rows, sass)
    print(json.dumps(dict(triton=triton.__version__, tools=tools, kernels=rows)))
    return rows


def _static_summary(rows, sass):
    """``--summary``: the two tables of docs/benchmarks.md for this triton: the benchmark shape
    (c256-k81) on sm_90 per kernel, and each kernel's register range per arch and dtype over
    the shapes surveyed."""
    import triton
    version = triton.__version__
    kernels = list(dict.fromkeys(r['kernel'] for r in rows))
    dtypes = [d for d in ('fp16', 'bf16', 'fp32') if any(r['dtype'] == d for r in rows)]
    bench = {(r['kernel'], r['dtype']): r for r in rows
             if r['arch'] == 90 and r['shape'] == 'c256-k81'}
    if bench:
        print(f"\nBenchmark shape (c256-k81), sm_90, triton {version}:\n")
        print('| kernel | rows/program | registers (' + ' / '.join(dtypes) + ') | '
              + ('LDG.E.128 = allowed' if sass else 'ld.global.v4 / allowed') + ' ('
              + ' / '.join(dtypes) + ') | local (LDL/STL) | shared, fp32 (B) |')
        print('|---|---|---|---|---|---|')
        for k in kernels:
            got = [bench.get((k, d)) for d in dtypes]
            if not all(got):
                continue
            v4 = ' / '.join(str(r['sass_ldg128'] if sass else r['ld_global_v4'])
                            + ('' if (r['sass_ldg128'] if sass else r['ld_global_v4'])
                               == r['expected_v4'] else f" (allowed {r['expected_v4']})")
                            for r in got)
            local = sum((r['sass_local'] or 0) if sass else (r['spill_bytes'] or 0) for r in got)
            per = sorted({r['rows_per_program'] for r in got})
            print(f"| {k} | "
                  + (str(per[0]) if len(per) == 1
                     else ' / '.join(str(r['rows_per_program']) for r in got)) + ' | '
                  + ' / '.join(str(r['registers']) for r in got) + f' | {v4} | {local} | '
                  + f"{bench.get((k, 'fp32'), got[-1])['shared']} |")
    archs = sorted({r['arch'] for r in rows})
    shapes = sorted({r['shape'] for r in rows})
    print(f'\nRegisters over {len(shapes)} shapes (min-max; budget per kernel in '
          f'triton_static.OCCUPANCY), triton {version}:\n')
    cols = [(a, d) for a in archs for d in dtypes]
    print('| kernel | ' + ' | '.join(f'sm_{a} {d}' for a, d in cols) + ' |')
    print('|---|' + '---|' * len(cols))
    for k in kernels:
        cells = []
        for a, d in cols:
            regs = [r['registers'] for r in rows if (r['kernel'], r['arch'], r['dtype']) ==
                    (k, a, d)]
            lo, hi = min(regs), max(regs)
            cells.append(str(lo) if lo == hi else f'{lo}-{hi}')
        print(f'| {k} | ' + ' | '.join(cells) + ' |')


#: Corners of the model's assumption band (issue efficiency, L1 hit rate of the gathers).
MODEL_BAND = ((1.0, 0.75), (0.5, 0.5))
_POINT_KERNELS = ('forward', 'bwd_query', 'logits_fwd', 'logits_bwd_query')


def _per_point(ts, cases, archs):
    """``--static --per-point``: per kernel that loops over the points, the SASS instructions
    of each loop body (one point, one warp) by class, and its time by ts.predict_ms at the two
    corners of MODEL_BAND (the gathers: 4 corner rows of the query/key width, and for the
    attention kernels of the value width, per row and point)."""
    import torch
    import triton
    nvdisasm, where = ts.nvdisasm_path()
    if not nvdisasm:
        sys.exit(f'--per-point reads the SASS: no nvdisasm ({where})')
    print(f'triton {triton.__version__}, torch {torch.__version__}; compiled as at launch (no GPU '
          f'used); {time.strftime("%Y-%m-%d")}; SASS: {nvdisasm}; model: {ts.H100}, (issue '
          f'efficiency, L1 hit) = {MODEL_BAND}')
    print('\n| kernel | sm | dtype | shape | rows/program | registers | instructions / point / '
          'warp (per loop) | floating | integer | select | convert | memory | shuffle | '
          'control | rest | model (ms) |')
    print('|' + '---|' * 16)
    rows = []
    for arch in archs:
        for sname, sh, dname in cases:
            elem = torch.empty(0, dtype=ts.DTYPES[dname]).element_size()
            for name, launch in ts.launches(ts.DTYPES[dname], sh.hw, sh.C, sh.CV, sh.kernel,
                                            batch=sh.batch):
                if name not in _POINT_KERNELS:
                    continue
                prof = ts.point_profile(name, launch, arch, nvdisasm)
                width = sh.C + (sh.CV if name in ('forward', 'bwd_query') else 0)
                gathered = launch.args[0].shape[0] * prof['K'] * 4 * width * elem
                model = [ts.predict_ms(prof, gathered, e, h)['ms'] for e, h in MODEL_BAND]
                cls = {c: sum(lp[c] for lp in prof['loops'])
                       for c in (*ts.SASS_CLASSES, 'integer')}
                print(f"| {name} | {arch} | {dname} | {sname} | {prof['rows_per_program']} | "
                      f"{prof['registers']} | {prof['per_point']} ("
                      + ' + '.join(str(lp['instructions']) for lp in prof['loops']) + ') | '
                      + ' | '.join(str(cls[c]) for c in ('floating', 'integer', 'select',
                                                         'convert', 'memory', 'shuffle',
                                                         'control'))
                      + f" | {prof['rest']} | {model[0]:.2f}-{model[1]:.2f} |")
                rows.append(dict(prof, dtype=dname, shape=sname, model_ms=model))
    print(json.dumps(dict(triton=triton.__version__, band=MODEL_BAND, gpu=ts.H100,
                          kernels=rows)))
    return rows


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    p.add_argument('--sizes', nargs='+', default=None, type=_size,
                   help='HxW maps (default: 32x64 64x128 128x256 on CPU, 64x128 128x256 on '
                   'CUDA)')
    p.add_argument('--methods', nargs='+', default=None,
                   help=f'default: {" ".join(CPU_METHODS)} on CPU, {" ".join(CUDA_METHODS)} '
                   'on CUDA (also: sparse)')
    p.add_argument('--k', type=_int_at_least(1, 'kernel side'), default=9,
                   help='kernel side, K = k*k (paper: 81)')
    p.add_argument('--c', type=_int_at_least(1, 'channels'), default=256, help='query/key channels')
    p.add_argument('--cv', type=_int_at_least(1, 'channels'), default=512, help='value channels')
    p.add_argument('--reps', type=_int_at_least(1, 'repetitions'), default=None,
                   help='timed repetitions (default 3 on CPU, min reported; 20 on CUDA, median)')
    p.add_argument('--warmup', type=_int_at_least(0, 'warm-up runs'), default=3,
                   help='CUDA warm-up runs')
    p.add_argument('--triton-blocks', default=None, type=_triton_blocks, metavar='FWD,BWD',
                   help='CUDA: register budgets of the Triton row-block tiles, e.g. 4096,2048 '
                   '(default 2048,1024; powers of two)')
    p.add_argument('--max-gb', type=_positive_float, default=12.0,
                   help='CPU: skip runs estimated above')
    p.add_argument('--max-s', type=_positive_float, default=120.0,
                   help='CPU: skip runs estimated above')
    p.add_argument('--static', action='store_true',
                   help='compile the Triton kernels for --arch (no GPU) and print registers, '
                   'spills, shared memory and instruction counts per kernel')
    p.add_argument('--static-size', default='128x256', type=_size, metavar='HxW',
                   help='--static: map size of the launches (default 128x256)')
    p.add_argument('--static-shapes', nargs='+', default=None, metavar='NAME',
                   help='--static: shapes of triton_static.SHAPES (each in --dtypes), or '
                   '"shipped": those of the compile test (every shipped config\'s C, Cv, K in '
                   'fp16, bf16, fp32); default: --k, --c, --cv at --static-size')
    p.add_argument('--arch', nargs='+', type=_int_at_least(50, 'compute capability'),
                   default=[80, 90],
                   help='--static: compute capabilities (default 80 90)')
    p.add_argument('--dtypes', nargs='+', default=['fp16', 'bf16', 'fp32'],
                   choices=['fp16', 'bf16', 'fp32'],
                   help='--static: input dtypes (default fp16 bf16 fp32)')
    p.add_argument('--ptxas', action='store_true',
                   help='--static: also run ptxas -v for spill bytes where the SASS is read')
    p.add_argument('--summary', action='store_true',
                   help='--static: also print the summary tables of docs/benchmarks.md (the '
                   'benchmark shape on sm_90, register ranges over the shapes)')
    p.add_argument('--per-point', action='store_true',
                   help='--static: instead, the SASS instructions per point of the kernels that '
                   'loop over the K points (by class) and the model time of triton_static.'
                   'predict_ms (needs nvdisasm)')
    p.add_argument('--child', nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    cuda = args.device == 'cuda'
    args.sizes = args.sizes or (['64x128', '128x256'] if cuda else ['32x64', '64x128', '128x256'])
    args.methods = args.methods or (CUDA_METHODS if cuda else CPU_METHODS)
    args.reps = args.reps or (20 if cuda else 3)
    allowed = ALL_CUDA_METHODS if cuda else CPU_METHODS
    bad = [m for m in args.methods if m not in allowed]
    if bad:
        p.error(f'--methods {bad} not available with --device {args.device}; choose from '
                f'{allowed}')
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        h, w = map(int, args.child[1].split('x'))
        if args.device == 'cuda':
            res = _child_cuda(args.child[0], h, w, args.k, args.c, args.cv, args.reps,
                              args.warmup, seed=0, triton_blocks=args.triton_blocks)
        else:
            res = _child_cpu(args.child[0], h, w, args.k, args.c, args.cv, args.reps, seed=0)
        print(json.dumps(res))
        return res
    if args.static:
        return _main_static(args)
    return _main_cuda(args) if args.device == 'cuda' else _main_cpu(args)


if __name__ == '__main__':
    main()
