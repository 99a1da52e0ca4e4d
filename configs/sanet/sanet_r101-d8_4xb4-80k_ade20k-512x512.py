# SANet R101-d8 on ADE20K: schedule twin of mmseg
# `pspnet_r101-d8_4xb4-80k_ade20k-512x512.py` (same crop, batch, iterations, optimizer and
# poly schedule; checked with mmengine.Config.fromfile).
_base_ = [
    './_base_/sanet_r101-d8.py',
    'mmseg::_base_/datasets/ade20k.py',
    '../_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py'
]
crop_size = (512, 512)  # as the twin
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(num_classes=150))
