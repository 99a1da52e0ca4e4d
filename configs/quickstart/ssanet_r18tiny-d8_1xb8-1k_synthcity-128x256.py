# Quickstart: SNLHead (SSANet) on the embedded SynthCity data, same body and schedule as the FCN/PSPNet baselines.
_base_ = [
    '../_base_/models/r18tiny-d8_ssanet.py', '../_base_/datasets/synthcity_128x256.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_quick_1k.py'
]
custom_imports = dict(imports=['mmseg_ext'], allow_failed_imports=False)
