# SANet (Zhong et al., "Squeeze-and-Attention Networks for Semantic
# Segmentation", CVPR 2020) on a dilated ResNet-50-d8 (mmseg ResNetV1c).
# Backbone, data preprocessor and pretrained weights are those of mmseg's
# `_base_/models/fcn_r50-d8.py`; no stage-3 auxiliary head: the paper's
# auxiliary (dense) branch is part of SAHead and comes from stage 4 (§3.3).
custom_imports = dict(imports=['mmseg_ext'], allow_failed_imports=False)
norm_cfg = dict(type='SyncBN', requires_grad=True)  # sync BN (§4.1)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],  # ImageNet mean/std, as mmseg bases
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    pretrained='open-mmlab://resnet50_v1c',
    backbone=dict(
        type='ResNetV1c',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),  # the four stages feed the four SA blocks
        dilations=(1, 1, 2, 4),  # output stride 8 ("dilated FCN", §3.3)
        strides=(1, 2, 1, 1),
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch',
        contract_dilation=True),
    decode_head=dict(
        type='SAHead',
        in_channels=[256, 512, 1024, 2048],
        in_index=[0, 1, 2, 3],
        # Dense branch Y_den: 1x1 classifier on stage 4, like the paper's
        # "Dilated FCN" (Table 6: 42.6M params = ResNet-101 + 1x1 conv);
        # den_num_convs=0 needs channels == in_channels[-1].
        channels=2048,
        den_num_convs=0,
        module_type='sa',
        reduction=4,  # "reduce the channel sizes ... to a fourth" (§3.3)
        attn_channels=None,  # attention conv width = in/4 too (README)
        pool_ratio=8,  # down/up-sample ratio of the attention channel (§3.3)
        pool_type='avg',  # Eq. 5 / Fig. 2(c) (§3.3 text says max pooling)
        sa_groups=2,  # group conv with 2 groups, first convs (§3.3)
        # L_mask on every SA class map Y_SA_i (Fig. 3: the masks "are supervised by corresponding
        # categorical regions"); the readings and their SynthCity numbers: configs/sanet/README.md
        mask_fusion='deep',
        infer_mode='den_sa4',  # prediction = Y_den + Y_SA4 (§3.3)
        den_sa4_sum='logits',  # sum of the logit maps (README: 'probs' measured lower)
        # L_den on that predicted sum, the "regularized dense segmentation prediction" (§3.3): None
        # is 'sum' with a dense branch (SAHead's default since issue #23; 'den': on Y_den alone)
        den_loss_on=None,
        dropout_ratio=0.1,  # mmseg default
        num_classes=19,  # set by each dataset config
        norm_cfg=norm_cfg,
        align_corners=False,
        # L_SANet = L_mask + 0.2 L_cat + 0.8 L_den (Eq. 6, Fig. 4)
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
        # y_nj = average-pooled one-hot ground truth (§3.3), i.e. class frequencies
        loss_cat=dict(type='CategoricalLoss', target='frequency', loss_weight=0.2),
        loss_den=dict(
            type='CrossEntropyLoss',
            use_sigmoid=False,
            loss_weight=0.8,
            loss_name='loss_den')),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
