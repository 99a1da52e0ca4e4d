# SANet reading (d1) of issue #23, to train on top of (a)+(b)+(c) (sanet-densum-grid8-w64_..., whose comments
# explain the numbers): X_attn = Up(ReLU(X^_attn)), Eq. 4 read with the paper's own notation (Eq. 3: sigma is the
# ReLU, Phi the sigmoid). If (a) alone beats (a)+(b)+(c), train this switch on top of sanet-densum_... instead
# (learning_check.py --cfg-options model.decode_head.attn_act=relu --tag relu). Chosen on three seeds: since
# 2026-12-03 this is the model of the benchmark SANet (sanet_...py: SAHead's defaults + the base model).
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
        attn_act='relu'))  # (d1)
