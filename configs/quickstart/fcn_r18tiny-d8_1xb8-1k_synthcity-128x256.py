# Quickstart baseline: mmseg's stock FCNHead on the embedded SynthCity data, CPU-sized.
_base_ = [
    '../_base_/models/r18tiny-d8_fcn.py', '../_base_/datasets/synthcity_128x256.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_quick_1k.py'
]
custom_imports = dict(imports=['mmseg_ext'], allow_failed_imports=False)
