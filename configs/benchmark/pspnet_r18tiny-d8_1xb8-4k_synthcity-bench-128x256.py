# SynthCity benchmark (issue #13): mmseg's stock PSPHead (baseline) on the benchmark data (synthcity-bench), 4k iterations.
# Same body, head, data and schedule as the other four configs of this folder; the head is the
# quickstart's (configs/_base_/models/r18tiny-d8_pspnet.py).
_base_ = [
    '../_base_/models/r18tiny-d8_pspnet.py', '../_base_/datasets/synthcity-bench_128x256.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_quick_4k.py'
]
custom_imports = dict(imports=['mmseg_ext'], allow_failed_imports=False)
