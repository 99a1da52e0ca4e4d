# SANet's training recipe for VOC from ImageNet weights (paper §4.1-4.4, Table 4 "without COCO
# pre-training"): SGD momentum 0.9, lr 0.001, poly (power 0.9) decayed to 0, batch 16 (set by the config:
# 4 GPUs x 4), 80 epochs (§4.4) = ceil(80 * 10582 images / 16) = 52910 iterations, rounded up to 53000
# (whole thousands, as mmseg names schedules).
# lr: §4.1 gives "0.0001" for PASCAL VOC in the same paragraph as "we pretrain models on the COCO dataset.
# Then, we train networks for 50 epochs": that lr belongs to the fine-tuning after COCO pre-training
# (Table 5), not to the 80 epochs on VOC aug from ImageNet weights (Table 4). For those the paper gives no
# lr; 0.001 is the one of EncNet's code, whose sync BN SANet uses (§4.1, [40]): PyTorch-Encoding's
# experiments/segmentation/option.py sets 'pascal_aug': 80 epochs at lr 0.001 and 'pascal_voc': 50 epochs
# at 0.0001 (batch 16), i.e. exactly the paper's 80 / 50 epochs; it is also the paper's Context lr (§4.1).
# Weight decay is not stated in the paper: 0.0005 = the matching mmseg zoo config.
optimizer = dict(type='SGD', lr=0.001, momentum=0.9, weight_decay=0.0005)
optim_wrapper = dict(type='OptimWrapper', optimizer=optimizer, clip_grad=None)
param_scheduler = [
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=53000, by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=53000, val_interval=5300)  # validate 10 times
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=5300),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
