# Copyright (c) mmseg_ext contributors. All rights reserved.
"""SANet decode head: "Squeeze-and-Attention Networks for Semantic
Segmentation", Zhong et al., CVPR 2020 (arXiv:1909.03402)."""
import math
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from mmseg.utils import ConfigType, OptConfigType, SampleList
from torch import Tensor

from ..utils.head_checks import check_choice, check_int, check_output_mode
from ..utils.sa_module import SAOptions, head_module_factory

INFER_MODES = ('den_sa4', 'sa4', 'mask', 'den')
MASK_FUSIONS = ('conv', 'mean', 'deep')
DEN_SA4_SUMS = ('logits', 'probs')
DEN_LOSS_ON = ('den', 'sum')


def log_mean_prob(a: Tensor, b: Tensor, binary: bool) -> Tensor:
    """Logits whose softmax (sigmoid when ``binary``) is the mean of the two
    maps' probabilities: ``log((softmax(a) + softmax(b)) / 2)``, or the
    log-odds of ``(sigmoid(a) + sigmoid(b)) / 2`` when binary.

    Computed in log space (``log_softmax`` / ``logsigmoid`` and
    ``logaddexp``), at fp32 at least, so saturated logits stay finite and
    argmax-correct: the naive formula gives ``+inf`` (binary, both maps >= 17
    in fp32) or ``log(0)`` ties and the wrong class (logit gaps >= 104).
    The result is clamped to the finite range of the input dtype (fp16 /
    bf16 under AMP), which moves only classes of probability below
    ``exp(-finfo.max)``.
    """
    dt = torch.promote_types(a.dtype, torch.float32)
    out_dtype = a.dtype
    a, b = a.to(dt), b.to(dt)
    if binary:  # log(2 p) - log(2 (1 - p))
        out = torch.logaddexp(F.logsigmoid(a), F.logsigmoid(b)) - \
            torch.logaddexp(F.logsigmoid(-a), F.logsigmoid(-b))
    else:
        out = torch.logaddexp(a.log_softmax(1), b.log_softmax(1)) - \
            math.log(2)
    big = torch.finfo(out_dtype).max
    return out.clamp(-big, big).to(out_dtype)


def _check_args(kwargs: dict, options: SAOptions, reduction, den_num_convs, min_channels,
                mask_fusion, infer_mode, den_sa4_sum, den_loss_on, loss_den) -> None:
    """Refuse bad SAHead arguments at construction, saying what to set (the SA block's options
    are checked by :class:`SAOptions`)."""
    in_channels, in_index = kwargs.get('in_channels'), kwargs.get('in_index', -1)
    if not isinstance(in_channels, (list, tuple)) or not isinstance(in_index, (list, tuple)):
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
    check_int('reduction', reduction, 1, word='int')
    check_int('den_num_convs', den_num_convs, 0, word='int')
    if min_channels is not None:
        check_int('min_channels', min_channels, 1, word='int')
        if min_channels % options.groups:
            raise ValueError(
                f'min_channels={min_channels} must be divisible by sa_groups='
                f'{options.groups} (the grouped first convs); e.g. min_channels='
                f'{options.groups * -(-min_channels // options.groups)}')
    if den_num_convs == 0 and kwargs.get('channels') != in_channels[-1]:
        raise ValueError(
            'den_num_convs=0 classifies stage 4 directly: set channels='
            f'{in_channels[-1]} (in_channels[-1])')
    check_choice('mask_fusion', mask_fusion, MASK_FUSIONS)
    check_choice('infer_mode', infer_mode, INFER_MODES)
    check_choice('den_sa4_sum', den_sa4_sum, DEN_SA4_SUMS)
    check_choice('den_loss_on', den_loss_on, (None, ) + DEN_LOSS_ON)
    if loss_den is None and infer_mode not in ('mask', 'sa4'):
        raise ValueError(
            f"infer_mode={infer_mode!r} needs the dense branch; with "
            "loss_den=None set infer_mode='mask' or 'sa4'")
    if loss_den is None and den_loss_on == 'sum':
        raise ValueError(
            f'den_loss_on={den_loss_on!r} puts L_den on Y_den + Y_SA4, but '
            "loss_den=None removes L_den: leave den_loss_on unset or give "
            'loss_den')


class SAHeadOutputs(NamedTuple):
    """What :meth:`SAHead.forward` returns and :meth:`SAHead.loss_by_feat` reads, by name.

    A tuple whose first element is the prediction (what ``predict``, ONNX export and
    ``segmentor(mode='tensor')[0]`` use); an output the head's options do not compute is None.
    """
    seg_pred: Tensor  #: what ``infer_mode`` selects
    mask: Tensor  #: ``Y_mask`` at stage-1 resolution
    den: Optional[Tensor]  #: ``Y_den`` (None without ``loss_den``)
    cat: Optional[Tensor]  #: ``y_cat`` logits (B, num_classes) (None without ``loss_cat``)
    sa_maps: Optional[Tensor]  #: the resized ``Y_SA_i`` stacked (n, B, K, H, W), ``'deep'`` only
    sa4: Optional[Tensor]  #: ``Y_SA4`` at stage-4 resolution, ``den_loss_on='sum'`` only


@MODELS.register_module()
class SAHead(BaseDecodeHead):
    """SANet head: one SA block per backbone stage + dense FCN branch.

    Per selected stage ``i`` (``in_index``, paper: the four stages):
    ``F_i = SA_i(x_i)`` with ``in_channels[i] // reduction`` channels (at
    least ``min_channels``), then a
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
    inference rule below adds to ``Y_den``, and it is the default, the
    fusion with which the paper's ``Y_den + Y_SA4`` scores best (chosen on
    SynthCity, see configs/sanet/README.md).

    Inference (``infer_mode='den_sa4'``, §3.3: "the regularized dense
    segmentation prediction of a SANet is Y_den + Y_SA4"): ``Y_den + Y_SA_n``,
    the dense prediction plus the class map of the *last* SA head, both at
    stage-4 resolution. ``'sa4'`` predicts ``Y_SA4`` alone, ``'mask'``
    ``Y_mask`` (with ``'deep'``/``'mean'``: the mean of *all* ``Y_SA_i``,
    at stage-1 resolution) and ``'den'`` ``Y_den``.
    What is summed is a reading (``den_sa4_sum``): ``'logits'`` adds the two
    logit maps; ``'probs'`` adds the two class-probability maps (softmax, or
    sigmoid when ``out_channels=1``), as the paper's hatted ``Y`` are the
    probabilities whose log Eq. 7 takes; the head then returns the log of
    their mean (log-odds when binary), computed in log space so saturated
    logits stay finite (:func:`log_mean_prob`), and mmseg's softmax/sigmoid
    and argmax downstream (``predict``, ``--tta``) see that mean.

    What ``L_den`` (Eq. 9, ``Y^den``) trains is a reading too
    (``den_loss_on``): ``'sum'`` (the default) puts it on the
    predicted sum ``Y_den + Y_SA4`` as ``den_sa4_sum`` forms it (the
    "regularized dense segmentation prediction"), so the map that is
    predicted is the map that is trained; ``'den'`` on ``Y_den``, the dense
    branch alone (an auxiliary loss, "similar to ... deep supervision",
    §3.3). ``'sum'`` was chosen on the benchmark set, see
    configs/sanet/README.md (readings table).

    Width of the SA blocks: ``in_channels[i] // reduction`` ("a fourth"),
    raised to ``min_channels`` when given (a floor for bodies narrower than
    the paper's ResNet, whose blocks have 64-512 channels for 21-60 classes).

    Ablations (Tables 1, 3): ``module_type`` ``'sa'``/``'se'``/``'conv'``;
    ``loss_cat=None`` removes the categorical branch; ``loss_den=None``
    removes the dense branch (then ``infer_mode`` is ``'mask'`` or ``'sa4'``).

    ``forward`` returns :class:`SAHeadOutputs` ``(seg_pred, mask, den, cat,
    sa_maps, sa4)``, None where the options compute nothing; ``seg_pred`` is
    what ``infer_mode`` selects and is what ``predict`` uses.

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
        pool_ratio (int, optional): SA down/up-sampling ratio (§3.3: 8);
            None means 8 unless ``attn_grid`` is given. Default: None.
        attn_grid (int | tuple[int, int], optional): Pool the attention
            channel to this grid of cells instead (the paper's 8 on its
            64x64 maps); one of ``pool_ratio`` / ``attn_grid``.
            Default: None.
        pool_type (str): ``'avg'`` (Eq. 5, default) or ``'max'`` (§3.3 text).
        attn_act (str): ``'relu'`` (default: ``sigma`` of Eq. 4 in the
            paper's notation) or ``'sigmoid'`` (a gate); see
            :class:`SqueezeAttentionModule`.
        main_convs (int): Convs of the SA main channel, 1 (default) or 2.
        min_channels (int, optional): Floor of the SA block width; None: no
            floor. Default: None.
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
        infer_mode (str): ``'den_sa4'`` (paper), ``'sa4'``, ``'mask'`` or
            ``'den'`` (above). Default: 'den_sa4'.
        den_sa4_sum (str): ``'logits'`` or ``'probs'`` (above). Default:
            'logits'.
        den_loss_on (str, optional): ``'sum'`` or ``'den'`` (above); None
            means ``'sum'`` with a dense branch (nothing to place without
            one, ``loss_den=None``). Default: None.
        loss_cat (dict, optional): Categorical loss; None disables the branch.
        loss_den (dict, optional): Dense loss; None disables the branch.
    """

    def __init__(self,
                 module_type: str = 'sa',
                 reduction: int = 4,
                 attn_channels: Optional[int] = SAOptions.attn_channels,
                 pool_ratio: Optional[int] = SAOptions.pool_ratio,
                 attn_grid: Union[int, Tuple[int, int], None] = SAOptions.attn_grid,
                 pool_type: str = SAOptions.pool_type,
                 attn_act: str = SAOptions.attn_act,
                 main_convs: int = SAOptions.main_convs,
                 min_channels: Optional[int] = None,
                 sa_groups: int = SAOptions.groups,
                 sa_kernel_size: int = SAOptions.kernel_size,
                 den_num_convs: int = 0,
                 den_kernel_size: int = 3,
                 mask_fusion: str = 'deep',
                 infer_mode: str = 'den_sa4',
                 den_sa4_sum: str = 'logits',
                 den_loss_on: Optional[str] = None,
                 loss_cat: OptConfigType = dict(
                     type='CategoricalLoss', loss_weight=0.2),
                 loss_den: OptConfigType = dict(
                     type='CrossEntropyLoss', use_sigmoid=False,
                     loss_weight=0.8, loss_name='loss_den'),
                 **kwargs):
        options = SAOptions(
            attn_channels=attn_channels, pool_ratio=pool_ratio, attn_grid=attn_grid,
            pool_type=pool_type, attn_act=attn_act, main_convs=main_convs, groups=sa_groups,
            kernel_size=sa_kernel_size)
        _check_args(kwargs, options, reduction, den_num_convs, min_channels, mask_fusion,
                    infer_mode, den_sa4_sum, den_loss_on, loss_den)
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
        if den_loss_on is None:  # 'sum' with a dense branch; without L_den nothing to put
            den_loss_on = 'sum' if loss_den is not None else 'den'
        self.den_loss_on = den_loss_on
        n, k = len(self.in_channels), self.out_channels
        make_block = head_module_factory(module_type, options, self.align_corners,
                                         self.conv_cfg, self.norm_cfg, self.act_cfg)
        self.sa_modules = nn.ModuleList()
        self.sa_cls = nn.ModuleList()
        for c in self.in_channels:
            if c % reduction:
                raise ValueError(f'in_channels {self.in_channels} must be '
                                 f'divisible by reduction={reduction}')
            width = max(c // reduction, min_channels or 0)
            self.sa_modules.append(make_block(c, width))
            self.sa_cls.append(nn.Conv2d(width, k, 1))
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

    def _forward_feature(self, inputs: List[Tensor]) -> List[Tensor]:
        """Class maps ``Y_SA_i`` of the SA blocks, one per selected stage."""
        drop = self.dropout or nn.Identity()  # None when dropout_ratio=0
        return [
            cls(drop(sa(x)))
            for sa, cls, x in zip(self.sa_modules, self.sa_cls, inputs)
        ]

    def forward(self, inputs: Sequence[Tensor]) -> SAHeadOutputs:
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
        den = None
        if self.den_convs is not None:
            den = self.cls_seg(self.den_convs(inputs[-1]))
        cat = self.fc_cat(concat.mean(dim=(2, 3))) \
            if self.fc_cat is not None else None
        sa4 = sa_maps[-1]  # Y_SA4 at stage-4 resolution (= Y_den's)
        pred = dict(mask=mask, den=den, sa4=sa4).get(self.infer_mode)
        if self.infer_mode == 'den_sa4':
            pred = self._den_plus_sa4(den, sa4)
        return SAHeadOutputs(
            seg_pred=pred, mask=mask, den=den, cat=cat,
            sa_maps=torch.stack(maps) if self.mask_fusion == 'deep' else None,
            sa4=sa4 if self.den_loss_on == 'sum' else None)

    def _den_plus_sa4(self, den: Tensor, sa4: Tensor) -> Tensor:
        """``Y_den + Y_SA4`` as logits (``den_sa4_sum``, see the class)."""
        sa4 = resize(sa4, size=den.shape[2:], mode='bilinear',
                     align_corners=self.align_corners)  # same size: no-op
        if self.den_sa4_sum == 'logits':
            return den + sa4
        return log_mean_prob(den, sa4, binary=self.out_channels == 1)

    def predict(self, inputs: Tuple[Tensor], batch_img_metas: List[dict],
                test_cfg: ConfigType) -> Tensor:
        """Segment with ``seg_pred`` (``Y_den + Y_SA4`` by default)."""
        return self.predict_by_feat(self.forward(inputs)[0], batch_img_metas)

    def loss_by_feat(self, seg_logits: SAHeadOutputs,
                     batch_data_samples: SampleList) -> dict:
        """``L_mask`` (``loss_decode`` names, e.g. ``loss_ce``, and
        ``acc_seg``) on ``Y_mask`` (``mask_fusion='deep'``: the mean of the
        losses of every ``Y_SA_i``), plus ``loss_den`` and ``loss_cat``."""
        outs = SAHeadOutputs(*seg_logits)
        if self.mask_fusion == 'deep':
            # the n maps as one batch of n * B against the labels repeated n
            # times: mmseg's CE averages over all pixels, i.e. the mean of
            # the n per-map losses (maps of one size, avg_non_ignore or not)
            losses = super().loss_by_feat(
                outs.sa_maps.flatten(0, 1),
                list(batch_data_samples) * len(outs.sa_maps))
        else:
            losses = super().loss_by_feat(outs.mask, batch_data_samples)
        seg_label = self._stack_batch_gt(batch_data_samples).squeeze(1)
        den = outs.den
        if self.den_loss_on == 'sum':  # L_den on the prediction Y_den + Y_SA4
            den = self._den_plus_sa4(den, outs.sa4)
        if den is not None:
            den = resize(den, size=seg_label.shape[1:], mode='bilinear',
                         align_corners=self.align_corners)
            losses[self.loss_den.loss_name] = self.loss_den(
                den, seg_label, ignore_index=self.ignore_index)
        if outs.cat is not None:
            losses[self.loss_cat.loss_name] = self.loss_cat(
                outs.cat, seg_label, ignore_index=self.ignore_index)
        return losses
