# SANet R50-d8 on Pascal Context (60 classes incl. background), the paper recipe (§4.1-4.4):
# SGD, lr 0.001 (Context), batch 16 (= 4 GPUs x 4), poly (power 0.9,
# decayed to 0), 80 epochs = ceil(80 * 4998 images / 16) = 24990 iterations,
# rounded up to 25000 (whole thousands, mmseg naming; 80.03 epochs)
# (4998 training images: §4.2). Weight decay is not stated in
# the paper: 0.0001 = the matching mmseg zoo config. Crop 480x480
# as the mmseg dataset base.
_base_ = [
    './_base_/sanet_r50-d8.py',
    'mmseg::_base_/datasets/pascal_context.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py'
]
crop_size = (480, 480)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(num_classes=60),
    test_cfg=dict(mode='slide', crop_size=(480, 480), stride=(320, 320)))
iters = 25000  # 80 epochs, rounded (see above)
optimizer = dict(type='SGD', lr=0.001, momentum=0.9, weight_decay=0.0001)
optim_wrapper = dict(type='OptimWrapper', optimizer=optimizer, clip_grad=None)
param_scheduler = [
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=iters,
         by_epoch=False)
]
train_dataloader = dict(batch_size=4)  # x 4 GPUs = 16 (§4.1)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters, val_interval=2500)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2500))
