# Copyright (c) mmseg_ext contributors. All rights reserved.
"""Squeeze-and-Attention block (SANet, Zhong et al., CVPR 2020) and the two
ablation variants the paper compares it with (Table 3: plain conv / SE).

All three share the *main channel* ``X_res = F(X_in)`` (one ConvModule that
reduces the channels, grouped as the paper states in §3.3, optionally followed
by a second, 1x1 one: ``main_convs``) and differ only in how it is
re-weighted:

* ``'sa'``   (Eq. 4-5): ``X_out = X_attn * X_res + X_attn`` with
  ``X_attn = Up(act(F_attn(Pool(X_in))))``; the pooling is *not fully
  squeezed* (window/stride ``pool_ratio``, or a ``attn_grid`` of cells),
  ``Up`` is bilinear back to the size of ``X_res``.
* ``'se'``   (Eq. 2-3, head form): ``X_out = w * X_res`` with
  ``w = sigmoid(W2 relu(W1 GAP(X_in)))``. Eq. 2 re-weights ``X_in``, whose
  width differs from ``X_res`` in a channel-reducing head, so ``w`` (computed
  from ``X_in`` as in Eq. 3) gates ``X_res``.
* ``'conv'`` (plain FCN-style head): ``X_out = X_res``.
"""
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule

from mmseg.models.utils import resize
from mmseg.utils import ConfigType

from ...utils.checks import is_int


def _grid_cells(grid: Tuple[int, int], x: torch.Tensor) -> Tuple[int, int]:
    """``min(gh, H) x min(gw, W)``: a map smaller than the grid is not upsampled."""
    return min(grid[0], x.shape[-2]), min(grid[1], x.shape[-1])


class GridAvgPool2d(nn.AdaptiveAvgPool2d):
    """Adaptive average pooling to a grid of ``min(gh, H) x min(gw, W)`` cells
    (``attn_grid``). A module (not a functional call) so that tools that inspect
    adaptive poolings, e.g. the ONNX exporter's check
    (``mmseg_ext.deployment.adaptive_pool_problems``), see it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, _grid_cells(self.output_size, x))


class GridMaxPool2d(nn.AdaptiveMaxPool2d):
    """Adaptive max pooling to ``min(gh, H) x min(gw, W)`` cells, as
    :class:`GridAvgPool2d`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_max_pool2d(x, _grid_cells(self.output_size, x))


ATTN_ACTS = ('sigmoid', 'relu')
POOL_TYPES = ('avg', 'max')


class _MainChannel(nn.Module):
    """The main channel ``X_res`` shared by the three blocks: ``main``
    (``ConvModule(in, out, k, groups)``) and, with ``main_convs=2``,
    ``main2`` (``ConvModule(out, out, 1)``, not grouped: §3.3 groups only
    "the first convolution operations"). ``main_convs=1`` keeps the
    state-dict keys of the one-conv block (``main.*``)."""

    def _init_main(self, in_channels: int, out_channels: int, groups: int,
                   kernel_size: int, main_convs: int, conv_cfg, norm_cfg,
                   act_cfg) -> None:
        _check_common(in_channels, out_channels, groups, kernel_size)
        if not is_int(main_convs) or main_convs not in (1, 2):
            raise ValueError(
                'main_convs must be 1 (one grouped conv) or 2 (grouped conv '
                f'+ 1x1 conv, as the attention channel), got {main_convs!r}')
        cfgs = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.main = ConvModule(in_channels, out_channels, kernel_size,
                               padding=kernel_size // 2, groups=groups,
                               **cfgs)
        self.main2 = ConvModule(out_channels, out_channels, 1, **cfgs) \
            if main_convs == 2 else None

    def main_channel(self, x: torch.Tensor) -> torch.Tensor:
        """``X_res`` (conv-norm-act, twice with ``main_convs=2``)."""
        res = self.main(x)
        return res if self.main2 is None else self.main2(res)


class SqueezeAttentionModule(_MainChannel):
    """Squeeze-and-attention (SA) block, Eq. 4-5 of SANet.

    Main channel: ``ConvModule(in, out, k, groups)`` (conv-norm-act)
    [``-> ConvModule(out, out, 1)`` with ``main_convs=2``].
    Attention channel: ``Pool -> ConvModule(in, attn, k, groups)
    -> ConvModule(attn, out, 1, act=None) -> attn_act -> bilinear Up``.

    Paper choices (§3.3): ``out = in / 4`` (set by the caller: "we reduce the
    channel sizes of inputs to a fourth in both main and attention
    channels"), ``groups=2`` for the *first* conv of both channels,
    pooling/upsampling ratio 8. The width ``attn`` of the first attention
    conv defaults to ``out`` (the attention channel is reduced to a fourth
    like the main one); ``attn_channels=4`` is the other reading of §3.3
    ("set the channel number of the intermediate fully connected layer of SE
    modules to 4", which names SE modules). See configs/sanet/README.md for
    which reading reproduces Table 6's parameter count.

    Readings the text leaves open (configs/sanet/README.md, readings table):

    * ``pool_type``: the text says "downsample (max pooling)" once while
      Eq. 5 and Fig. 2(c) say average pooling: default ``'avg'`` (the
      equation).
    * ``pool_ratio`` / ``attn_grid``: the paper pools by 8 on 64x64 maps
      (512x512 input, stride 8), an 8x8 attention grid. ``pool_ratio=r``
      pools windows of ``r`` (stride ``r``, ``ceil_mode=True``: a side that
      is not a multiple of ``r`` keeps its border, partial windows average
      their valid pixels); ``attn_grid=g`` (or ``(gh, gw)``) pools to a fixed
      grid of ``min(g, H) x min(g, W)`` cells instead (adaptive pooling:
      cell ``i`` of a side ``H`` covers rows ``floor(i H / g)`` to
      ``ceil((i + 1) H / g)``), i.e. the paper's grid on any map size. One of
      the two; ``pool_ratio`` defaults to 8 when neither is given.
    * ``attn_act``: ``X_attn = Up(sigma(X^_attn))`` (Eq. 4) where Eq. 3 of
      the same paper names ``sigma`` the ReLU and ``Phi`` the sigmoid. The
      default ``'relu'`` is the letter of that notation (an unbounded,
      non-negative ``X_attn``; the default since issue #23, chosen on three
      seeds of the benchmark set, configs/sanet/README.md); ``'sigmoid'`` is
      the gate reading (as in SE, Fig. 2), the default before.
    * ``main_convs``: "group convolution ... for the first convolution
      operations in both main and attention channels" implies a second conv
      in the main channel too; ``2`` adds a 1x1 ConvModule as in the
      attention channel. Default 1: on three seeds of the benchmark set
      ``2`` scored level with it (55.6 against 55.5 mIoU) for more
      parameters (configs/sanet/README.md).

    The block is not residual, so there is no identity (zero) init; convs use
    ConvModule's default (Kaiming) init.

    Args:
        in_channels (int): Channels of ``X_in``.
        out_channels (int): Channels of ``X_res`` / ``X_attn`` / ``X_out``.
        attn_channels (int, optional): Width of the intermediate attention
            conv; None means ``out_channels``. Default: None.
        pool_ratio (int, optional): Down/up-sampling ratio of the attention
            channel; None means 8 unless ``attn_grid`` is given.
            Default: None.
        attn_grid (int | tuple[int, int], optional): Pool to this grid of
            cells instead of by a ratio. Default: None.
        pool_type (str): ``'avg'`` (Eq. 5, default) or ``'max'`` (§3.3 text).
        attn_act (str): ``'relu'`` (default) or ``'sigmoid'`` (above).
        main_convs (int): Convs of the main channel, 1 or 2. Default: 1.
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
                 pool_ratio: Optional[int] = None,
                 attn_grid: Union[int, Tuple[int, int], None] = None,
                 pool_type: str = 'avg',
                 attn_act: str = 'relu',
                 main_convs: int = 1,
                 groups: int = 2,
                 kernel_size: int = 3,
                 align_corners: bool = False,
                 conv_cfg: Optional[ConfigType] = None,
                 norm_cfg: Optional[ConfigType] = dict(type='BN'),
                 act_cfg: Optional[ConfigType] = dict(type='ReLU')):
        super().__init__()
        self._init_main(in_channels, out_channels, groups, kernel_size,
                        main_convs, conv_cfg, norm_cfg, act_cfg)
        self.pool_ratio, self.attn_grid = check_sa_options(
            pool_ratio, attn_grid, pool_type, attn_act)
        if attn_channels is None:
            attn_channels = out_channels
        _check_positive_int('attn_channels', attn_channels)
        if attn_channels % groups:
            raise ValueError(
                f'attn_channels ({attn_channels}) must be divisible by groups '
                f'({groups}); e.g. attn_channels={groups * 2}')
        self.pool_type = pool_type
        self.attn_act = attn_act
        # the attn_grid pooling as a module (no parameters: checkpoint keys unchanged)
        self.grid_pool = None if self.attn_grid is None else (
            GridAvgPool2d if pool_type == 'avg' else GridMaxPool2d)(self.attn_grid)
        self.align_corners = align_corners
        cfgs = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        self.attn = nn.Sequential(
            ConvModule(in_channels, attn_channels, kernel_size,
                       padding=kernel_size // 2, groups=groups,
                       act_cfg=act_cfg, **cfgs),
            ConvModule(attn_channels, out_channels, 1, act_cfg=None, **cfgs))
        self.attn_tap = nn.Identity()  # X_attn, for forward hooks (inspection)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Not-fully-squeezed pooling ``APool`` of Eq. 5."""
        if self.grid_pool is not None:
            return self.grid_pool(x)
        r = self.pool_ratio
        if self.pool_type == 'avg':
            return F.avg_pool2d(x, r, r, ceil_mode=True)
        return F.max_pool2d(x, r, r, ceil_mode=True)

    def attention(self, x: torch.Tensor,
                  size: Tuple[int, int]) -> torch.Tensor:
        """``X_attn = Up(act(F_attn(APool(x))))`` resized to ``size``."""
        a = self.attn(self.pool(x))
        a = torch.sigmoid(a) if self.attn_act == 'sigmoid' else F.relu(a)
        return self.attn_tap(resize(a, size=size, mode='bilinear',
                                    align_corners=self.align_corners))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.main_channel(x)
        attn = self.attention(x, res.shape[2:])
        return attn * res + attn  # Eq. 4


class SqueezeExciteHeadModule(_MainChannel):
    """SE variant for the Table 3 ablation: ``X_out = w * X_res``.

    ``w = sigmoid(W2 relu(W1 GAP(X_in)))`` (Eq. 3) with ``W1: in -> attn``,
    ``W2: attn -> out`` implemented as biased 1x1 convs (= FC layers); §3.3
    sets the intermediate FC width of SE modules to 4.

    Args:
        in_channels (int): Channels of ``X_in``.
        out_channels (int): Channels of ``X_res`` and of the output.
        attn_channels (int, optional): Width of the intermediate FC; None
            means ``out_channels``. Default: 4 (§3.3).
        main_convs (int): Convs of the main channel, 1 or 2 (as the SA
            block). Default: 1.
        groups (int): Groups of the main conv. Default: 2.
        kernel_size (int): Kernel of the main conv. Default: 3.
        conv_cfg, norm_cfg, act_cfg (dict): Passed to ``ConvModule``.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 attn_channels: Optional[int] = 4,
                 main_convs: int = 1,
                 groups: int = 2,
                 kernel_size: int = 3,
                 conv_cfg: Optional[ConfigType] = None,
                 norm_cfg: Optional[ConfigType] = dict(type='BN'),
                 act_cfg: Optional[ConfigType] = dict(type='ReLU')):
        super().__init__()
        self._init_main(in_channels, out_channels, groups, kernel_size,
                        main_convs, conv_cfg, norm_cfg, act_cfg)
        if attn_channels is None:
            attn_channels = out_channels
        _check_positive_int('attn_channels', attn_channels)
        self.fc1 = nn.Conv2d(in_channels, attn_channels, 1)
        self.fc2 = nn.Conv2d(attn_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), True)))))
        return w * self.main_channel(x)


class PlainConvHeadModule(_MainChannel):
    """Plain-conv variant (no re-weighting): ``X_out = X_res``.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        main_convs (int): Convs of the main channel, 1 or 2. Default: 1.
        groups (int): Groups of the conv. Default: 2.
        kernel_size (int): Kernel of the conv. Default: 3.
        conv_cfg, norm_cfg, act_cfg (dict): Passed to ``ConvModule``.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 main_convs: int = 1,
                 groups: int = 2,
                 kernel_size: int = 3,
                 conv_cfg: Optional[ConfigType] = None,
                 norm_cfg: Optional[ConfigType] = dict(type='BN'),
                 act_cfg: Optional[ConfigType] = dict(type='ReLU')):
        super().__init__()
        self._init_main(in_channels, out_channels, groups, kernel_size,
                        main_convs, conv_cfg, norm_cfg, act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main_channel(x)


HEAD_MODULES = dict(
    sa=SqueezeAttentionModule,
    se=SqueezeExciteHeadModule,
    conv=PlainConvHeadModule)

# arguments that only the SA block has, dropped for the ablation variants
_SA_ONLY = ('pool_ratio', 'attn_grid', 'pool_type', 'attn_act',
            'align_corners')
_DROP = dict(se=_SA_ONLY, conv=_SA_ONLY + ('attn_channels', ))


def build_head_module(module_type: str, **kwargs) -> nn.Module:
    """Build ``'sa'`` / ``'se'`` / ``'conv'`` (see module docstring); the
    SA-only arguments are checked, then dropped for the variants that do not
    use them."""
    if module_type not in HEAD_MODULES:
        raise ValueError(f'module_type must be one of {sorted(HEAD_MODULES)} '
                         f"(paper: 'sa'), got {module_type!r}")
    check_sa_options(kwargs.get('pool_ratio'), kwargs.get('attn_grid'),
                     kwargs.get('pool_type', 'avg'),
                     kwargs.get('attn_act', 'relu'))
    for key in _DROP.get(module_type, ()):
        kwargs.pop(key, None)
    return HEAD_MODULES[module_type](**kwargs)


def check_sa_options(pool_ratio, attn_grid, pool_type: str, attn_act: str
                     ) -> Tuple[Optional[int], Optional[Tuple[int, int]]]:
    """Check the SA block's readings; return ``(pool_ratio, attn_grid)`` as
    used: ``(8, None)`` by default, ``(None, (gh, gw))`` with a grid."""
    if pool_type not in POOL_TYPES:
        raise ValueError(
            f"pool_type must be 'avg' (Eq. 5) or 'max' (§3.3 text), got "
            f'{pool_type!r}')
    if attn_act not in ATTN_ACTS:
        raise ValueError(
            f"attn_act must be 'relu' (sigma of Eq. 3-4) or 'sigmoid' (gate), "
            f'got {attn_act!r}')
    if attn_grid is None:
        pool_ratio = 8 if pool_ratio is None else pool_ratio
        _check_positive_int('pool_ratio', pool_ratio)
        return pool_ratio, None
    if pool_ratio is not None:
        raise ValueError(
            f'give the attention pooling either as pool_ratio ({pool_ratio}) '
            f'or as attn_grid ({attn_grid!r}), not both: set pool_ratio=None')
    grid = (attn_grid, attn_grid) if is_int(attn_grid) else attn_grid
    if not isinstance(grid, (tuple, list)) or len(grid) != 2 or any(
            not is_int(g) or g <= 0
            for g in grid):
        raise ValueError(
            'attn_grid must be a positive int g (a g x g grid of attention '
            f'cells, paper: 8) or a pair (gh, gw), got {attn_grid!r}')
    return None, tuple(grid)


def _check_positive_int(name: str, value) -> None:
    if not is_int(value) or value <= 0:
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
