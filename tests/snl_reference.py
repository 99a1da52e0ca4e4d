"""Float64 reference of ``sparse_nonlocal_attention`` shared by the SNL op tests.

:func:`reference_snl` is an explicit loop over batch, pixels and sampling points with the textbook
4-corner bilinear formula (differentiable through autograd), meant for tiny maps.
"""
import math

import torch

F64 = torch.float64


def pair(k):
    return (k, k) if isinstance(k, int) else tuple(k)


def _bilinear(feat, py, px):
    """feat (C, H, W) at pixel-index point (py, px) (0-d tensors), zero outside the map."""
    _, H, W = feat.shape
    y0, x0 = math.floor(py.item()), math.floor(px.item())
    ly, lx = py - y0, px - x0
    val = feat.new_zeros(feat.shape[0])
    for yy, xx, wgt in ((y0, x0, (1 - ly) * (1 - lx)), (y0, x0 + 1, (1 - ly) * lx),
                        (y0 + 1, x0, ly * (1 - lx)), (y0 + 1, x0 + 1, ly * lx)):
        if 0 <= yy < H and 0 <= xx < W:
            val = val + wgt * feat[:, yy, xx]
    return val


def reference_snl(q, k, v, off, kernel_size, dilation=1):
    """Slow, obviously-correct sparse non-local attention (loops; differentiable)."""
    kh, kw = pair(kernel_size)
    B, _, H, W = q.shape
    outs = []
    for b in range(B):
        pix = []
        for y in range(H):
            for x in range(W):
                logits, vals = [], []
                for a in range(kh):
                    for c in range(kw):
                        j = a * kw + c
                        py = y + (a - (kh - 1) / 2) * dilation + off[b, 2 * j, y, x]
                        px = x + (c - (kw - 1) / 2) * dilation + off[b, 2 * j + 1, y, x]
                        logits.append((q[b, :, y, x] * _bilinear(k[b], py, px)).sum())
                        vals.append(_bilinear(v[b], py, px))
                s = torch.softmax(torch.stack(logits), 0)
                pix.append((s[:, None] * torch.stack(vals)).sum(0))
        outs.append(torch.stack(pix, -1).view(-1, H, W))
    return torch.stack(outs)


def make_inputs(B, C, Cv, H, W, kernel_size, off_scale=1.5, dtype=F64, seed=0):
    kh, kw = pair(kernel_size)
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, C, H, W, generator=g, dtype=dtype)
    k = torch.randn(B, C, H, W, generator=g, dtype=dtype)
    v = torch.randn(B, Cv, H, W, generator=g, dtype=dtype)
    off = torch.randn(B, 2 * kh * kw, H, W, generator=g, dtype=dtype) * off_scale
    return q, k, v, off


class MSDAPytorchShim:
    """``MultiScaleDeformableAttnFunction.apply`` signature on top of mmcv's CPU fallback."""

    @staticmethod
    def apply(value, shapes, start, loc, attn, im2col_step):
        from mmcv.ops.multi_scale_deform_attn import multi_scale_deformable_attn_pytorch
        return multi_scale_deformable_attn_pytorch(value, shapes, loc, attn)


def nonfinite_offset_case():
    """Float64 inputs (B=2, C=3, Cv=2, 4x5, kernel 3) whose offsets hold a NaN, +inf and -inf:
    ``(q, k, v, bad_offsets, hit, clean_offsets)`` where ``hit`` (B, H, W) marks the queries
    with a non-finite offset and ``clean_offsets`` has those entries set to 0."""
    q, k, v, off = make_inputs(2, 3, 2, 4, 5, 3, 1.5)
    bad = off.clone()
    bad[0, 4, 1, 2], bad[1, 7, 2, 3], bad[1, 0, 0, 0] = float('nan'), float('inf'), -float('inf')
    hit = torch.zeros(2, 4, 5, dtype=torch.bool)
    hit[0, 1, 2] = hit[1, 2, 3] = hit[1, 0, 0] = True
    return q, k, v, bad, hit, bad.masked_fill(~bad.isfinite(), 0.0)


def assert_nonfinite_propagates(out, s, hit, ref):
    """``out`` (B, Cv, H, W) and softmax ``s`` (B, K, H, W, or None) are NaN in every channel
    exactly at the ``hit`` queries; elsewhere ``out`` equals ``ref``."""
    out = out.detach().cpu()
    for t in (out, ) + (() if s is None else (s.detach().cpu(), )):
        assert t.isnan().all(1).eq(hit).all() and t.isnan().any(1).eq(hit).all()
    keep = ~hit[:, None].expand_as(out)
    torch.testing.assert_close(out[keep], ref[keep], rtol=1e-10, atol=1e-12)
