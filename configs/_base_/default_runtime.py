# mmseg 1.2.2's runtime (mmseg::_base_/default_runtime.py, copied rather than inherited to keep configs
# within 3 inheritance levels) plus RNGStateHook: the checkpoints hold the torch/CUDA/numpy/python RNG
# states and `--resume` restores them, so a killed run resumed with the same data settings (workers,
# batch size, dataset, sampler: recorded and compared, a WARNING names any change) reproduces the
# uninterrupted one bit for bit (mmseg_ext/engine/rng_state_hook.py). Needs
# custom_imports=dict(imports=['mmseg_ext']).
# No randomness.seed is fixed here: mmengine draws one per run and stores it in the checkpoints; on resume
# RNGStateHook rebuilds the train dataloader with the checkpoint's seed (mmengine adopts it only after
# building the dataloader from the new run's), so resume is exact with or without
# --cfg-options randomness.seed=N.
default_scope = 'mmseg'
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(
    type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False

tta_model = dict(type='SegTTAModel')
custom_hooks = [dict(type='RNGStateHook')]
