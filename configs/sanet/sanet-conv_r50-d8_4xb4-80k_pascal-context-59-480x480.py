# SANet R50-d8 on Pascal Context 59 (no background): schedule twin of mmseg
# `pspnet_r50-d8_4xb4-80k_pascal-context-59-480x480.py` (same crop, batch, iterations, optimizer and
# poly schedule; checked with mmengine.Config.fromfile).
# Ablation (Table 3): plain conv blocks instead of SA blocks (no
# re-weighting); losses unchanged.
_base_ = [
    './_base_/sanet_r50-d8.py',
    'mmseg::_base_/datasets/pascal_context_59.py',
    '../_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py'
]
crop_size = (480, 480)  # as the twin
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(num_classes=59, module_type='conv'),
    test_cfg=dict(mode='slide', crop_size=(480, 480), stride=(320, 320)))
optimizer = dict(type='SGD', lr=0.004, momentum=0.9, weight_decay=0.0001)
optim_wrapper = dict(type='OptimWrapper', optimizer=optimizer, clip_grad=None)
