# GFFNet R50 with the paper's recipe for Pascal Context 59 ("Implementation Details"): crop 512x512
# (zero padding where an image is smaller), mini-batch 16 (4 GPUs x 4), 150k iters, SGD lr 1e-3,
# wd 1e-4, poly 0.9, random scaling [0.75, 2] (mmseg: [0.5, 2]), flip, crop, colour jitter +-10.
_base_ = [
    './_base_/gffnet_r50-d8.py', 'mmseg::_base_/datasets/pascal_context_59.py',
    '../_base_/default_runtime.py', './_base_/schedule_paper_150k.py'
]
crop_size = (512, 512)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(
        type='RandomResize',
        scale=(520, 520),  # as mmseg's pascal_context_59.py
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
    decode_head=dict(num_classes=59),  # Pascal Context 59 classes
    # slide testing as mmseg's Pascal Context configs (stride 2/3 of the crop)
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)),
    auxiliary_head=dict(num_classes=59))
