"""mmseg_ext: SANet, SSANet and GFFNet decode heads for MMSegmentation 1.x.

Importing this package (configs do it through ``custom_imports``) registers the heads, losses and
ops into mmseg's registries; makes every route by which mmengine loads a checkpoint go through
a restricted loader that builds only what a checkpoint needs (our pickle interpreter checks every
file; torch's own weights-only unpickler loads it on torch >= 2.6, the interpreter before; see
:mod:`mmseg_ext.checkpoint`); and registers :class:`~mmseg_ext.engine.RNGStateHook` (resume,
bit-exact when the data settings it records are unchanged) in mmengine's ``HOOKS``.
"""
from . import (
    checkpoint,  # noqa: F401  (side effect: safe globals and loaders for checkpoints)
    datasets,  # noqa: F401  (side effect: SynthCityDataset in mmseg's DATASETS)
    engine,  # noqa: F401  (side effect: RNGStateHook in mmengine's HOOKS)
    models,  # noqa: F401  (side effect: registry entries)
)

__version__ = '0.1.0'
