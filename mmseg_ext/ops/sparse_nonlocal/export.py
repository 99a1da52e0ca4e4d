"""Export backend (``backend='export'``) of the sparse non-local op: standard ONNX operators only.

Contract: see :mod:`mmseg_ext.ops.sparse_nonlocal`. The other backends cannot be exported: the
sparse path is an ``autograd.Function`` over torch sparse tensors (the TorchScript exporter fails
with ``unordered_map::at``, ``torch.export`` cannot trace it) and the Triton kernels are opaque
to both exporters. This path is plain tensor code that both ``torch.onnx.export`` exporters
(``dynamo=False`` and ``dynamo=True``) turn into standard ONNX operators (Floor, Clip, Cast,
Gather, MatMul, Softmax, Where, IsInf/IsNaN) of the default domain (tested in onnxruntime).
It is selected automatically, whatever the ``backend`` argument, while
:func:`is_exporting` is true.

Same row layout as the other backends: ``q, k`` (R, C), ``v`` (R, Cv), ``off`` (R, K, 2) with
``R = B * H * W`` rows. Every point's 4 bilinear corners (clamped into the map, weight exactly 0
outside it: the geometry of :mod:`.common`, shared with the sparse backend) become flat row
indices; per chunk of ``kc`` points:

* one ``Gather`` (``index_select``) of the key rows of all corners, (R, 4 kc, C), a batched
  ``MatMul`` with the query row, (R, 4 kc), and the bilinear weights sum the corners: logits;
* the softmax over the ``K`` logits of a row;
* one ``Gather`` of the value rows, (R, 4 kc, Cv), and a batched ``MatMul`` with the
  weights ``s_j w_jc``: the output row.

Non-finite offsets: a row with a NaN or +-inf among its ``2K`` offsets gets NaN as output (and
softmax weights); its offsets are replaced by 0 before any index is computed, so no index is
ever built from a NaN/inf, and the other rows are unaffected.

Memory: ``O(R K)`` for the geometry (per query and point: coordinates, 4 int64 corner rows, 4
weights, the logit and the softmax, about 72 bytes in float32), plus, per chunk, the gathered rows
``R * 4 kc * max(C, Cv)`` elements. Unlike the sparse and Triton backends this does materialise
sampled rows, ``4 kc / K`` times the ``H * W * K * C`` that those avoid; ``kc`` is the largest count
of points whose gathered rows for one image fit :data:`CHUNK_BYTES` (64 MiB), at least 1 (the chunk
loop is unrolled into the graph: ``ceil(K / kc)`` Gathers per pass). Memory is linear in
``B * H * W``. Examples (float32): the quickstart SSANet head at 128x256 (16x32 map, C = 32,
Cv = 64, K = 81) gathers all points at once, 42 MB; the paper's Cityscapes head at 1024x2048
(128x256 map, C = 256, Cv = 512, K = 81) gathers one point at a time, 268 MB per image, and keeps
about 190 MB of per-point geometry per image.

Autograd works through these operators (the corner indices and ``floor`` are piecewise
constant, as in the other backends), so the path is differentiable; it is meant for inference
and export (the sparse backend gathers no rows, so it needs less memory for training).
"""
from typing import List, Tuple

import torch
from torch import Tensor

from .common import axis_corners, point_coordinates

__all__ = ['is_exporting', 'export_attention_rows', 'CHUNK_BYTES']

#: Budget (bytes) of the rows gathered for one image in one chunk of points (see the module).
CHUNK_BYTES = 64 * 2**20


def is_exporting() -> bool:
    """True while a model is being exported: inside ``torch.onnx.export`` (either exporter),
    ``torch.export`` / ``torch.compiler.is_exporting()`` (torch >= 2.5, where it exists), or a
    ``torch.jit.trace``. The sparse non-local op then runs this module's export path."""
    if torch.onnx.is_in_onnx_export():
        return True
    compiler_is_exporting = getattr(getattr(torch, 'compiler', None), 'is_exporting', None)
    if compiler_is_exporting is not None and compiler_is_exporting():
        return True
    return bool(torch.jit.is_tracing())


def points_per_chunk(num_pixels: int, num_points: int, channels: int, itemsize: int) -> int:
    """Points per chunk ``kc``: the 4 gathered corner rows of ``channels`` for ``kc`` points of
    every pixel of one image fit :data:`CHUNK_BYTES`; at least 1, at most ``num_points``."""
    per_point = 4 * num_pixels * channels * itemsize
    return max(1, min(num_points, CHUNK_BYTES // per_point))


def _corners(sy: Tensor, sx: Tensor, H: int, W: int, base: Tensor) -> Tuple[Tensor, Tensor]:
    """Flat rows (R * 4 kc,) int64 and weights (R, kc, 4) of the 4 corners of the points
    ``(sy, sx)`` (R, kc); corner order (y0, x0), (y0, x0+1), (y0+1, x0), (y0+1, x0+1)."""
    # float indices: exact below 2**24, and the flat index below is cast to int64 once
    wy, _, iy = axis_corners(sy, H, sy.dtype)
    wx, _, ix = axis_corners(sx, W, sx.dtype)
    kc = sy.shape[1]
    w = (wy.unsqueeze(-1) * wx.unsqueeze(-2)).reshape(-1, kc, 4)
    rows = (iy.unsqueeze(-1) * W + ix.unsqueeze(-2)).to(torch.int64).reshape(-1, 4 * kc) + base
    return rows.reshape(-1), w


def export_attention_rows(q: Tensor, k: Tensor, v: Tensor, off: Tensor, hw: Tuple[int, int],
                          kernel: Tuple[int, int], dilation: int) -> Tuple[Tensor, Tensor]:
    """Attention on rows of one dtype from exportable operators: ``(out (R, Cv), s (R, K))``.

    Args:
        q (Tensor): (R, C) query rows, ``R = B * H * W``.
        k (Tensor): (R, C) key rows.
        v (Tensor): (R, Cv) value rows.
        off (Tensor): (R, K, 2) offsets ``(dy, dx)`` of every point.
        hw (tuple[int, int]): ``(H, W)``.
        kernel (tuple[int, int]): ``(kh, kw)``, ``K = kh * kw``.
        dilation (int): spacing of the initial grid.

    Returns:
        tuple[Tensor, Tensor]: the output rows and the softmax weights (differentiable).
    """
    H, W = hw
    kh, kw = kernel
    N, K = H * W, kh * kw
    C, Cv = q.shape[1], v.shape[1]
    dev, dt = q.device, q.dtype
    # rows with a non-finite offset: offsets zeroed here, output set to NaN at the end
    finite = torch.isfinite(off).all(-1).all(-1)  # (R,)
    off = torch.where(finite.view(-1, 1, 1), off, torch.zeros_like(off))
    rr = torch.arange(off.shape[0], device=dev)
    n = rr % N  # pixel of each row within its image
    base = (rr - n).view(-1, 1)  # its image's first row, b * N
    sy, sx = point_coordinates(n, W, off, kernel, dilation)

    kc = points_per_chunk(N, K, max(C, Cv), q.element_size())
    chunks: List[Tuple[int, int, Tensor, Tensor]] = []
    logits = []
    for j0 in range(0, K, kc):
        j1 = min(K, j0 + kc)
        rows, w = _corners(sy[:, j0:j1], sx[:, j0:j1], H, W, base)
        keys = k.index_select(0, rows).reshape(-1, 4 * (j1 - j0), C)
        dots = torch.matmul(keys, q.unsqueeze(-1)).reshape(-1, j1 - j0, 4)
        logits.append((dots * w).sum(-1))
        chunks.append((j0, j1, rows, w))
    s = torch.softmax(torch.cat(logits, -1) if len(logits) > 1 else logits[0], -1)

    out = None
    for j0, j1, rows, w in chunks:
        vals = v.index_select(0, rows).reshape(-1, 4 * (j1 - j0), Cv)
        a = (s[:, j0:j1].unsqueeze(-1) * w).reshape(-1, 1, 4 * (j1 - j0))
        part = torch.matmul(a, vals).reshape(-1, Cv)
        out = part if out is None else out + part
    nan = torch.tensor(float('nan'), dtype=dt, device=dev)
    keep = finite.view(-1, 1)
    return torch.where(keep, out, nan), torch.where(keep, s, nan)
