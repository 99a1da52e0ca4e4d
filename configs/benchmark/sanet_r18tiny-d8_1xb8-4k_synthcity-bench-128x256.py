# SynthCity benchmark (issue #13): SAHead (SANet) on the benchmark data (synthcity-bench), 4k iterations.
# Same body, head, data and schedule as the other four configs of this folder; the head is the
# quickstart's (configs/_base_/models/r18tiny-d8_sanet.py: the paper's 8x8 attention grid and SA blocks of at
# least 64 channels on this narrow body) with SAHead's defaults, which since issue #23 train L_den on the
# predicted Y_den + Y_SA4 (2026-12-02) with ReLU attention (2026-12-03): the model of
# sanet-densum-grid8-w64-relu_*.py, whose runs are this config's numbers. This config's runs of
# 2026-11-28/29 are the pre-#23 reading (L_den on Y_den, sigmoid attention, pool_ratio=8, SA widths of a
# fourth).
_base_ = [
    '../_base_/models/r18tiny-d8_sanet.py', '../_base_/datasets/synthcity-bench_128x256.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_quick_4k.py'
]
custom_imports = dict(imports=['mmseg_ext'], allow_failed_imports=False)
