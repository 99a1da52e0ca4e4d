# The benchmark variant of SynthCity (issue #13; mmseg_ext/datasets/synthcity.py): the quickstart's
# scenes with the small things drawn 3x larger (--detail-scale 3: poles 3-9 px wide, i.e. 0.4-1.1 feature
# pixels at output stride 8, closer to Cityscapes' 5-20 px poles at 1/8 of 1024x2048) and two more
# pedestrians per scene (--extra-pedestrians 2: at scale 3 alone FCN learnt every thin class in 4k
# iterations but no pedestrian; docs/learning_check.md). Generate it with
#   python tools/dataset_converters/synthcity.py data/synthcity-bench --detail-scale 3 --extra-pedestrians 2
# The location can be overridden with the environment variable SYNTHCITY_BENCH_ROOT.
_base_ = ['./synthcity_128x256.py']

data_root = '{{$SYNTHCITY_BENCH_ROOT:data/synthcity-bench}}'
# SynthCityDataset refuses data generated with other settings (its synthcity.json)
generator = dict(detail_scale=3, extra_pedestrians=2)
train_dataloader = dict(dataset=dict(data_root=data_root, **generator))
val_dataloader = dict(dataset=dict(data_root=data_root, **generator))
test_dataloader = dict(dataset=dict(data_root=data_root, **generator))  # its test split
