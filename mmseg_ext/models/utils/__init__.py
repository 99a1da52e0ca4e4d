from .snl_block import SparseNonLocal2d  # noqa: F401
from .sa_module import SqueezeAttentionModule  # noqa: F401
from .gated_fusion import GatedFullyFusion  # noqa: F401

__all__ = ['SparseNonLocal2d', 'SqueezeAttentionModule', 'GatedFullyFusion']
