# The sanet quickstart/benchmark model: the r18tiny-d8 body (r18tiny-d8.py) with this decode head.
_base_ = ['./r18tiny-d8.py']
model = dict(
    decode_head=dict(
        type='SAHead',
        in_channels=[16, 32, 64, 128],  # the four r18tiny stages (paper: all four stages)
        in_index=[0, 1, 2, 3],
        channels=128,  # = stage-4 width: the dense branch is a 1x1 classifier on stage 4 (configs/sanet)
        num_classes=19,
        norm_cfg=_base_.norm_cfg,
        align_corners=False,
        # The paper's SA blocks at the scale of this body (issue #23, readings (b) and (c)): the paper pools
        # its 64x64 stage maps (512x512 input, stride 8) by 8, an 8x8 attention grid; here the stage-2..4 maps
        # are 16x32 at a 128x256 crop, where pool_ratio=8 would leave 2x4 cells, so every stage is pooled to an
        # 8x8 grid (attn_grid) instead
        pool_ratio=None,
        attn_grid=8,
        # "a fourth" of 16/32/64/128 channels gives 4/8/16/32 (< 19 classes; the paper's blocks have 64-512
        # for 21-60 classes); 64 = the width of the FCN and PSPNet heads of this body (r18tiny-d8_fcn.py)
        min_channels=64,
        # L_mask; L_cat (0.2, class-frequency targets) and L_den (0.8) are SAHead's defaults (paper Fig. 4),
        # as are mask_fusion='deep', the Y_den + Y_SA4 prediction and, since issue #23, L_den on that
        # predicted sum (den_loss_on, 2026-12-02) and ReLU attention (attn_act, 2026-12-03):
        # configs/sanet/README.md, SynthCity and issue #23 sections
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=None)  # SANet has no stage-3 auxiliary head: its dense branch Y_den plays that role
