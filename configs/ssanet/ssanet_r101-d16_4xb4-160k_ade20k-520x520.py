# Paper recipe (arXiv:2109.01915 §4.1, §4.3) for ADE20K, ResNet-101, K = 49, crop 520x520
# (Table 4: 45.50 mIoU, val, multi-scale testing).
# Differences from the twin (ssanet_r101-d8_4xb4-160k_ade20k-512x512.py):
#  * crop 520x520 instead of 512x512 (§4.3);
#  * output stride 16 (§3.3); SGD lr 0.005 (twin: 0.01), momentum 0.9, weight decay 1e-4
#    (twin: 5e-4), poly power 0.9 to zero (§4.1); no auxiliary FCN head (the paper mentions none).
# Not stated in the paper, kept from the twin: batch 4x4, 160k iterations, resize scale.
_base_ = './ssanet_r101-d8_4xb4-160k_ade20k-512x512.py'
crop_size = (520, 520)  # §4.3
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(dilations=(1, 1, 1, 2), strides=(1, 2, 2, 1)),  # output stride 16
    auxiliary_head=None)
# mmseg's _base_/datasets/ade20k.py train pipeline with the 520x520 crop
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(
        type='RandomResize',
        scale=(2048, 512),
        ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
optimizer = dict(type='SGD', lr=0.005, momentum=0.9, weight_decay=0.0001)  # §4.1
optim_wrapper = dict(type='OptimWrapper', optimizer=optimizer, clip_grad=None)
param_scheduler = [
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=160000, by_epoch=False)  # §4.1
]
