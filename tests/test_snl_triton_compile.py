"""Compile-time evidence for the Triton kernels of the SNL op, without a GPU, on the installed
triton (CI runs it on each stack's triton: 3.x and 2.1).

``tools/analysis_tools/benchmark_snl_op.py --static`` compiles every kernel of a forward +
backward (and of the mmcv composition's logits path) as the JIT would at launch: the real launch
parameters for a 128x256 map, K = 81, C = 256, Cv = 512, pointers and 16-divisible ints
specialised as divisible by 16, for sm_80 and sm_90, fp32 and bf16 inputs, with triton's own
bundled ptxas. Asserted: every kernel compiles, none spills registers, and no kernel has an
atomic instruction (``atom`` / ``red`` in its PTX): the backward is deterministic. A second
test shows that those counters do see atomics and spills where there are some.
"""
import json
import os
import subprocess
import sys

import pytest

triton = pytest.importorskip('triton')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _has_nvidia_backend() -> bool:
    try:
        if int(triton.__version__.split('.')[0]) >= 3:
            from triton.backends.nvidia import compiler  # noqa: F401
        else:
            from triton.common.backend import path_to_ptxas
            path_to_ptxas()
    except Exception:  # no CUDA backend / ptxas in this triton wheel
        return False
    return True


def test_kernels_compile_without_spills_or_atomics():
    if not _has_nvidia_backend():
        pytest.skip(f"triton {triton.__version__} has no NVIDIA backend / bundled ptxas")
    env = {k: v for k, v in os.environ.items() if k != 'TRITON_INTERPRET'}
    env['OMP_NUM_THREADS'] = '1'
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'analysis_tools',
                                                        'benchmark_snl_op.py'), '--static',
                           '--k', '9', '--c', '256', '--cv', '512', '--arch', '80', '90'],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res['triton'] == triton.__version__
    kernels = res['kernels']
    names = {k['kernel'] for k in kernels}
    assert names == {'forward', 'bwd_query', 'bwd_corners', 'bwd_pull_dv', 'bwd_pull_dk',
                     'logits_fwd', 'logits_bwd_query'}
    assert {(k['arch'], k['dtype']) for k in kernels} == {(a, d) for a in (80, 90)
                                                          for d in ('fp32', 'bf16')}
    assert len(kernels) == 4 * len(names)
    for k in kernels:
        where = f"{k['kernel']} sm_{k['arch']} {k['dtype']}"
        assert 0 < k['registers'] <= 255, where
        assert k['spill_bytes'] == 0, f'{where} spills {k["spill_bytes"]} bytes'
        assert k['atomics'] == 0, f'{where} has {k["atomics"]} atomic instructions'
        assert k['ld_global'] > 0 and k['st_global'] > 0, where


_PROBE = '''
import importlib, importlib.util, sys
import torch, triton, triton.language as tl
spec = importlib.util.spec_from_file_location('bench', sys.argv[1])
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
bench._load_op_module()
ts = importlib.import_module('_snl_op.triton_static')
tk = importlib.import_module('_snl_op.triton_kernels')


@triton.jit
def atomic_kernel(x_ptr, y_ptr, N, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.atomic_add(y_ptr + i % 7, tl.load(x_ptr + i, mask=i < N, other=0.0), mask=i < N)


x = torch.empty(64, device='meta')
atomic = tk.Launch(atomic_kernel, (4, ), (x, x, 64), dict(BLOCK=16), 4)
print('atomics', ts.kernel_stats(ts.compile_launch(atomic, 90))['atomics'])
tk._ROW_TILE = 2**15  # 16 rows x 512 channels per tile: far past the register file
fwd = dict(ts.launches(torch.float32))['forward']
print('spills', ts.kernel_stats(ts.compile_launch(fwd, 90))['spill_bytes'])
'''


def test_static_counters_see_atomics_and_spills(tmp_path):
    """The counters the test above relies on are not blind: an atomic_add kernel shows atomics,
    and the forward with an oversized row tile shows spills."""
    if not _has_nvidia_backend():
        pytest.skip(f"triton {triton.__version__} has no NVIDIA backend / bundled ptxas")
    script = tmp_path / 'probe.py'
    script.write_text(_PROBE)
    env = {k: v for k, v in os.environ.items() if k != 'TRITON_INTERPRET'}
    env['OMP_NUM_THREADS'] = '1'
    proc = subprocess.run([sys.executable, str(script), os.path.join(
        ROOT, 'tools', 'analysis_tools', 'benchmark_snl_op.py')], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = dict(line.split() for line in proc.stdout.strip().splitlines()[-2:])
    assert int(found['atomics']) > 0 and int(found['spills']) > 0, found
