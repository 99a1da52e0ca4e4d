# Copyright (c) mmseg_ext contributors. All rights reserved.
"""Squeeze-and-Attention block (SANet, Zhong et al., CVPR 2020) and the two
ablation variants the paper compares it with (Table 3: plain conv / SE).

All three share the *main channel* ``X_res = F(X_in)`` (one ConvModule that
reduces the channels, grouped as the paper states in §3.3) and differ only in
how it is re-weighted:

* ``'sa'``   (Eq. 4-5): ``X_out = X_attn * X_res + X_attn`` with
  ``X_attn = Up(sigmoid(F_attn(Pool_r(X_in))))``; the pooling is *not fully
  squeezed* (window/stride ``pool_ratio``), ``Up`` is bilinear back to the
  size of ``X_res``.
* ``'se'``   (Eq. 2-3, head form): ``X_out = w * X_res`` with
  ``w = sigmoid(W2 relu(W1 GAP(X_in)))``. Eq. 2 re-weights ``X_in``, whose
  width differs from ``X_res`` in a channel-reducing head, so ``w`` (computed
  from ``X_in`` as in Eq. 3) gates ``X_res``.
* ``'conv'`` (plain FCN-style head): ``X_out = X_res``.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule

from mmseg.models.utils import resize
from mmseg.utils import ConfigType


class SqueezeAttentionModule(nn.Module):
    """Squeeze-and-attention (SA) block, Eq. 4-5 of SANet.

    Main channel: ``ConvModule(in, out, k, groups)`` (conv-norm-act).
    Attention channel: ``Pool_r -> ConvModule(in, attn, k, groups)
    -> ConvModule(attn, out, 1, act=None) -> sigmoid -> bilinear Up``.

    Paper choices (§3.3): ``out = in / 4`` (set by the caller: "we reduce the
    channel sizes of inputs to a fourth in both main and attention
    channels"), ``groups=2`` for the *first* conv of both channels,
    pooling/upsampling ratio 8. The width ``attn`` of the first attention
    conv defaults to ``out`` (the attention channel is reduced to a fourth
    like the main one); ``attn_channels=4`` is the other reading of §3.3
    ("set the channel number of the intermediate fully connected layer of SE
    modules to 4", which names SE modules). See configs/sanet/README.md for
    which reading reproduces Table 6's parameter count. The text says
    "downsample (max pooling)" once while Eq. 5 and Fig. 2(c) say average
    pooling: we default to ``'avg'`` (the equation) and expose ``pool_type``.

    Pooling uses ``ceil_mode=True`` so a feature map whose side is not a
    multiple of ``pool_ratio`` keeps its border (partial windows are averaged
    over their valid pixels); ``Up`` resizes to the exact main-channel size.
    The block is not residual, so there is no identity (zero) init; convs use
    ConvModule's default (Kaiming) init.

    Args:
        in_channels (int): Channels of ``X_in``.
        out_channels (int): Channels of ``X_res`` / ``X_attn`` / ``X_out``.
        attn_channels (int, optional): Width of the intermediate attention
            conv; None means ``out_channels``. Default: None.
        pool_ratio (int): Down/up-sampling ratio of the attention channel.
            Default: 8.
        pool_type (str): ``'avg'`` (Eq. 5, default) or ``'max'`` (§3.3 text).
        groups (int): Groups of the first conv in both channels. Default: 2.
        kernel_size (int): Kernel of the first conv in both channels.
            Default: 3.
        align_corners (bool): ``align_corners`` of the upsampling.
        conv_cfg, norm_cfg, act_cfg (dict): Passed to ``ConvModule``.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 attn_channels: Optional[int] = None,
                 pool_ratio: int = 8,
                 pool_type: str = 'avg',
                 groups: int = 2,
                 kernel_size: int = 3,
                 align_corners: bool = False,
                 conv_cfg: Optional[ConfigType] = None,
                 norm_cfg: Optional[ConfigType] = dict(type='BN'),
                 act_cfg: Optional[ConfigType] = dict(type='ReLU')):
        super().__init__()
        _check_common(in_channels, out_channels, groups, kernel_size)
        if attn_channels is None:
            attn_channels = out_channels
        _check_positive_int('attn_channels', attn_channels)
        _check_positive_int('pool_ratio', pool_ratio)
        if pool_type not in ('avg', 'max'):
            raise ValueError(
                f"pool_type must be 'avg' (Eq. 5) or 'max' (§3.3 text), got "
                f'{pool_type!r}')
        if attn_channels % groups:
            raise ValueError(
                f'attn_channels ({attn_channels}) must be divisible by groups '
                f'({groups}); e.g. attn_channels={groups * 2}')
        self.pool_ratio = pool_ratio
        self.pool_type = pool_type
        self.align_corners = align_corners
        cfgs = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        self.main = ConvModule(
            in_channels, out_channels, kernel_size,
            padding=kernel_size // 2, groups=groups, act_cfg=act_cfg, **cfgs)
        self.attn = nn.Sequential(
            ConvModule(in_channels, attn_channels, kernel_size,
                       padding=kernel_size // 2, groups=groups,
                       act_cfg=act_cfg, **cfgs),
            ConvModule(attn_channels, out_channels, 1, act_cfg=None, **cfgs))

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Not-fully-squeezed pooling ``APool`` of Eq. 5."""
        r = self.pool_ratio
        if self.pool_type == 'avg':
            return F.avg_pool2d(x, r, r, ceil_mode=True)
        return F.max_pool2d(x, r, r, ceil_mode=True)

    def attention(self, x: torch.Tensor,
                  size: Tuple[int, int]) -> torch.Tensor:
        """``X_attn = Up(sigmoid(F_attn(APool(x))))`` resized to ``size``."""
        a = torch.sigmoid(self.attn(self.pool(x)))
        return resize(a, size=size, mode='bilinear',
                      align_corners=self.align_corners)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.main(x)
        attn = self.attention(x, res.shape[2:])
        return attn * res + attn  # Eq. 4


class SqueezeExciteHeadModule(nn.Module):
    """SE variant for the Table 3 ablation: ``X_out = w * X_res``.

    ``w = sigmoid(W2 relu(W1 GAP(X_in)))`` (Eq. 3) with ``W1: in -> attn``,
    ``W2: attn -> out`` implemented as biased 1x1 convs (= FC layers); §3.3
    sets the intermediate FC width of SE modules to 4.

    Args:
        in_channels (int): Channels of ``X_in``.
        out_channels (int): Channels of ``X_res`` and of the output.
        attn_channels (int, optional): Width of the intermediate FC; None
            means ``out_channels``. Default: 4 (§3.3).
        groups (int): Groups of the main conv. Default: 2.
        kernel_size (int): Kernel of the main conv. Default: 3.
        conv_cfg, norm_cfg, act_cfg (dict): Passed to ``ConvModule``.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 attn_channels: Optional[int] = 4,
                 groups: int = 2,
                 kernel_size: int = 3,
                 conv_cfg: Optional[ConfigType] = None,
                 norm_cfg: Optional[ConfigType] = dict(type='BN'),
                 act_cfg: Optional[ConfigType] = dict(type='ReLU')):
        super().__init__()
        _check_common(in_channels, out_channels, groups, kernel_size)
        if attn_channels is None:
            attn_channels = out_channels
        _check_positive_int('attn_channels', attn_channels)
        self.main = ConvModule(
            in_channels, out_channels, kernel_size, padding=kernel_size // 2,
            groups=groups, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
            act_cfg=act_cfg)
        self.fc1 = nn.Conv2d(in_channels, attn_channels, 1)
        self.fc2 = nn.Conv2d(attn_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), True)))))
        return w * self.main(x)


class PlainConvHeadModule(nn.Module):
    """Plain-conv variant (no re-weighting): ``X_out = X_res``.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        groups (int): Groups of the conv. Default: 2.
        kernel_size (int): Kernel of the conv. Default: 3.
        conv_cfg, norm_cfg, act_cfg (dict): Passed to ``ConvModule``.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 groups: int = 2,
                 kernel_size: int = 3,
                 conv_cfg: Optional[ConfigType] = None,
                 norm_cfg: Optional[ConfigType] = dict(type='BN'),
                 act_cfg: Optional[ConfigType] = dict(type='ReLU')):
        super().__init__()
        _check_common(in_channels, out_channels, groups, kernel_size)
        self.main = ConvModule(
            in_channels, out_channels, kernel_size, padding=kernel_size // 2,
            groups=groups, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
            act_cfg=act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


HEAD_MODULES = dict(
    sa=SqueezeAttentionModule,
    se=SqueezeExciteHeadModule,
    conv=PlainConvHeadModule)


# arguments that only the SA block has, dropped for the ablation variants
_SA_ONLY = dict(se=('pool_ratio', 'pool_type', 'align_corners'),
                conv=('pool_ratio', 'pool_type', 'align_corners',
                      'attn_channels'))


def build_head_module(module_type: str, **kwargs) -> nn.Module:
    """Build ``'sa'`` / ``'se'`` / ``'conv'`` (see module docstring); the
    SA-only arguments are dropped for the variants that do not use them."""
    if module_type not in HEAD_MODULES:
        raise ValueError(f'module_type must be one of {sorted(HEAD_MODULES)} '
                         f"(paper: 'sa'), got {module_type!r}")
    for key in _SA_ONLY.get(module_type, ()):
        kwargs.pop(key, None)
    return HEAD_MODULES[module_type](**kwargs)


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f'{name} must be a positive int, got {value!r}')


def _check_common(in_channels, out_channels, groups, kernel_size) -> None:
    for name, value in (('in_channels', in_channels),
                        ('out_channels', out_channels), ('groups', groups),
                        ('kernel_size', kernel_size)):
        _check_positive_int(name, value)
    if kernel_size % 2 == 0:
        raise ValueError(
            f'kernel_size must be odd to keep the spatial size, got '
            f'{kernel_size}; e.g. kernel_size=3')
    if in_channels % groups or out_channels % groups:
        raise ValueError(
            f'in_channels ({in_channels}) and out_channels ({out_channels}) '
            f'must be divisible by groups ({groups}); use groups=1 or '
            f'channel counts that are multiples of {groups}')
