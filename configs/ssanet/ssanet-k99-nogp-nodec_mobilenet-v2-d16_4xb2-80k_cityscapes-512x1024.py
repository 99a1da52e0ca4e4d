# Table 1 ablation (arXiv:2109.01915 §4.2): "Baseline + SNL", NoS = 99, without the global pooling
# branch and the decoder, MobileNetV2 on Cityscapes (paper: 73.98 mIoU, val, single scale).
# Recipe as ssanet_mobilenet-v2-d16_4xb2-80k_cityscapes-512x1024.py (paper recipe).
_base_ = './ssanet_mobilenet-v2-d16_4xb2-80k_cityscapes-512x1024.py'
model = dict(
    decode_head=dict(
        in_channels=320,  # single input: the last stage
        in_index=3,
        input_transform=None,
        kernel_size=(9, 11),  # K = 9 x 11 = 99 (Table 1; 99 is not a square)
        use_gp=False,
        use_decoder=False))
