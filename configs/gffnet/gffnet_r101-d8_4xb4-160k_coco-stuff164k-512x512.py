# Schedule twin of mmseg's pspnet_r101-d8_4xb4-160k_coco-stuff164k-512x512.py (crop 512x512, 4 GPUs
# x 4 images, 160k iters, SGD lr 0.01 / wd 5e-4, poly 0.9 from mmseg's schedule_160k.py).
_base_ = [
    './_base_/gffnet_r50-d8.py', 'mmseg::_base_/datasets/coco-stuff164k.py',
    '../_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_160k.py'
]
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained='open-mmlab://resnet101_v1c',
    backbone=dict(depth=101),
    decode_head=dict(num_classes=171),  # COCO-Stuff 171 classes
    auxiliary_head=dict(num_classes=171))
