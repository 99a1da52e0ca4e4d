# One head per file; each module registers its head into mmseg.registry.MODELS on import.
from .gff_head import GFFHead  # noqa: F401
from .sa_head import SAHead  # noqa: F401
from .snl_head import SNLHead  # noqa: F401

__all__ = ['SAHead', 'GFFHead', 'SNLHead']
