# GFFNet's test protocol (paper Table 2) on the embedded SynthCity data, for the quickstart GFFNet
# (configs/quickstart/gffnet_r18tiny-d8_1xb8-1k_synthcity-128x256.py; training is unchanged):
#  * sliding window ("All results are reported by using sliding window crop prediction"): windows of the
#    training crop, as the paper's 864x864 windows for its 864x864 crops; stride 2/3 of the window, rounded
#    up, as mmseg's 769x769 Cityscapes configs (769 -> 513) and our 864x864 configs (864 -> 576).
#    At scale 1 a 128x256 scene is one window; the larger test scales are tiled.
#  * multi-scale with `tools/test.py CONFIG CHECKPOINT --tta`: softmax maps averaged over the scales
#    {0.75, 1, 1.25, 1.5, 1.75}, no flip (Table 2 "+ MS"), as in ./_base_/cityscapes-864x864_paper.py.
_base_ = '../quickstart/gffnet_r18tiny-d8_1xb8-1k_synthcity-128x256.py'
model = dict(test_cfg=dict(mode='slide', crop_size=(128, 256), stride=(86, 171)))
img_ratios = [0.75, 1.0, 1.25, 1.5, 1.75]  # GFFNet Table 2 "+ MS"
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[[dict(type='Resize', scale_factor=r, keep_ratio=True) for r in img_ratios],
                    [dict(type='LoadAnnotations')], [dict(type='PackSegInputs')]])
]
