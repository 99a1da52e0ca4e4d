# SynthCity: the embedded procedural street scenes (mmseg_ext/datasets/synthcity.py) in the Cityscapes
# on-disk layout, read by SynthCityDataset (mmseg's stock CityscapesDataset that says how to generate
# the data when it is missing). Generate it with
#   python tools/dataset_converters/synthcity.py data/synthcity
# The location can be overridden with the environment variable SYNTHCITY_ROOT.
_base_ = ['mmseg::_base_/datasets/cityscapes.py']

dataset_type = 'SynthCityDataset'
data_root = '{{$SYNTHCITY_ROOT:data/synthcity}}'
# (H, W) the data was generated at (--height/--width): SynthCityDataset refuses data of another size
image_size = (128, 256)
crop_size = image_size  # the generator's full image size: whole-scene crops keep the sky cue
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    # scale is (W, H) = the generated size; the ratio range is narrower than Cityscapes' (0.5, 2.0)
    # so that most crops still show the sky, the only cue telling trucks from buses.
    dict(type='RandomResize', scale=(256, 128), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 128), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
img_ratios = [0.75, 1.0, 1.25]
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[[
            dict(type='Resize', scale_factor=r, keep_ratio=True) for r in img_ratios
        ], [
            dict(type='RandomFlip', prob=0., direction='horizontal'),
            dict(type='RandomFlip', prob=1., direction='horizontal')
        ], [dict(type='LoadAnnotations')], [dict(type='PackSegInputs')]])
]
train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    dataset=dict(
        type=dataset_type, data_root=data_root, image_size=image_size, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    dataset=dict(
        type=dataset_type, data_root=data_root, image_size=image_size, pipeline=test_pipeline))
# the held-out test split (--num-test, a random stream of its own): tools/test.py reports it;
# choices (defaults, checkpoints, test-time options) are made on val (docs/learning_check.md)
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        image_size=image_size,
        data_prefix=dict(img_path='leftImg8bit/test', seg_map_path='gtFine/test'),
        pipeline=test_pipeline))
