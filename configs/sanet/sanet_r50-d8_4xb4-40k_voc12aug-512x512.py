# SANet R50-d8 on Pascal VOC 2012 + aug: schedule twin of mmseg
# `pspnet_r50-d8_4xb4-40k_voc12aug-512x512.py` (same crop, batch, iterations, optimizer and
# poly schedule; checked with mmengine.Config.fromfile).
_base_ = [
    './_base_/sanet_r50-d8.py',
    'mmseg::_base_/datasets/pascal_voc12_aug.py',
    '../_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py'
]
crop_size = (512, 512)  # as the twin
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(num_classes=21))
