"""SSANet decode head (Liu & Yin, "Sparse Spatial Attention Network for Semantic Segmentation",
arXiv:2109.01915, §3.3)."""
import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.utils import resize
from mmseg.registry import MODELS

from ..utils.batch_norm_check import explain_single_value_batch_norm
from ..utils.head_checks import check_bool, check_output_mode, check_positive_int
from ..utils.snl_block import SparseNonLocal2d


def _is_pair(value) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2


@MODELS.register_module()
class SNLHead(BaseDecodeHead):
    """Sparse Spatial Attention Network (SSANet) head.

    3x3 conv reducing the last-stage features to ``channels`` (512 for ResNet-101, 256 for
    MobileNetV2), the sparse non-local block on the reduced features
    (:class:`~mmseg_ext.models.utils.SparseNonLocal2d`), a global-average-pooling branch
    concatenated to its output, and a simple decoder: upsample, concatenate with reduced
    low-level features, two 3x3 convs, then the 1x1 classifier ``conv_seg``.

    Inputs: with ``use_decoder=True`` the head takes two backbone levels,
    ``in_index=(low, high)`` and ``in_channels=(c_low, c_high)`` (``input_transform`` defaults to
    ``'multiple_select'``); with ``use_decoder=False`` a single int ``in_index``/``in_channels``.
    The paper's "low-level features from stage 2" are read as ResNet's ``conv2_x`` (the first
    residual stage, stride 4, as in DeepLabV3+ [3] which the paper follows), i.e. mmseg's
    0-based ``in_index=0`` (256 channels for ResNet, 24 for MobileNetV2 with
    ``out_indices=(1, 2, 4, 6)``); the other reading (second residual stage, stride 8) is
    ``in_index=(1, 3)``.

    Choices where the paper is silent (all overridable):

    * GP branch: ``AdaptiveAvgPool2d(1)`` of the reduced features, 1x1 ConvModule to
      ``channels`` (DeepLabV3's image-level feature), broadcast and concatenated to the SNL
      output. Without a decoder, a 3x3 ConvModule fuses the ``2 * channels`` back to
      ``channels`` for ``conv_seg``; with a decoder, the first decoder conv does it.
    * Decoder: low-level features reduced by a 1x1 ConvModule to ``low_channels=48``
      (DeepLabV3+), both decoder convs output ``channels``; upsampling is bilinear.

    Args:
        kernel_size (int | tuple[int, int]): SNL sampling grid (kh, kw), K = kh * kw. Paper:
            9 (K=81) on Cityscapes, 7 (K=49) on Pascal Context / ADE20K (§4.3). Default: 9.
        dilation (int): spacing of the initial SNL grid. Default: 1.
        reduction (int): SNL query/key channels are ``channels // reduction``. Default: 2.
        use_scale (bool): scale SNL logits by ``1/sqrt(channels // reduction)``; Eq. 6 has no
            scaling. Default: False.
        zero_init_snl (bool): zero-init the SNL output conv so the block starts as the
            identity. Default: True.
        use_gp (bool): add the global-average-pooling branch (Table 1 "+ GP"). Default: True.
        use_decoder (bool): add the low-level decoder (Table 1 "+ Decoder"). Default: True.
        low_channels (int): channels of the reduced low-level features. Default: 48.
        backend (str): implementation of the SNL op: ``'auto'`` (Triton on CUDA, the chunked
            sparse path on CPU), ``'triton'``, ``'sparse'``, ``'mmcv'`` (mmcv's CUDA MSDA
            for the values) or ``'export'`` (ONNX-exportable operators, used automatically
            while exporting); see :mod:`mmseg_ext.ops.sparse_nonlocal`. Default: 'auto'.
        allow_large_kernel (bool): accept SNL grids larger than 15 per side (``kernel_size=99``
            would mean K=9801; the paper's K=99 is ``(9, 11)``). Default: False.
    """

    def __init__(self,
                 kernel_size=9,
                 dilation=1,
                 reduction=2,
                 use_scale=False,
                 zero_init_snl=True,
                 use_gp=True,
                 use_decoder=True,
                 low_channels=48,
                 backend='auto',
                 allow_large_kernel=False,
                 **kwargs):
        for name, flag in (('use_gp', use_gp), ('use_decoder', use_decoder),
                           ('use_scale', use_scale), ('zero_init_snl', zero_init_snl),
                           ('allow_large_kernel', allow_large_kernel)):
            check_bool(name, flag, error=TypeError)
        in_channels, in_index = kwargs.get('in_channels'), kwargs.get('in_index', -1)
        if use_decoder:
            kwargs.setdefault('input_transform', 'multiple_select')
            if kwargs['input_transform'] != 'multiple_select':
                raise ValueError("use_decoder=True needs input_transform='multiple_select' "
                                 f"(got {kwargs['input_transform']!r})")
            if not (_is_pair(in_channels) and _is_pair(in_index)):
                raise ValueError(
                    'use_decoder=True needs two inputs, low-level then last stage: '
                    'in_channels=(c_low, c_high) and in_index=(low, high), e.g. '
                    f'in_channels=(256, 2048), in_index=(0, 3); got in_channels={in_channels!r}, '
                    f'in_index={in_index!r} (or set use_decoder=False)')
            check_positive_int('low_channels', low_channels, hint='e.g. 48')
        else:
            if kwargs.get('input_transform') is not None:
                raise ValueError('use_decoder=False takes a single input: leave '
                                 f"input_transform=None (got {kwargs['input_transform']!r})")
            if isinstance(in_channels, (list, tuple)) or isinstance(in_index, (list, tuple)):
                raise ValueError(
                    'use_decoder=False takes a single input: give int in_channels and '
                    f'in_index (e.g. in_channels=2048, in_index=3); got in_channels='
                    f'{in_channels!r}, in_index={in_index!r}')
        super().__init__(**kwargs)
        check_output_mode(self)
        self.use_gp = use_gp
        self.use_decoder = use_decoder
        conv_kw = dict(conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)
        high_channels = self.in_channels[1] if use_decoder else self.in_channels

        self.reduce = ConvModule(high_channels, self.channels, 3, padding=1, **conv_kw)
        self.snl = SparseNonLocal2d(
            self.channels,
            kernel_size=kernel_size,
            dilation=dilation,
            reduction=reduction,
            use_scale=use_scale,
            zero_init_out=zero_init_snl,
            backend=backend,
            allow_large_kernel=allow_large_kernel)
        enc_channels = self.channels
        if use_gp:
            self.gp = nn.Sequential(
                nn.AdaptiveAvgPool2d(1), ConvModule(self.channels, self.channels, 1, **conv_kw))
            enc_channels += self.channels
        if use_decoder:
            self.low_reduce = ConvModule(self.in_channels[0], low_channels, 1, **conv_kw)
            self.fuse = nn.Sequential(
                ConvModule(enc_channels + low_channels, self.channels, 3, padding=1, **conv_kw),
                ConvModule(self.channels, self.channels, 3, padding=1, **conv_kw))
        elif use_gp:
            self.fuse = ConvModule(enc_channels, self.channels, 3, padding=1, **conv_kw)
        else:
            self.fuse = None

    def _forward_feature(self, inputs):
        """Features before ``cls_seg``: (B, channels, H', W'), H'/W' of the low-level input
        with the decoder, else of the last stage."""
        x = self._transform_inputs(inputs)
        if self.use_decoder:
            low, x = x
        feat = self.reduce(x)
        out = self.snl(feat)
        if self.use_gp:
            with explain_single_value_batch_norm('SNLHead: the GP (use_gp) branch'):
                gp = self.gp(feat)
            gp = gp.expand(-1, -1, *out.shape[2:])
            out = torch.cat([out, gp], dim=1)
        if self.use_decoder:
            low = self.low_reduce(low)
            out = resize(
                out,
                size=low.shape[2:],
                mode='bilinear',
                align_corners=self.align_corners)
            out = torch.cat([out, low], dim=1)
        if self.fuse is not None:
            out = self.fuse(out)
        return out

    def forward(self, inputs):
        output = self._forward_feature(inputs)
        output = self.cls_seg(output)
        return output
