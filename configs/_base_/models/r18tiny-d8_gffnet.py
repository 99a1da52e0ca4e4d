# The gffnet quickstart/benchmark model: the r18tiny-d8 body (r18tiny-d8.py) with this decode head.
_base_ = ['./r18tiny-d8.py']
model = dict(
    decode_head=dict(
        type='GFFHead',
        in_channels=[16, 32, 64, 128],  # the four r18tiny stages
        in_index=[0, 1, 2, 3],
        channels=64,  # = the PSPNet quickstart's width
        fusion_channels=32,  # 1/8 of the paper's 256, like the backbone's width ratio
        pool_scales=(1, 2, 3, 6),  # as PSPNet
        dropout_ratio=0.1,
        num_classes=19,
        norm_cfg=_base_.norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)))
