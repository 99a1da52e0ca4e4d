# GFFNet R101 with the paper's Cityscapes recipe (Table 2 "PSPNet + GFF + DFP": 81.2 val mIoU):
# crop 864x864, batch 8, 100k iters, SGD lr 1e-3, wd 1e-4, poly 0.9, sliding-window testing.
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
    # "All results are reported by using sliding window crop prediction"; the stride (2/3 of the
    # crop) is not in the paper: it is the ratio of mmseg's 769x769 Cityscapes configs.
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(576, 576)))
