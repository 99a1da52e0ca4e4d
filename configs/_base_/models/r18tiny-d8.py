# The quickstart model body: a ResNet-18-d8 (mmseg's ResNetV1c, dilated like the zoo's *-d8 models) at a
# quarter of the width (base_channels 16 instead of 64), trained from scratch (no weights exist for it; the
# embedded data is simple enough). Stage widths 16/32/64/128 at strides 4/8/8/8. Each quickstart config adds
# its `decode_head`; the auxiliary FCN head on stage 3 (weight 0.4) is the zoo's, scaled down.
norm_cfg = dict(type='BN', requires_grad=True)  # BN: quickstart runs on CPU, single or gloo multi-process
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(
        type='SegDataPreProcessor',
        mean=[123.675, 116.28, 103.53],  # ImageNet statistics, as every mmseg config
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_val=0,
        seg_pad_val=255,
        size=(128, 256)),  # = SynthCity crop size
    pretrained=None,
    backbone=dict(
        type='ResNetV1c',
        depth=18,
        stem_channels=16,
        base_channels=16,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        dilations=(1, 1, 2, 4),  # as mmseg's *-d8 configs
        strides=(1, 2, 1, 1),
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch',
        contract_dilation=True),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=64,  # stage 3 width
        in_index=2,
        channels=32,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=19,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
