# GFFNet R101 with the paper's recipe for COCO-Stuff ("Implementation Details"): crop 512x512
# (zero padding where an image is smaller), mini-batch 16 (4 GPUs x 4), 150k iters, SGD lr 1e-3,
# wd 1e-4, poly 0.9, random scaling [0.75, 2] (mmseg: [0.5, 2]), flip, crop, colour jitter +-10.
_base_ = [
    './_base_/gffnet_r50-d8.py', 'mmseg::_base_/datasets/coco-stuff164k.py',
    '../_base_/default_runtime.py', './_base_/schedule_paper_150k.py'
]
crop_size = (512, 512)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize',
        scale=(2048, 512),  # as mmseg's coco-stuff164k.py
        ratio_range=(0.75, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion', brightness_delta=10),
    dict(type='PackSegInputs')
]
train_dataloader = dict(batch_size=4, dataset=dict(pipeline=train_pipeline))
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained='open-mmlab://resnet101_v1c',
    backbone=dict(depth=101),
    decode_head=dict(num_classes=171),  # COCO-Stuff classes
    auxiliary_head=dict(num_classes=171))
