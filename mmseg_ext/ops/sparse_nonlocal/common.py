"""Pieces shared by every backend of the sparse non-local op: argument checks, the sampling
geometry of the contract and the channels-last row layout.

The geometry is coded once in torch, here, for the sparse and export backends and the public
:func:`sample_coordinates`: :func:`point_coordinates` (where each point is sampled) and
:func:`axis_corners` (its bilinear neighbours along one axis: weights, indices). The Triton
kernels recompute the same formulas in-kernel (:mod:`.triton_jit`).

The contract itself is documented once, in the package docstring
(:mod:`mmseg_ext.ops.sparse_nonlocal`).
"""
from typing import Tuple, Union

import torch
from torch import Tensor

__all__ = ['pair', 'check_inputs', 'grid_displacements', 'point_coordinates', 'axis_corners',
           'sample_coordinates', 'compute_dtype', 'to_rows', 'offset_rows', 'from_rows']


def is_int(value) -> bool:
    """``mmseg_ext.utils.checks.is_int`` (an int, not a bool), repeated here because this package
    is also loaded on its own, by path, without mmseg_ext (``benchmark_snl_op.py``, the GPU kit):
    it imports nothing outside itself."""
    return isinstance(value, int) and not isinstance(value, bool)


def pair(kernel_size) -> Tuple[int, int]:
    """``kernel_size`` (int or pair of positive ints) as ``(kh, kw)``; ValueError otherwise."""
    if is_int(kernel_size):
        kh = kw = kernel_size
    elif isinstance(kernel_size, (tuple, list)) and len(kernel_size) == 2:
        kh, kw = kernel_size
    else:
        raise ValueError('kernel_size must be an int or a pair (kh, kw) of ints, e.g. 9 or '
                         f'(9, 11), got {kernel_size!r}')
    if not all(is_int(k) for k in (kh, kw)) \
            or kh <= 0 or kw <= 0:
        raise ValueError('kernel_size must hold positive ints, e.g. 9 or (9, 11), '
                         f'got {kernel_size!r}')
    return kh, kw


def check_inputs(query, key, value, offset, kernel_size, dilation) -> Tuple[int, int]:
    """Validate shapes, dtypes and devices of the op's inputs; returns ``(kh, kw)``."""
    kh, kw = pair(kernel_size)
    if not is_int(dilation) or dilation <= 0:
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
    if C == 0 or value.shape[1] == 0:
        name, n = ('query/key', 'C') if C == 0 else ('value', 'Cv')
        raise ValueError(f'{name} must have at least one channel, got {n}=0 (shapes '
                         f'{tuple(query.shape)} and {tuple(value.shape)}): give the conv that '
                         f'makes the {name} at least one output channel')
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


def grid_displacements(kernel: Tuple[int, int], dilation: int, dtype: torch.dtype,
                       device: torch.device) -> Tuple[Tensor, Tensor]:
    """``(gy, gx)``, each (K,): the displacement of point ``j = a * kw + b`` of the initial grid
    from its query, ``(a - (kh - 1) / 2) * dilation`` and ``(b - (kw - 1) / 2) * dilation``
    (half-pixel values for even kernels). Built on ``device`` (no host copy per call)."""
    kh, kw = kernel
    ga = (torch.arange(kh, device=device, dtype=dtype) - (kh - 1) / 2) * dilation
    gb = (torch.arange(kw, device=device, dtype=dtype) - (kw - 1) / 2) * dilation
    return (ga.view(kh, 1).expand(kh, kw).reshape(kh * kw),
            gb.view(1, kw).expand(kh, kw).reshape(kh * kw))


def point_coordinates(pixel: Tensor, width: int, off: Tensor, kernel: Tuple[int, int],
                      dilation: int) -> Tuple[Tensor, Tensor]:
    """Pixel-index sampling coordinates ``(sy, sx)``, each (..., P, K), of the K points of the
    query pixels ``pixel`` (P,) (flat indices ``y * width + x`` within their image) with offsets
    ``off`` (..., P, K, 2) (``dy, dx``): ``(y + gy) + dy`` and ``(x + gx) + dx``
    (:func:`grid_displacements`), in ``off``'s dtype."""
    gy, gx = grid_displacements(kernel, dilation, off.dtype, off.device)
    ys = (pixel // width).to(off.dtype).view(-1, 1)
    xs = (pixel % width).to(off.dtype).view(-1, 1)
    return ys + gy + off[..., 0], xs + gx + off[..., 1]


def axis_corners(c: Tensor, size: int, index_dtype: torch.dtype
                 ) -> Tuple[Tensor, Tensor, Tensor]:
    """Bilinear neighbours ``floor(c)`` and ``floor(c) + 1`` of the coordinates ``c`` along one
    axis of ``size`` pixels.

    Returns ``(w, valid, index)``, each ``c.shape + (2,)``: the weights ``[1 - frac, frac]``,
    exactly 0 for a neighbour outside ``[0, size)`` (the contract's zero outside the map);
    ``valid``, 1 inside and 0 outside in ``c``'s dtype (so ``dw/dc = [-1, 1] * valid``, for a
    hand-written backward); the neighbours' indices as ``index_dtype``, clamped into the axis
    (any index is safe to gather with; its weight says whether it counts). ``floor(c)`` is
    clamped to ``[-2, size + 1]`` (both neighbours stay outside) before the cast, so a huge or
    infinite coordinate cannot overflow it; a non-finite ``c`` gives NaN weights (its query's
    softmax becomes NaN), the export backend zeroes such offsets beforehand.
    """
    c0 = torch.floor(c)
    frac = (c - c0).unsqueeze(-1)
    i0 = c0.clamp(-2, size + 1).to(index_dtype).unsqueeze(-1)
    i = torch.cat([i0, i0 + 1], -1)
    valid = ((i >= 0) & (i < size)).to(c.dtype)
    w = torch.cat([1 - frac, frac], -1) * valid
    return w, valid, i.clamp(0, size - 1)


def sample_coordinates(offset: Tensor, kernel_size: Union[int, Tuple[int, int]],
                       dilation: int = 1) -> Tuple[Tensor, Tensor]:
    """Absolute pixel-index sampling coordinates ``(sy, sx)``, each (B, H*W, K).

    Point ``j = a * kw + b`` of query ``(y, x)`` is at
    ``y + (a - (kh - 1) / 2) * dilation + offset[:, 2j]`` and
    ``x + (b - (kw - 1) / 2) * dilation + offset[:, 2j + 1]`` (mmcv deform-conv layout: dy, dx).
    """
    kh, kw = pair(kernel_size)
    B, _, H, W = offset.shape
    off = offset.reshape(B, kh * kw, 2, H * W).permute(0, 3, 1, 2)  # (B, N, K, 2), a view
    pixel = torch.arange(H * W, device=offset.device)
    return point_coordinates(pixel, W, off, (kh, kw), dilation)


def compute_dtype(*tensors: Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32: the dtype of logits and softmax."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def to_rows(x: Tensor, dtype: torch.dtype = None) -> Tensor:
    """(B, C, H, W) -> contiguous channels-last rows (B*H*W, C), optionally cast.

    A channels-last (NHWC-strided) input needs no copy; any other stride pattern is copied once.
    """
    B, C, H, W = x.shape
    if dtype is not None:
        x = x.to(dtype)
    return x.permute(0, 2, 3, 1).reshape(B * H * W, C).contiguous()


def offset_rows(offset: Tensor, K: int, dtype: torch.dtype = None) -> Tensor:
    """(B, 2K, H, W) offsets -> contiguous (B*H*W, K, 2) rows of ``(dy, dx)`` per point."""
    B, _, H, W = offset.shape
    if dtype is not None:
        offset = offset.to(dtype)
    return offset.reshape(B, K, 2, H * W).permute(0, 3, 1, 2).reshape(B * H * W, K, 2) \
        .contiguous()


def from_rows(rows: Tensor, B: int, H: int, W: int, dtype: torch.dtype) -> Tensor:
    """(B*H*W, C) rows -> contiguous (B, C, H, W) of ``dtype``."""
    C = rows.shape[-1]
    return rows.reshape(B, H, W, C).permute(0, 3, 1, 2).to(dtype).contiguous()
