"""The chunked sparse backend (``backend='sparse'``; ``'auto'`` on CPU) of the sparse non-local op.

Contract: see :mod:`mmseg_ext.ops.sparse_nonlocal`. Everything here works on channels-last rows:
``q, k`` (R, C), ``v`` (R, Cv), ``off`` (R, K, 2) with ``R = B * H * W``.

Bilinear sampling of a point is a fixed combination of 4 integer pixels ("corners"), so the op is
a sparse ``N x N`` pattern with ``E = 4K`` entries per query row (``N = H * W``):

* logits ``l_j = sum_c w_jc <q, k[idx_jc]>``: the per-corner dot products are a sampled
  dense-dense product (SDDMM, ``torch.sparse.sampled_addmm`` on CPU, gather + ``bmm`` elsewhere);
* ``out = sum_jc (s_j w_jc) v[idx_jc]`` is a sparse-dense product (SpMM: in-place ``addmm_`` with
  a COO matrix; duplicate and unsorted column indices simply add up).

One ``autograd.Function`` (:class:`_SparseNonLocal`) runs over chunks of query rows (the chunk
size comes from a byte budget, ``_CHUNK_BYTES``): per chunk it builds the corner indices and
weights (:class:`_Geometry`, on the geometry of :mod:`.common` shared with the export backend),
the SDDMM, the softmax and the SpMM. It saves only its inputs, the softmax (R, K) and the
per-corner dots (R, 4K); the hand-written backward recomputes the geometry
per chunk and uses the same pattern (SDDMM with the output gradient, SpMM and transposed SpMM
accumulated in place, and the closed-form derivative of the bilinear weights for the offsets).
Nothing of size ``N * K * C`` is ever materialised: memory is ``O(N K + N (C + Cv))``, linear in
``N``. The backward is not itself differentiable (no double backward).

This path is fast on CPU; on CUDA it launches a dozen small kernels per chunk, which is why
``'auto'`` picks the Triton kernels there (:mod:`.triton_kernels`).
"""
import warnings
from typing import Tuple

import torch
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from .common import axis_corners, point_coordinates

__all__ = ['sparse_attention_rows', 'sparse_logits_rows']

# Budget (bytes) for the per-chunk temporaries (corner indices, weights, sparse matrices and,
# off-CPU, gathered rows); the op loops over chunks of query rows of that size.
_CHUNK_BYTES = 32 * 2**20


# ---------------------------------------------------------------------------------------------
# sparse primitives on a chunk of query rows: row r has E = 4K entries at columns cols[r, :]
# ---------------------------------------------------------------------------------------------
def _quiet_sparse():
    """Silence torch's one-time 'sparse is beta / invariant checks disabled' warnings."""
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.filterwarnings('ignore', message='.*[Ss]parse.*')
    return ctx


def _sddmm(a: Tensor, b: Tensor, cols: Tensor) -> Tensor:
    """``out[r, e] = <a[r], b[cols[r, e]]>`` for a (R, D), b (M, D), cols (R, E) -> (R, E)."""
    R, E = cols.shape
    # torch's CPU sampled_addmm fails when a row has more entries than the matrix has columns
    # (tiny maps); the gather version is as good there.
    if a.device.type != 'cpu' or E >= b.shape[0]:
        return _sddmm_gather(a, b, cols)
    crow = torch.arange(0, R * E + 1, E, device=a.device)
    ctx = _quiet_sparse()
    try:
        mask = torch.sparse_csr_tensor(crow, cols.reshape(-1), a.new_zeros(R * E),
                                       (R, b.shape[0]), check_invariants=False)
        out = torch.sparse.sampled_addmm(mask, a, b.t(), beta=0.0).values()
    finally:
        ctx.__exit__(None, None, None)
    return out.view(R, E)


def _sddmm_gather(a: Tensor, b: Tensor, cols: Tensor) -> Tensor:
    """Gather version of :func:`_sddmm` (used off-CPU; equal on CPU, tested there)."""
    R, E = cols.shape
    D = b.shape[1]
    out = a.new_empty(R, E)
    step = max(1, _CHUNK_BYTES // (2 * E * D * b.element_size()))  # bound the gathered rows
    for r0 in range(0, R, step):
        r1 = min(R, r0 + step)
        g = b.index_select(0, cols[r0:r1].reshape(-1)).view(r1 - r0, E, D)
        torch.bmm(g, a[r0:r1].unsqueeze(-1), out=out[r0:r1].unsqueeze(-1))
    return out


def _coo(ind: Tensor, vals: Tensor, size) -> Tensor:
    ctx = _quiet_sparse()
    try:
        return torch.sparse_coo_tensor(ind, vals.reshape(-1), size, check_invariants=False)
    finally:
        ctx.__exit__(None, None, None)


def _spmm_(out: Tensor, vals: Tensor, dense: Tensor, ind: Tensor):
    """``out[r] += sum_e vals[r, e] dense[cols[r, e]]`` in place; ``ind = (rows, cols)``."""
    out.addmm_(_coo(ind, vals, (out.shape[0], dense.shape[0])), dense)


def _spmm_t_(out: Tensor, vals: Tensor, dense: Tensor, ind_t: Tensor):
    """Transposed ``out[cols[r, e]] += vals[r, e] dense[r]`` in place; ``ind_t = (cols, rows)``."""
    out.addmm_(_coo(ind_t, vals, (out.shape[0], dense.shape[0])), dense)


class _Geometry:
    """Corner indices / bilinear weights of a chunk ``[r0, r1)`` of the B*N query rows.

    Corners of point j are ordered (y0, x0), (y0, x0+1), (y0+1, x0), (y0+1, x0+1). A corner
    outside the map gets weight exactly 0 and a clamped (valid) index. Everything is computed
    per axis on (R, K, 2) tensors and combined once into (R, K, 4).

    Attributes:
        w (Tensor): (R, K, 4) bilinear weights.
        cols (Tensor): (R, 4K) flat key/value row of every corner (batch offset included).
        ind (Tensor): (2, R*4K) COO indices (local row, col); ``ind_t``: (col, local row).
    """

    def __init__(self, off_rows: Tensor, r0: int, r1: int, H: int, W: int, kh: int, kw: int,
                 dilation: int):
        dev = off_rows.device
        N, K, R = H * W, kh * kw, r1 - r0
        rr = torch.arange(r0, r1, device=dev)
        n = rr % N
        base = (rr - n).view(R, 1, 1)  # batch offset b * N of every row
        sy, sx = point_coordinates(n, W, off_rows[r0:r1], (kh, kw), dilation)
        self.wy, self.dwy, iy = self._axis(sy, H)
        self.wx, self.dwx, ix = self._axis(sx, W)
        self.w = (self.wy.unsqueeze(-1) * self.wx.unsqueeze(-2)).view(R, K, 4)
        # T = [rows; cols; rows]: ind = T[0:2] and ind_t = T[1:3] are contiguous views.
        T = torch.empty(3, R, K, 2, 2, dtype=torch.long, device=dev)
        torch.add((iy * W + base).unsqueeze(-1), ix.unsqueeze(-2), out=T[1])
        T[0].copy_(torch.arange(R, device=dev).view(R, 1, 1, 1).expand(R, K, 2, 2))
        T[2].copy_(T[0])
        T = T.view(3, R * K * 4)
        self.cols = T[1].view(R, 4 * K)
        self.ind, self.ind_t = T[0:2], T[1:3]

    @staticmethod
    def _axis(c: Tensor, size: int):
        """Weights (R, K, 2) of the neighbours along one axis (:func:`.common.axis_corners`),
        their derivative w.r.t. ``c`` and the neighbours' int64 indices clamped into the map."""
        w, valid, i = axis_corners(c, size, torch.long)
        sign = torch.tensor([-1., 1.], dtype=c.dtype, device=c.device)
        return w, sign * valid, i  # d/dc of [1 - frac, frac] * valid

    def offset_grad(self, gw: Tensor, out: Tensor):
        """Chain rule from ``gw = dL/dw`` (R, K, 4) into ``out`` (R, K, 2) = (dL/dsy, dL/dsx)."""
        g = gw.view(*gw.shape[:2], 2, 2)
        out[..., 0] = ((g * self.wx.unsqueeze(-2)).sum(-1) * self.dwy).sum(-1)
        out[..., 1] = ((g * self.wy.unsqueeze(-1)).sum(-2) * self.dwx).sum(-1)


def _softmax(x: Tensor) -> Tensor:
    """Softmax over the last dim from elementwise ops (``torch.softmax`` on CPU opens an OpenMP
    region even for tiny inputs, which costs milliseconds per chunk on a busy machine)."""
    e = (x - x.amax(-1, keepdim=True)).exp_()
    return e.div_(e.sum(-1, keepdim=True))


def _chunk_rows(E: int, D: int, itemsize: int, device: torch.device) -> int:
    """Query rows per chunk so that the per-chunk temporaries stay within _CHUNK_BYTES."""
    per_row = E * (6 * 8 + 12 * itemsize) + 4 * D * itemsize
    if device.type != 'cpu':  # the gather SDDMM materialises E rows of D per query row
        per_row += E * D * itemsize
    return max(1, _CHUNK_BYTES // per_row)


def _chunks(R: int, rows: int):
    return [(r0, min(R, r0 + rows)) for r0 in range(0, R, rows)]


class _SparseNonLocal(Function):
    """Fused, chunked sparse non-local attention on row layout.

    Inputs q, k (R, C), v (R, Cv), off (R, K, 2) with R = B * N rows; outputs (R, Cv) and the
    (non-differentiable) softmax (R, K).
    Saves only the inputs, the softmax ``s`` (R, K) and the per-corner dots (R, 4K); geometry
    is recomputed per chunk in backward.
    """

    @staticmethod
    def forward(ctx, q, k, v, off, hw, kernel, dilation):
        H, W = hw
        kh, kw = kernel
        R, K = off.shape[0], kh * kw
        out = v.new_zeros(R, v.shape[1])
        s_all = q.new_empty(R, K)
        dots_all = q.new_empty(R, 4 * K)
        rows = _chunk_rows(4 * K, max(q.shape[1], v.shape[1]), q.element_size(), q.device)
        for r0, r1 in _chunks(R, rows):
            geo = _Geometry(off, r0, r1, H, W, kh, kw, dilation)
            dots = _sddmm(q[r0:r1], k, geo.cols)
            dots_all[r0:r1] = dots
            logits = (dots.view(-1, K, 4) * geo.w).sum(-1)
            s = _softmax(logits)
            s_all[r0:r1] = s
            _spmm_(out[r0:r1], s.unsqueeze(-1) * geo.w, v, geo.ind)
        ctx.save_for_backward(q, k, v, off, s_all, dots_all)
        ctx.geom = (H, W, kh, kw, dilation, rows)
        # the softmax is also returned (for ``return_weights``), not differentiable
        ctx.mark_non_differentiable(s_all)
        ctx.set_materialize_grads(False)
        return out, s_all

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out, _grad_s=None):
        if grad_out is None:
            return (None, ) * 7
        q, k, v, off, s_all, dots_all = ctx.saved_tensors
        H, W, kh, kw, dilation, rows = ctx.geom
        need_q, need_k, need_v, need_off = ctx.needs_input_grad[:4]
        grad_out = grad_out.contiguous()
        R, K = off.shape[0], kh * kw
        gq = torch.zeros_like(q) if need_q else None
        gk = torch.zeros_like(k) if need_k else None
        gv = torch.zeros_like(v) if need_v else None
        goff = torch.zeros_like(off) if need_off else None
        for r0, r1 in _chunks(R, rows):
            geo = _Geometry(off, r0, r1, H, W, kh, kw, dilation)
            w = geo.w
            s = s_all[r0:r1]
            g = grad_out[r0:r1]
            if need_v:
                _spmm_t_(gv, s.unsqueeze(-1) * w, g, geo.ind_t)
            if not (need_q or need_k or need_off):
                continue
            # d out / d (s_j w_jc) = <g, v[idx_jc]>
            ga = _sddmm(g, v, geo.cols).view(-1, K, 4)
            ds = (ga * w).sum(-1)
            dlogit = s * (ds - (s * ds).sum(-1, keepdim=True))
            gdots = dlogit.unsqueeze(-1) * w
            if need_q:
                _spmm_(gq[r0:r1], gdots, k, geo.ind)
            if need_k:
                _spmm_t_(gk, gdots, q[r0:r1], geo.ind_t)
            if need_off:
                gw = s.unsqueeze(-1) * ga + dlogit.unsqueeze(-1) * dots_all[r0:r1].view(-1, K, 4)
                geo.offset_grad(gw, goff[r0:r1])
        return gq, gk, gv, goff, None, None, None


class _SparseLogits(Function):
    """Chunked sparse logits ``l_j = <q, bilinear(k, p_j)>`` on row layout -> (R, K).

    Used with mmcv's CUDA value aggregation (which needs the softmax as its attention weights).
    """

    @staticmethod
    def forward(ctx, q, k, off, hw, kernel, dilation):
        H, W = hw
        kh, kw = kernel
        R, K = off.shape[0], kh * kw
        logits = q.new_empty(R, K)
        dots_all = q.new_empty(R, 4 * K)
        rows = _chunk_rows(4 * K, q.shape[1], q.element_size(), q.device)
        for r0, r1 in _chunks(R, rows):
            geo = _Geometry(off, r0, r1, H, W, kh, kw, dilation)
            dots = _sddmm(q[r0:r1], k, geo.cols)
            dots_all[r0:r1] = dots
            logits[r0:r1] = (dots.view(-1, K, 4) * geo.w).sum(-1)
        ctx.save_for_backward(q, k, off, dots_all)
        ctx.geom = (H, W, kh, kw, dilation, rows)
        return logits

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_logits):
        q, k, off, dots_all = ctx.saved_tensors
        H, W, kh, kw, dilation, rows = ctx.geom
        need_q, need_k, need_off = ctx.needs_input_grad[:3]
        R, K = off.shape[0], kh * kw
        gq = torch.zeros_like(q) if need_q else None
        gk = torch.zeros_like(k) if need_k else None
        goff = torch.zeros_like(off) if need_off else None
        for r0, r1 in _chunks(R, rows):
            geo = _Geometry(off, r0, r1, H, W, kh, kw, dilation)
            dl = grad_logits[r0:r1].unsqueeze(-1)
            gdots = dl * geo.w
            if need_q:
                _spmm_(gq[r0:r1], gdots, k, geo.ind)
            if need_k:
                _spmm_t_(gk, gdots, q[r0:r1], geo.ind_t)
            if need_off:
                gw = dl * dots_all[r0:r1].view(-1, K, 4)
                geo.offset_grad(gw, goff[r0:r1])
        return gq, gk, goff, None, None, None


def sparse_attention_rows(q: Tensor, k: Tensor, v: Tensor, off: Tensor, hw: Tuple[int, int],
                          kernel: Tuple[int, int], dilation: int) -> Tuple[Tensor, Tensor]:
    """Attention on rows of one dtype: ``(out (R, Cv), softmax (R, K))``; the softmax is
    detached (non-differentiable), ``out`` is differentiable w.r.t. all four inputs."""
    return _SparseNonLocal.apply(q, k, v, off, hw, kernel, dilation)


def sparse_logits_rows(q: Tensor, k: Tensor, off: Tensor, hw: Tuple[int, int],
                       kernel: Tuple[int, int], dilation: int) -> Tensor:
    """Differentiable logits ``l_j = <q, bilinear(k, p_j)>`` (R, K) on rows (for the mmcv
    composition, which aggregates the values itself)."""
    return _SparseLogits.apply(q, k, off, hw, kernel, dilation)
