"""Triton backend (``backend='triton'``; ``'auto'`` on CUDA) of the sparse non-local op.

Contract: see :mod:`mmseg_ext.ops.sparse_nonlocal`. Inputs are channels-last rows ``q, k``
(R, C), ``v`` (R, Cv), ``off`` (R, K, 2) with ``R = B * H * W``, each contiguous, of any float
dtype (fp16, bf16, fp32, fp64; they may differ). Arithmetic is in ``ACC`` = float32, or float64
when the rows are float64.

Kernels (each program owns ``BLOCK_N`` consecutive query rows; the sampling coordinates, corner
rows and bilinear weights of a point are recomputed in-kernel from the offsets by
:func:`_point_geometry` wherever they are needed, nothing geometric is stored):

* :func:`_logits_kernel` (grid: row blocks): for every point ``j`` the bilinear key
  ``sum_c w_c k[corner_c]`` of 4 gathered key rows, its dot with the query (channel tiles of
  ``BLOCK_C``), collected into a ``(BLOCK_N, BLOCK_K)`` register tile; then the softmax over K
  in registers. Stores the softmax ``s`` (R, K) (or the raw logits, for the mmcv composition).
* :func:`_values_kernel` (grid: row blocks x value-channel tiles): ``out = sum_j s_j sum_c w_c
  v[corner_c]``, accumulated in registers.
* :func:`_bwd_values_kernel` (grid: row blocks x value-channel tiles), from the output gradient
  ``g``: ``ga_c = <g, v[corner_c]>``, ``ds_j = sum_c w_c ga_c`` (atomically summed over the
  channel tiles), scatters ``dv[corner_c] += s_j w_c g`` with atomics into an ACC buffer, and the
  first part of the offset gradient, ``s_j ga_c`` through the derivative of the weights.
* in torch, ``dl = s * (ds - sum_j s_j ds_j)`` (softmax backward, R x K, cheap).
* :func:`_bwd_keys_kernel` (grid: row blocks x key-channel tiles): ``dq = sum_j dl_j sum_c w_c
  k[corner_c]`` in registers, scatters ``dk[corner_c] += dl_j w_c q`` with atomics, and the second
  part of the offset gradient, ``dl_j <q, k[corner_c]>`` through the weights' derivative.

Only the softmax (R, K) is saved for backward. Off-map corners have weight 0 and masked
(never issued) loads. Memory is ``O(R (K + C + Cv))`` plus ACC gradient buffers.

Triton decides at decoration time whether a kernel is compiled or interpreted
(``TRITON_INTERPRET=1``): :data:`INTERPRETED` records which, and the dispatcher allows CPU
tensors only for interpreted kernels (tests in CI run this way, at tiny sizes).
"""
from typing import Optional, Tuple

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import once_differentiable

__all__ = ['INTERPRETED', 'triton_attention_rows', 'triton_logits_rows', 'MAX_POINTS']


def _interpret_flag() -> bool:
    knobs = getattr(triton, 'knobs', None)
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    import os
    return os.environ.get('TRITON_INTERPRET', '0') == '1'


#: True when this module's kernels were built for Triton's CPU interpreter (TRITON_INTERPRET=1
#: was set when the module was first imported).
INTERPRETED: bool = _interpret_flag()

#: Largest number of sampling points per query: the (BLOCK_N, next_pow2(K)) logit tile lives in
#: registers. The paper's largest grid is 11 x 11 = 121.
MAX_POINTS = 1024

# Launch parameters: query rows per program and the widest channel tile. Not timed on a GPU yet
# (docs/benchmarks.md); chosen so that every kernel compiles for sm_90 without register spills,
# which holds with <= 4 tile elements per thread (see :func:`_num_warps`): 16 x 64 tiles, 8 warps,
# 128-185 registers per thread (bf16 and fp32 inputs, K=81; 32 x 64 tiles with 4 warps spill).
_BLOCK_N = 16
_MAX_BLOCK_C = 64


# ---------------------------------------------------------------------------------------------
# device functions
# ---------------------------------------------------------------------------------------------
@triton.jit
def _point_geometry(off_ptr, rows, row_mask, j, H, W, dil, K: tl.constexpr, KH: tl.constexpr,
                    KW: tl.constexpr, ACC: tl.constexpr):
    """Corner (y0, x0) row, per-axis bilinear weights, their derivatives and corner masks of
    point ``j`` for the query ``rows`` (BLOCK_N,).

    Returns ``r00`` (int64 row of corner (y0, x0); the others are ``+1``, ``+W``, ``+W+1``),
    ``wy0, wy1, wx0, wx1`` (weights along each axis, 0 off the map), ``dwy0, dwy1, dwx0, dwx1``
    (their derivatives w.r.t. the sampling coordinate) and ``m00, m01, m10, m11`` (corner inside
    the map and row valid).
    """
    n = rows % (H * W)
    base = rows - n
    a = j // KW
    b = j - a * KW
    o = rows.to(tl.int64) * (2 * K) + 2 * j
    dy = tl.load(off_ptr + o, mask=row_mask, other=0.0).to(ACC)
    dx = tl.load(off_ptr + o + 1, mask=row_mask, other=0.0).to(ACC)
    # grid offset (a - (KH - 1) / 2) * dil, exact in any float type
    sy = (n // W).to(ACC) + ((2 * a - (KH - 1)) * dil).to(ACC) * 0.5 + dy
    sx = (n % W).to(ACC) + ((2 * b - (KW - 1)) * dil).to(ACC) * 0.5 + dx
    fy = tl.floor(sy)
    fx = tl.floor(sx)
    ly = sy - fy
    lx = sx - fx
    # clamp before the int cast so that inf / huge offsets cannot overflow
    iy = tl.minimum(tl.maximum(fy, -2.0), H + 1.0).to(tl.int32)
    ix = tl.minimum(tl.maximum(fx, -2.0), W + 1.0).to(tl.int32)
    vy0 = (iy >= 0) & (iy < H)
    vy1 = (iy >= -1) & (iy < H - 1)
    vx0 = (ix >= 0) & (ix < W)
    vx1 = (ix >= -1) & (ix < W - 1)
    wy0 = tl.where(vy0, 1.0 - ly, 0.0)
    wy1 = tl.where(vy1, ly, 0.0)
    wx0 = tl.where(vx0, 1.0 - lx, 0.0)
    wx1 = tl.where(vx1, lx, 0.0)
    dwy0 = -(vy0.to(ACC))
    dwy1 = vy1.to(ACC)
    dwx0 = -(vx0.to(ACC))
    dwx1 = vx1.to(ACC)
    r00 = (base + iy * W + ix).to(tl.int64)
    m00 = row_mask & vy0 & vx0
    m01 = row_mask & vy0 & vx1
    m10 = row_mask & vy1 & vx0
    m11 = row_mask & vy1 & vx1
    return (r00, wy0, wy1, wx0, wx1, dwy0, dwy1, dwx0, dwx1, m00, m01, m10, m11)


@triton.jit
def _bilinear_rows(ptr, r00, W, cols, col_mask, w00, w01, w10, w11, m00, m01, m10, m11,
                   stride, ACC: tl.constexpr):
    """``sum_c w_c x[corner_c, cols]`` (BLOCK_N, BLOCK_C) for row-major ``x`` of row ``stride``,
    plus the 4 gathered corner tiles (ACC)."""
    c = cols[None, :]
    cm = col_mask[None, :]
    x00 = tl.load(ptr + r00[:, None] * stride + c, mask=m00[:, None] & cm, other=0.0).to(ACC)
    x01 = tl.load(ptr + (r00 + 1)[:, None] * stride + c, mask=m01[:, None] & cm,
                  other=0.0).to(ACC)
    x10 = tl.load(ptr + (r00 + W)[:, None] * stride + c, mask=m10[:, None] & cm,
                  other=0.0).to(ACC)
    x11 = tl.load(ptr + (r00 + W + 1)[:, None] * stride + c, mask=m11[:, None] & cm,
                  other=0.0).to(ACC)
    mix = w00[:, None] * x00 + w01[:, None] * x01 + w10[:, None] * x10 + w11[:, None] * x11
    return mix, x00, x01, x10, x11


@triton.jit
def _scatter_corners(ptr, r00, W, cols, col_mask, tile, w00, w01, w10, w11, m00, m01, m10,
                     m11, stride):
    """Atomic ``x[corner_c, cols] += w_c * tile`` for the 4 corners (x an ACC buffer)."""
    c = cols[None, :]
    cm = col_mask[None, :]
    tl.atomic_add(ptr + r00[:, None] * stride + c, w00[:, None] * tile, mask=m00[:, None] & cm,
                  sem='relaxed')
    tl.atomic_add(ptr + (r00 + 1)[:, None] * stride + c, w01[:, None] * tile,
                  mask=m01[:, None] & cm, sem='relaxed')
    tl.atomic_add(ptr + (r00 + W)[:, None] * stride + c, w10[:, None] * tile,
                  mask=m10[:, None] & cm, sem='relaxed')
    tl.atomic_add(ptr + (r00 + W + 1)[:, None] * stride + c, w11[:, None] * tile,
                  mask=m11[:, None] & cm, sem='relaxed')


@triton.jit
def _add_offset_grad(goff_ptr, rows, row_mask, j, t00, t01, t10, t11, wy0, wy1, wx0, wx1,
                     dwy0, dwy1, dwx0, dwx1, K: tl.constexpr):
    """Atomic ``goff[rows, j] += (sum_c t_c dw_c/dsy, sum_c t_c dw_c/dsx)`` where ``t_c =
    dL/dw_c`` and ``w_c = wy * wx`` of corner c (the chain rule through the bilinear weights)."""
    gy = (t00 * wx0 + t01 * wx1) * dwy0 + (t10 * wx0 + t11 * wx1) * dwy1
    gx = (t00 * wy0 + t10 * wy1) * dwx0 + (t01 * wy0 + t11 * wy1) * dwx1
    o = rows.to(tl.int64) * (2 * K) + 2 * j
    tl.atomic_add(goff_ptr + o, gy, mask=row_mask, sem='relaxed')
    tl.atomic_add(goff_ptr + o + 1, gx, mask=row_mask, sem='relaxed')


# ---------------------------------------------------------------------------------------------
# kernels
# ---------------------------------------------------------------------------------------------
@triton.jit
def _logits_kernel(q_ptr, k_ptr, off_ptr, out_ptr, R, H, W, C, dil, K: tl.constexpr,
                   KH: tl.constexpr, KW: tl.constexpr, SOFTMAX: tl.constexpr,
                   ACC: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
                   BLOCK_K: tl.constexpr):
    """``out[r, j]`` = softmax over j (or the raw logits) of ``<q[r], bilinear(k, p_rj)>``."""
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = rows < R
    q_rows = rows.to(tl.int64)[:, None] * C
    kidx = tl.arange(0, BLOCK_K)
    logits = tl.zeros((BLOCK_N, BLOCK_K), dtype=ACC)
    for j in range(K):
        (r00, wy0, wy1, wx0, wx1, dwy0, dwy1, dwx0, dwx1, m00, m01, m10,
         m11) = _point_geometry(off_ptr, rows, row_mask, j, H, W, dil, K, KH, KW, ACC)
        lj = tl.zeros((BLOCK_N, ), dtype=ACC)
        for c0 in range(0, C, BLOCK_C):
            cols = c0 + tl.arange(0, BLOCK_C)
            col_mask = cols < C
            qt = tl.load(q_ptr + q_rows + cols[None, :], mask=row_mask[:, None] &
                         col_mask[None, :], other=0.0).to(ACC)
            kmix, _, _, _, _ = _bilinear_rows(k_ptr, r00, W, cols, col_mask, wy0 * wx0,
                                              wy0 * wx1, wy1 * wx0, wy1 * wx1, m00, m01, m10,
                                              m11, C, ACC)
            lj += tl.sum(qt * kmix, axis=1)
        logits = tl.where(kidx[None, :] == j, lj[:, None], logits)
    if SOFTMAX:
        logits = tl.where(kidx[None, :] < K, logits, float('-inf'))
        e = tl.exp(logits - tl.max(logits, axis=1)[:, None])
        logits = e / tl.sum(e, axis=1)[:, None]
    out_off = rows.to(tl.int64)[:, None] * K + kidx[None, :]
    tl.store(out_ptr + out_off, logits, mask=row_mask[:, None] & (kidx[None, :] < K))


@triton.jit
def _values_kernel(v_ptr, off_ptr, s_ptr, out_ptr, R, H, W, CV, dil, K: tl.constexpr,
                   KH: tl.constexpr, KW: tl.constexpr, ACC: tl.constexpr,
                   BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr):
    """``out[r, cols] = sum_j s[r, j] bilinear(v, p_rj)[cols]`` for one tile of value channels."""
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = rows < R
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    col_mask = cols < CV
    acc = tl.zeros((BLOCK_N, BLOCK_C), dtype=ACC)
    for j in range(K):
        (r00, wy0, wy1, wx0, wx1, dwy0, dwy1, dwx0, dwx1, m00, m01, m10,
         m11) = _point_geometry(off_ptr, rows, row_mask, j, H, W, dil, K, KH, KW, ACC)
        sj = tl.load(s_ptr + rows.to(tl.int64) * K + j, mask=row_mask, other=0.0).to(ACC)
        vmix, _, _, _, _ = _bilinear_rows(v_ptr, r00, W, cols, col_mask, sj * wy0 * wx0,
                                          sj * wy0 * wx1, sj * wy1 * wx0, sj * wy1 * wx1, m00,
                                          m01, m10, m11, CV, ACC)
        acc += vmix
    out_off = rows.to(tl.int64)[:, None] * CV + cols[None, :]
    tl.store(out_ptr + out_off, acc, mask=row_mask[:, None] & col_mask[None, :])


@triton.jit
def _bwd_values_kernel(g_ptr, v_ptr, off_ptr, s_ptr, ds_ptr, gv_ptr, goff_ptr, R, H, W, CV, dil,
                       K: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,
                       NEED_V: tl.constexpr, NEED_S: tl.constexpr, NEED_OFF: tl.constexpr,
                       ACC: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr):
    """From ``g = dL/dout``: ``ds[r, j] += sum_c w_c <g, v[corner_c]>`` and ``dv[corner_c] +=
    s_j w_c g`` (atomics) and ``goff += s_j <g, v[corner_c]> dw_c`` for one value-channel tile."""
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = rows < R
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    col_mask = cols < CV
    g = tl.load(g_ptr + rows.to(tl.int64)[:, None] * CV + cols[None, :],
                mask=row_mask[:, None] & col_mask[None, :], other=0.0).to(ACC)
    for j in range(K):
        (r00, wy0, wy1, wx0, wx1, dwy0, dwy1, dwx0, dwx1, m00, m01, m10,
         m11) = _point_geometry(off_ptr, rows, row_mask, j, H, W, dil, K, KH, KW, ACC)
        w00 = wy0 * wx0
        w01 = wy0 * wx1
        w10 = wy1 * wx0
        w11 = wy1 * wx1
        sj = tl.load(s_ptr + rows.to(tl.int64) * K + j, mask=row_mask, other=0.0).to(ACC)
        if NEED_V:
            _scatter_corners(gv_ptr, r00, W, cols, col_mask, sj[:, None] * g, w00, w01, w10,
                             w11, m00, m01, m10, m11, CV)
        if NEED_S or NEED_OFF:
            _, v00, v01, v10, v11 = _bilinear_rows(v_ptr, r00, W, cols, col_mask, w00, w01,
                                                   w10, w11, m00, m01, m10, m11, CV, ACC)
            ga00 = tl.sum(g * v00, axis=1)
            ga01 = tl.sum(g * v01, axis=1)
            ga10 = tl.sum(g * v10, axis=1)
            ga11 = tl.sum(g * v11, axis=1)
            if NEED_S:
                dsj = w00 * ga00 + w01 * ga01 + w10 * ga10 + w11 * ga11
                tl.atomic_add(ds_ptr + rows.to(tl.int64) * K + j, dsj, mask=row_mask,
                              sem='relaxed')
            if NEED_OFF:
                _add_offset_grad(goff_ptr, rows, row_mask, j, sj * ga00, sj * ga01, sj * ga10,
                                 sj * ga11, wy0, wy1, wx0, wx1, dwy0, dwy1, dwx0, dwx1, K)


@triton.jit
def _bwd_keys_kernel(q_ptr, k_ptr, off_ptr, dl_ptr, gq_ptr, gk_ptr, goff_ptr, R, H, W, C, dil,
                     K: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,
                     NEED_Q: tl.constexpr, NEED_K: tl.constexpr, NEED_OFF: tl.constexpr,
                     ACC: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr):
    """From ``dl = dL/dlogits`` (R, K): ``dq = sum_j dl_j bilinear(k, p_j)`` (stored),
    ``dk[corner_c] += dl_j w_c q`` (atomics) and ``goff += dl_j <q, k[corner_c]> dw_c`` for one
    key-channel tile."""
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = rows < R
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    col_mask = cols < C
    tile_off = rows.to(tl.int64)[:, None] * C + cols[None, :]
    tile_mask = row_mask[:, None] & col_mask[None, :]
    q = tl.load(q_ptr + tile_off, mask=tile_mask, other=0.0).to(ACC)
    dq = tl.zeros((BLOCK_N, BLOCK_C), dtype=ACC)
    for j in range(K):
        (r00, wy0, wy1, wx0, wx1, dwy0, dwy1, dwx0, dwx1, m00, m01, m10,
         m11) = _point_geometry(off_ptr, rows, row_mask, j, H, W, dil, K, KH, KW, ACC)
        w00 = wy0 * wx0
        w01 = wy0 * wx1
        w10 = wy1 * wx0
        w11 = wy1 * wx1
        dlj = tl.load(dl_ptr + rows.to(tl.int64) * K + j, mask=row_mask, other=0.0).to(ACC)
        if NEED_K:
            _scatter_corners(gk_ptr, r00, W, cols, col_mask, dlj[:, None] * q, w00, w01, w10,
                             w11, m00, m01, m10, m11, C)
        if NEED_Q or NEED_OFF:
            kmix, k00, k01, k10, k11 = _bilinear_rows(k_ptr, r00, W, cols, col_mask, w00, w01,
                                                      w10, w11, m00, m01, m10, m11, C, ACC)
            if NEED_Q:
                dq += dlj[:, None] * kmix
            if NEED_OFF:
                _add_offset_grad(goff_ptr, rows, row_mask, j, dlj * tl.sum(q * k00, axis=1),
                                 dlj * tl.sum(q * k01, axis=1), dlj * tl.sum(q * k10, axis=1),
                                 dlj * tl.sum(q * k11, axis=1), wy0, wy1, wx0, wx1, dwy0, dwy1,
                                 dwx0, dwx1, K)
    if NEED_Q:
        tl.store(gq_ptr + tile_off, dq, mask=tile_mask)


# ---------------------------------------------------------------------------------------------
# launchers
# ---------------------------------------------------------------------------------------------
_TL_ACC = {torch.float32: tl.float32, torch.float64: tl.float64}


class _Geom:
    """Static launch geometry: map size, kernel, dilation, accumulation dtype."""

    def __init__(self, hw: Tuple[int, int], kernel: Tuple[int, int], dilation: int,
                 acc: torch.dtype):
        self.H, self.W = hw
        self.kh, self.kw = kernel
        self.K = self.kh * self.kw
        self.dil = dilation
        self.acc = acc

    def consts(self, block_c: int) -> dict:
        """Compile-time arguments shared by all kernels, and the launch's warp count."""
        return dict(K=self.K, KH=self.kh, KW=self.kw, ACC=_TL_ACC[self.acc], BLOCK_N=_BLOCK_N,
                    BLOCK_C=block_c, num_warps=_num_warps(_BLOCK_N * block_c))


def _block_c(c: int) -> int:
    return min(_MAX_BLOCK_C, triton.next_power_of_2(c))


def _num_warps(tile_elems: int) -> int:
    """Warps for a (rows x channels) tile: 4 elements per thread, 1 to 8 warps."""
    return max(1, min(8, tile_elems // 128))


def _launch_logits(q: Tensor, k: Tensor, off: Tensor, geo: _Geom, softmax: bool) -> Tensor:
    R, C = q.shape
    out = torch.empty(R, geo.K, device=q.device, dtype=geo.acc)
    grid = (triton.cdiv(R, _BLOCK_N), )
    _logits_kernel[grid](q, k, off, out, R, geo.H, geo.W, C, geo.dil, SOFTMAX=softmax,
                         BLOCK_K=triton.next_power_of_2(geo.K), **geo.consts(_block_c(C)))
    return out


def _launch_values(v: Tensor, off: Tensor, s: Tensor, geo: _Geom) -> Tensor:
    R, CV = v.shape
    out = torch.empty(R, CV, device=v.device, dtype=v.dtype)
    bc = _block_c(CV)
    grid = (triton.cdiv(R, _BLOCK_N), triton.cdiv(CV, bc))
    _values_kernel[grid](v, off, s, out, R, geo.H, geo.W, CV, geo.dil, **geo.consts(bc))
    return out


def _launch_bwd_values(g: Tensor, v: Tensor, off: Tensor, s: Tensor, goff: Optional[Tensor],
                       geo: _Geom, need_v: bool, need_s: bool
                       ) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """Returns ``(ds (R, K) ACC or None, gv (R, Cv) ACC or None)``; adds into ``goff``."""
    R, CV = v.shape
    ds = torch.zeros(R, geo.K, device=v.device, dtype=geo.acc) if need_s else None
    gv = torch.zeros(R, CV, device=v.device, dtype=geo.acc) if need_v else None
    bc = _block_c(CV)
    grid = (triton.cdiv(R, _BLOCK_N), triton.cdiv(CV, bc))
    _bwd_values_kernel[grid](g, v, off, s, ds if need_s else s, gv if need_v else v,
                             goff if goff is not None else s, R, geo.H, geo.W, CV, geo.dil,
                             NEED_V=need_v, NEED_S=need_s, NEED_OFF=goff is not None,
                             **geo.consts(bc))
    return ds, gv


def _launch_bwd_keys(q: Tensor, k: Tensor, off: Tensor, dl: Tensor, goff: Optional[Tensor],
                     geo: _Geom, need_q: bool, need_k: bool
                     ) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """Returns ``(gq (R, C) ACC or None, gk (R, C) ACC or None)``; adds into ``goff``."""
    R, C = q.shape
    gq = torch.empty(R, C, device=q.device, dtype=geo.acc) if need_q else None
    gk = torch.zeros(R, C, device=q.device, dtype=geo.acc) if need_k else None
    bc = _block_c(C)
    grid = (triton.cdiv(R, _BLOCK_N), triton.cdiv(C, bc))
    _bwd_keys_kernel[grid](q, k, off, dl, gq if need_q else q, gk if need_k else k,
                           goff if goff is not None else dl, R, geo.H, geo.W, C, geo.dil,
                           NEED_Q=need_q, NEED_K=need_k, NEED_OFF=goff is not None,
                           **geo.consts(bc))
    return gq, gk


def _acc_dtype(*rows: Tensor) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in rows) else torch.float32


def _cast(t: Optional[Tensor], like: Tensor) -> Optional[Tensor]:
    return None if t is None else t.to(like.dtype)


# ---------------------------------------------------------------------------------------------
# autograd functions
# ---------------------------------------------------------------------------------------------
class _TritonSNL(Function):
    """Rows in, ``(out (R, Cv) in v's dtype, softmax (R, K) ACC, non-differentiable)`` out.
    Saves the inputs and the softmax; the backward is not itself differentiable."""

    @staticmethod
    def forward(ctx, q, k, v, off, hw, kernel, dilation):
        geo = _Geom(hw, kernel, dilation, _acc_dtype(q, k, v, off))
        s = _launch_logits(q, k, off, geo, softmax=True)
        out = _launch_values(v, off, s, geo)
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
        need_l = need_q or need_k or need_off
        goff = torch.zeros(off.shape, device=off.device, dtype=geo.acc) if need_off else None
        ds, gv = _launch_bwd_values(grad_out.contiguous(), v, off, s, goff, geo, need_v,
                                    need_l)
        gq = gk = None
        if need_l:
            dl = s * (ds - (s * ds).sum(-1, keepdim=True))  # softmax backward
            gq, gk = _launch_bwd_keys(q, k, off, dl, goff, geo, need_q, need_k)
        return (_cast(gq, q), _cast(gk, k), _cast(gv, v), _cast(goff, off), None, None, None)


class _TritonLogits(Function):
    """Rows in, differentiable logits (R, K) ACC out (for the mmcv composition)."""

    @staticmethod
    def forward(ctx, q, k, off, hw, kernel, dilation):
        geo = _Geom(hw, kernel, dilation, _acc_dtype(q, k, off))
        ctx.save_for_backward(q, k, off)
        ctx.geo = geo
        return _launch_logits(q, k, off, geo, softmax=False)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_logits):
        q, k, off = ctx.saved_tensors
        geo = ctx.geo
        need_q, need_k, need_off = ctx.needs_input_grad[:3]
        goff = torch.zeros(off.shape, device=off.device, dtype=geo.acc) if need_off else None
        gq, gk = _launch_bwd_keys(q, k, off, grad_logits.to(geo.acc).contiguous(), goff, geo,
                                  need_q, need_k)
        return _cast(gq, q), _cast(gk, k), _cast(goff, off), None, None, None


def triton_attention_rows(q: Tensor, k: Tensor, v: Tensor, off: Tensor, hw: Tuple[int, int],
                          kernel: Tuple[int, int], dilation: int) -> Tuple[Tensor, Tensor]:
    """Attention on contiguous rows: ``(out (R, Cv) in v's dtype, softmax (R, K))``; ``out`` is
    differentiable w.r.t. all four inputs, the softmax is detached."""
    return _TritonSNL.apply(q, k, v, off, hw, kernel, dilation)


def triton_logits_rows(q: Tensor, k: Tensor, off: Tensor, hw: Tuple[int, int],
                       kernel: Tuple[int, int], dilation: int) -> Tensor:
    """Differentiable logits ``l_j = <q, bilinear(k, p_j)>`` (R, K) on contiguous rows."""
    return _TritonLogits.apply(q, k, off, hw, kernel, dilation)
