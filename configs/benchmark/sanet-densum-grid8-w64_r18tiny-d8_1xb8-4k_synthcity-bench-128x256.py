# SANet readings (a)+(b)+(c) of issue #23, to train: L_den on Y_den + Y_SA4, the paper's attention grid and SA
# widths no narrower than the other heads of this body, with sigmoid attention (pinned: SAHead's default
# is ReLU since 2026-12-03). Readings table: configs/sanet/README.md.
# the bases of the benchmark SANet (sanet_r18tiny-d8_1xb8-4k_synthcity-bench-128x256.py), not that config
# itself: at most three inheritance levels
_base_ = [
    '../_base_/models/r18tiny-d8_sanet.py', '../_base_/datasets/synthcity-bench_128x256.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_quick_4k.py'
]
custom_imports = dict(imports=['mmseg_ext'], allow_failed_imports=False)
model = dict(
    decode_head=dict(
        den_loss_on='sum',  # (a): L_den on the predicted Y_den + Y_SA4
        # (b): the paper pools its 64x64 stage maps (512x512 input, stride 8) by 8: an 8x8 attention grid. Here
        # the stage-2..4 maps are 16x32 (128x256 crop, stride 8), where pool_ratio=8 leaves 2x4 cells; attn_grid=8
        # pools every stage to 8x8 cells (stage 1, 32x64 at stride 4, too; the paper's stage 1 had 16x16)
        pool_ratio=None,
        attn_grid=8,
        # (c): "a fourth" of 16/32/64/128 channels gives 4/8/16/32 (< 19 classes); 64 = the width of the FCN
        # and PSPNet heads of this body (configs/_base_/models/r18tiny-d8_fcn.py), so all four blocks get 64
        min_channels=64,
        attn_act='sigmoid'))  # the gate reading, SAHead's default until (d1) replaced it
