# mmseg's runtime plus RNGStateHook: the checkpoints hold the torch/CUDA/numpy/python RNG states and
# `--resume` restores them, so a killed and resumed run reproduces the uninterrupted one bit for bit
# (mmseg_ext/engine/rng_state_hook.py). Needs custom_imports=dict(imports=['mmseg_ext']).
_base_ = ['mmseg::_base_/default_runtime.py']
custom_hooks = [dict(type='RNGStateHook')]
