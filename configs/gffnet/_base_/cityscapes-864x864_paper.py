# The paper's Cityscapes data recipe ("Implementation Details") on top of mmseg's cityscapes.py:
# crop 864x864, mini-batch 8 (4 GPUs x 2 images), random scaling in [0.75, 2] (mmseg: [0.5, 2]),
# flipping, cropping and colour jittering. "random color jittering within the range of [-10, 10]"
# is read as a brightness delta of 10 (mmseg's PhotoMetricDistortion default is 32).
_base_ = ['mmseg::_base_/datasets/cityscapes.py']
crop_size = (864, 864)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize',
        scale=(2048, 1024),  # Cityscapes full resolution, as mmseg's cityscapes.py
        ratio_range=(0.75, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),  # mmseg default
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion', brightness_delta=10),
    dict(type='PackSegInputs')
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))
