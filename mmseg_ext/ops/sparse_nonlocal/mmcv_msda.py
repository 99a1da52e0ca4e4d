"""mmcv composition (``backend='mmcv'``) of the sparse non-local op.

Contract: see :mod:`mmseg_ext.ops.sparse_nonlocal`. The logits come from a logits function on
rows (the Triton kernel, or the chunked sparse path where Triton cannot run), the softmax from
torch, and the value aggregation from mmcv's CUDA ``MultiScaleDeformableAttnFunction`` (one
level, one head, ``K`` points, attention weights = the softmax), which never materialises
sampled values.

mmcv samples with ``grid_sample(align_corners=False)`` on normalised ``[0, 1]`` coordinates;
:func:`pixel_to_msda_locations` converts the contract's pixel-index coordinates. On CPU the whole
composition is tested with mmcv's pure-PyTorch ``multi_scale_deformable_attn_pytorch`` in place
of the CUDA function.
"""
import functools
import math
from typing import Callable, Optional, Tuple

import torch
from torch import Tensor

from .common import sample_coordinates

__all__ = ['mmcv_msda_function', 'pixel_to_msda_locations', 'msda_attention',
           'describe_unavailable']

LogitsFn = Callable[[Tensor, Tensor, Tensor, Tuple[int, int], Tuple[int, int], int], Tensor]


@functools.lru_cache(maxsize=None)
def mmcv_msda_function():
    """mmcv's ``MultiScaleDeformableAttnFunction`` if mmcv was compiled with CUDA, else None."""
    try:
        from mmcv.ops import get_compiling_cuda_version
        from mmcv.ops.multi_scale_deform_attn import MultiScaleDeformableAttnFunction
        if get_compiling_cuda_version() in (None, '', 'not available'):
            return None
    except Exception:  # mmcv missing or built without ops
        return None
    return MultiScaleDeformableAttnFunction


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


def _msda_aggregate(fn, s: Tensor, v: Tensor, sy: Tensor, sx: Tensor, H: int,
                    W: int) -> Tensor:
    """``out[b, n] = sum_j s[b, n, j] bilinear(v[b], (sy, sx)[b, n, j])`` with mmcv MSDA:
    s (B, N, K), v (B, N, Cv) rows -> (B, N, Cv)."""
    B, N, _ = s.shape
    value = v.reshape(B, N, 1, v.shape[-1])
    shapes = torch.tensor([[H, W]], dtype=torch.long, device=v.device)
    start = torch.zeros(1, dtype=torch.long, device=v.device)
    loc = pixel_to_msda_locations(sy, sx, H, W).to(v.dtype)
    attn = s.reshape(B, N, 1, 1, -1).to(v.dtype)
    im2col_step = math.gcd(B, 64)  # mmcv requires batch % im2col_step == 0
    out = fn.apply(value, shapes, start, loc, attn, im2col_step)
    return out.reshape(B, N, -1)


def msda_attention(q: Tensor, k: Tensor, v: Tensor, off: Tensor, offset: Tensor,
                   hw: Tuple[int, int], kernel: Tuple[int, int], dilation: int,
                   logits_fn: LogitsFn, msda=None) -> Tuple[Tensor, Tensor]:
    """Attention on rows with mmcv's value aggregation.

    Args:
        q, k (Tensor): (R, C) rows; v (Tensor): (R, Cv) rows of the compute dtype (mmcv's CUDA
            kernel takes float32 / float64); off (Tensor): (R, K, 2) offset rows.
        offset (Tensor): the same offsets as (B, 2K, H, W), for the sampling locations.
        logits_fn: differentiable ``(q, k, off, hw, kernel, dilation) -> (R, K)`` logits.
        msda: an object with the ``apply`` of mmcv's ``MultiScaleDeformableAttnFunction``;
            None = mmcv's CUDA function (:func:`mmcv_msda_function`).

    Returns:
        ``(out (R, Cv), softmax (R, K))``, both differentiable.
    """
    fn = msda if msda is not None else mmcv_msda_function()
    if fn is None:
        raise RuntimeError("mmcv's MultiScaleDeformableAttnFunction is unavailable (mmcv not "
                           'compiled with CUDA)')
    H, W = hw
    B, N = offset.shape[0], H * W
    K = kernel[0] * kernel[1]
    logits = logits_fn(q, k, off, hw, kernel, dilation)
    s = torch.softmax(logits.view(B, N, K), dim=-1)
    sy, sx = sample_coordinates(offset.to(v.dtype), kernel, dilation)
    out = _msda_aggregate(fn, s, v.view(B, N, -1), sy, sx, H, W)
    return out.reshape(B * N, -1), s.reshape(B * N, K)


def describe_unavailable() -> Optional[str]:
    """Why ``backend='mmcv'`` cannot run on CUDA here, or None when it can."""
    if mmcv_msda_function() is None:
        return ("mmcv's MultiScaleDeformableAttn CUDA op is not available (mmcv was built "
                'without CUDA: FORCE_CUDA=1 bash tools/install.sh builds it)')
    return None
