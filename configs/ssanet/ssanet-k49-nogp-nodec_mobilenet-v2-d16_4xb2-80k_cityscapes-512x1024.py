# Table 1 ablation (arXiv:2109.01915 §4.2): "Baseline + SNL", NoS = 49, without the global pooling
# branch and the decoder, MobileNetV2 on Cityscapes (paper: 74.26 mIoU, val, single scale).
# Recipe as ssanet_mobilenet-v2-d16_4xb2-80k_cityscapes-512x1024.py (paper recipe).
_base_ = './ssanet_mobilenet-v2-d16_4xb2-80k_cityscapes-512x1024.py'
model = dict(
    decode_head=dict(
        in_channels=320,  # single input: the last stage
        in_index=3,
        input_transform=None,
        kernel_size=7,  # K = 7 x 7 = 49 (Table 1)
        use_gp=False,
        use_decoder=False))
