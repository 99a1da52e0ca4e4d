# Table 4 "PSP + GFF, ResNet18" (76.6 val mIoU).
# Recipe as gffnet_r101-d8_4xb2-100k_cityscapes-864x864.py (the paper's Cityscapes recipe).
_base_ = [
    './_base_/gffnet_r50-d8.py', './_base_/cityscapes-864x864_paper.py',
    '../_base_/default_runtime.py', './_base_/schedule_paper_100k.py'
]
crop_size = (864, 864)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained='open-mmlab://resnet18_v1c',
    backbone=dict(depth=18),
    decode_head=dict(in_channels=[64, 128, 256, 512], channels=128, use_dfp=False),
    auxiliary_head=dict(in_channels=256, channels=64),  # as mmseg's pspnet_r18-d8 configs
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(576, 576)))
