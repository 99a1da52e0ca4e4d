"""Compile the Triton kernels as the JIT would at launch, without a GPU, and read what they use.

Used by ``tests/test_snl_triton.py`` (no register spills, no atomics in the backward, on every
triton CI installs) and ``tools/analysis_tools/benchmark_snl_op.py --static`` (the table in
docs/benchmarks.md). The launches are the real ones: :func:`launches` runs the planners of
:mod:`.triton_kernels` on ``meta`` tensors of the real shapes and dtypes, and :func:`compile_launch`
specialises their arguments the way the JIT does at a launch (pointers, and ints divisible by
16, marked divisible by 16; ints equal to 1 made constants), for a given compute capability,
with triton's bundled ptxas. Needs the triton compiler but no GPU and no CUDA driver; the
kernels must have been decorated with TRITON_INTERPRET unset (run this in a subprocess when the
interpreter is on).
"""
import re
import subprocess
import tempfile
from typing import Dict, List, Tuple

import torch
import triton

from . import triton_kernels as tk

__all__ = ['launches', 'compile_launch', 'kernel_stats', 'ATOMIC_RE']

#: PTX atomic / reduction instructions.
ATOMIC_RE = re.compile(r'^\s*(?:@%p\d+\s+)?(atom|red)\.', re.M)
_TRITON_MAJOR = int(triton.__version__.split('.')[0])


def launches(dtype: torch.dtype, hw: Tuple[int, int] = (128, 256), C: int = 256, CV: int = 512,
             kernel: Tuple[int, int] = (9, 9), dilation: int = 1, batch: int = 1
             ) -> List[Tuple[str, 'tk.Launch']]:
    """Every launch of a forward + backward (attention, and the logits-only path of the mmcv
    composition) with ``dtype`` inputs, as ``(name, Launch)`` on meta tensors."""
    meta = dict(device='meta')
    H, W = hw
    R, K = batch * H * W, kernel[0] * kernel[1]
    q, k = (torch.empty(R, C, dtype=dtype, **meta) for _ in range(2))
    v, g = (torch.empty(R, CV, dtype=dtype, **meta) for _ in range(2))
    off = torch.empty(R, K, 2, dtype=dtype, **meta)
    geo = tk._geom((q, k, v, off), hw, kernel, dilation)
    s = torch.empty(R, K, dtype=geo.acc, **meta)
    itype = torch.int64 if geo.idx64 else torch.int32
    keys = torch.empty(R * K * 4, dtype=itype, **meta)
    w = torch.empty(R * K * 4, dtype=geo.acc, **meta)
    start = torch.empty(R + 1, dtype=itype, **meta)
    return [
        ('forward', tk.plan_forward(q, k, v, off, s, v, geo)),
        ('bwd_query', tk.plan_bwd_query(q, k, v, off, s, g, s, q, off, geo, softmax=True,
                                        need_q=True, need_off=True, store_dl=True)),
        ('bwd_corners', tk.plan_corners(off, keys, w, geo)),
        ('bwd_pull_dv', tk.plan_pull(g, s, w, keys, start, v, geo)),
        ('bwd_pull_dk', tk.plan_pull(q, s, w, keys, start, k, geo)),
        ('logits_fwd', tk.plan_forward(q, k, q, off, s, s, geo, values=False)),
        ('logits_bwd_query', tk.plan_bwd_query(q, k, q, off, s, q, s, q, off, geo,
                                               softmax=False, need_q=True, need_off=True,
                                               store_dl=False)),
    ]


_PTR = {torch.float16: '*fp16', torch.bfloat16: '*bf16', torch.float32: '*fp32',
        torch.float64: '*fp64', torch.int32: '*i32', torch.int64: '*i64'}


def _specialise(launch: 'tk.Launch'):
    """``(runtime arg names, signature types, constants, names marked divisible by 16)`` as the
    JIT derives them from the launch's argument values."""
    fn = launch.kernel
    names = [a for a in fn.arg_names if a not in launch.consts]
    assert len(names) == len(launch.args), (fn.__name__, names)
    sig, consts, div16 = {}, dict(launch.consts), set()
    for name, val in zip(names, launch.args):
        if isinstance(val, torch.Tensor):
            sig[name] = _PTR[val.dtype]
            div16.add(name)  # allocations are 256-byte aligned; meta tensors report 0
        else:
            sig[name] = 'i32' if -2**31 <= val < 2**31 else 'i64'
            if val == 1:
                consts[name] = 1
            elif val % 16 == 0:
                div16.add(name)
    return names, sig, consts, div16


def compile_launch(launch: 'tk.Launch', capability: int):
    """The kernel of ``launch`` compiled for ``sm_<capability>`` (e.g. 80, 90): an object with
    ``asm['ptx']`` and ``asm['cubin']``."""
    names, sig, consts, div16 = _specialise(launch)
    fn = launch.kernel
    if _TRITON_MAJOR >= 3:
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
        for name in consts:
            sig[name] = 'constexpr'
        # in argument order: a dict in set order hashes differently in every process, and
        # triton's on-disk cache would never hit
        attrs = {(i, ): [['tt.divisibility', 16]]
                 for i in sorted(fn.arg_names.index(n) for n in div16)}
        src = ASTSource(fn, sig, constexprs=consts, attrs=attrs)
        return triton.compile(src, target=GPUTarget('cuda', capability, 32),
                              options=dict(num_warps=launch.num_warps))
    # triton 2.x: positional signature / constants, an instance descriptor
    from triton.compiler import compiler as tc
    idx = {n: i for i, n in enumerate(fn.arg_names)}
    cfg = tc.instance_descriptor(divisible_by_16={idx[n] for n in div16},
                                 equal_to_1={idx[n] for n in names if n in consts})
    # no launcher: its stub links libcuda, and loading it needs a driver
    real = tc.make_stub, tc.CompiledKernel
    tc.make_stub, tc.CompiledKernel = (lambda *a, **k: '/dev/null'), _Compiled
    try:
        return tc.compile(fn, signature={idx[n]: sig[n] for n in names},
                          constants={idx[n]: v for n, v in consts.items()}, configs=[cfg],
                          num_warps=launch.num_warps, cc=capability)
    finally:
        tc.make_stub, tc.CompiledKernel = real


class _Compiled:
    """What triton 2.x's ``compile`` returns when not loading the kernel: metadata and asm."""

    def __init__(self, fn, so_path, metadata, asm):
        self.metadata, self.asm = metadata, asm


def _ptxas() -> str:
    if _TRITON_MAJOR >= 3:
        from triton.backends.nvidia.compiler import get_ptxas
        return get_ptxas(90).path
    from triton.common.backend import path_to_ptxas
    return path_to_ptxas()[0]


def kernel_stats(compiled) -> Dict[str, int]:
    """Registers, spill bytes (stores + loads), static shared memory (bytes), PTX instruction
    count, global loads (of which 16-byte vector loads) / stores and atomics (PTX) of a compiled
    kernel. Registers and spills
    come from ``ptxas -v`` (triton's bundled ptxas) on the kernel's PTX."""
    ptx = compiled.asm['ptx']
    target = re.search(r'^\.target\s+(\w+)', ptx, re.M).group(1)
    with tempfile.NamedTemporaryFile('w', suffix='.ptx') as f:
        f.write(ptx)
        f.flush()
        log = subprocess.run([_ptxas(), '-v', f'--gpu-name={target}', f.name, '-o', '/dev/null'],
                             capture_output=True, text=True, check=True).stderr
    regs = re.search(r'Used (\d+) registers', log)
    spills = [int(x) for x in re.findall(r'(\d+) bytes spill (?:stores|loads)', log)]
    meta = compiled.metadata
    shared = meta.get('shared', 0) if isinstance(meta, dict) else getattr(meta, 'shared', 0)
    body = [ln.strip() for ln in ptx.splitlines()]
    instr = [ln for ln in body if ln and ln[0] not in '.$/{}' and ln.endswith(';')
             and not ln.startswith(('.', '//'))]
    return dict(registers=int(regs.group(1)) if regs else -1, spill_bytes=sum(spills),
                shared=int(shared), ptx_instructions=len(instr),
                ld_global=sum('ld.global' in ln for ln in instr),
                ld_global_v4=sum('ld.global.v4' in ln for ln in instr),
                st_global=sum('st.global' in ln for ln in instr),
                atomics=len(ATOMIC_RE.findall(ptx)))
