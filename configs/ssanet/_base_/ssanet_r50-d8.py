# SSANet (arXiv:2109.01915) model base: ResNetV1c-50-D8 + SNLHead.
# Backbone, data preprocessor and auxiliary head are copied from mmseg's
# `_base_/models/nonlocal_r50-d8.py` so the configs here are one-to-one twins of NonLocalNet's.
custom_imports = dict(imports=['mmseg_ext'], allow_failed_imports=False)
norm_cfg = dict(type='SyncBN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],  # ImageNet statistics (mmseg default)
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    pretrained='open-mmlab://resnet50_v1c',
    backbone=dict(
        type='ResNetV1c',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        dilations=(1, 1, 2, 4),  # output stride 8 (as nonlocal_r50-d8)
        strides=(1, 2, 1, 1),
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch',
        contract_dilation=True),
    decode_head=dict(
        type='SNLHead',
        # low-level = ResNet conv2_x (mmseg stage index 0, stride 4, 256 ch): the paper's
        # "stage 2" (§3.3); high = last stage (index 3, 2048 ch).
        in_channels=(256, 2048),
        in_index=(0, 3),
        input_transform='multiple_select',
        channels=512,  # §3.3: "reduce the number of channels to 512" (ResNet)
        kernel_size=9,  # K = 9x9 = 81 sampled keys (§4.2, Table 1; footnote 1)
        dilation=1,  # initial sampling on the neighbouring locations (§3.2)
        reduction=2,  # query/key have C/2 channels (§3.1)
        use_scale=False,  # Eq. 6: no 1/sqrt(C) scaling
        use_gp=True,  # global average pooling branch (§3.3, Table 1)
        use_decoder=True,  # simple decoder with low-level features (§3.3, Table 1)
        low_channels=48,  # not stated in the paper; DeepLabV3+ value
        # SNL op implementation: 'auto' = Triton kernels on CUDA, the sparse path on CPU;
        # also 'triton', 'sparse', 'mmcv' (mmseg_ext/ops/sparse_nonlocal/__init__.py)
        backend='auto',
        dropout_ratio=0.1,  # mmseg default (nonlocal_r50-d8)
        num_classes=19,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=1024,
        in_index=2,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=19,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
