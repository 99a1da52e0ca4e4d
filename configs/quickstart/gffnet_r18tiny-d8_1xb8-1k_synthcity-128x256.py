# Quickstart: GFFHead (PSPNet + GFF + DFP) on the embedded SynthCity data, same body and schedule as the
# FCN/PSPNet baselines; its thin poles and signs are what GFF claims to fix.
_base_ = [
    '../_base_/models/r18tiny-d8.py', '../_base_/datasets/synthcity_128x256.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_quick_1k.py'
]
custom_imports = dict(imports=['mmseg_ext'], allow_failed_imports=False)
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
