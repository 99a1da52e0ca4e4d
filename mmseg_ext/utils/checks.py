# Copyright (c) mmseg_ext contributors. All rights reserved.
"""The one integer test behind the project's argument checks."""

__all__ = ['is_int']


def is_int(value) -> bool:
    """True for an ``int`` that is not a ``bool``: ``True`` is an int
    subclass in Python, so ``kernel_size=True`` would otherwise pass as 1."""
    return isinstance(value, int) and not isinstance(value, bool)
