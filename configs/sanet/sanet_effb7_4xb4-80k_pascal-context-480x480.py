# SANet EfficientNet-b7 on Pascal Context (60 classes incl. background): schedule twin of mmseg
# `pspnet_r101-d8_4xb4-80k_pascal-context-480x480.py` (same crop, batch, iterations, optimizer and
# poly schedule; checked with mmengine.Config.fromfile).
# EfficientNet-b7 from mmpretrain (Table 2 "EffNet-b7"). mmpretrain's
# EfficientNet has no dilation option, so its stages keep their strides:
# out_indices=(2, 3, 4, 6) -> 48 ch @1/4, 80 @1/8, 224 @1/16, 2560 @1/32
# (layer 6 is the final 1x1 conv; taking it rather than layer 5 (640 @1/32)
# lets every backbone layer receive a gradient). Y_den + Y_SA4 are therefore
# predicted at 1/32 (ResNet-d8: 1/8); the paper does not say how it adapted
# EfficientNet. ImageNet weights: mmpretrain efficientnet-b7_3rdparty_8xb32-aa_in1k.
_base_ = [
    './_base_/sanet_r50-d8.py',
    'mmseg::_base_/datasets/pascal_context.py',
    '../_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py'
]
crop_size = (480, 480)  # as the twin
data_preprocessor = dict(size=crop_size)
effnet_norm_cfg = dict(type='SyncBN', eps=1e-3, requires_grad=True)  # mmpretrain's BN eps
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmpretrain.EfficientNet',
        arch='b7',
        out_indices=(2, 3, 4, 6),
        norm_cfg=effnet_norm_cfg,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://download.openmmlab.com/mmclassification/v0/efficientnet/efficientnet-b7_3rdparty_8xb32-aa_in1k_20220119-bf03951c.pth',  # noqa
            prefix='backbone.')),
    decode_head=dict(
        num_classes=60,
        in_channels=[48, 80, 224, 2560],
        channels=2560),  # 1x1 dense classifier on the last stage (den_num_convs=0)
    test_cfg=dict(mode='slide', crop_size=(480, 480), stride=(320, 320)))
optimizer = dict(type='SGD', lr=0.004, momentum=0.9, weight_decay=0.0001)
optim_wrapper = dict(type='OptimWrapper', optimizer=optimizer, clip_grad=None)
