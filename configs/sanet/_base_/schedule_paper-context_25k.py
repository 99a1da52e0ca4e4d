# SANet's training recipe for Context (paper §4.1-4.4): SGD momentum 0.9, lr 0.001, poly (power 0.9) decayed
# to 0, batch 16 (set by the config: 4 GPUs x 4), 80 epochs = ceil(80 * 4998 images / 16) = 24990
# iterations, rounded up to 25000 (whole thousands, as mmseg names schedules).
# Weight decay is not stated in the paper: 0.0001 = the matching mmseg zoo config.
optimizer = dict(type='SGD', lr=0.001, momentum=0.9, weight_decay=0.0001)
optim_wrapper = dict(type='OptimWrapper', optimizer=optimizer, clip_grad=None)
param_scheduler = [
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=25000, by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=25000, val_interval=2500)  # validate 10 times
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2500),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
