# Schedule twin of mmseg's mobilenet_v2/mobilenet-v2-d8_fcn_4xb2-80k_cityscapes-512x1024.py
# (crop 512x1024, batch 4x2, 80k iters, SGD lr 0.01 wd 5e-4, poly 0.9), K = 81 (§4.2).
_base_ = [
    './_base_/ssanet_mobilenet-v2-d8.py', 'mmseg::_base_/datasets/cityscapes.py',
    '../_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_80k.py'
]
crop_size = (512, 1024)
data_preprocessor = dict(size=crop_size)
model = dict(data_preprocessor=data_preprocessor)
