# Copyright (c) mmseg_ext contributors. All rights reserved.
"""Multi-level feature fusion blocks of GFF (Li et al., "Gated Fully Fusion for
Semantic Segmentation", AAAI 2020), including the paper's Table 1 baselines.

Every block maps a list of ``L`` feature maps ``X_1..X_L`` (all with the same
number of channels, ordered from the shallowest/finest level to the deepest)
to a list of fused maps and returns the gates it used (empty for ungated
blocks)::

    outs, gates = block(feats, gate_inputs)

``gate_inputs`` are the maps the gates are computed from. The paper computes
``G_l = sigmoid(w_l * X_l)`` with ``w_l in R^{1x1xC_l}`` where ``C_l`` is the
channel count of the *backbone* level, i.e. before the 256-channel reduction
(the authors' released code does the same), so the head passes the raw
backbone maps here; by default the fused maps themselves are used.

Resizing is bilinear. Following the authors' code, a sender's contribution is
resized *after* gating: ``resize(G_i * X_i)``.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .head_checks import check_choice, check_int, refuse

FUSION_TYPES = ('concat', 'add', 'fpn', 'gated_fpn', 'gff')
UPDATE_ORDERS = ('simultaneous', 'sequential')


def resize_to(x: Tensor, size, align_corners: bool) -> Tensor:
    """``x`` resized bilinearly to ``size`` (H, W); ``x`` itself when it already has that size
    (no interpolation call, so no rounding and no cost). Used by the fusion blocks and by the
    GFF head for every resize between levels. Unlike ``mmseg.models.utils.resize`` it does not
    warn about ``align_corners=True`` sizes: the levels' sizes are the backbone's."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(
        x, size=tuple(size), mode='bilinear', align_corners=align_corners)


class LevelGates(nn.Module):
    """Gate maps ``G_l = sigmoid(w_l * X_l)``, one 1x1 conv (with bias) per
    level.

    Args:
        in_channels (Sequence[int]): Channels of the maps the gates are
            computed from, one entry per level.
        gate_channels (int): 1 for the paper's single gate map per level
            (``G_l in [0,1]^{H_l x W_l}``, broadcast over channels) or the
            number of fused channels for the per-channel gates of the authors'
            later WRN-38 code.
    """

    def __init__(self, in_channels: Sequence[int], gate_channels: int = 1):
        super().__init__()
        check_int('gate_channels', gate_channels, 1, owner='LevelGates',
                  hint='1: one gate map per level, as in the paper')
        self.convs = nn.ModuleList(
            nn.Conv2d(c, gate_channels, kernel_size=1) for c in in_channels)

    def forward(self, feats: Sequence[Tensor]) -> List[Tensor]:
        if len(feats) != len(self.convs):
            raise ValueError(f'expected {len(self.convs)} gate inputs, '
                             f'got {len(feats)}')
        return [torch.sigmoid(conv(x)) for conv, x in zip(self.convs, feats)]


def gated_fully_fuse(feats: Sequence[Tensor],
                     gates: Sequence[Tensor],
                     update_order: str = 'simultaneous',
                     align_corners: bool = False) -> List[Tensor]:
    """Eq. 5: ``X~_l = (1 + G_l) X_l + (1 - G_l) sum_{i != l} G_i X_i``.

    ``simultaneous`` (paper): every level reads the *input* maps ``X_i``.
    ``sequential`` (authors' later code): levels are updated in order
    ``l = 1..L`` (finest first) and level ``l`` reads the already updated
    ``X~_i`` for ``i < l`` and the inputs ``X_i`` for ``i > l``; the gates
    are computed once from the inputs and are not recomputed.
    """
    check_choice('update_order', update_order, UPDATE_ORDERS)
    return _fuse(feats, gates, update_order == 'sequential', align_corners)


def _fuse(feats: Sequence[Tensor], gates: Sequence[Tensor], sequential: bool,
          align_corners: bool) -> List[Tensor]:
    """:func:`gated_fully_fuse` with its update order checked (``sequential``)."""
    if len(feats) != len(gates):
        raise ValueError(f'got {len(feats)} feature maps but {len(gates)} '
                         'gates')
    sent = [g * x for g, x in zip(gates, feats)]  # G_i * X_i
    outs = []
    for lvl, (x, g) in enumerate(zip(feats, gates)):
        size = x.shape[-2:]
        received = sum(
            resize_to(s, size, align_corners) for i, s in enumerate(sent)
            if i != lvl)
        out = (1 + g) * x + (1 - g) * received
        outs.append(out)
        if sequential:
            sent[lvl] = g * out
    return outs


class GatedFullyFusion(nn.Module):
    """Gated Fully Fusion (paper Eq. 5, Fig. 2).

    Args:
        gate_in_channels (Sequence[int]): Channels of the gate inputs per
            level (the raw backbone levels in the paper).
        gate_channels (int): 1 (paper) or C (authors' WRN-38 code).
        update_order (str): ``'simultaneous'`` (paper) or ``'sequential'``
            (authors' code), see :func:`gated_fully_fuse`.
        align_corners (bool): For the bilinear resizes.
    """

    def __init__(self,
                 gate_in_channels: Sequence[int],
                 gate_channels: int = 1,
                 update_order: str = 'simultaneous',
                 align_corners: bool = False):
        super().__init__()
        self.update_order = check_choice('update_order', update_order, UPDATE_ORDERS)
        self.gates = LevelGates(gate_in_channels, gate_channels)
        self.align_corners = align_corners

    def forward(self, feats: Sequence[Tensor],
                gate_inputs: Optional[Sequence[Tensor]] = None
                ) -> Tuple[List[Tensor], List[Tensor]]:
        gates = self.gates(feats if gate_inputs is None else gate_inputs)
        gates = [resize_to(g, x.shape[-2:], self.align_corners)
                 for g, x in zip(gates, feats)]
        return _fuse(feats, gates, self.update_order == 'sequential',
                     self.align_corners), gates


class TopDownFusion(nn.Module):
    """FPN top-down pathway (Eq. 4), optionally gated (Table 1 "Gated FPN").

    FPN: ``X~_L = X_L``, ``X~_l = X_l + up(X~_{l+1})``. Gated FPN applies the
    GFF duplex gate to the single top-down sender:
    ``X~_l = (1 + G_l) X_l + (1 - G_l) up(G_{l+1} X~_{l+1})``.

    Args:
        gate_in_channels (Sequence[int] | None): Gate input channels per
            level; ``None`` builds the ungated FPN.
        gate_channels (int): As in :class:`GatedFullyFusion`.
        align_corners (bool): For the bilinear resizes.
    """

    def __init__(self,
                 gate_in_channels: Optional[Sequence[int]] = None,
                 gate_channels: int = 1,
                 align_corners: bool = False):
        super().__init__()
        self.gates = (None if gate_in_channels is None else LevelGates(
            gate_in_channels, gate_channels))
        self.align_corners = align_corners

    def forward(self, feats: Sequence[Tensor],
                gate_inputs: Optional[Sequence[Tensor]] = None
                ) -> Tuple[List[Tensor], List[Tensor]]:
        gates: List[Tensor] = []
        if self.gates is not None:
            gates = self.gates(feats if gate_inputs is None else gate_inputs)
            gates = [resize_to(g, x.shape[-2:], self.align_corners)
                     for g, x in zip(gates, feats)]
        outs = [feats[-1]]
        for lvl in range(len(feats) - 2, -1, -1):
            x, top = feats[lvl], outs[0]
            if gates:
                top = resize_to(gates[lvl + 1] * top, x.shape[-2:],
                              self.align_corners)
                out = (1 + gates[lvl]) * x + (1 - gates[lvl]) * top
            else:
                out = x + resize_to(top, x.shape[-2:], self.align_corners)
            outs.insert(0, out)
        return outs, gates


class _FinestSizeFusion(nn.Module):
    """One fused map at the size of the finest level, :meth:`combine` of the resized levels
    (ungated: no gates)."""

    def __init__(self, align_corners: bool = False):
        super().__init__()
        self.align_corners = align_corners

    def forward(self, feats: Sequence[Tensor],
                gate_inputs: Optional[Sequence[Tensor]] = None
                ) -> Tuple[List[Tensor], List[Tensor]]:
        size = feats[0].shape[-2:]
        return [self.combine([resize_to(x, size, self.align_corners) for x in feats])], []


class ConcatFusion(_FinestSizeFusion):
    """Eq. 2: one map ``concat(X_1..X_L)`` at the size of the finest level."""

    @staticmethod
    def combine(maps: List[Tensor]) -> Tensor:
        return torch.cat(maps, dim=1)


class AddFusion(_FinestSizeFusion):
    """Eq. 3: one map ``sum_i X_i`` at the size of the finest level."""

    @staticmethod
    def combine(maps: List[Tensor]) -> Tensor:
        return sum(maps)


def build_fusion(fusion: str,
                 gate_in_channels: Sequence[int],
                 gate_channels: int = 1,
                 update_order: str = 'simultaneous',
                 align_corners: bool = False) -> nn.Module:
    """Build one of :data:`FUSION_TYPES`. ``update_order`` is the ``'gff'`` block's, which checks
    it; the other fusions do not use it but refuse a bad one all the same (a typo in a config)."""
    if fusion == 'gff':
        return GatedFullyFusion(gate_in_channels, gate_channels, update_order,
                                align_corners)
    check_choice('update_order', update_order, UPDATE_ORDERS)
    if fusion in ('fpn', 'gated_fpn'):
        return TopDownFusion(
            gate_in_channels if fusion == 'gated_fpn' else None,
            gate_channels, align_corners)
    if fusion == 'concat':
        return ConcatFusion(align_corners)
    if fusion == 'add':
        return AddFusion(align_corners)
    refuse('fusion', f'one of {FUSION_TYPES}', fusion)
