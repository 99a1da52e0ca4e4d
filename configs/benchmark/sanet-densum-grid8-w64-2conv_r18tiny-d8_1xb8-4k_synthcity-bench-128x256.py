# SANet reading (d2) of issue #23, to train on top of (a)+(b)+(c) (sanet-densum-grid8-w64_..., whose comments
# explain the numbers): two convs in the SA main channel, a grouped 3x3 then a 1x1 as in the attention channel
# ("group convolution ... for the first convolution operations in both main and attention channels", §3.3).
# Not chosen: on three seeds (2026-12-02/03) 55.6 +- 0.7 mIoU, level with (a)+(b)+(c)'s 55.5 +- 0.9, for 16.9k
# more head parameters (0.35M on the VOC R101 config), so SAHead keeps main_convs=1 (configs/sanet/README.md).
# the bases of the benchmark SANet (sanet_r18tiny-d8_1xb8-4k_synthcity-bench-128x256.py), not that config
# itself: at most three inheritance levels
_base_ = [
    '../_base_/models/r18tiny-d8_sanet.py', '../_base_/datasets/synthcity-bench_128x256.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_quick_4k.py'
]
custom_imports = dict(imports=['mmseg_ext'], allow_failed_imports=False)
model = dict(
    decode_head=dict(
        den_loss_on='sum',  # (a)
        pool_ratio=None,  # (b): an 8x8 attention grid at every stage
        attn_grid=8,
        min_channels=64,  # (c): SA blocks as wide as the FCN/PSPNet heads of this body
        attn_act='sigmoid',  # as (a)+(b)+(c) was trained (SAHead's default is ReLU since 2026-12-03)
        main_convs=2))  # (d2)
