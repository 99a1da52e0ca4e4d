# Copyright (c) mmseg_ext contributors. All rights reserved.
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.decode_heads.psp_head import PPM
from mmseg.registry import MODELS
from torch import Tensor

from ...utils.checks import is_int
from ..utils.batch_norm_check import explain_single_value_batch_norm
from ..utils.gated_fusion import FUSION_TYPES, build_fusion, resize_to
from ..utils.head_checks import (
    check_bool,
    check_choice,
    check_int,
    check_int_in,
    check_output_mode,
    refuse,
)
from ..utils.taps import capture_outputs

DFP_MODES = ('dense', 'literal')
OWNER = 'GFFHead'


def _check_inputs(kwargs: dict) -> None:
    """Several levels, one ``in_index`` each, selected together (``'multiple_select'``)."""
    in_channels = kwargs.get('in_channels')
    in_index = kwargs.get('in_index')
    if not isinstance(in_channels, (list, tuple)) or len(in_channels) < 2:
        raise TypeError('GFFHead fuses several levels: in_channels must '
                        'be a list of >= 2 ints, e.g. [256, 512, 1024, '
                        f'2048], got {in_channels!r}')
    if not isinstance(in_index, (list, tuple)) or \
            len(in_index) != len(in_channels):
        raise ValueError(f'in_index must be a list as long as in_channels '
                         f'({len(in_channels)}), e.g. '
                         f'{list(range(len(in_channels)))}, got '
                         f'{in_index!r}')
    if kwargs.setdefault('input_transform',
                         'multiple_select') != 'multiple_select':
        raise ValueError("GFFHead needs input_transform='multiple_select'"
                         f", got {kwargs['input_transform']!r}")


def _check_pool_scales(pool_scales) -> None:
    """PPM output sizes: a non-empty sequence of integers >= 1 (PSPNet: (1, 2, 3, 6))."""
    if isinstance(pool_scales, (str, bytes)) or not isinstance(pool_scales, Sequence) \
            or not pool_scales or not all(is_int(s) and s >= 1 for s in pool_scales):
        refuse('pool_scales', 'a non-empty sequence of integers >= 1', pool_scales,
               owner=OWNER, hint='the PPM pooled sizes, PSPNet: (1, 2, 3, 6)')


@MODELS.register_module()
class GFFHead(BaseDecodeHead):
    """Gated Fully Fusion head: PSPNet + GFF + DFP.

    This head is the implementation of `GFF: Gated Fully Fusion for Semantic
    Segmentation <https://arxiv.org/abs/1904.01803>`_ (AAAI 2020).

    Pipeline (levels ``l = 1..L`` ordered shallow to deep, ``in_index``):

    1. PSPNet on the deepest level: ``y_0 = bottleneck([X_L, PPM(X_L)])``,
       exactly mmseg's :class:`PSPHead` (``channels`` wide).
    2. Each ``X_l`` reduced to ``fusion_channels`` by 1x1 conv-BN-ReLU.
    3. Fusion (Eq. 5 for ``'gff'``), gates computed from the *raw* ``X_l``
       (``w_l in R^{1x1xC_l}``, paper); each fused level at its own size.
    4. ``num_fuse_convs`` 3x3 conv-BN-ReLU per level ("two", paper).
    5. Dense Feature Pyramid (Eq. 6), top-down from ``y_0``; ``H_k`` is one
       ``dfp_kernel_size`` conv-BN-ReLU. ``'dense'`` (default) reads Eq. 6 as
       DenseNet's rule, as the text ("receives the feature-maps of all
       preceding pyramids") and the authors' code do: the k-th pyramid,
       at level ``l = L + 1 - k``, is ``y_k = H_k([y_0, y_1..y_{k-1}, X~_l])``.
       ``'literal'`` takes the printed equation with top-down indices,
       ``y_k = H_k([y_0, X~_L, .., X~_l])`` (the current level is included,
       otherwise the finest ``X~_1`` would never be used). Both give the same
       parameter count. The paper does not give H's kernel: 1x1 is the size
       that matches Table 3 (+0.8M); 3x3 would add ~10M.
    6. ``[y_0, y_1..y_L]`` (without DFP: ``[y_0, X~_L..X~_1]``) resized to
       the finest level and concatenated for ``conv_seg``.

    Args:
        pool_scales (tuple[int]): PPM pooling scales. Default: (1, 2, 3, 6).
        fusion (str): One of ``'gff'`` (Eq. 5) and the Table 1 baselines
            ``'concat'`` (Eq. 2), ``'add'`` (Eq. 3), ``'fpn'`` (Eq. 4) and
            ``'gated_fpn'``. ``concat``/``add`` give one fused map at the
            finest size; the FPN pathways start from the reduced PPM output
            ("FPN based on PSPNet fuses 5 feature maps"). Default: 'gff'.
        fusion_channels (int): Width of the fused levels. Default: 256.
        gate_channels (int): 1 (paper: one gate map per level) or
            ``fusion_channels`` (authors' WRN-38 code). Default: 1.
        update_order (str): ``'simultaneous'`` (paper) or ``'sequential'``
            (authors' code: level l reads the updated X~ of levels < l).
        num_fuse_convs (int): 3x3 convs per fused level. Default: 2.
        use_dfp (bool): Dense Feature Pyramid (Table 2). Default: True.
        dfp_kernel_size (int): Kernel of each H_k (odd). Default: 1.
        dfp_mode (str): ``'dense'`` or ``'literal'``, see 5. above.
        align_level (int, optional): If set, every level is first resized
            to the size of input level ``align_level`` (e.g. 1 for the 1/8
            stage of a ResNet-d8, the PSPNet output size). Not in the paper
            (Eq. 5 keeps each level's size); reduces FLOPs. Default: None.

    Inspection: the gates are the second output of ``fusion`` (``(fused,
    gates)``), read by a forward hook on it (:meth:`forward_with_gates`,
    ``tools/analysis_tools/visualize_heads.py``); the head keeps no state of
    a pass.
    """

    def __init__(self,
                 pool_scales: Sequence[int] = (1, 2, 3, 6),
                 fusion: str = 'gff',
                 fusion_channels: int = 256,
                 gate_channels: int = 1,
                 update_order: str = 'simultaneous',
                 num_fuse_convs: int = 2,
                 use_dfp: bool = True,
                 dfp_kernel_size: int = 1,
                 dfp_mode: str = 'dense',
                 align_level: Optional[int] = None,
                 **kwargs):
        _check_inputs(kwargs)
        check_choice('fusion', fusion, FUSION_TYPES)  # update_order: build_fusion's
        check_choice('dfp_mode', dfp_mode, DFP_MODES)
        check_int('fusion_channels', fusion_channels, 1, owner=OWNER, hint='e.g. 256')
        check_int('num_fuse_convs', num_fuse_convs, 0, owner=OWNER, hint='e.g. 2')
        _check_pool_scales(pool_scales)
        gate_hint = f'1 (paper) or fusion_channels={fusion_channels} (authors\' code)'
        check_int('gate_channels', gate_channels, 1, owner=OWNER, hint=gate_hint)
        check_choice('gate_channels', gate_channels, (1, fusion_channels),
                     requirement=gate_hint, owner=OWNER)
        check_int('dfp_kernel_size', dfp_kernel_size, 1, owner=OWNER, hint='odd, e.g. 1 or 3')
        if dfp_kernel_size % 2 == 0:
            refuse('dfp_kernel_size', 'odd (the pyramid keeps each level\'s size), e.g. 1 or 3',
                   dfp_kernel_size, owner=OWNER)
        check_bool('use_dfp', use_dfp, owner=OWNER)
        n_in = len(kwargs['in_channels'])
        if align_level is not None:
            check_int_in('align_level', align_level, -n_in, n_in - 1,
                         'None (Eq. 5: each level keeps its size) or an integer index into '
                         f'in_channels, -{n_in}..{n_in - 1}', owner=OWNER, hint='e.g. 1')
        super().__init__(**kwargs)
        check_output_mode(self)
        self.fusion_type = fusion
        self.use_dfp = use_dfp
        self.dfp_mode = dfp_mode
        self.align_level = align_level
        cfg = dict(
            conv_cfg=self.conv_cfg,
            norm_cfg=self.norm_cfg,
            act_cfg=self.act_cfg)
        fc = fusion_channels
        top_channels = self.in_channels[-1]
        self.psp_modules = PPM(
            pool_scales,
            top_channels,
            self.channels,
            align_corners=self.align_corners,
            **cfg)
        self.bottleneck = ConvModule(
            top_channels + len(pool_scales) * self.channels,
            self.channels,
            3,
            padding=1,
            **cfg)
        self.lateral_convs = nn.ModuleList(
            ConvModule(c, fc, 1, **cfg) for c in self.in_channels)
        gate_in = list(self.in_channels)
        if fusion in ('fpn', 'gated_fpn'):  # PPM output tops the pathway
            self.ppm_lateral = ConvModule(self.channels, fc, 1, **cfg)
            gate_in.append(self.channels)
        self.fusion = build_fusion(fusion, gate_in, gate_channels,
                                   update_order, self.align_corners)
        self.num_out = 1 if fusion in ('concat', 'add') else n_in
        lvl_in = n_in * fc if fusion == 'concat' else fc
        lvl_ch = fc if num_fuse_convs > 0 else lvl_in
        self.fuse_convs = nn.ModuleList(
            nn.Sequential(*[
                ConvModule(lvl_in if j == 0 else fc, fc, 3, padding=1, **cfg)
                for j in range(num_fuse_convs)
            ]) for _ in range(self.num_out))
        if use_dfp:
            self.dfp_convs = nn.ModuleList()
            for k in range(self.num_out):
                dfp_in = self.channels + (
                    k * fc + lvl_ch if dfp_mode == 'dense' else
                    (k + 1) * lvl_ch)
                self.dfp_convs.append(
                    ConvModule(
                        dfp_in,
                        fc,
                        dfp_kernel_size,
                        padding=dfp_kernel_size // 2,
                        **cfg))
        out_ch = fc if use_dfp else lvl_ch
        self.conv_seg = nn.Conv2d(self.channels + self.num_out * out_ch,
                                  self.out_channels, 1)

    def _resize(self, x: Tensor, size) -> Tensor:
        return resize_to(x, size, self.align_corners)

    def _dfp(self, y0: Tensor, feats: List[Tensor]) -> List[Tensor]:
        """Top-down Dense Feature Pyramid; returns ``[y_1 (top)..y_L]``."""
        ys: List[Tensor] = []
        for k, lvl in enumerate(range(len(feats) - 1, -1, -1)):
            if self.dfp_mode == 'dense':
                inp = [y0] + ys + [feats[lvl]]
            else:
                inp = [y0] + feats[lvl:][::-1]
            size = feats[lvl].shape[-2:]
            inp = torch.cat([self._resize(t, size) for t in inp], dim=1)
            ys.append(self.dfp_convs[k](inp))
        return ys

    def _forward_feature(self, inputs: List[Tensor]) -> Tensor:
        xs = self._transform_inputs(inputs)
        if self.align_level is not None:
            size = xs[self.align_level].shape[-2:]
            xs = [self._resize(x, size) for x in xs]
        top = xs[-1]
        with explain_single_value_batch_norm('GFFHead: the PPM (pool_scales) branch'):
            pooled = self.psp_modules(top)
        y0 = self.bottleneck(torch.cat([top] + pooled, dim=1))
        lats = [conv(x) for conv, x in zip(self.lateral_convs, xs)]
        gate_in = list(xs)
        if self.fusion_type in ('fpn', 'gated_fpn'):
            lats.append(self.ppm_lateral(y0))
            gate_in.append(y0)
        fused, _ = self.fusion(lats, gate_in)  # gates: read by hooks on self.fusion
        fused = [
            convs(f) for convs, f in zip(self.fuse_convs,
                                         fused[:self.num_out])
        ]
        ys = self._dfp(y0, fused) if self.use_dfp else fused[::-1]
        size = fused[0].shape[-2:]
        return torch.cat([self._resize(t, size) for t in [y0] + ys], dim=1)

    def forward(self, inputs: List[Tensor]) -> Tensor:
        """Segmentation logits at the finest fused level's size."""
        return self.cls_seg(self._forward_feature(inputs))

    def forward_with_gates(
            self, inputs: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        """Logits and the gate maps ``[G_1..G_L]`` (in (0, 1), each at its
        level's size; ``gated_fpn`` adds the PPM level's gate; not detached),
        e.g. for visualising a checkpoint. The gates are the second output of
        ``self.fusion``, read by a forward hook for this one pass: the head
        keeps nothing of it."""
        with capture_outputs([self.fusion], select=lambda out: out[1]) as got:
            logits = self.forward(inputs)
        return logits, list(got[0])
