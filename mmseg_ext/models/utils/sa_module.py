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
import functools
from dataclasses import dataclass
from typing import Callable, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmseg.models.utils import resize
from mmseg.utils import OptConfigType

from ...utils.checks import is_int
from .head_checks import check_choice, check_int, check_int_in, check_positive_int, refuse


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


@dataclass(frozen=True)
class SAOptions:
    """The options of the SA block and its ablation variants, checked on creation.

    The paper's choices and the readings of what it leaves open are explained in
    :class:`SqueezeAttentionModule`; the defaults here are the defaults of both the block and
    :class:`~mmseg_ext.models.decode_heads.SAHead` (``groups`` and ``kernel_size`` are the head's
    ``sa_groups`` and ``sa_kernel_size``). The ``'se'`` and ``'conv'`` variants ignore the
    SA-only fields (the pooling, ``attn_act``; ``'conv'`` also ``attn_channels``), which are
    checked all the same so that a typo never passes silently.

    Args:
        attn_channels (int, optional): Width of the first attention conv (SA) or of the
            intermediate FC (SE); None means the block width. Default: None.
        pool_ratio (int, optional): Down/up-sampling ratio of the attention channel; None means
            8 unless ``attn_grid`` is given. Default: None.
        attn_grid (int | tuple[int, int], optional): Pool to this grid of cells instead of by a
            ratio. Default: None.
        pool_type (str): ``'avg'`` (Eq. 5) or ``'max'`` (§3.3 text). Default: 'avg'.
        attn_act (str): ``'relu'`` (``sigma`` of Eq. 4) or ``'sigmoid'`` (a gate).
            Default: 'relu'.
        main_convs (int): Convs of the main channel, 1 or 2. Default: 1.
        groups (int): Groups of the first conv of both channels (§3.3: 2). Default: 2.
        kernel_size (int): Kernel of those convs (odd). Default: 3.
    """
    attn_channels: Optional[int] = None
    pool_ratio: Optional[int] = None
    attn_grid: Union[int, Tuple[int, int], None] = None
    pool_type: str = 'avg'
    attn_act: str = 'relu'
    main_convs: int = 1
    groups: int = 2
    kernel_size: int = 3

    def __post_init__(self):
        check_positive_int('groups', self.groups)
        check_positive_int('kernel_size', self.kernel_size)
        if self.kernel_size % 2 == 0:
            raise ValueError(
                f'kernel_size must be odd to keep the spatial size, got '
                f'{self.kernel_size}; e.g. kernel_size=3')
        check_int_in('main_convs', self.main_convs, 1, 2,
                     '1 (one grouped conv) or 2 (grouped conv + 1x1 conv, as the attention '
                     'channel)')
        check_choice('pool_type', self.pool_type, POOL_TYPES,
                     requirement="'avg' (Eq. 5) or 'max' (§3.3 text)")
        check_choice('attn_act', self.attn_act, ATTN_ACTS,
                     requirement="'relu' (sigma of Eq. 3-4) or 'sigmoid' (gate)")
        object.__setattr__(self, '_pooling', _check_pooling(self.pool_ratio, self.attn_grid))
        if self.attn_channels is not None:
            check_positive_int('attn_channels', self.attn_channels)

    @property
    def pooling(self) -> Tuple[Optional[int], Optional[Tuple[int, int]]]:
        """``(pool_ratio, attn_grid)`` as used: ``(8, None)`` by default, ``(None, (gh, gw))``
        with a grid."""
        return self._pooling


def _check_pooling(pool_ratio, attn_grid) -> Tuple[Optional[int], Optional[Tuple[int, int]]]:
    """Check the attention pooling and return it as :attr:`SAOptions.pooling`."""
    if attn_grid is None:
        ratio = 8 if pool_ratio is None else pool_ratio
        return check_int('pool_ratio', ratio, 1, word='int'), None
    if pool_ratio is not None:
        raise ValueError(
            f'give the attention pooling either as pool_ratio ({pool_ratio}) '
            f'or as attn_grid ({attn_grid!r}), not both: set pool_ratio=None')
    grid = (attn_grid, attn_grid) if is_int(attn_grid) else attn_grid
    if not isinstance(grid, (tuple, list)) or len(grid) != 2 or any(
            not is_int(g) or g <= 0 for g in grid):
        refuse('attn_grid', 'a positive int g (a g x g grid of attention cells, paper: 8) '
               'or a pair (gh, gw)', attn_grid)
    return None, tuple(grid)


#: The defaults of the ``'se'`` block built on its own: §3.3 sets the intermediate FC width of
#: SE modules to 4.
SE_OPTIONS = SAOptions(attn_channels=4)


class _MainChannel(nn.Module):
    """The main channel ``X_res`` shared by the three blocks: ``main``
    (``ConvModule(in, out, k, groups)``) and, with ``main_convs=2``,
    ``main2`` (``ConvModule(out, out, 1)``, not grouped: §3.3 groups only
    "the first convolution operations"). ``main_convs=1`` keeps the
    state-dict keys of the one-conv block (``main.*``).

    Args:
        in_channels (int): Channels of ``X_in``.
        out_channels (int): Channels of ``X_res`` and of the output.
        options (SAOptions): ``main_convs``, ``groups`` and ``kernel_size`` are used here.
        conv_cfg, norm_cfg, act_cfg (dict): Passed to ``ConvModule``.
    """

    def __init__(self, in_channels: int, out_channels: int, options: SAOptions = SAOptions(),
                 conv_cfg: OptConfigType = None, norm_cfg: OptConfigType = dict(type='BN'),
                 act_cfg: OptConfigType = dict(type='ReLU')):
        super().__init__()
        groups, k = options.groups, options.kernel_size
        for name, value in (('in_channels', in_channels), ('out_channels', out_channels)):
            check_positive_int(name, value)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f'in_channels ({in_channels}) and out_channels ({out_channels}) '
                f'must be divisible by groups ({groups}); use groups=1 or '
                f'channel counts that are multiples of {groups}')
        cfgs = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.main = ConvModule(in_channels, out_channels, k, padding=k // 2, groups=groups,
                               **cfgs)
        self.main2 = ConvModule(out_channels, out_channels, 1, **cfgs) \
            if options.main_convs == 2 else None

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

    Readings the text leaves open (:class:`SAOptions`; configs/sanet/README.md, readings table):

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
      non-negative ``X_attn``; chosen on the benchmark set, see
      configs/sanet/README.md); ``'sigmoid'`` is the gate reading (as in SE,
      Fig. 2).
    * ``main_convs``: "group convolution ... for the first convolution
      operations in both main and attention channels" implies a second conv
      in the main channel too; ``2`` adds a 1x1 ConvModule as in the
      attention channel. Default 1: ``2`` scored level with it on the
      benchmark set, for more parameters (configs/sanet/README.md).

    The block is not residual, so there is no identity (zero) init; convs use
    ConvModule's default (Kaiming) init.

    Args:
        in_channels (int): Channels of ``X_in``.
        out_channels (int): Channels of ``X_res`` / ``X_attn`` / ``X_out``.
        options (SAOptions): Attention width, pooling, ``attn_act``, ``main_convs``, groups and
            kernel of the first conv of both channels. Default: ``SAOptions()``.
        align_corners (bool): ``align_corners`` of the upsampling.
        conv_cfg, norm_cfg, act_cfg (dict): Passed to ``ConvModule``.
    """

    def __init__(self, in_channels: int, out_channels: int, options: SAOptions = SAOptions(),
                 align_corners: bool = False, conv_cfg: OptConfigType = None,
                 norm_cfg: OptConfigType = dict(type='BN'),
                 act_cfg: OptConfigType = dict(type='ReLU')):
        super().__init__(in_channels, out_channels, options, conv_cfg, norm_cfg, act_cfg)
        self.pool_ratio, self.attn_grid = options.pooling
        groups, k = options.groups, options.kernel_size
        attn_channels = out_channels if options.attn_channels is None else options.attn_channels
        if attn_channels % groups:
            raise ValueError(
                f'attn_channels ({attn_channels}) must be divisible by groups '
                f'({groups}); e.g. attn_channels={groups * 2}')
        self.pool_type = options.pool_type
        self.attn_act = options.attn_act
        # the attn_grid pooling as a module (no parameters: checkpoint keys unchanged)
        self.grid_pool = None if self.attn_grid is None else (
            GridAvgPool2d if self.pool_type == 'avg' else GridMaxPool2d)(self.attn_grid)
        self.align_corners = align_corners
        cfgs = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        self.attn = nn.Sequential(
            ConvModule(in_channels, attn_channels, k, padding=k // 2, groups=groups,
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
    sets the intermediate FC width of SE modules to 4 (:data:`SE_OPTIONS`,
    the default here).

    Args:
        in_channels (int): Channels of ``X_in``.
        out_channels (int): Channels of ``X_res`` and of the output.
        options (SAOptions): ``attn_channels`` is the intermediate FC width (None means
            ``out_channels``); ``main_convs``, ``groups``, ``kernel_size`` shape the main
            channel as in the SA block. Default: :data:`SE_OPTIONS`.
        conv_cfg, norm_cfg, act_cfg (dict): Passed to ``ConvModule``.
    """

    def __init__(self, in_channels: int, out_channels: int, options: SAOptions = SE_OPTIONS,
                 conv_cfg: OptConfigType = None, norm_cfg: OptConfigType = dict(type='BN'),
                 act_cfg: OptConfigType = dict(type='ReLU')):
        super().__init__(in_channels, out_channels, options, conv_cfg, norm_cfg, act_cfg)
        attn_channels = out_channels if options.attn_channels is None else options.attn_channels
        self.fc1 = nn.Conv2d(in_channels, attn_channels, 1)
        self.fc2 = nn.Conv2d(attn_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), True)))))
        return w * self.main_channel(x)


class PlainConvHeadModule(_MainChannel):
    """Plain-conv variant (no re-weighting): ``X_out = X_res``; the arguments are
    :class:`_MainChannel`'s."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main_channel(x)


HEAD_MODULES = dict(
    sa=SqueezeAttentionModule,
    se=SqueezeExciteHeadModule,
    conv=PlainConvHeadModule)


def head_module_factory(module_type: str, options: SAOptions = SAOptions(),
                        align_corners: bool = False, conv_cfg: OptConfigType = None,
                        norm_cfg: OptConfigType = dict(type='BN'),
                        act_cfg: OptConfigType = dict(type='ReLU')
                        ) -> Callable[[int, int], nn.Module]:
    """``make(in_channels, out_channels)`` building the ``'sa'`` / ``'se'`` / ``'conv'`` block
    (see module docstring) with the checked ``options``, one call per stage; ``align_corners``
    is the SA block's only."""
    check_choice('module_type', module_type, sorted(HEAD_MODULES),
                 requirement=f"one of {sorted(HEAD_MODULES)} (paper: 'sa')")
    cfgs = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
    if module_type == 'sa':
        cfgs['align_corners'] = align_corners
    return functools.partial(HEAD_MODULES[module_type], options=options, **cfgs)
