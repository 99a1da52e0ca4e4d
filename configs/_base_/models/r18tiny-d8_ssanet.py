# The ssanet quickstart/benchmark model: the r18tiny-d8 body (r18tiny-d8.py) with this decode head.
_base_ = ['./r18tiny-d8.py']
model = dict(
    decode_head=dict(
        type='SNLHead',
        in_channels=(16, 128),  # low level = stage 1 (stride 4), high = stage 4, as configs/ssanet
        in_index=(0, 3),
        input_transform='multiple_select',
        channels=64,  # 1/8 of the paper's 512 (§3.3), like the backbone's width ratio
        kernel_size=9,  # K = 81, the paper's Cityscapes setting (§4.2)
        low_channels=12,  # 1/4 of configs/ssanet's 48, like the stage-1 width ratio (16 vs 64)
        dropout_ratio=0.1,
        num_classes=19,
        norm_cfg=_base_.norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)))
