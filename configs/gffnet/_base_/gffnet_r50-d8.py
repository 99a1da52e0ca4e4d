# GFFNet = PSPNet + GFF + DFP (Li et al., AAAI 2020). The model is mmseg's PSPNet R50-d8
# (ResNetV1c, dilations (1,1,2,4), strides (1,2,1,1)) with the PSPHead replaced by GFFHead, which
# keeps the PSP part (PPM + 3x3 bottleneck, 512 channels) and adds GFF + DFP on all four stages.
_base_ = ['mmseg::_base_/models/pspnet_r50-d8.py']

custom_imports = dict(imports=['mmseg_ext'], allow_failed_imports=False)

norm_cfg = dict(type='SyncBN', requires_grad=True)  # paper: synchronized BN
model = dict(
    decode_head=dict(
        type='GFFHead',
        # "Feature maps from last residual blocks in each stage of backbone are used as the input
        # for GFF" (paper, Network Architecture): ResNet stages 1-4 (1/4, 1/8, 1/8, 1/8).
        in_channels=[256, 512, 1024, 2048],
        in_index=[0, 1, 2, 3],
        input_transform='multiple_select',
        channels=512,  # PSP bottleneck width, as in mmseg's pspnet_r50-d8.py
        pool_scales=(1, 2, 3, 6),  # PSPNet PPM bins
        fusion='gff',
        fusion_channels=256,  # "all feature maps are reduced to 256 channels with 1x1 conv"
        gate_channels=1,  # Eq. 5: one gate map per level, w_l in R^{1x1xC_l}
        update_order='simultaneous',  # Eq. 5 updates all levels from the same inputs
        num_fuse_convs=2,  # "two 3x3 convolutional layers in each level"
        use_dfp=True,  # Table 2: PSPNet + GFF + DFP
        dfp_kernel_size=1,  # "single convolution layer"; 1x1: +1.2M (Table 3: +0.8M), 3x3: +10.6M
        dfp_mode='dense',  # Eq. 6 read as DenseNet's rule, top-down (see README)
        dropout_ratio=0.1,  # as mmseg's PSPHead
        norm_cfg=norm_cfg),
    # auxiliary FCN head on stage 3 with weight 0.4 ("Network Architecture") is inherited from
    # mmseg's pspnet_r50-d8.py (FCNHead, in_index=2, channels=256, loss_weight=0.4).
    auxiliary_head=dict(norm_cfg=norm_cfg))
