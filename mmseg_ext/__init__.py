"""mmseg_ext: SANet, SSANet and GFFNet decode heads for MMSegmentation 1.x.

Importing this package (configs do it through ``custom_imports``) registers the heads, losses and
ops into mmseg's registries and allow-lists, for weights-only loading (torch's own unpickler on
torch >= 2.6, a restricted one of ours before), exactly the globals that mmengine/mmseg checkpoints
pickle, on every route mmengine loads a checkpoint by (see
:mod:`mmseg_ext.checkpoint`), and registers :class:`~mmseg_ext.engine.RNGStateHook` (bit-exact
resume) in mmengine's ``HOOKS``.
"""
from . import checkpoint  # noqa: F401  (side effect: safe globals and loaders for checkpoints)
from . import datasets  # noqa: F401  (side effect: SynthCityDataset in mmseg's DATASETS)
from . import engine  # noqa: F401  (side effect: RNGStateHook in mmengine's HOOKS)
from . import models  # noqa: F401  (side effect: registry entries)

__version__ = '0.1.0'
