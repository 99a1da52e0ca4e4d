# SANet R50-d8 on Cityscapes: schedule twin of mmseg
# `pspnet_r50-d8_4xb2-80k_cityscapes-512x1024.py` (same crop, batch, iterations, optimizer and
# poly schedule; checked with mmengine.Config.fromfile).
_base_ = [
    './_base_/sanet_r50-d8.py',
    'mmseg::_base_/datasets/cityscapes.py',
    '../_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py'
]
crop_size = (512, 1024)  # as the twin
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(num_classes=19))
