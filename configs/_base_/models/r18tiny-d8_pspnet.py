# The pspnet quickstart/benchmark model: the r18tiny-d8 body (r18tiny-d8.py) with this decode head.
_base_ = ['./r18tiny-d8.py']
model = dict(
    decode_head=dict(
        type='PSPHead',
        in_channels=128,  # stage 4 width of r18tiny
        in_index=3,
        channels=64,  # 1/8 of the zoo's 512, like the backbone's width ratio
        pool_scales=(1, 2, 3, 6),  # as the zoo's PSPNet
        dropout_ratio=0.1,
        num_classes=19,
        norm_cfg=_base_.norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)))
