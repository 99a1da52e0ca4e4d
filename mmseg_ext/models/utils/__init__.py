from .gated_fusion import GatedFullyFusion  # noqa: F401
from .sa_module import SAOptions, SqueezeAttentionModule  # noqa: F401
from .snl_block import SparseNonLocal2d  # noqa: F401

__all__ = ['SparseNonLocal2d', 'SAOptions', 'SqueezeAttentionModule', 'GatedFullyFusion']
