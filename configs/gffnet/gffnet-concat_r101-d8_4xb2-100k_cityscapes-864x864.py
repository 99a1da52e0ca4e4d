# Table 1 "PSPNet + Concat" (78.8): Eq. 2, reduced to 256 channels, two 3x3 convs, no DFP.
# Recipe as gffnet_r101-d8_4xb2-100k_cityscapes-864x864.py (the paper's Cityscapes recipe).
_base_ = [
    './_base_/gffnet_r50-d8.py', './_base_/cityscapes-864x864_paper.py',
    '../_base_/default_runtime.py', './_base_/schedule_paper_100k.py'
]
crop_size = (864, 864)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained='open-mmlab://resnet101_v1c',
    backbone=dict(depth=101),
    decode_head=dict(fusion='concat', use_dfp=False),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(576, 576)))
