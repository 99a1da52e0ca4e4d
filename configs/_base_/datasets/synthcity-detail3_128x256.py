# The benchmark variant of SynthCity: the same scenes as the quickstart data with the small things drawn
# 3x larger (--detail-scale 3: poles 3-9 px wide, i.e. 0.4-1.1 feature pixels at output stride 8, closer
# to Cityscapes' 5-20 px poles at 1/8 of 1024x2048; see mmseg_ext/datasets/synthcity.py and issue #13).
# Generate it with
#   python tools/dataset_converters/synthcity.py data/synthcity-detail3 --detail-scale 3
# The location can be overridden with the environment variable SYNTHCITY_DETAIL3_ROOT.
_base_ = ['./synthcity_128x256.py']

data_root = '{{$SYNTHCITY_DETAIL3_ROOT:data/synthcity-detail3}}'
# detail_scale=3: SynthCityDataset refuses data generated with another --detail-scale
train_dataloader = dict(dataset=dict(data_root=data_root, detail_scale=3))
val_dataloader = dict(dataset=dict(data_root=data_root, detail_scale=3))
test_dataloader = val_dataloader
