# SANet R101-d8 on Pascal VOC 2012 + aug, the paper recipe (§4.1-4.4):
# SGD, lr 0.001 (from ImageNet weights, see the schedule base), batch 16 (= 4 GPUs x 4), poly (power 0.9,
# decayed to 0), 80 epochs = ceil(80 * 10582 images / 16) = 52910 iterations,
# rounded up to 53000 (whole thousands, mmseg naming; 80.14 epochs)
# (10582 training images: §4.4). Weight decay is not stated in
# the paper: 0.0005 = the matching mmseg zoo config. Crop 512x512
# as the mmseg dataset base.
_base_ = [
    './_base_/sanet_r101-d8.py',
    'mmseg::_base_/datasets/pascal_voc12_aug.py',
    '../_base_/default_runtime.py',
    './_base_/schedule_paper-voc_53k.py'
]
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(num_classes=21))
train_dataloader = dict(batch_size=4)  # x 4 GPUs = 16 (§4.1)
