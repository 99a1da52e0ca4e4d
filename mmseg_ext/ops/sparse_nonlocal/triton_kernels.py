"""Triton backend (``backend='triton'``; ``'auto'`` on CUDA) of the sparse non-local op.

Contract: see :mod:`mmseg_ext.ops.sparse_nonlocal`. Inputs are channels-last rows ``q, k``
(R, C), ``v`` (R, Cv), ``off`` (R, K, 2) with ``R = B * H * W``, each contiguous, of any float
dtype (fp16, bf16, fp32, fp64; they may differ). Arithmetic is in ``ACC`` = float32, or float64
when the rows are float64. The kernels are in :mod:`.triton_jit`; this module plans their
launches (:class:`Launch`, also used by :mod:`.triton_static` to compile them without a GPU)
and wires them into autograd.

Forward: one kernel (:func:`.triton_jit._fwd_kernel`) per block of query rows: query tile
loaded once, geometry per (row, point) once, logits, an online fp32 softmax over K and the
value aggregation over all Cv channels in registers. Saves the softmax (R, K).

Backward, deterministic (no atomics; each gradient element written once, sums in a fixed
order, bitwise reproducible):

* query side (:func:`.triton_jit._bwd_query_kernel`): ``ds``, the softmax backward ``dl``,
  ``dq`` and the offset gradient in registers, per block of query rows;
* dk and dv by pulling: :func:`.triton_jit._corners_kernel` writes the key/value row and
  weight of each of the ``R * K * 4`` corner samples, stable ``torch.sort`` calls on those rows
  (chunk by chunk of query rows, once per backward, shared by dk and dv) give the inverse map,
  and :func:`.triton_jit._pull_kernel` sums, per key/value row, the weighted gradient / query
  rows of the samples that read it, in the order of one stable sort of all samples.

Extra memory: forward ``O(R K)`` (the softmax); backward ``O(R K)``: dL/dlogits (R, K) and
the inverse map, 8 bytes per corner sample held through the pulls (weight and permutation
with int32 indices), sorted in chunks so that the sort's own temporaries are those of one
chunk (:func:`backward_memory` adds it up, docs/benchmarks.md has the figures).

Triton decides at decoration time whether a kernel is compiled or interpreted
(``TRITON_INTERPRET=1``, triton >= 3.0; triton 2.x has no CPU interpreter and ignores it):
:data:`INTERPRETED` records which, and the dispatcher allows CPU tensors only for interpreted
kernels (tests in CI run this way, at tiny sizes).
"""
from typing import NamedTuple, Optional, Tuple

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from . import triton_jit as _jit

__all__ = ['INTERPRETED', 'MAX_POINTS', 'MAX_CHANNELS', 'unsupported', 'triton_attention_rows',
           'triton_logits_rows', 'Launch', 'backward_memory', 'CUDA_SORT_BYTES']

#: True when this module's kernels run in Triton's CPU interpreter (TRITON_INTERPRET=1 was set
#: when triton decorated them, and this triton has an interpreter).
INTERPRETED: bool = type(_jit._fwd_kernel).__name__ == 'InterpretedFunction'

#: Largest number of sampling points per query: (BLOCK_N, next_pow2(K)) tiles of logits and
#: gradients live in registers. The paper's largest grid is 11 x 11 = 121.
MAX_POINTS = 256
#: Largest channel count of query/key and of value: a row block keeps whole rows in registers.
MAX_CHANNELS = 2048

# Register budget of one row-block tile (elements) in the forward / the query-side backward
# (which holds more tiles at once): BLOCK_N = budget // widest row, at most _MAX_BLOCK_N. Chosen
# so that every kernel compiles without spills and with <= 128 registers per thread (4 blocks of
# 4 warps per SM; triton_static.OCCUPANCY), asserted at the shipped shapes and dtypes by
# tests/test_snl_triton_compile.py (benchmark_snl_op.py --static); not timed on a GPU.
_ROW_TILE = 2048
_ROW_TILE_BWD = 1024
# triton 2.x's logits-only forward of fp32 rows with _ROW_TILE (16 rows at C = 128) takes
# 154-159 registers on sm_80; half the rows keeps it within the budget (fp16 / bf16 keep
# _ROW_TILE: with half, ptxas 12.1 spills 8 bytes at C = 128, K = 49 on sm_80).
_ROW_TILE_LOGITS_2X = 1024
_MAX_BLOCK_N = 16
_NUM_WARPS = 4
_PULL_BLOCK_E = 32  # sampling entries per step of the dk / dv pulls
_PULL_MAX_CH = 128  # channel tile of the pulls
# The inverse map is sorted in this many chunks of query rows (each of at least
# _SORT_MIN_ENTRIES corner entries): the sort's temporaries are those of one chunk.
_SORT_CHUNKS = 8
_SORT_MIN_ENTRIES = 1 << 20
_TL_ACC = {torch.float32: tl.float32, torch.float64: tl.float64}
#: Element offsets below this use int32 arithmetic in the kernels, larger ones int64.
_INT32_LIMIT = 2**31
#: The forward's online softmax (geometry once per point); triton 2.x miscompiles it (layout
#: error), and gets the two-pass forward instead.
ONLINE_SOFTMAX = int(triton.__version__.split('.')[0]) >= 3


def unsupported(num_points: int, channels: Tuple[int, ...] = ()) -> Optional[str]:
    """Why the kernels cannot take ``num_points`` per query or these channel counts, or None."""
    if num_points > MAX_POINTS:
        return (f'the Triton kernels take at most {MAX_POINTS} sampling points per query, '
                f'got K={num_points}')
    if channels and max(channels) > MAX_CHANNELS:
        return (f'the Triton kernels take at most {MAX_CHANNELS} query/key and value channels, '
                f'got {max(channels)}')
    return None


class Launch(NamedTuple):
    """One kernel launch: ``kernel[grid](*args, **consts, num_warps=num_warps)``; ``args`` are
    the runtime arguments in the kernel's order (tensors and ints)."""
    kernel: object
    grid: Tuple[int, ...]
    args: tuple
    consts: dict
    num_warps: int

    def run(self):
        if all(self.grid):
            self.kernel[self.grid](*self.args, **self.consts, num_warps=self.num_warps)


class _Geom:
    """Static launch geometry: map size, kernel, dilation, rows, dtypes of arithmetic / index."""

    def __init__(self, hw: Tuple[int, int], kernel: Tuple[int, int], dilation: int, R: int,
                 widths: Tuple[int, ...], acc: torch.dtype):
        self.H, self.W = hw
        self.kh, self.kw = kernel
        self.K = self.kh * self.kw
        self.dil = dilation
        self.R = R
        self.acc = acc
        # every element offset a kernel forms is < R * max(row widths, 4K)
        self.idx64 = R * max(max(widths), 4 * self.K) + 1 >= _INT32_LIMIT
        self.block_k = triton.next_power_of_2(self.K)

    def consts(self) -> dict:
        return dict(K=self.K, KH=self.kh, KW=self.kw, ACC=_TL_ACC[self.acc],
                    IDX=tl.int64 if self.idx64 else tl.int32)

    def ints(self) -> tuple:
        return (self.R, self.H, self.W, self.dil)


def _pow2(n: int) -> int:
    return triton.next_power_of_2(max(1, n))


def _row_block(*widths: int, budget: int = None) -> int:
    """Query rows per program (a power of two) for register tiles of these widths."""
    n = max(1, min(_MAX_BLOCK_N, (budget or _ROW_TILE) // max(widths)))
    return 1 << (n.bit_length() - 1)


def plan_forward(q: Tensor, k: Tensor, v: Tensor, off: Tensor, s: Tensor, out: Tensor,
                 geo: _Geom, values: bool = True) -> Launch:
    """The fused forward; ``values=False``: raw logits into ``s`` (``v``, ``out`` unused)."""
    C, CV = q.shape[1], (v.shape[1] if values else 1)
    CP, CVP = _pow2(C), _pow2(CV)
    small = not values and not ONLINE_SOFTMAX and q.dtype == torch.float32
    bn = _row_block(CP, CVP, geo.block_k, budget=_ROW_TILE_LOGITS_2X if small else _ROW_TILE)
    return Launch(_jit._fwd_kernel, (triton.cdiv(geo.R, bn), ),
                  (q, k, v, off, s, out) + geo.ints(),
                  dict(geo.consts(), C=C, CP=CP, CV=CV, CVP=CVP, BLOCK_K=geo.block_k,
                       BLOCK_N=bn, VALUES=values, ONLINE=ONLINE_SOFTMAX), _NUM_WARPS)


def plan_bwd_query(q: Tensor, k: Tensor, v: Tensor, off: Tensor, s: Tensor, g: Tensor,
                   dl: Tensor, dq: Tensor, doff: Tensor, geo: _Geom, softmax: bool,
                   need_q: bool, need_off: bool) -> Launch:
    """The query side of the backward (see :func:`.triton_jit._bwd_query_kernel`): with
    ``softmax`` it writes dL/dlogits into ``dl`` (R, K); without (logits only) ``dl`` holds
    dL/dlogits and ``v``, ``s``, ``g`` are unused."""
    C, CV = q.shape[1], (v.shape[1] if softmax else 1)
    CP, CVP = _pow2(C), _pow2(CV)
    bn = _row_block(CP, CVP, geo.block_k, budget=_ROW_TILE_BWD)
    return Launch(_jit._bwd_query_kernel, (triton.cdiv(geo.R, bn), ),
                  (q, k, v, off, s, g, dl, dq, doff) + geo.ints(),
                  dict(geo.consts(), C=C, CP=CP, CV=CV, CVP=CVP, BLOCK_K=geo.block_k,
                       BLOCK_N=bn, SOFTMAX=softmax, NEED_Q=need_q, NEED_OFF=need_off),
                  _NUM_WARPS)


def plan_corners(off: Tensor, keys: Tensor, w: Tensor, geo: _Geom, r0: int = 0,
                 r1: Optional[int] = None) -> Launch:
    """Corner keys and weights of the query rows ``r0 <= r < r1`` (default all) into ``keys``,
    ``w`` (each starting at that chunk's first entry)."""
    r1 = geo.R if r1 is None else r1
    bn = _row_block(geo.block_k) // 2 or 1
    return Launch(_jit._corners_kernel, (triton.cdiv(r1 - r0, bn), ),
                  (off, keys, w) + geo.ints() + (r0, r1),
                  dict(geo.consts(), BLOCK_N=bn, BLOCK_K=geo.block_k), _NUM_WARPS)


def plan_pull(src: Tensor, a: Tensor, w: Tensor, perm: Tensor, start: Tensor, first: Tensor,
              out: Tensor, geo: _Geom) -> Launch:
    """``out[t] = sum over the samples e of row t of a[e // 4] w[e] src[e // 4K]``; ``start``,
    ``first``: the (chunks, R + 1) tables of :func:`_inverse_map`."""
    CH = src.shape[1]
    bc = min(_PULL_MAX_CH, _pow2(CH))
    c = geo.consts()
    return Launch(_jit._pull_kernel, (geo.R, triton.cdiv(CH, bc)),
                  (src, a, w, perm, start, first, out, start.shape[0], start.shape[1]),
                  dict(K=c['K'], CH=CH, ACC=c['ACC'], IDX=c['IDX'], BLOCK_E=_PULL_BLOCK_E,
                       BLOCK_CH=bc), _NUM_WARPS)


def sort_chunk_rows(geo: _Geom) -> int:
    """Query rows per chunk of the inverse map: ``_SORT_CHUNKS`` chunks, each of at least
    ``_SORT_MIN_ENTRIES`` corner entries (one chunk for small maps)."""
    per_row = 4 * geo.K
    want = max(_SORT_MIN_ENTRIES, -(-geo.R * per_row // _SORT_CHUNKS))
    return max(1, min(geo.R, -(-want // per_row)))


def _inverse_map(off: Tensor, geo: _Geom) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(w, perm, start, first)``: the corner weights (R*K*4), and the inverse map: per chunk
    ``c`` of query rows (:func:`sort_chunk_rows`), ``perm[start[c, t]:start[c, t + 1]]`` are the
    samples of the chunk that read key/value row t, in entry order (a stable sort of the chunk's
    corner rows); ``first[c, t] = start[c, t] - (t's samples in the chunks before c) %
    _PULL_BLOCK_E`` aligns the pull's steps across chunks. Sorting chunk by chunk bounds the
    sort's temporaries (its int64 permutation and double buffers) by one chunk; what stays
    through the pulls is ``w`` and ``perm`` (8 bytes per corner sample with int32 indices) and
    the two small (chunks, R + 1) tables."""
    itype = torch.int64 if geo.idx64 else torch.int32
    per_row = 4 * geo.K
    rows = sort_chunk_rows(geo)
    chunks = -(-geo.R // rows)
    w = torch.empty(geo.R * per_row, device=off.device, dtype=geo.acc)
    perm = torch.empty(geo.R * per_row, device=off.device, dtype=itype)
    start = torch.empty(chunks, geo.R + 1, device=off.device, dtype=itype)
    keys = torch.empty(rows * per_row, device=off.device, dtype=itype)
    targets = torch.arange(geo.R + 1, device=off.device, dtype=itype)
    for c in range(chunks):
        r0, r1 = c * rows, min(geo.R, (c + 1) * rows)
        e0, e1 = r0 * per_row, r1 * per_row
        plan_corners(off, keys, w[e0:e1], geo, r0, r1).run()
        sorted_keys, order = torch.sort(keys[:e1 - e0], stable=True)
        perm[e0:e1].copy_(order)
        del order
        perm[e0:e1] += e0
        start[c].copy_(torch.searchsorted(sorted_keys, targets))
        start[c] += e0  # positions in perm
        del sorted_keys
    counts = start[:, 1:] - start[:, :-1]
    first = start.clone()
    first[:, :-1] -= (counts.cumsum(0) - counts) % _PULL_BLOCK_E
    return w, perm, start, first


#: Bytes per entry that torch's CUDA stable sort of a 1-D int32 tensor (> 4096 entries) holds
#: while it runs, beyond its input: the sorted keys (4) and int64 indices (8) it returns, the
#: int64 iota it sorts as values (8) and the radix sort's alternate key and value buffers
#: (4 + 8). An assumption from torch's implementation (SortStable.cu, cub::DeviceRadixSort),
#: not a measurement; used by :func:`backward_memory`.
CUDA_SORT_BYTES = 32


def backward_memory(R: int, K: int, idx64: bool = False, acc_bytes: int = 4,
                    sort_bytes: int = CUDA_SORT_BYTES, chunks: Optional[int] = None) -> dict:
    """Bytes the attention backward allocates beyond the gradients, from its launch plan:
    ``dl`` (R, K) and the inverse map of :func:`_inverse_map` (``chunks`` as it would choose,
    or forced), the sort's temporaries per entry ``sort_bytes``. Returns ``peak`` (while the
    largest chunk sorts), ``held`` (through the pulls), ``samples`` (R K 4 corner samples) and
    the chunking; divide by ``samples`` for bytes per corner sample."""
    geo = _Geom((1, R), (1, K), 1, R, (1, ), torch.float32)
    per_row, ib = 4 * K, 8 if idx64 else 4
    rows = sort_chunk_rows(geo) if chunks is None else -(-R // chunks)
    n_chunks = -(-R // rows)
    n, chunk = R * per_row, min(R, rows) * per_row
    # dl, w, perm, the start and first tables
    held = R * K * acc_bytes + n * (acc_bytes + ib) + 2 * n_chunks * (R + 1) * ib
    # while a chunk sorts: its keys, the sort's temporaries, searchsorted's targets and output
    peak = held + chunk * (ib + sort_bytes) + 2 * (R + 1) * 8
    return dict(peak=peak, held=held, samples=n, chunks=n_chunks, chunk_entries=chunk)


def _geom(rows: Tuple[Tensor, ...], hw, kernel, dilation) -> _Geom:
    acc = torch.float64 if any(t.dtype == torch.float64 for t in rows) else torch.float32
    widths = tuple(t.shape[1] for t in rows if t.dim() == 2)
    return _Geom(hw, kernel, dilation, rows[0].shape[0], widths, acc)


# ---------------------------------------------------------------------------------------------
# autograd functions
# ---------------------------------------------------------------------------------------------
class _TritonSNL(Function):
    """Rows in, ``(out (R, Cv) in v's dtype, softmax (R, K) ACC, non-differentiable)`` out.
    Saves the inputs and the softmax; the backward is not itself differentiable."""

    @staticmethod
    def forward(ctx, q, k, v, off, hw, kernel, dilation):
        geo = _geom((q, k, v, off), hw, kernel, dilation)
        s = torch.empty(geo.R, geo.K, device=q.device, dtype=geo.acc)
        out = torch.empty_like(v)
        plan_forward(q, k, v, off, s, out, geo).run()
        ctx.save_for_backward(q, k, v, off, s)
        ctx.geo = geo
        ctx.mark_non_differentiable(s)
        ctx.set_materialize_grads(False)
        return out, s

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out, _grad_s=None):
        if grad_out is None:
            return (None, ) * 7
        q, k, v, off, s = ctx.saved_tensors
        geo = ctx.geo
        need_q, need_k, need_v, need_off = ctx.needs_input_grad[:4]
        g = grad_out.contiguous()
        gq = torch.empty_like(q) if need_q else None
        goff = torch.empty_like(off) if need_off else None
        dl = None
        if need_q or need_k or need_off:
            dl = torch.empty_like(s)  # dL/dlogits: read back by the kernel, and by the dk pull
            plan_bwd_query(q, k, v, off, s, g, dl, q if gq is None else gq,
                           off if goff is None else goff, geo, softmax=True, need_q=need_q,
                           need_off=need_off).run()
        gk = gv = None
        if need_k or need_v:
            inv = _inverse_map(off, geo)
            if need_v:
                gv = torch.empty_like(v)
                plan_pull(g, s, *inv, gv, geo).run()
            if need_k:
                gk = torch.empty_like(k)
                plan_pull(q, dl, *inv, gk, geo).run()
        return gq, gk, gv, goff, None, None, None


class _TritonLogits(Function):
    """Rows in, differentiable logits (R, K) ACC out (for the mmcv composition)."""

    @staticmethod
    def forward(ctx, q, k, off, hw, kernel, dilation):
        geo = _geom((q, k, off), hw, kernel, dilation)
        logits = torch.empty(geo.R, geo.K, device=q.device, dtype=geo.acc)
        plan_forward(q, k, q, off, logits, logits, geo, values=False).run()
        ctx.save_for_backward(q, k, off)
        ctx.geo = geo
        return logits

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_logits):
        q, k, off = ctx.saved_tensors
        geo = ctx.geo
        need_q, need_k, need_off = ctx.needs_input_grad[:3]
        dl = grad_logits.to(geo.acc).contiguous()
        gq = torch.empty_like(q) if need_q else None
        goff = torch.empty_like(off) if need_off else None
        if need_q or need_off:
            plan_bwd_query(q, k, q, off, dl, q, dl, q if gq is None else gq,
                           off if goff is None else goff, geo, softmax=False, need_q=need_q,
                           need_off=need_off).run()
        gk = None
        if need_k:
            gk = torch.empty_like(k)
            plan_pull(q, dl, *_inverse_map(off, geo), gk, geo).run()
        return gq, gk, goff, None, None, None


def triton_attention_rows(q: Tensor, k: Tensor, v: Tensor, off: Tensor, hw: Tuple[int, int],
                          kernel: Tuple[int, int], dilation: int) -> Tuple[Tensor, Tensor]:
    """Attention on contiguous rows: ``(out (R, Cv) in v's dtype, softmax (R, K))``; ``out`` is
    differentiable w.r.t. all four inputs, the softmax is detached."""
    return _TritonSNL.apply(q, k, v, off, hw, kernel, dilation)


def triton_logits_rows(q: Tensor, k: Tensor, off: Tensor, hw: Tuple[int, int],
                       kernel: Tuple[int, int], dilation: int) -> Tensor:
    """Differentiable logits ``l_j = <q, bilinear(k, p_j)>`` (R, K) on contiguous rows."""
    return _TritonLogits.apply(q, k, off, hw, kernel, dilation)
