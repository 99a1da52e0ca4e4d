# SANet reading (a) of issue #23, to train: L_den on the predicted sum Y_den + Y_SA4 (the "regularized dense
# segmentation prediction", §3.3) instead of on Y_den alone; everything else as the benchmark SANet
# (sanet_r18tiny-d8_1xb8-4k_synthcity-bench-128x256.py). Readings table: configs/sanet/README.md.
_base_ = ['./sanet_r18tiny-d8_1xb8-4k_synthcity-bench-128x256.py']
model = dict(decode_head=dict(den_loss_on='sum'))
