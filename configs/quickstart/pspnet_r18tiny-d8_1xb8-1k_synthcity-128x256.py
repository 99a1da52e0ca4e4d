# Quickstart baseline: mmseg's stock PSPHead on the embedded SynthCity data, CPU-sized.
_base_ = [
    '../_base_/models/r18tiny-d8.py', '../_base_/datasets/synthcity_128x256.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_quick_1k.py'
]
custom_imports = dict(imports=['mmseg_ext'], allow_failed_imports=False)
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
