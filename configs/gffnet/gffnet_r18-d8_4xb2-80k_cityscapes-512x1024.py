# Schedule twin of mmseg's pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py (crop 512x1024, 4 GPUs x 2
# images, 80k iters, SGD lr 0.01 / wd 5e-4, poly 0.9). Paper Table 4, "PSP + GFF + DFP, ResNet18".
_base_ = [
    './_base_/gffnet_r50-d8.py', 'mmseg::_base_/datasets/cityscapes.py',
    '../_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_80k.py'
]
crop_size = (512, 1024)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained='open-mmlab://resnet18_v1c',
    backbone=dict(depth=18),
    # BasicBlock stage widths of ResNet-18; PSP width 128 and aux 64 as in the pspnet_r18 twin.
    # fusion_channels stays 256 ("all feature maps are reduced to 256 channels"; Table 4 gives
    # no other width for ResNet-18).
    decode_head=dict(in_channels=[64, 128, 256, 512], channels=128),
    auxiliary_head=dict(in_channels=256, channels=64))
