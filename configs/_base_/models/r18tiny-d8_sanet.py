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
        # L_mask; L_cat (0.2, class-frequency targets) and L_den (0.8) are SAHead's defaults (paper Fig. 4),
        # as are mask_fusion='deep', the Y_den + Y_SA4 prediction and, since issue #23 (2026-12-02), L_den on
        # that predicted sum (den_loss_on): configs/sanet/README.md, SynthCity and issue #23 sections
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=None)  # SANet has no stage-3 auxiliary head: its dense branch Y_den plays that role
