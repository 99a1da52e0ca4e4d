"""Compile the Triton kernels as the JIT would at launch, without a GPU, and read what they use.

Used by ``tests/test_snl_triton_compile.py`` (register budgets, no local memory, no atomics,
16-byte gathers, on every triton CI installs) and ``tools/analysis_tools/benchmark_snl_op.py
--static`` (the table in docs/benchmarks.md). The launches are the real ones: :func:`launches`
runs the planners of :mod:`.triton_kernels` on ``meta`` tensors of the real shapes and dtypes,
and :func:`compile_launch` specialises their arguments the way the JIT does at a launch
(pointers, and ints divisible by 16, marked divisible by 16; ints equal to 1 made constants), for
a given compute capability, with triton's bundled ptxas. Needs the triton compiler but no GPU
and no CUDA driver; the kernels must have been decorated with TRITON_INTERPRET unset (run this
in a subprocess when the interpreter is on).

What is read, from which artifact (:func:`survey`, :func:`analyse`):

* registers: the cubin triton built (``EIATTR_REGCOUNT`` of its ``.nv.info`` section, what
  ``cuobjdump -res-usage`` prints and the driver allocates);
* SASS, when a disassembler is found (:func:`nvdisasm_path`: triton 3.x wheels ship
  ``nvdisasm`` next to ``ptxas``; triton 2.1 ships ptxas only): local-memory instructions
  (``LDL``/``STL``), atomics (``ATOM``/``RED``, any form), 16-byte global loads
  (``LDG.E.128``); all kernels of an arch go through one ``nvdisasm`` run;
* without SASS, ``ptxas -v`` on the PTX (spill bytes) and the PTX (``atom``/``red`` anywhere,
  ``ld.global.v4``) stand in; the PTX counts are always read.

:func:`problems` judges a row against :data:`OCCUPANCY` (the register budget of each kernel,
from its warps and the occupancy its tile was chosen for) and :func:`expected_vector_loads`
(how many 16-byte loads its row tiles allow).
"""
import os
import re
import shutil
import struct
import subprocess
import tempfile
from typing import Dict, List, NamedTuple, Optional, Tuple

import torch
import triton

from . import triton_kernels as tk

__all__ = ['launches', 'compile_launch', 'kernel_stats', 'analyse', 'survey', 'problems',
           'Shape', 'SHAPES', 'DTYPES', 'shipped_cases', 'OCCUPANCY', 'register_budget',
           'gather_tiles', 'expected_vector_loads', 'nvdisasm_path', 'disassemble', 'sass_counts',
           'cubin_registers', 'ptx_atomics', 'SASS_CLASSES', 'sass_class', 'sass_loops',
           'point_profile', 'H100', 'predict_ms']

_TRITON_MAJOR = int(triton.__version__.split('.')[0])


class Shape(NamedTuple):
    """One op shape: query/key channels ``C``, value channels ``CV``, the sampling grid
    ``kernel`` (K = kh * kw), the feature map ``hw`` and batch (which only decide the int
    specialisation and int32 / int64 offsets), and where it is used."""
    C: int
    CV: int
    kernel: Tuple[int, int]
    hw: Tuple[int, int]
    batch: int
    used_by: str


#: The benchmark shape and every other (C, Cv, K) of configs/ssanet: SNLHead's query/key width is
#: ``channels // reduction`` (reduction=2) and its value width ``channels``; ResNet configs have
#: channels=512, MobileNetV2 configs channels=256 (configs/ssanet/_base_/*.py).
SHAPES: Dict[str, Shape] = {
    'c256-k81': Shape(256, 512, (9, 9), (128, 256), 1,
                      'benchmark; R50/R101 Cityscapes 512x1024 (K = 9x9)'),
    'c256-k81-97x97': Shape(256, 512, (9, 9), (97, 97), 2,
                            'R101-d8 Cityscapes 769x769: a 97x97 map, B=2 (ints not '
                            'divisible by 16)'),
    'c256-k49': Shape(256, 512, (7, 7), (64, 64), 4, 'R101-d8 ADE20K / Pascal Context (K = 7x7)'),
    'c128-k9': Shape(128, 256, (3, 3), (32, 64), 2, 'MobileNetV2 k9 ablation (K = 3x3)'),
    'c128-k49': Shape(128, 256, (7, 7), (32, 64), 2, 'MobileNetV2 k49 ablation (K = 7x7)'),
    'c128-k81': Shape(128, 256, (9, 9), (32, 64), 2, 'MobileNetV2 d8/d16 and k81 (K = 9x9)'),
    'c128-k99': Shape(128, 256, (9, 11), (32, 64), 2, 'MobileNetV2 k99 ablation (K = 9x11)'),
    'c128-k121': Shape(128, 256, (11, 11), (32, 64), 2, 'MobileNetV2 k121 ablation (K = 11x11)'),
}

DTYPES = {'fp16': torch.float16, 'bf16': torch.bfloat16, 'fp32': torch.float32}


def shipped_cases() -> List[Tuple[str, Shape, str]]:
    """``(name, shape, dtype)`` of the compile test: every (C, Cv, K) of :data:`SHAPES` in
    fp16, bf16 and fp32; the 97x97 map (the same kernels, other int specialisations) in fp32."""
    return [(n, s, d) for n, s in SHAPES.items() if n != 'c256-k81-97x97' for d in DTYPES] + [
        ('c256-k81-97x97', SHAPES['c256-k81-97x97'], 'fp32')]


#: 32-bit registers per SM on sm_80 and sm_90, and the allocation granule per thread (a warp's
#: registers are allocated in units of 256, i.e. 8 per thread).
REGISTER_FILE = 65536
_REG_GRANULE = 8


def register_budget(num_warps: int, blocks_per_sm: int) -> int:
    """Most registers per thread with which ``blocks_per_sm`` blocks of ``num_warps`` warps fit
    the register file of an SM (sm_80, sm_90): 4 warps x 4 blocks -> 128 (129 rounds to 136
    and leaves 3 blocks)."""
    per_thread = REGISTER_FILE // (blocks_per_sm * num_warps * 32)
    return min(255, per_thread // _REG_GRANULE * _REG_GRANULE)


#: Per kernel: the blocks per SM of the launch's warps (4 for every kernel) that its tile was
#: chosen for, and why. The register budget is :func:`register_budget` of the two (4 warps, 4
#: blocks: 128 registers); one register over it (129 rounds up to 136) leaves 3 blocks per SM.
#: docs/benchmarks.md quotes this table.
OCCUPANCY: Dict[str, Tuple[int, str]] = {
    'forward': (4, 'row tile = 2048 elements / widest row (triton_kernels._ROW_TILE), chosen '
                'for <= 128 registers: 4 blocks = 16 warps per SM'),
    'bwd_query': (4, 'row tile = 1024 / widest row (_ROW_TILE_BWD: more tiles live at once), '
                  'chosen for <= 128 registers'),
    'logits_fwd': (4, 'the forward without the values, same row tile'),
    'logits_bwd_query': (4, 'bwd_query without the softmax, same row tile'),
    'bwd_corners': (4, '8 rows x BLOCK_K points per program (row tile / BLOCK_K / 2), chosen '
                    'with the others for <= 128 registers'),
    'bwd_pull_dv': (4, 'one 32-sample x 128-channel tile (_PULL_BLOCK_E, _PULL_MAX_CH), chosen '
                    'with the others for <= 128 registers'),
    'bwd_pull_dk': (4, 'the pull kernel of bwd_pull_dv on the query rows'),
}


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
    rows = tk.sort_chunk_rows(geo)
    start = torch.empty(-(-R // rows), R + 1, dtype=itype, **meta)
    return [
        ('forward', tk.plan_forward(q, k, v, off, s, v, geo)),
        ('bwd_query', tk.plan_bwd_query(q, k, v, off, s, g, s, q, off, geo, softmax=True,
                                        need_q=True, need_off=True)),
        ('bwd_corners', tk.plan_corners(off, keys, w, geo, 0, rows)),
        ('bwd_pull_dv', tk.plan_pull(g, s, w, keys, start, start, v, geo)),
        ('bwd_pull_dk', tk.plan_pull(q, s, w, keys, start, start, k, geo)),
        ('logits_fwd', tk.plan_forward(q, k, q, off, s, s, geo, values=False)),
        ('logits_bwd_query', tk.plan_bwd_query(q, k, q, off, s, q, s, q, off, geo,
                                               softmax=False, need_q=True, need_off=True)),
    ]


def gather_tiles(name: str, launch: 'tk.Launch') -> List[Tuple[int, int, int, int]]:
    """The row tiles kernel ``name`` gathers from feature rows, as ``(count, rows, padded width,
    row width)``: query / key corners / value corners / output-gradient rows, the pulls' source
    rows. The offsets, softmax and sample lists are not rows of features."""
    c = launch.consts
    if name in ('forward', 'logits_fwd'):
        n, tiles = c['BLOCK_N'], [(5, c['BLOCK_N'], c['CP'], c['C'])]  # q, 4 key corners
        if c['VALUES']:
            tiles.append((4, n, c['CVP'], c['CV']))
        return tiles
    if name in ('bwd_query', 'logits_bwd_query'):
        n, tiles = c['BLOCK_N'], []
        if c['SOFTMAX']:
            tiles.append((5, n, c['CVP'], c['CV']))  # g, 4 value corners
        if c['NEED_Q'] or c['NEED_OFF']:
            tiles.append((5, n, c['CP'], c['C']))
        return tiles
    if name.startswith('bwd_pull'):
        return [(1, c['BLOCK_E'], c['BLOCK_CH'], c['CH'])]
    return []


def expected_vector_loads(name: str, launch: 'tk.Launch', elem_bytes: int) -> int:
    """16-byte global loads the row tiles allow: a tile of ``rows x width`` elements spread over
    the program's threads gives each ``bytes / threads`` contiguous bytes of a row, i.e.
    ``bytes // (16 threads)`` 16-byte loads, when rows are 16-byte aligned (width a multiple of
    16 bytes) and every thread gets at least 16 bytes (a 2 x 256 bf16 tile over 128 threads
    gives 8: no 16-byte load is possible there)."""
    threads = 32 * launch.num_warps
    total = 0
    for count, rows, width_p2, width in gather_tiles(name, launch):
        if (width * elem_bytes) % 16 == 0 and width % width_p2 == 0:
            total += count * (rows * width_p2 * elem_bytes // (16 * threads))
    return total


_PTR = {torch.float16: '*fp16', torch.bfloat16: '*bf16', torch.float32: '*fp32',
        torch.float64: '*fp64', torch.int32: '*i32', torch.int64: '*i64'}


def _specialise(launch: 'tk.Launch', aligned: bool = True):
    """``(runtime arg names, signature types, constants, names marked divisible by 16)`` as the
    JIT derives them from the launch's argument values (``aligned=False``: no pointer marked,
    as for tensors at odd addresses)."""
    fn = launch.kernel
    names = [a for a in fn.arg_names if a not in launch.consts]
    assert len(names) == len(launch.args), (fn.__name__, names)
    sig, consts, div16 = {}, dict(launch.consts), set()
    for name, val in zip(names, launch.args):
        if isinstance(val, torch.Tensor):
            sig[name] = _PTR[val.dtype]
            if aligned:
                div16.add(name)  # allocations are 256-byte aligned; meta tensors report 0
        else:
            sig[name] = 'i32' if -2**31 <= val < 2**31 else 'i64'
            if val == 1:
                consts[name] = 1
            elif val % 16 == 0:
                div16.add(name)
    return names, sig, consts, div16


def compile_key(launch: 'tk.Launch', capability: int) -> tuple:
    """What the compiled artifact depends on: equal keys, equal kernels."""
    names, sig, consts, div16 = _specialise(launch)
    return (launch.kernel.__name__, capability, launch.num_warps, tuple(sorted(sig.items())),
            tuple(sorted((k, str(v)) for k, v in consts.items())), tuple(sorted(div16)))


def compile_launch(launch: 'tk.Launch', capability: int, aligned: bool = True,
                   maxnreg: Optional[int] = None):
    """The kernel of ``launch`` compiled for ``sm_<capability>`` (e.g. 80, 90): an object with
    ``asm['ptx']`` and ``asm['cubin']``. ``aligned=False`` drops the pointers' divisibility
    hints; ``maxnreg`` caps the registers (triton >= 3 only): both only for the tests."""
    names, sig, consts, div16 = _specialise(launch, aligned)
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
        options = dict(num_warps=launch.num_warps)
        if maxnreg is not None:
            options['maxnreg'] = maxnreg
        return triton.compile(src, target=GPUTarget('cuda', capability, 32), options=options)
    if maxnreg is not None:
        raise ValueError(f'triton {triton.__version__} has no maxnreg option')
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


# ---------------------------------------------------------------------------------------------
# tools and artifacts
# ---------------------------------------------------------------------------------------------
def _ptxas() -> str:
    if _TRITON_MAJOR >= 3:
        from triton.backends.nvidia.compiler import get_ptxas
        return get_ptxas(90).path
    from triton.common.backend import path_to_ptxas
    return path_to_ptxas()[0].split(' ')[0]


def nvdisasm_path() -> Tuple[Optional[str], str]:
    """``(path or None, where it was found)`` of an ``nvdisasm``: ``$TRITON_NVDISASM_PATH`` (the
    variable triton 3.x reads), the one next to triton's ptxas (triton 3.x wheels ship it in
    ``triton/backends/nvidia/bin``; triton 2.1's ``third_party/cuda/bin`` has ptxas only), or
    one on ``PATH``."""
    env = os.environ.get('TRITON_NVDISASM_PATH')
    if env and os.path.isfile(env):
        return env, '$TRITON_NVDISASM_PATH'
    try:
        here = os.path.join(os.path.dirname(_ptxas()), 'nvdisasm')
    except Exception:  # no NVIDIA backend
        here = ''
    if os.path.isfile(here):
        return here, f"triton {triton.__version__}'s wheel, next to its ptxas"
    found = shutil.which('nvdisasm')
    if found:
        return found, 'PATH'
    return None, (f'none: triton {triton.__version__} ships ptxas only, and neither '
                  '$TRITON_NVDISASM_PATH nor PATH has an nvdisasm')


def _elf_sections(data: bytes) -> Dict[str, Tuple[int, int, int]]:
    """``{name: (offset, size, sh_info)}`` of a 64-bit little-endian ELF (a cubin)."""
    assert data[:4] == b'\x7fELF' and data[4] == 2 and data[5] == 1, 'not a 64-bit LE ELF'
    shoff, = struct.unpack_from('<Q', data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from('<HHH', data, 0x3a)
    hdrs = [struct.unpack_from('<IIQQQQIIQQ', data, shoff + i * shentsize) for i in range(shnum)]
    names = hdrs[shstrndx][4]
    out = {}
    for h in hdrs:
        start = names + h[0]
        out[data[start:data.index(b'\0', start)].decode()] = (h[4], h[5], h[7])
    return out


def cubin_registers(cubin: bytes) -> int:
    """Registers per thread of the (one) kernel of a cubin: its ``EIATTR_REGCOUNT`` (0x2f)
    attribute in ``.nv.info``, what ``cuobjdump -res-usage`` prints as REG."""
    secs = _elf_sections(cubin)
    off, size, _ = secs['.nv.info']
    info, i, regs = cubin[off:off + size], 0, []
    while i + 4 <= size:
        fmt, attr, n = info[i], info[i + 1], struct.unpack_from('<H', info, i + 2)[0]
        if fmt == 4:  # EIFMT_SVAL: a payload of n bytes
            if attr == 0x2f:
                regs.append(struct.unpack_from('<II', info, i + 4)[1])
            i += 4 + n
        else:  # EIFMT_NVAL / HVAL: the value is the 2 bytes
            i += 4
    assert len(regs) == 1, f'{len(regs)} EIATTR_REGCOUNT entries'
    return regs[0]


def _cubin_text(cubin: bytes) -> bytes:
    texts = [(o, s) for n, (o, s, _) in _elf_sections(cubin).items() if n.startswith('.text.')]
    assert len(texts) == 1, f'{len(texts)} .text sections'
    o, s = texts[0]
    return cubin[o:o + s]


_SASS_LINE = re.compile(r'/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;')


def disassemble(cubins: List[bytes], capability: int, nvdisasm: str,
                addresses: bool = False) -> List[List]:
    """The SASS instructions of each cubin's kernel (all for ``sm_<capability>``), from ONE
    ``nvdisasm`` run on their code sections laid end to end (``-b SM<cc>``, raw mode), split
    back by address: one process instead of one per kernel (each costs ~0.5 s). With
    ``addresses``, ``(address, instruction)`` pairs, addresses relative to the kernel's start
    (as its branch targets are)."""
    blob, bounds = b'', []
    for cubin in cubins:
        text = _cubin_text(cubin)
        bounds.append((len(blob), len(blob) + len(text)))
        blob += text + b'\0' * (-len(text) % 128)
    with tempfile.NamedTemporaryFile(suffix='.bin') as f:
        f.write(blob)
        f.flush()
        out = subprocess.run([nvdisasm, '-b', f'SM{capability}', f.name], capture_output=True,
                             text=True, check=True).stdout
    instrs = [(int(m.group(1), 16), m.group(2)) for m in _SASS_LINE.finditer(out)]
    if addresses:
        return [[(addr - lo, ins) for addr, ins in instrs if lo <= addr < hi]
                for lo, hi in bounds]
    return [[ins for addr, ins in instrs if lo <= addr < hi] for lo, hi in bounds]


def sass_counts(instructions: List[str]) -> Dict[str, int]:
    """Counts of a kernel's SASS: local-memory instructions (``LDL``/``STL``), atomics and
    reductions (``ATOM``, ``ATOMG``, ``ATOMS``, ``RED``, any modifiers, predicated or not),
    global loads (of which 16-byte, ``LDG....128``) and stores."""
    ops = []
    for ins in instructions:
        tok = ins.split()
        if tok and tok[0].startswith('@'):
            tok = tok[1:]
        if tok:
            ops.append(tok[0])
    base = [op.split('.')[0] for op in ops]
    return dict(sass_instructions=len(ops),
                sass_local=sum(b in ('LDL', 'STL') for b in base),
                sass_atomics=sum(b in ('ATOM', 'ATOMG', 'ATOMS', 'RED', 'REDG', 'REDAS')
                                 for b in base),
                sass_ldg=sum(b == 'LDG' for b in base),
                sass_ldg128=sum(b == 'LDG' and '.128' in op for b, op in zip(base, ops)),
                sass_stg=sum(b == 'STG' for b in base))


#: SASS opcode (before the first dot) -> class, for :func:`sass_loops`. Floating point: the
#: arithmetic the attention needs (FMA, add, multiply, min/max, compare, exp, rounding, packed
#: half arithmetic); ``select``: FSEL / SEL; ``convert``: int <-> float and precision changes,
#: byte permutes (bf16 unpacking); ``memory``: global / shared / constant loads and stores;
#: ``shuffle``: SHFL (the cross-thread reductions); ``control``: branches, barriers; the rest
#: (IMAD, IADD3, LEA, LOP3, ISETP, shifts, moves, uniform-datapath ops) is ``integer``.
SASS_CLASSES = {
    'floating': ('FADD', 'FMUL', 'FFMA', 'FMNMX', 'MUFU', 'FSETP', 'FSET', 'FRND', 'FCHK',
                 'HADD2', 'HMUL2', 'HFMA2', 'HMNMX2', 'HSETP2', 'DADD', 'DMUL', 'DFMA',
                 'DSETP'),
    'select': ('FSEL', 'SEL'),
    'convert': ('F2I', 'I2F', 'I2FP', 'F2IP', 'F2F', 'F2FP', 'PRMT'),
    'memory': ('LDG', 'STG', 'LDS', 'STS', 'LDC', 'LD', 'ST', 'LDSM'),
    'shuffle': ('SHFL', ),
    'control': ('BRA', 'BAR', 'EXIT', 'BSSY', 'BSYNC', 'NOP', 'WARPSYNC', 'DEPBAR', 'CALL',
                'RET', 'YIELD', 'BPT', 'MEMBAR', 'ERRBAR', 'CCTL'),
}
_CLASS_OF = {op: c for c, ops in SASS_CLASSES.items() for op in ops}
_BACK_BRANCH = re.compile(r'\bBRA\b[^;]*?\b(0x[0-9a-f]+)')


def sass_class(instruction: str) -> str:
    """The class (a key of :data:`SASS_CLASSES`, or ``integer``) of one SASS instruction."""
    tok = instruction.split()
    if tok and tok[0].startswith('@'):
        tok = tok[1:]
    return _CLASS_OF.get(tok[0].split('.')[0], 'integer') if tok else 'integer'


def sass_loops(instructions: List[Tuple[int, str]]) -> List[dict]:
    """The loops of a kernel's SASS (``(address, instruction)`` pairs, :func:`disassemble` with
    ``addresses``): each backward branch closes one, from its target to the branch; in address
    order, each with ``instructions`` (its body, the branch included; one pass through it per
    iteration, per warp) and a count per :func:`sass_class`. The kernels' loops over the K
    points have no inner loops (channel work is unrolled), so a body is what one point costs a
    warp. A branch to itself (the ``BRA`` after ``EXIT``) closes no loop."""
    loops = []
    for addr, ins in instructions:
        m = _BACK_BRANCH.search(ins)
        if m and int(m.group(1), 16) < addr:
            lo = int(m.group(1), 16)
            body = [i for a, i in instructions if lo <= a <= addr]
            classes = {c: 0 for c in (*SASS_CLASSES, 'integer')}
            for i in body:
                classes[sass_class(i)] += 1
            loops.append(dict(start=lo, end=addr, instructions=len(body), **classes))
    return loops


def _ptx_statements(ptx: str) -> List[str]:
    """The instructions of a PTX text, predicates stripped (``@%p1``, ``@!%p1``)."""
    out = []
    for line in ptx.splitlines():
        line = line.split('//', 1)[0]
        for st in line.split(';')[:-1]:
            st = st.strip().lstrip('{}').strip()
            if not st or st[0] in '.$' or st.endswith(':'):
                continue
            if st.startswith('@'):
                st = st.split(None, 1)[1] if ' ' in st else ''
            if st:
                out.append(st)
    return out


def ptx_atomics(ptx: str) -> int:
    """PTX atomics and reductions anywhere in a statement's opcode: ``atom.*``, ``red.*``,
    ``multimem.red``, ``cp.reduce.*`` (predicated or not, inside inline-asm braces too)."""
    n = 0
    for st in _ptx_statements(ptx):
        op = st.split()[0]
        n += op.split('.')[0] in ('atom', 'red') or op.startswith(('multimem.red',
                                                                    'cp.reduce'))
    return n


def _ptxas_log(ptx: str) -> str:
    target = re.search(r'^\.target\s+(\w+)', ptx, re.M).group(1)
    with tempfile.NamedTemporaryFile('w', suffix='.ptx') as f:
        f.write(ptx)
        f.flush()
        return subprocess.run([_ptxas(), '-v', f'--gpu-name={target}', f.name, '-o', '/dev/null'],
                              capture_output=True, text=True, check=True).stderr


def kernel_stats(compiled, ptxas: bool = True) -> Dict[str, int]:
    """Registers (of the cubin), static shared memory (bytes), PTX instruction count, global
    loads (of which 16-byte vector loads) / stores and atomics of the PTX; with ``ptxas``, also
    the registers, spill bytes (stores + loads) and stack frame that ``ptxas -v`` (triton's
    bundled ptxas) reports for the kernel's PTX (None otherwise)."""
    ptx = compiled.asm['ptx']
    regs = spills = frame = None
    if ptxas:
        log = _ptxas_log(ptx)
        regs = int(re.search(r'Used (\d+) registers', log).group(1))
        spills = sum(int(x) for x in re.findall(r'(\d+) bytes spill (?:stores|loads)', log))
        frame = sum(int(x) for x in re.findall(r'(\d+) bytes stack frame', log))
    meta = compiled.metadata
    shared = meta.get('shared', 0) if isinstance(meta, dict) else getattr(meta, 'shared', 0)
    instr = _ptx_statements(ptx)
    return dict(registers=cubin_registers(compiled.asm['cubin']), ptxas_registers=regs,
                spill_bytes=spills, stack_frame=frame, shared=int(shared),
                ptx_instructions=len(instr),
                ld_global=sum(st.startswith('ld.global') for st in instr),
                ld_global_v4=sum(st.startswith('ld.global') and '.v4.' in st for st in instr),
                st_global=sum(st.startswith('st.global') for st in instr),
                atomics=ptx_atomics(ptx))


# ---------------------------------------------------------------------------------------------
# the survey and its judgement
# ---------------------------------------------------------------------------------------------
def problems(row: dict, occupancy: Optional[Dict[str, Tuple[int, str]]] = None
             ) -> Dict[str, str]:
    """What is wrong with a row of :func:`analyse` / :func:`survey`, by check: ``registers``
    (over the kernel's budget for the blocks per SM of ``occupancy``, default
    :data:`OCCUPANCY`), ``local`` (local-memory instructions in the SASS, spill bytes from
    ``ptxas -v``), ``atomics`` (SASS and PTX), ``vector`` (fewer 16-byte loads than the row
    tiles allow: SASS ``LDG.128`` when the row has SASS, PTX ``ld.global.v4`` otherwise)."""
    blocks = (occupancy or OCCUPANCY)[row['kernel']][0]
    budget = register_budget(row['warps'], blocks)
    found = {}
    if row['registers'] > budget:
        found['registers'] = (f"{row['registers']} registers > {budget}, the budget of "
                              f"{blocks} blocks of {row['warps']} warps per SM")
    sass = row.get('sass_instructions') is not None
    local = [f"{row['sass_local']} LDL/STL in the SASS"] if sass and row['sass_local'] else []
    if row.get('spill_bytes'):
        local.append(f"{row['spill_bytes']} spill bytes (ptxas -v)")
    if local:
        found['local'] = ', '.join(local)
    atomics = [f"{row['sass_atomics']} ATOM/RED in the SASS"] if sass and row['sass_atomics'] \
        else []
    if row['atomics']:
        atomics.append(f"{row['atomics']} atom/red in the PTX")
    if atomics:
        found['atomics'] = ', '.join(atomics)
    got = row['sass_ldg128'] if sass else row['ld_global_v4']
    if got < row['expected_v4']:
        found['vector'] = (f"{got} 16-byte loads ({'LDG.128 in the SASS' if sass else 'PTX'}) "
                           f"< {row['expected_v4']} that the row tiles allow")
    return found


def _row(name: str, launch: 'tk.Launch', arch: int, dtype: str, stats: dict, **extra) -> dict:
    elem = torch.empty(0, dtype=DTYPES[dtype]).element_size()
    return dict(kernel=name, arch=arch, dtype=dtype, **extra,
                rows_per_program=launch.consts.get('BLOCK_N', 1), warps=launch.num_warps,
                budget=register_budget(launch.num_warps, OCCUPANCY[name][0]),
                expected_v4=expected_vector_loads(name, launch, elem), **stats)


def analyse(name: str, launch: 'tk.Launch', arch: int, dtype: str, sass: bool = True,
            ptxas: bool = True, **compile_kw) -> dict:
    """One launch compiled (``compile_kw`` to :func:`compile_launch`), read and judged: a
    :func:`survey` row for kernel ``name`` (a key of :data:`OCCUPANCY`) with ``dtype`` rows."""
    disasm = nvdisasm_path()[0] if sass else None
    compiled = compile_launch(launch, arch, **compile_kw)
    row = _row(name, launch, arch, dtype, kernel_stats(compiled, ptxas=ptxas or not disasm))
    if disasm:
        row.update(sass_counts(disassemble([compiled.asm['cubin']], arch, disasm)[0]))
    row['problems'] = problems(row)
    return row


def survey(cases: List[Tuple[str, Shape, str]], archs: List[int], sass: bool = True,
           ptxas: bool = False, log=None) -> Tuple[List[dict], dict]:
    """Compile every launch of :func:`launches` for each ``(name, shape, dtype)`` of ``cases``
    (e.g. :func:`shipped_cases`) and each arch, each distinct compilation once; read the stats
    and the SASS (when ``sass`` and a disassembler is found: one ``nvdisasm`` run per arch;
    ``ptxas -v`` runs too without one, or with ``ptxas``); judge them (:func:`problems`).
    Returns ``(rows, tools)``: the rows in the order arch, case, launch."""
    disasm, where = nvdisasm_path() if sass else (None, 'not asked')
    tools = dict(triton=triton.__version__, ptxas=_ptxas(), nvdisasm=disasm,
                 nvdisasm_from=where)
    cache, rows = {}, []
    for arch in archs:
        for sname, sh, dname in cases:
            for name, launch in launches(DTYPES[dname], sh.hw, sh.C, sh.CV, sh.kernel,
                                         batch=sh.batch):
                key = compile_key(launch, arch)
                if key not in cache:
                    compiled = compile_launch(launch, arch)
                    cache[key] = (compiled.asm['cubin'],
                                  kernel_stats(compiled, ptxas=ptxas or not disasm))
                    if log:
                        log(f'compiled {name} sm_{arch} {dname} {sname}')
                rows.append(_row(name, launch, arch, dname, cache[key][1], shape=sname,
                                 K=sh.kernel[0] * sh.kernel[1], C=sh.C, CV=sh.CV, key=key))
    if disasm:
        for arch in archs:
            keys = list(dict.fromkeys(r['key'] for r in rows if r['arch'] == arch))
            counts = dict(zip(keys, map(sass_counts, disassemble(
                [cache[k][0] for k in keys], arch, disasm))))
            for r in rows:
                if r['arch'] == arch:
                    r.update(counts[r['key']])
    for r in rows:
        r['problems'] = problems(r)
        del r['key']
    return rows, tools


# ---------------------------------------------------------------------------------------------
# per-point instructions and a first-order time model
# ---------------------------------------------------------------------------------------------
def point_profile(name: str, launch: 'tk.Launch', arch: int, nvdisasm: str) -> dict:
    """SASS of one launch's kernel: ``total`` instructions, its point ``loops``
    (:func:`sass_loops`), ``per_point`` (their bodies summed: what one point of a row block
    costs each warp, all passes over the points together) and ``rest`` (the instructions
    outside them, run once per program; an approximation: branches around code are not
    followed)."""
    compiled = compile_launch(launch, arch)
    instrs = disassemble([compiled.asm['cubin']], arch, nvdisasm, addresses=True)[0]
    loops = sass_loops(instrs)
    per_point = sum(lp['instructions'] for lp in loops)
    return dict(kernel=name, arch=arch, total=len(instrs), loops=loops, per_point=per_point,
                rest=len(instrs) - per_point, registers=cubin_registers(compiled.asm['cubin']),
                rows_per_program=launch.consts.get('BLOCK_N', 1), warps=launch.num_warps,
                programs=launch.grid[0], K=launch.consts['K'])


#: The H100 the model assumes: H100 SXM5 (132 SMs, 4 schedulers per SM each issuing at most
#: one warp instruction per cycle, 1.98 GHz maximum boost clock: NVIDIA's H100 datasheet and
#: Hopper tuning guide) and an L2 read bandwidth of 5.5 TB/s (published microbenchmarks of the
#: H100 SXM report 5.5-7 TB/s; the lower figure). Not measured here.
H100 = dict(sms=132, schedulers=4, clock_hz=1.98e9, l2_bytes_per_s=5.5e12)


def predict_ms(profile: dict, gathered_bytes: float, issue_efficiency: float,
               l1_hit: float, gpu: Optional[dict] = None) -> dict:
    """First-order time of one launch on ``gpu`` (default :data:`H100`), in ms: the larger of
    the issue time (every warp instruction of every program: ``programs x warps x (K x
    per_point + rest)``, over ``sms x schedulers x clock x issue_efficiency``) and the L2 time
    of the gathers (``gathered_bytes x (1 - l1_hit)`` over the L2 bandwidth). Assumes the loop
    bodies run once per point (no divergence), every program the same, and nothing else bounds
    the kernel (DRAM traffic, the inputs once, is far below the gathers)."""
    gpu = gpu or H100
    warp_instr = profile['programs'] * profile['warps'] * (
        profile['K'] * profile['per_point'] + profile['rest'])
    issue = warp_instr / (gpu['sms'] * gpu['schedulers'] * gpu['clock_hz'] * issue_efficiency)
    l2 = gathered_bytes * (1 - l1_hit) / gpu['l2_bytes_per_s']
    return dict(issue_ms=issue * 1e3, l2_ms=l2 * 1e3, ms=max(issue, l2) * 1e3,
                warp_instructions=warp_instr)
