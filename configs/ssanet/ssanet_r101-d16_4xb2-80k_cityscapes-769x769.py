# Paper recipe (arXiv:2109.01915 §3.3, §4.1) for Cityscapes, ResNet-101, K = 81 (Table 3 model), with the
# crop implied by footnote 1: "N is 2401 for an input feature map of spatial size 49x49 when evaluating on
# cityscapes", and 49 = (769 - 1) / 16 + 1 is the output-stride-16 map of a 769x769 crop (a 512x1024 crop
# gives 32x64). So the data pipeline, crop and sliding-window test are those of mmseg's 769x769 Cityscapes
# configs (see the twin, ssanet_r101-d8_4xb2-80k_cityscapes-769x769.py): windows of 769x769, stride 513.
# Differences from the twin, as in ssanet_r101-d16_4xb2-80k_cityscapes-512x1024.py:
#  * output stride 16: "we remove the last downsampling operation in the backbones and utilize dilated
#    convolutions in the last stage" (§3.3);
#  * SGD lr 0.005, momentum 0.9, weight decay 1e-4, poly power 0.9 to zero (§4.1);
#  * no auxiliary FCN head (the paper mentions none).
# Not stated in the paper, kept from the twin: batch 4x2, 80k iterations, align_corners=True.
# Table 3 (81.8, Cityscapes test) is multi-scale: `--tta` runs mmseg's Cityscapes multi-scale + flip test
# (the paper gives no scales).
_base_ = './ssanet_r101-d8_4xb2-80k_cityscapes-769x769.py'
model = dict(
    backbone=dict(dilations=(1, 1, 1, 2), strides=(1, 2, 2, 1)),  # output stride 16
    auxiliary_head=None)
optimizer = dict(type='SGD', lr=0.005, momentum=0.9, weight_decay=0.0001)  # §4.1
optim_wrapper = dict(type='OptimWrapper', optimizer=optimizer, clip_grad=None)
param_scheduler = [
    # "poly": lr * (1 - iter / max_iter) ** 0.9 (§4.1), i.e. down to 0
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=80000, by_epoch=False)
]
