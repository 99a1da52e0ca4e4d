# Schedule twin of mmseg's nonlocal_net/nonlocal_r101-d8_4xb2-80k_cityscapes-769x769.py, K = 81: crop 769x769
# (mmseg's _base_/datasets/cityscapes_769x769.py: scale (2049, 1025), ratio (0.5, 2.0)), batch 4x2, 80k iters,
# SGD lr 0.01 wd 5e-4, poly 0.9 (mmseg's schedule_80k.py), align_corners=True and a sliding-window test
# (crop 769, stride 513) as every mmseg 769x769 Cityscapes config.
_base_ = [
    './_base_/ssanet_r50-d8.py', 'mmseg::_base_/datasets/cityscapes_769x769.py',
    '../_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_80k.py'
]
crop_size = (769, 769)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained='open-mmlab://resnet101_v1c',
    backbone=dict(depth=101),
    decode_head=dict(align_corners=True),
    auxiliary_head=dict(align_corners=True),
    test_cfg=dict(mode='slide', crop_size=(769, 769), stride=(513, 513)))
