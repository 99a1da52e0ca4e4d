"""Sparse non-local attention, the core op of SSANet's sparse non-local (SNL) block.

Paper: "Sparse Spatial Attention Network for Semantic Segmentation" (SSANet), Sec. 3.2, Eqns. 4-7:
every query pixel samples ``K = kh * kw`` key/value elements at a regular ``kh x kw`` grid around
itself shifted by learned offsets, scores them with a dot product against its query, normalises the
``K`` scores with a softmax (the sparse ``N x K`` affinity ``S``) and returns the ``S``-weighted sum
of the bilinearly sampled values.

Implementation
--------------
Bilinear sampling of a point is a fixed combination of 4 integer pixels ("corners"), so the op is
a sparse ``N x N`` pattern with ``E = 4K`` entries per query row (``N = H * W``):

* logits ``l_j = sum_c w_jc <q, k[idx_jc]>``: the per-corner dot products are a sampled
  dense-dense product (SDDMM, ``torch.sparse.sampled_addmm`` on CPU);
* ``out = sum_jc (s_j w_jc) v[idx_jc]`` is a sparse-dense product (SpMM: in-place ``addmm_`` with
  a COO matrix; duplicate and unsorted column indices simply add up).

One ``autograd.Function`` (:class:`_SparseNonLocal`) runs over chunks of query rows (the chunk
size comes from a byte budget, ``_CHUNK_BYTES``): per chunk it builds the corner indices and
weights (:class:`_Geometry`), the SDDMM, the softmax and the SpMM. It saves only its inputs, the
softmax (N, K) and the per-corner dots (N, 4K); the hand-written backward recomputes the geometry
per chunk and uses the same pattern (SDDMM with the output gradient, SpMM and transposed SpMM
accumulated in place, and the closed-form derivative of the bilinear weights for the offsets).
Nothing of size ``N * K * C`` is ever materialised: memory is ``O(N K + N (C + Cv))``, linear in
``N``. Channels-last rows (``(B*N, C)``) make every access a contiguous row. The backward is not
itself differentiable (no double backward).

Off CPU the SDDMM is a gather + ``bmm`` per chunk (the chunk budget then includes the gathered
rows). On CUDA, when mmcv was compiled with CUDA, the value aggregation instead uses mmcv's
``MultiScaleDeformableAttnFunction`` (one level, one head, ``K`` points, attention weights = the
softmax), which never materialises sampled values; the logits come from :class:`_SparseLogits`
(same chunked SDDMM). **The CUDA paths are not exercised in CI** (no GPU here). What can be
checked on CPU is: the pixel -> mmcv sampling-location conversion
(:func:`pixel_to_msda_locations`, against the bilinear reference with mmcv's own
``grid_sample(align_corners=False)`` convention), the whole MSDA composition with mmcv's
pure-PyTorch fallback ``multi_scale_deformable_attn_pytorch`` in its place (forward + gradcheck),
and the gather SDDMM against the sparse one.
"""
import functools
import math
import warnings
from typing import Optional, Tuple, Union

import torch
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import once_differentiable

__all__ = ['sparse_nonlocal_attention', 'pixel_to_msda_locations', 'sample_coordinates']

# Budget (bytes) for the per-chunk temporaries (corner indices, weights, sparse matrices and,
# off-CPU, gathered rows); the op loops over chunks of query rows of that size.
_CHUNK_BYTES = 32 * 2**20


# ---------------------------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------------------------
def _pair(kernel_size) -> Tuple[int, int]:
    if isinstance(kernel_size, int) and not isinstance(kernel_size, bool):
        kh = kw = kernel_size
    elif isinstance(kernel_size, (tuple, list)) and len(kernel_size) == 2:
        kh, kw = kernel_size
    else:
        raise ValueError('kernel_size must be an int or a pair (kh, kw) of ints, e.g. 9 or '
                         f'(9, 11), got {kernel_size!r}')
    if not all(isinstance(k, int) and not isinstance(k, bool) for k in (kh, kw)) \
            or kh <= 0 or kw <= 0:
        raise ValueError('kernel_size must hold positive ints, e.g. 9 or (9, 11), '
                         f'got {kernel_size!r}')
    return kh, kw


def _check_inputs(query, key, value, offset, kernel_size, dilation) -> Tuple[int, int]:
    kh, kw = _pair(kernel_size)
    if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation <= 0:
        raise ValueError(f'dilation must be a positive int (e.g. 1), got {dilation!r}')
    for name, t in (('query', query), ('key', key), ('value', value), ('offset', offset)):
        if not isinstance(t, Tensor) or t.dim() != 4:
            raise ValueError(f'{name} must be a 4-D tensor (B, C, H, W), got '
                             f'{tuple(t.shape) if isinstance(t, Tensor) else type(t)}')
        if not t.is_floating_point():
            raise ValueError(f'{name} must be a floating point tensor, got {t.dtype}')
    B, C, H, W = query.shape
    if key.shape != query.shape:
        raise ValueError(f'key must have the same shape as query {tuple(query.shape)} '
                         f'(B, C, H, W), got {tuple(key.shape)}')
    if value.shape[0] != B or value.shape[2:] != (H, W):
        raise ValueError(f'value must be (B={B}, Cv, H={H}, W={W}) to match query, got '
                         f'{tuple(value.shape)}')
    K = kh * kw
    if offset.shape[1] != 2 * K:
        raise ValueError(f'offset must have 2*kh*kw = {2 * K} channels for kernel_size '
                         f'({kh}, {kw}), got {offset.shape[1]}: make the offset conv output '
                         f'{2 * K} channels or change kernel_size to match')
    if offset.shape[0] != B or offset.shape[2:] != (H, W):
        raise ValueError(f'offset must be (B={B}, {2 * K}, H={H}, W={W}) to match query, got '
                         f'{tuple(offset.shape)}')
    devs = {t.device for t in (query, key, value, offset)}
    if len(devs) != 1:
        raise ValueError(f'query, key, value and offset must be on one device, got {devs}')
    return kh, kw


# ---------------------------------------------------------------------------------------------
# sampling geometry
# ---------------------------------------------------------------------------------------------
def sample_coordinates(offset: Tensor, kernel_size: Union[int, Tuple[int, int]],
                       dilation: int = 1) -> Tuple[Tensor, Tensor]:
    """Absolute pixel-index sampling coordinates ``(sy, sx)``, each (B, H*W, K).

    Point ``j = a * kw + b`` of query ``(y, x)`` is at
    ``y + (a - (kh - 1) / 2) * dilation + offset[:, 2j]`` and
    ``x + (b - (kw - 1) / 2) * dilation + offset[:, 2j + 1]`` (mmcv deform-conv layout: dy, dx).
    """
    kh, kw = _pair(kernel_size)
    B, _, H, W = offset.shape
    K = kh * kw
    dev, dt = offset.device, offset.dtype
    ys = torch.arange(H, device=dev, dtype=dt).view(H, 1).expand(H, W).reshape(1, H * W, 1)
    xs = torch.arange(W, device=dev, dtype=dt).view(1, W).expand(H, W).reshape(1, H * W, 1)
    ga = (torch.arange(kh, device=dev, dtype=dt) - (kh - 1) / 2) * dilation
    gb = (torch.arange(kw, device=dev, dtype=dt) - (kw - 1) / 2) * dilation
    gy = ga.view(kh, 1).expand(kh, kw).reshape(1, 1, K)
    gx = gb.view(1, kw).expand(kh, kw).reshape(1, 1, K)
    off = offset.reshape(B, K, 2, H * W)
    sy = (ys + gy) + off[:, :, 0].transpose(1, 2)
    sx = (xs + gx) + off[:, :, 1].transpose(1, 2)
    return sy, sx


def pixel_to_msda_locations(sy: Tensor, sx: Tensor, H: int, W: int) -> Tensor:
    """Convert pixel-index coords to mmcv ``MultiScaleDeformableAttnFunction`` locations.

    mmcv samples with ``grid_sample(align_corners=False)`` on normalised ``[0, 1]`` coordinates,
    i.e. pixel ``x`` is at ``(x + 0.5) / W``; its layout is
    ``(B, num_queries, num_heads, num_levels, num_points, 2)`` with ``(x, y)`` order.

    Args:
        sy, sx (Tensor): (B, N, K) pixel-index coordinates (see :func:`sample_coordinates`).
        H, W (int): map size.

    Returns:
        Tensor: (B, N, 1, 1, K, 2) sampling locations for one head and one level.
    """
    loc = torch.stack([(sx + 0.5) / W, (sy + 0.5) / H], dim=-1)
    return loc.unsqueeze(2).unsqueeze(2)


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
        dev, dt = off_rows.device, off_rows.dtype
        N, K, R = H * W, kh * kw, r1 - r0
        rr = torch.arange(r0, r1, device=dev)
        n = rr % N
        base = (rr - n).view(R, 1, 1)  # batch offset b * N of every row
        ga = (torch.arange(kh, device=dev, dtype=dt) - (kh - 1) / 2) * dilation
        gb = (torch.arange(kw, device=dev, dtype=dt) - (kw - 1) / 2) * dilation
        off = off_rows[r0:r1]  # (R, K, 2)
        sy = (n // W).to(dt).view(R, 1) + ga.repeat_interleave(kw).view(1, K) + off[..., 0]
        sx = (n % W).to(dt).view(R, 1) + gb.repeat(kh).view(1, K) + off[..., 1]
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
        """Weights (R, K, 2) of the neighbours ``floor(c)`` and ``floor(c) + 1`` along one axis,
        their derivative w.r.t. ``c`` and the neighbours' indices clamped into the map."""
        c0 = torch.floor(c)
        frac = (c - c0).unsqueeze(-1)
        # clamp before the int cast so that inf / huge offsets cannot overflow.
        i0 = c0.clamp_(-2, size + 1).long().unsqueeze(-1)
        i = torch.cat([i0, i0 + 1], -1)
        valid = ((i >= 0) & (i < size)).to(c.dtype)
        sign = torch.tensor([-1., 1.], dtype=c.dtype, device=c.device)
        dw = sign * valid  # d/dc of [1 - frac, frac] * valid
        w = torch.cat([1 - frac, frac], -1) * valid
        return w, dw, i.clamp_(0, size - 1)

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


# ---------------------------------------------------------------------------------------------
# optional mmcv CUDA value aggregation
# ---------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _mmcv_msda_function():
    """mmcv's ``MultiScaleDeformableAttnFunction`` if mmcv was compiled with CUDA, else None."""
    try:
        from mmcv.ops import get_compiling_cuda_version
        from mmcv.ops.multi_scale_deform_attn import MultiScaleDeformableAttnFunction
        if get_compiling_cuda_version() in (None, '', 'not available'):
            return None
    except Exception:  # mmcv missing or built without ops
        return None
    return MultiScaleDeformableAttnFunction


def _msda_aggregate(fn, s: Tensor, v: Tensor, sy: Tensor, sx: Tensor, H: int,
                    W: int) -> Tensor:
    """Aggregate values with mmcv MSDA: one level, one head, K points. (CUDA only, untested.)"""
    B, N, _ = s.shape
    value = v.reshape(B, N, 1, v.shape[-1])
    shapes = torch.tensor([[H, W]], dtype=torch.long, device=v.device)
    start = torch.zeros(1, dtype=torch.long, device=v.device)
    loc = pixel_to_msda_locations(sy, sx, H, W).to(v.dtype)
    attn = s.reshape(B, N, 1, 1, -1).to(v.dtype)
    im2col_step = math.gcd(B, 64)  # mmcv requires batch % im2col_step == 0
    out = fn.apply(value, shapes, start, loc, attn, im2col_step)
    return out.reshape(B, N, -1)


# ---------------------------------------------------------------------------------------------
# public op
# ---------------------------------------------------------------------------------------------
def sparse_nonlocal_attention(query: Tensor,
                              key: Tensor,
                              value: Tensor,
                              offset: Tensor,
                              kernel_size: Union[int, Tuple[int, int]],
                              dilation: int = 1,
                              use_mmcv_cuda: Optional[bool] = None,
                              return_weights: bool = False
                              ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    """Sparse non-local attention (SSANet, Eqns. 4-7).

    Point ``j = a * kw + b`` of query pixel ``(y, x)`` is sampled bilinearly (zero outside the
    map) at ``(y + (a - (kh - 1) / 2) * dilation + offset[:, 2j],
    x + (b - (kw - 1) / 2) * dilation + offset[:, 2j + 1])`` in pixel-index coordinates (mmcv
    deform-conv offset layout dy, dx; even kernels give half-pixel grid centres). Then
    ``s = softmax_j(<query(y, x), key(sample_j)>)`` (no scaling) and
    ``out(y, x) = sum_j s_j value(sample_j)``.

    Logits and softmax are computed in float32 (float64 inputs stay float64) also under
    fp16/bf16 autocast; the output has ``value``'s dtype. Differentiable w.r.t. all four inputs.
    Memory is linear in ``H * W`` (nothing of size ``H*W*K*C`` is materialised).

    Args:
        query (Tensor): (B, C, H, W).
        key (Tensor): (B, C, H, W).
        value (Tensor): (B, Cv, H, W).
        offset (Tensor): (B, 2K, H, W) with ``K = kh * kw``, channel ``2j`` = dy, ``2j+1`` = dx.
        kernel_size (int | tuple[int, int]): sampling grid ``(kh, kw)``; the paper uses
            K = 9, 49, 81, 99 (9x11) and 121.
        dilation (int): spacing of the initial grid. Default: 1.
        use_mmcv_cuda (bool, optional): aggregate values with mmcv's CUDA
            ``MultiScaleDeformableAttnFunction``. ``None`` (default) = when the inputs are on
            CUDA and mmcv has the compiled op. This path is NOT tested in CI (no GPU).
        return_weights (bool): also return the softmax weights ``s`` the output was computed
            with (detached; for inspection/visualisation). Default: False.

    Returns:
        Tensor: (B, Cv, H, W); with ``return_weights``, ``(out, s)`` where ``s`` (B, K, H, W)
        is the softmax over the K points (float32, or float64 for float64 inputs), channel ``j``
        for point ``j`` as in the offset layout.
    """
    kh, kw = _check_inputs(query, key, value, offset, kernel_size, dilation)
    msda = None
    if use_mmcv_cuda is None or use_mmcv_cuda:
        msda = _mmcv_msda_function() if value.is_cuda else None
        if use_mmcv_cuda and msda is None:
            raise ValueError('use_mmcv_cuda=True needs CUDA inputs and mmcv compiled with CUDA; '
                             'pass use_mmcv_cuda=None to fall back automatically')
    return _sparse_nonlocal(query, key, value, offset, kh, kw, dilation, msda,
                            return_weights=bool(return_weights))


def _sparse_nonlocal(query, key, value, offset, kh, kw, dilation, msda=None,
                     return_weights=False):
    """Implementation of :func:`sparse_nonlocal_attention` on checked inputs.

    ``msda``: None (fused sparse path) or an object whose ``apply`` has the signature of mmcv's
    ``MultiScaleDeformableAttnFunction.apply`` (tests pass a CPU shim around mmcv's
    ``multi_scale_deformable_attn_pytorch`` to validate that composition without a GPU).
    With ``return_weights`` returns ``(out, s)``, ``s`` the detached (B, K, H, W) softmax.
    """
    B, C, H, W = query.shape
    Cv = value.shape[1]
    N, K = H * W, kh * kw
    cdt = torch.float64 if torch.float64 in (query.dtype, key.dtype, value.dtype,
                                             offset.dtype) else torch.float32
    with torch.autocast(device_type=query.device.type, enabled=False):
        # channels-last rows (B*N, C); offsets as (B*N, K, 2) = (dy, dx) per point
        q = query.to(cdt).permute(0, 2, 3, 1).reshape(B * N, C).contiguous()
        k = key.to(cdt).permute(0, 2, 3, 1).reshape(B * N, C).contiguous()
        v = value.to(cdt).permute(0, 2, 3, 1).reshape(B * N, Cv).contiguous()
        off = offset.to(cdt).reshape(B, K, 2, N).permute(0, 3, 1, 2).reshape(B * N, K, 2)
        off = off.contiguous()
        if msda is None:
            out, s = _SparseNonLocal.apply(q, k, v, off, (H, W), (kh, kw), dilation)
        else:
            logits = _SparseLogits.apply(q, k, off, (H, W), (kh, kw), dilation)
            s = torch.softmax(logits.view(B, N, K), dim=-1)
            sy, sx = sample_coordinates(offset.to(cdt), (kh, kw), dilation)
            out = _msda_aggregate(msda, s, v.view(B, N, Cv), sy, sx, H, W)
    out = out.reshape(B, H, W, Cv).permute(0, 3, 1, 2).to(value.dtype).contiguous()
    if not return_weights:
        return out
    return out, s.detach().reshape(B, H, W, K).permute(0, 3, 1, 2).contiguous()
