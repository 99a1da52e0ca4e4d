# Schedule twin of mmseg's deeplabv3plus/deeplabv3plus_r101-d8_4xb4-80k_pascal-context-59-480x480.py
# (mmseg has no NonLocalNet Pascal Context config; DeepLabV3+ is the closest head with a
# low-level decoder). Crop 480x480 as in the paper (§4.3), batch 4x4, 80k iters,
# SGD lr 0.004 wd 1e-4, poly 0.9, sliding-window test 480/320.
_base_ = [
    './_base_/ssanet_r50-d8.py', 'mmseg::_base_/datasets/pascal_context_59.py',
    '../_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_80k.py'
]
crop_size = (480, 480)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained='open-mmlab://resnet101_v1c',
    backbone=dict(depth=101),
    decode_head=dict(num_classes=59, kernel_size=7),  # K = 49 on Pascal Context (§4.3)
    auxiliary_head=dict(num_classes=59),
    test_cfg=dict(mode='slide', crop_size=(480, 480), stride=(320, 320)))
optimizer = dict(type='SGD', lr=0.004, momentum=0.9, weight_decay=0.0001)  # twin's values
optim_wrapper = dict(type='OptimWrapper', optimizer=optimizer)
