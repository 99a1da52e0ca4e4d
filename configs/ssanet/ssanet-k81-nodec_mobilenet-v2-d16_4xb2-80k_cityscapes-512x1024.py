# Table 1 ablation (arXiv:2109.01915 §4.2): "Baseline + SNL + GP", NoS = 81, without the decoder,
# MobileNetV2 on Cityscapes (paper: 74.94 mIoU, val, single scale).
# Recipe as ssanet_mobilenet-v2-d16_4xb2-80k_cityscapes-512x1024.py (paper recipe), whose full
# model (SNL + GP + decoder, K = 81) is the last row of Table 1.
_base_ = './ssanet_mobilenet-v2-d16_4xb2-80k_cityscapes-512x1024.py'
model = dict(
    decode_head=dict(
        in_channels=320,  # single input: the last stage
        in_index=3,
        input_transform=None,
        kernel_size=9,  # K = 9 x 9 = 81 (Table 1)
        use_gp=True,
        use_decoder=False))
