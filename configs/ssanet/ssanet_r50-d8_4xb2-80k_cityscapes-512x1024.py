# Schedule twin of mmseg's nonlocal_net/nonlocal_r50-d8_4xb2-80k_cityscapes-512x1024.py
# (same crop, batch 4x2, 80k iters, SGD lr 0.01 wd 5e-4, poly 0.9), K = 81 (§4.2).
_base_ = [
    './_base_/ssanet_r50-d8.py', 'mmseg::_base_/datasets/cityscapes.py',
    '../_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_80k.py'
]
crop_size = (512, 1024)
data_preprocessor = dict(size=crop_size)
model = dict(data_preprocessor=data_preprocessor)
