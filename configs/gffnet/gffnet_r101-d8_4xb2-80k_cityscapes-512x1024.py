# Schedule twin of mmseg's pspnet_r101-d8_4xb2-80k_cityscapes-512x1024.py (crop 512x1024, 4 GPUs x 2
# images, 80k iters, SGD lr 0.01 / wd 5e-4, poly 0.9 from mmseg's schedule_80k.py).
_base_ = [
    './_base_/gffnet_r50-d8.py', 'mmseg::_base_/datasets/cityscapes.py',
    '../_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_80k.py'
]
crop_size = (512, 1024)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained='open-mmlab://resnet101_v1c',
    backbone=dict(depth=101))
