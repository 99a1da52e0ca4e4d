# Schedule twin of mmseg's pspnet_r50-d8_4xb4-80k_pascal-context-59-480x480.py
# (crop 480x480, 4 GPUs x 4 images, 80k iters, SGD lr 0.004 / wd 1e-4, poly 0.9, slide test 480/320
# as in that config).
_base_ = [
    './_base_/gffnet_r50-d8.py', 'mmseg::_base_/datasets/pascal_context_59.py',
    '../_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_80k.py'
]
crop_size = (480, 480)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(num_classes=59),  # Pascal Context 59 classes
    auxiliary_head=dict(num_classes=59),
    test_cfg=dict(mode='slide', crop_size=(480, 480), stride=(320, 320)))
optimizer = dict(type='SGD', lr=0.004, momentum=0.9, weight_decay=0.0001)
optim_wrapper = dict(type='OptimWrapper', optimizer=optimizer, clip_grad=None)
