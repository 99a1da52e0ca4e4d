# SANet reading (a) of issue #23: L_den on the predicted sum Y_den + Y_SA4 (the "regularized dense
# segmentation prediction", §3.3) instead of on Y_den alone; everything else as the benchmark SANet
# before issue #23: pool_ratio=8, SA blocks of a fourth of the stage widths, sigmoid attention (all pinned
# here, as the model these runs trained; since 2026-12-03 the base model and SAHead's defaults are (b), (c)
# and (d1)). Readings table: configs/sanet/README.md.
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
        attn_grid=None,  # pool_ratio=None means 8: the paper's ratio, a 2x4 grid on the 16x32 stage maps
        min_channels=None,  # in_channels // 4: 4/8/16/32 channels
        attn_act='sigmoid'))
