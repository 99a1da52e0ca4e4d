# Copyright (c) mmseg_ext contributors. All rights reserved.
"""SANet decode head: "Squeeze-and-Attention Networks for Semantic
Segmentation", Zhong et al., CVPR 2020 (arXiv:1909.03402)."""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from torch import Tensor

from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from mmseg.utils import ConfigType, OptConfigType, SampleList
from ..utils.head_checks import check_output_mode
from ..utils.sa_module import build_head_module

INFER_MODES = ('den_sa4', 'mask', 'den')
MASK_FUSIONS = ('conv', 'mean', 'deep')


@MODELS.register_module()
class SAHead(BaseDecodeHead):
    """SANet head: one SA block per backbone stage + dense FCN branch.

    Per selected stage ``i`` (``in_index``, paper: the four stages):
    ``F_i = SA_i(x_i)`` with ``in_channels[i] // reduction`` channels, then a
    1x1 conv "adapts the output of the SA head to the class number" (§3.3),
    giving the class map ``Y_SA_i``. The ``Y_SA_i`` are resized to the first
    selected stage and concatenated (``n * K`` channels); from them

    * ``Y_mask`` -> ``L_mask`` (CE, the head's ``loss_decode``, logged as
      ``loss_ce``), formed as ``mask_fusion`` says (below),
    * ``y_cat = FC(GAP(concat))`` -> ``L_cat`` (``loss_cat``, BCE against
      the class frequencies, :class:`CategoricalLoss`),

    and from the last selected stage (stage 4) an FCN branch (``den_num_convs``
    ConvModules of ``channels`` width + ``conv_seg``) gives ``Y_den`` ->
    ``L_den`` (``loss_den``, CE). Total loss ``L_mask + a L_cat + b L_den``
    (Eq. 6) with ``a = 0.2, b = 0.8`` (Fig. 4) as the loss weights.

    How ``Y_mask`` comes from the ``Y_SA_i`` is not written in the paper
    (Fig. 3: the SA heads' outputs are "aggregated" into class-wise masks that
    "are supervised by corresponding categorical regions in ground truth").
    ``mask_fusion`` names the reading:

    * ``'conv'``: a learned 1x1 conv over the concatenated ``Y_SA_i``
      (initialised to their mean); ``L_mask`` on its output;
    * ``'mean'``: the fixed mean of the ``Y_SA_i``; ``L_mask`` on it;
    * ``'deep'``: every ``Y_SA_i`` is supervised by ``L_mask`` (the mean of
      the per-map losses), ``Y_mask`` is their mean.

    Only ``'deep'`` makes ``Y_SA4`` a class map by itself, which the
    inference rule below adds to ``Y_den``, and it is the default: on
    SynthCity (three seeds) it gives the paper's ``Y_den + Y_SA4`` 26.5 +-
    0.2 mIoU against 25.0 +- 0.8 with ``'conv'`` (configs/sanet/README.md).

    Inference (``infer_mode='den_sa4'``, §3.3: "the regularized dense
    segmentation prediction of a SANet is Y_den + Y_SA4"): ``Y_den + Y_SA_n``,
    the dense prediction plus the class map of the *last* SA head, both at
    stage-4 resolution. ``'mask'`` predicts ``Y_mask`` and ``'den'`` ``Y_den``.
    What is summed is a reading (``den_sa4_sum``): ``'logits'`` adds the two
    logit maps; ``'probs'`` adds the two class-probability maps (softmax, or
    sigmoid when ``out_channels=1``), as the paper's hatted ``Y`` are the
    probabilities whose log Eq. 7 takes; the head then returns the log of
    their mean (log-odds when binary), so mmseg's softmax/sigmoid and argmax
    downstream (``predict``, ``--tta``) see that mean.

    Ablations (Tables 1, 3): ``module_type`` ``'sa'``/``'se'``/``'conv'``;
    ``loss_cat=None`` removes the categorical branch; ``loss_den=None``
    removes the dense branch (then ``infer_mode`` must be ``'mask'``).

    ``forward`` returns ``(seg_pred, Y_mask[, Y_den][, y_cat][, Y_SA])``;
    ``seg_pred`` is what ``infer_mode`` selects and is what ``predict`` uses;
    ``Y_SA`` (only with ``mask_fusion='deep'``) stacks the resized
    ``Y_SA_i`` as ``(n, B, K, H, W)``.

    Binary segmentation (``out_channels=1``) needs sigmoid ``loss_decode``
    and ``loss_den``; a softmax one is refused at construction.

    Args:
        module_type (str): ``'sa'`` (paper), ``'se'`` or ``'conv'``.
        reduction (int): Stage ``i``'s block has ``in_channels[i] //
            reduction`` channels (§3.3: "a fourth"). Default: 4.
        attn_channels (int, optional): Width of the first attention conv (SA)
            or of the intermediate FC (SE); None means the block width
            ``in_channels[i] // reduction`` ("a fourth in both main and
            attention channels", §3.3). §3.3 sets the SE modules' FC to 4,
            which the SE ablation configs use. Default: None.
        pool_ratio (int): SA down/up-sampling ratio (§3.3: 8). Default: 8.
        pool_type (str): ``'avg'`` (Eq. 5, default) or ``'max'`` (§3.3 text).
        sa_groups (int): Groups of the first conv of the main and attention
            channels (§3.3: 2). Default: 2.
        sa_kernel_size (int): Kernel of those convs. Default: 3.
        den_num_convs (int): ConvModules of the dense FCN branch before
            ``conv_seg``; 0 classifies stage 4 directly with a 1x1 conv, as
            the paper's "Dilated FCN" (Table 6: 42.6M params = ResNet-101 +
            1x1 classifier); then ``channels`` must equal ``in_channels[-1]``.
            ``den_num_convs=1, channels=512`` is mmseg's FCNHead. Default: 0.
        den_kernel_size (int): Kernel of those convs. Default: 3.
        mask_fusion (str): ``'deep'``, ``'conv'`` or ``'mean'`` (above).
            Default: 'deep'.
        infer_mode (str): ``'den_sa4'`` (paper), ``'mask'`` or ``'den'``.
        den_sa4_sum (str): ``'logits'`` or ``'probs'`` (above). Default:
            'logits'.
        loss_cat (dict, optional): Categorical loss; None disables the branch.
        loss_den (dict, optional): Dense loss; None disables the branch.
    """

    def __init__(self,
                 module_type: str = 'sa',
                 reduction: int = 4,
                 attn_channels: Optional[int] = None,
                 pool_ratio: int = 8,
                 pool_type: str = 'avg',
                 sa_groups: int = 2,
                 sa_kernel_size: int = 3,
                 den_num_convs: int = 0,
                 den_kernel_size: int = 3,
                 mask_fusion: str = 'deep',
                 infer_mode: str = 'den_sa4',
                 den_sa4_sum: str = 'logits',
                 loss_cat: OptConfigType = dict(
                     type='CategoricalLoss', loss_weight=0.2),
                 loss_den: OptConfigType = dict(
                     type='CrossEntropyLoss', use_sigmoid=False,
                     loss_weight=0.8, loss_name='loss_den'),
                 **kwargs):
        self._check_args(kwargs, reduction, pool_ratio, den_num_convs,
                         mask_fusion, infer_mode, loss_den)
        if den_sa4_sum not in ('logits', 'probs'):
            raise ValueError("den_sa4_sum must be 'logits' or 'probs', got "
                             f'{den_sa4_sum!r}')
        use_den, use_cat = loss_den is not None, loss_cat is not None
        override = [dict(name='sa_cls')]  # conv_mask: see init_weights
        override += [dict(name='conv_seg')] if use_den else []
        override += [dict(name='fc_cat')] if use_cat else []
        kwargs.setdefault('init_cfg',
                          dict(type='Normal', std=0.01, override=override))
        super().__init__(input_transform='multiple_select', **kwargs)
        self.mask_fusion = mask_fusion
        self.infer_mode = infer_mode
        self.den_sa4_sum = den_sa4_sum
        n, k = len(self.in_channels), self.out_channels
        self.sa_modules = nn.ModuleList()
        self.sa_cls = nn.ModuleList()
        for c in self.in_channels:
            if c % reduction:
                raise ValueError(f'in_channels {self.in_channels} must be '
                                 f'divisible by reduction={reduction}')
            self.sa_modules.append(build_head_module(
                module_type, in_channels=c, out_channels=c // reduction,
                attn_channels=attn_channels, pool_ratio=pool_ratio,
                pool_type=pool_type, groups=sa_groups,
                kernel_size=sa_kernel_size, align_corners=self.align_corners,
                conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg,
                act_cfg=self.act_cfg))
            self.sa_cls.append(nn.Conv2d(c // reduction, k, 1))
        self.conv_mask = nn.Conv2d(n * k, k, 1) \
            if mask_fusion == 'conv' else None
        self.fc_cat = nn.Linear(n * k, self.num_classes) if use_cat else None
        self.loss_cat = MODELS.build(loss_cat) if use_cat else None
        self.loss_den = MODELS.build(loss_den) if use_den else None
        if use_den:
            self.den_convs = nn.Sequential(*[
                ConvModule(
                    self.in_channels[-1] if i == 0 else self.channels,
                    self.channels, den_kernel_size,
                    padding=den_kernel_size // 2, conv_cfg=self.conv_cfg,
                    norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)
                for i in range(den_num_convs)])
        else:
            self.den_convs = None
            del self.conv_seg  # Y_den is not computed without its loss
        check_output_mode(self, [('loss_den', self.loss_den)])

    def init_weights(self):
        """``init_cfg`` (Normal(0.01) for the classifiers), then ``conv_mask``
        as the mean of the ``Y_SA_i``, so ``L_mask`` reaches every SA block
        from the start instead of through two small random 1x1 convs."""
        super().init_weights()
        if self.conv_mask is None:
            return
        n, k = len(self.in_channels), self.out_channels
        with torch.no_grad():
            weight = torch.eye(k).repeat(1, n) / n  # (k, n * k)
            self.conv_mask.weight.copy_(weight.view(k, n * k, 1, 1))
            self.conv_mask.bias.zero_()

    @staticmethod
    def _check_args(kwargs, reduction, pool_ratio, den_num_convs, mask_fusion,
                    infer_mode, loss_den):
        in_channels, in_index = kwargs.get('in_channels'), kwargs.get(
            'in_index', -1)
        if not isinstance(in_channels, (list, tuple)) or not isinstance(
                in_index, (list, tuple)):
            raise TypeError(
                'SAHead needs one input per SA block: in_channels and '
                'in_index must be lists, e.g. in_channels=[256, 512, 1024, '
                f'2048], in_index=[0, 1, 2, 3]; got in_channels='
                f'{in_channels!r}, in_index={in_index!r}')
        if len(in_channels) != len(in_index) or not in_index:
            raise ValueError(
                f'len(in_channels)={len(in_channels)} must equal '
                f'len(in_index)={len(in_index)} (one SA block per selected '
                'stage; the paper uses 4: in_index=[0, 1, 2, 3])')
        for name, v, low in (('reduction', reduction, 1),
                             ('pool_ratio', pool_ratio, 1),
                             ('den_num_convs', den_num_convs, 0)):
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f'{name} must be an int >= {low}, got {v!r}')
        if den_num_convs == 0 and kwargs.get('channels') != in_channels[-1]:
            raise ValueError(
                'den_num_convs=0 classifies stage 4 directly: set channels='
                f'{in_channels[-1]} (in_channels[-1])')
        if mask_fusion not in MASK_FUSIONS:
            raise ValueError(f'mask_fusion must be one of {MASK_FUSIONS}, '
                             f'got {mask_fusion!r}')
        if infer_mode not in INFER_MODES:
            raise ValueError(f'infer_mode must be one of {INFER_MODES} '
                             f"(paper: 'den_sa4'), got {infer_mode!r}")
        if loss_den is None and infer_mode != 'mask':
            raise ValueError(
                f"infer_mode={infer_mode!r} needs the dense branch; with "
                "loss_den=None set infer_mode='mask'")

    def _forward_feature(self, inputs: List[Tensor]) -> List[Tensor]:
        """Class maps ``Y_SA_i`` of the SA blocks, one per selected stage."""
        drop = self.dropout or nn.Identity()  # None when dropout_ratio=0
        return [
            cls(drop(sa(x)))
            for sa, cls, x in zip(self.sa_modules, self.sa_cls, inputs)
        ]

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        inputs = self._transform_inputs(inputs)
        sa_maps = self._forward_feature(inputs)
        maps = [
            resize(m, size=inputs[0].shape[2:], mode='bilinear',
                   align_corners=self.align_corners) for m in sa_maps
        ]
        concat = torch.cat(maps, dim=1)
        if self.conv_mask is not None:
            mask = self.conv_mask(concat)
        else:
            mask = torch.stack(maps).mean(0)
        outs = [mask]
        den = None
        if self.den_convs is not None:
            den = self.cls_seg(self.den_convs(inputs[-1]))
            outs.append(den)
        if self.fc_cat is not None:
            outs.append(self.fc_cat(concat.mean(dim=(2, 3))))
        if self.mask_fusion == 'deep':
            outs.append(torch.stack(maps))
        if self.infer_mode == 'den_sa4':
            pred = self._den_plus_sa4(
                den, resize(sa_maps[-1], size=den.shape[2:], mode='bilinear',
                            align_corners=self.align_corners))
        else:
            pred = mask if self.infer_mode == 'mask' else den
        return (pred, *outs)

    def _den_plus_sa4(self, den: Tensor, sa4: Tensor) -> Tensor:
        """``Y_den + Y_SA4`` as logits (``den_sa4_sum``, see the class)."""
        if self.den_sa4_sum == 'logits':
            return den + sa4
        # probabilities in fp32 at least (fp16/bf16 logits under AMP)
        dt = torch.promote_types(den.dtype, torch.float32)
        den, sa4, out_dtype = den.to(dt), sa4.to(dt), den.dtype
        if self.out_channels == 1:  # log-odds of the mean probability
            p = (torch.sigmoid(den) + torch.sigmoid(sa4)) / 2
            return (torch.log(p) - torch.log1p(-p)).to(out_dtype)
        p = (den.softmax(1) + sa4.softmax(1)) / 2
        return torch.log(p).to(out_dtype)

    def predict(self, inputs: Tuple[Tensor], batch_img_metas: List[dict],
                test_cfg: ConfigType) -> Tensor:
        """Segment with ``seg_pred`` (``Y_den + Y_SA4`` by default)."""
        return self.predict_by_feat(self.forward(inputs)[0], batch_img_metas)

    def loss_by_feat(self, seg_logits: Tuple[Tensor, ...],
                     batch_data_samples: SampleList) -> dict:
        """``L_mask`` (``loss_decode`` names, e.g. ``loss_ce``, and
        ``acc_seg``) on ``Y_mask`` (``mask_fusion='deep'``: the mean of the
        losses of every ``Y_SA_i``), plus ``loss_den`` and ``loss_cat``."""
        outs = list(seg_logits[1:])
        mask = outs.pop(0)
        den = outs.pop(0) if self.loss_den is not None else None
        cat = outs.pop(0) if self.loss_cat is not None else None
        if self.mask_fusion == 'deep':
            # the n maps as one batch of n * B against the labels repeated n
            # times: mmseg's CE averages over all pixels, i.e. the mean of
            # the n per-map losses (maps of one size, avg_non_ignore or not)
            maps = outs.pop(0)
            losses = super().loss_by_feat(
                maps.flatten(0, 1), list(batch_data_samples) * len(maps))
        else:
            losses = super().loss_by_feat(mask, batch_data_samples)
        seg_label = self._stack_batch_gt(batch_data_samples).squeeze(1)
        if den is not None:
            den = resize(den, size=seg_label.shape[1:], mode='bilinear',
                         align_corners=self.align_corners)
            losses[self.loss_den.loss_name] = self.loss_den(
                den, seg_label, ignore_index=self.ignore_index)
        if cat is not None:
            losses[self.loss_cat.loss_name] = self.loss_cat(
                cat, seg_label, ignore_index=self.ignore_index)
        return losses
