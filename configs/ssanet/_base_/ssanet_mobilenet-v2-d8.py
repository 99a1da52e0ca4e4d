# SSANet (arXiv:2109.01915) model base: MobileNetV2-D8 + SNLHead.
# Backbone and auxiliary head as mmseg's `mobilenet_v2/mobilenet-v2-d8_fcn_4xb2-80k_cityscapes-512x1024.py`
# (which inherits `fcn_r101-d8_4xb2-80k_cityscapes-512x1024.py`).
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
    pretrained='mmcls://mobilenet_v2',
    backbone=dict(
        type='MobileNetV2',
        widen_factor=1.,
        strides=(1, 2, 2, 1, 1, 1, 1),  # output stride 8 (mobilenet-v2-d8_fcn)
        dilations=(1, 1, 1, 2, 2, 4, 4),
        # outputs: layer2 (24 ch, stride 4), layer3 (32), layer5 (96), layer7 (320)
        out_indices=(1, 2, 4, 6),
        norm_cfg=norm_cfg),
    decode_head=dict(
        type='SNLHead',
        # low-level = first stride-4 stage (24 ch), the paper's "stage 2" (§3.3; same input
        # as mmseg's mobilenet-v2 DeepLabV3+); high = last stage (320 ch).
        in_channels=(24, 320),
        in_index=(0, 3),
        input_transform='multiple_select',
        channels=256,  # §3.3: "256 in MobileNetV2-based network"
        kernel_size=9,  # K = 81 (§4.2, Table 1)
        dilation=1,  # §3.2
        reduction=2,  # §3.1
        use_scale=False,  # Eq. 6
        use_gp=True,  # Table 1
        use_decoder=True,  # Table 1
        low_channels=48,  # not stated in the paper; DeepLabV3+ value
        # SNL op implementation: 'auto' = Triton kernels on CUDA, the sparse path on CPU;
        # also 'triton', 'sparse', 'mmcv' (mmseg_ext/ops/sparse_nonlocal/__init__.py)
        backend='auto',
        dropout_ratio=0.1,  # mmseg default
        num_classes=19,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=96,  # mobilenet-v2-d8_fcn auxiliary_head
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
