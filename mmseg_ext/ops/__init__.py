from .sparse_nonlocal import sparse_nonlocal_attention  # noqa: F401

__all__ = ['sparse_nonlocal_attention']
