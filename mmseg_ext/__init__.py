"""mmseg_ext: SANet, SSANet and GFFNet decode heads for MMSegmentation 1.x.

Importing this package (configs do it through ``custom_imports``) registers the heads, losses and
ops into mmseg's registries and allow-lists, for ``torch.load(weights_only=True)``, exactly the
globals that mmengine/mmseg checkpoints pickle (see :mod:`mmseg_ext.checkpoint`).
"""
from . import checkpoint  # noqa: F401  (side effect: safe globals for torch.load)
from . import models  # noqa: F401  (side effect: registry entries)

__version__ = '0.1.0'
