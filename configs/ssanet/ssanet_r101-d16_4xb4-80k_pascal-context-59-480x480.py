# Paper recipe (arXiv:2109.01915 §4.1, §4.3) for Pascal Context-59, ResNet-101, K = 49, crop
# 480x480 (Table 4: 54.9 mIoU, val, multi-scale testing).
# Differences from the twin (ssanet_r101-d8_4xb4-80k_pascal-context-59-480x480.py):
#  * output stride 16 (§3.3); SGD lr 0.005 (twin: 0.004), momentum 0.9, weight decay 1e-4,
#    poly power 0.9 to zero (§4.1); no auxiliary FCN head (the paper mentions none).
# Not stated in the paper, kept from the twin: batch 4x4, 80k iterations.
_base_ = './ssanet_r101-d8_4xb4-80k_pascal-context-59-480x480.py'
model = dict(
    backbone=dict(dilations=(1, 1, 1, 2), strides=(1, 2, 2, 1)),  # output stride 16
    auxiliary_head=None)
optimizer = dict(type='SGD', lr=0.005, momentum=0.9, weight_decay=0.0001)  # §4.1
optim_wrapper = dict(type='OptimWrapper', optimizer=optimizer, clip_grad=None)
param_scheduler = [
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=80000, by_epoch=False)  # §4.1
]
