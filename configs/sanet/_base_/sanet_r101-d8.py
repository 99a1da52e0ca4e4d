# SANet on a dilated ResNet-101-d8 (mmseg ResNetV1c), as `sanet_r50-d8.py`.
_base_ = ['./sanet_r50-d8.py']
model = dict(
    pretrained='open-mmlab://resnet101_v1c', backbone=dict(depth=101))
