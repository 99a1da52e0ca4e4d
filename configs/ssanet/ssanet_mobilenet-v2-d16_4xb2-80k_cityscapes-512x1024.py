# Paper recipe (arXiv:2109.01915 §3.3, §4.1) for Cityscapes, MobileNetV2, K = 81, GP + decoder:
# the last row of Table 1 (75.85 mIoU, val, single scale).
# Differences from the d8 twin (ssanet_mobilenet-v2-d8_4xb2-80k_cityscapes-512x1024.py):
#  * output stride 16: the last downsampling (layer6) removed, layers 6-7 dilated by 2 (§3.3);
#  * SGD lr 0.005, momentum 0.9, weight decay 1e-4, poly power 0.9 to zero (§4.1);
#  * no auxiliary FCN head (the paper mentions none).
# Not stated in the paper, kept from the twin: crop 512x1024, batch 4x2, 80k iterations.
_base_ = './ssanet_mobilenet-v2-d8_4xb2-80k_cityscapes-512x1024.py'
model = dict(
    backbone=dict(strides=(1, 2, 2, 2, 1, 1, 1), dilations=(1, 1, 1, 1, 1, 2, 2)),
    auxiliary_head=None)
optimizer = dict(type='SGD', lr=0.005, momentum=0.9, weight_decay=0.0001)  # §4.1
optim_wrapper = dict(type='OptimWrapper', optimizer=optimizer, clip_grad=None)
param_scheduler = [
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=80000, by_epoch=False)  # §4.1
]
