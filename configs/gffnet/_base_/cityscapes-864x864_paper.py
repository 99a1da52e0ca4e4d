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
# The paper's multi-scale test (Table 2 "+ MS", 81.8): "the final segmentation map is averaged from
# segmentation probability maps with scales {0.75, 1, 1.25, 1.5, 1.75}" (Ablation Study for Improvement
# Strategies); no flipping is mentioned, so unlike mmseg's cityscapes.py (scales 0.5-1.75, with flip) there
# is none. Used by `tools/test.py CONFIG CHECKPOINT --tta`: mmseg's SegTTAModel averages the softmax maps,
# and each scale is predicted with the config's test_cfg (the sliding window).
img_ratios = [0.75, 1.0, 1.25, 1.5, 1.75]
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[[dict(type='Resize', scale_factor=r, keep_ratio=True) for r in img_ratios],
                    [dict(type='LoadAnnotations')], [dict(type='PackSegInputs')]])
]
