# 4k-iteration schedule of the SynthCity benchmark set (configs/benchmark/): the quickstart's schedule
# (lr 0.01, SGD 0.9, wd 5e-4, poly 0.9) four times longer (100 epochs of the 320 training images at
# batch 8). The quickstart's 1k iterations learn no thin class (docs/learning_check.md); the learning
# curves there (validation every 500 iterations) are what this length was chosen from.
_base_ = ['./schedule_quick_1k.py']

param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=4000, by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=4000, val_interval=500)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=1000))
