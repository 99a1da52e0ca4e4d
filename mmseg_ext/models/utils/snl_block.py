"""Sparse non-local (SNL) block of SSANet.

Liu & Yin, "Sparse Spatial Attention Network for Semantic Segmentation", arXiv:2109.01915, §3.2.
"""
from typing import Optional, Sequence, Tuple, Union

import torch.nn as nn
from torch import Tensor

from ...ops import sparse_nonlocal_attention
from ...ops.sparse_nonlocal import check_backend
from ...utils.checks import is_int
from .head_checks import check_int, refuse
from .taps import has_forward_hooks

__all__ = ['SparseNonLocal2d']

#: Largest sampling-grid side accepted without ``allow_large_kernel=True``; the paper's largest
#: grid is 11 x 11 (K=121).
MAX_KERNEL_SIDE = 15


def _kernel_pair(kernel_size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(kernel_size, (tuple, list)):
        if len(kernel_size) != 2:
            raise ValueError('kernel_size must be an int or a pair (kh, kw), e.g. 9 for '
                             f'K=81 or (9, 11) for K=99, got {kernel_size!r}')
        kh, kw = kernel_size
    else:
        kh = kw = kernel_size
    for k in (kh, kw):
        if not is_int(k) or k <= 0:
            raise ValueError('kernel_size must hold positive ints, e.g. 9 for K=81 or '
                             f'(9, 11) for K=99, got {kernel_size!r}')
    return kh, kw


def _check_kernel_size(kernel: Tuple[int, int], allow_large_kernel: bool) -> None:
    """Refuse grids above :data:`MAX_KERNEL_SIDE` per side unless explicitly allowed: an int
    ``kernel_size`` is the grid side, so ``kernel_size=99`` means 99 x 99 = 9801 points."""
    kh, kw = kernel
    if max(kh, kw) > MAX_KERNEL_SIDE and not allow_large_kernel:
        raise ValueError(
            f'kernel_size=({kh}, {kw}) samples K={kh * kw} points per query: an int kernel_size '
            'is the side of the grid, not K. For the paper\'s K=99 use kernel_size=(9, 11) '
            '(K=81: 9, K=121: 11); grids larger than '
            f'{MAX_KERNEL_SIDE} per side need allow_large_kernel=True')


class SparseNonLocal2d(nn.Module):
    """Sparse non-local block: ``Z = gamma(Y) + X`` (Eqs. 4-7 of the paper).

    Four 1x1 convs on ``X`` give the query ``theta(X)``, key ``phi(X)``, value ``g(X)`` and the
    offsets ``P`` (2K channels). Each query attends to K = kh*kw keys/values sampled bilinearly
    on a kh x kw grid centred on it (spacing ``dilation``) shifted by ``P``; ``s = softmax_j
    <theta(x_i), phi(x)_j>`` (Eq. 6) and ``Y = sum_j s_j g(x)_j`` (Eq. 7), computed by
    :func:`mmseg_ext.ops.sparse_nonlocal_attention`. ``gamma`` is a 1x1 conv back to C channels.

    Choices (the paper is silent or terse; defaults follow its text):

    * query/key width C // ``reduction`` with ``reduction=2`` (§3.1, "C/2"), value width C
      (§3.1, ``g(X) in R^{C x N}``) unless ``value_channels`` is given;
    * no ``1/sqrt(C')`` scaling of the logits (Eq. 6 has none; mmcv's ``NonLocal2d`` uses it
      by default): ``use_scale=False``;
    * ``dilation=1``: "we restrict the initial sampling locations to the neighbouring locations
      of the corresponding query pixel" (§3.2);
    * all four input convs and ``gamma`` are plain 1x1 convs with bias, no norm/activation
      ("four 1x1 convolutions", "a 1x1 convolution"); ``out_norm_cfg`` adds a norm after
      ``gamma`` (as mmcv's ``NonLocal2d`` can);
    * initialisation: the offset conv is zero-initialised, so sampling starts on the regular
      grid; with ``zero_init_out=True`` (default) ``gamma``'s weight and bias (or, with
      ``out_norm_cfg``, the norm's weight and bias) are zeroed, so the block starts as the
      identity, ``Z == X``. Consequence: at the very first step only ``gamma`` receives a non-zero
      gradient; the other convs get one from the second step on.

    Args:
        in_channels (int): C, channels of ``X`` and ``Z``.
        kernel_size (int | tuple[int, int]): sampling grid (kh, kw); K = kh * kw keys per query.
            Paper: 9 (K=81) on Cityscapes, 7 (K=49) on Pascal Context / ADE20K. Default: 9.
        dilation (int): spacing of the initial grid. Default: 1.
        reduction (int): query/key channels are ``in_channels // reduction``. Default: 2.
        value_channels (int, optional): channels of ``g(X)``; None means ``in_channels``.
        use_scale (bool): divide the logits by ``sqrt(query channels)``. Default: False.
        out_norm_cfg (dict, optional): norm layer after ``gamma`` (e.g. ``dict(type='BN')``).
            Default: None.
        zero_init_out (bool): zero-init ``gamma`` (or its norm) so the block starts as the
            identity. Default: True.
        backend (str): implementation of the op, ``'auto'`` (Triton on CUDA, the chunked
            sparse path on CPU), ``'triton'``, ``'sparse'``, ``'mmcv'`` or ``'export'``
            (ONNX-exportable operators; used automatically while exporting); see
            :mod:`mmseg_ext.ops.sparse_nonlocal`. Default: 'auto'.
        allow_large_kernel (bool): accept grids larger than 15 per side (K > 225), which
            are far beyond the paper's and slow. Default: False.

    Inspection (e.g. ``tools/analysis_tools/visualize_heads.py``), by forward hooks: the
    offsets are the output of ``offset``; the softmax weights the op used, (B, K, H, W)
    detached, are the output of ``weights_tap`` (an ``nn.Identity``). The op returns them
    only while a forward hook is registered on ``weights_tap``: without one a pass computes
    exactly what it computes without inspection (see :mod:`mmseg_ext.models.utils.taps`).
    """

    def __init__(self,
                 in_channels: int,
                 kernel_size: Union[int, Sequence[int]] = 9,
                 dilation: int = 1,
                 reduction: int = 2,
                 value_channels: Optional[int] = None,
                 use_scale: bool = False,
                 out_norm_cfg: Optional[dict] = None,
                 zero_init_out: bool = True,
                 backend: str = 'auto',
                 allow_large_kernel: bool = False) -> None:
        super().__init__()
        in_channels = check_int('in_channels', in_channels, 1, hint='e.g. 512', word='int')
        self.kernel_size = _kernel_pair(kernel_size)
        _check_kernel_size(self.kernel_size, allow_large_kernel)
        self.backend = check_backend(backend)
        self.dilation = check_int('dilation', dilation, 1, hint='e.g. 1', word='int')
        reduction = check_int('reduction', reduction, 1, hint='e.g. 2', word='int')
        if in_channels // reduction < 1:
            raise ValueError(f'reduction={reduction} leaves no query/key channel for '
                             f'in_channels={in_channels}; use reduction <= {in_channels}')
        if value_channels is None:
            value_channels = in_channels
        value_channels = check_int('value_channels', value_channels, 1,
                                   hint=f'e.g. {in_channels}', word='int')
        if out_norm_cfg is not None and not isinstance(out_norm_cfg, dict):
            refuse('out_norm_cfg', 'None or a dict such as dict(type="BN")', out_norm_cfg,
                   error=TypeError)
        self.in_channels = in_channels
        self.inter_channels = in_channels // reduction
        self.value_channels = value_channels
        self.use_scale = bool(use_scale)
        self.zero_init_out = bool(zero_init_out)
        self.num_points = self.kernel_size[0] * self.kernel_size[1]
        self.weights_tap = nn.Identity()  # softmax weights, fed only while hooked

        self.query = nn.Conv2d(in_channels, self.inter_channels, 1)
        self.key = nn.Conv2d(in_channels, self.inter_channels, 1)
        self.value = nn.Conv2d(in_channels, value_channels, 1)
        self.offset = nn.Conv2d(in_channels, 2 * self.num_points, 1)
        self.out = nn.Conv2d(value_channels, in_channels, 1)
        if out_norm_cfg is not None:
            from mmcv.cnn import build_norm_layer
            self.out_norm = build_norm_layer(out_norm_cfg, in_channels)[1]
        else:
            self.out_norm = None
        self.init_weights()

    def init_weights(self) -> None:
        """Zero the offset conv (regular grid) and, if asked, gamma (identity block).

        Also called by mmengine's ``BaseModule.init_weights`` of the owning head, after the
        head's own ``init_cfg`` has run, so these inits survive it.
        """
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        if self.zero_init_out:
            last = self.out_norm if self.out_norm is not None else self.out
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def attention(self, x: Tensor) -> Tensor:
        """``Y`` of Eq. 7: (B, value_channels, H, W)."""
        q = self.query(x)
        if self.use_scale:
            q = q / self.inter_channels**0.5
        inspected = has_forward_hooks(self.weights_tap)
        out = sparse_nonlocal_attention(q, self.key(x), self.value(x), self.offset(x),
                                        self.kernel_size, self.dilation, backend=self.backend,
                                        return_weights=inspected)
        if inspected:
            out, weights = out
            self.weights_tap(weights)
        return out

    def forward(self, x: Tensor) -> Tensor:
        y = self.out(self.attention(x))
        if self.out_norm is not None:
            y = self.out_norm(y)
        return x + y

    def extra_repr(self) -> str:
        return (f'kernel_size={self.kernel_size}, dilation={self.dilation}, '
                f'use_scale={self.use_scale}, zero_init_out={self.zero_init_out}, '
                f'backend={self.backend!r}')
