# Schedule twin of mmseg's nonlocal_net/nonlocal_r101-d8_4xb4-160k_ade20k-512x512.py
# (crop 512x512, batch 4x4, 160k iters, SGD lr 0.01 wd 5e-4, poly 0.9).
_base_ = [
    './_base_/ssanet_r50-d8.py', 'mmseg::_base_/datasets/ade20k.py',
    '../_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_160k.py'
]
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained='open-mmlab://resnet101_v1c',
    backbone=dict(depth=101),
    decode_head=dict(num_classes=150, kernel_size=7),  # K = 49 on ADE20K (§4.3)
    auxiliary_head=dict(num_classes=150))
