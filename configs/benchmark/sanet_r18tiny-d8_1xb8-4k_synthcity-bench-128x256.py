# SynthCity benchmark (issue #13): SAHead (SANet) on the benchmark data (synthcity-bench), 4k iterations.
# Same body, head, data and schedule as the other four configs of this folder; the head is the
# quickstart's (configs/_base_/models/r18tiny-d8_sanet.py), with SAHead's defaults: since issue #23
# (2026-12-02) these train L_den on the predicted Y_den + Y_SA4, i.e. the model of sanet-densum_*.py, whose
# runs are this config's numbers; this config's earlier runs are the pre-#23 reading (den_loss_on='den').
_base_ = [
    '../_base_/models/r18tiny-d8_sanet.py', '../_base_/datasets/synthcity-bench_128x256.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_quick_4k.py'
]
custom_imports = dict(imports=['mmseg_ext'], allow_failed_imports=False)
