"""Facts about the versions of the stack, parsed in one place with mmengine's ``digit_version``.

Code that depends on a version asks here (``versions.torch_at_least(2, 6)``) instead of parsing
``__version__`` itself. Where a capability can be tested directly (``hasattr``, a signature), that
test is kept beside the fact or at its use: it also covers builds whose version says otherwise.

The facts are read at call time from :data:`TORCH_VERSION` and :data:`NUMPY_VERSION`, so a test
can patch those two constants to exercise another version's code path (e.g. numpy 2's module
names on numpy 1.26, which already has the ``numpy._core`` aliases).
"""
from __future__ import annotations

import numpy as np
import torch
from mmengine.utils import digit_version

#: ``digit_version(torch.__version__)``, e.g. ``(2, 6, 0, 0, 0, 0)``; a pre-release or source build
#: (``2.6.0a0+git...``) has a negative fifth item.
TORCH_VERSION: tuple = digit_version(torch.__version__)
#: ``digit_version(numpy.__version__)``.
NUMPY_VERSION: tuple = digit_version(np.__version__)


def torch_at_least(major: int, minor: int) -> bool:
    """torch's release is ``major.minor`` or later. Only the release counts, so a pre-release or
    source build of ``major.minor`` (``2.6.0a0+git...``, as NGC containers ship) has what that
    release has."""
    return TORCH_VERSION[:2] >= (major, minor)


def torch_has_native_allowlist() -> bool:
    """torch's weights-only unpickler can be extended for mmengine's checkpoints: torch >= 2.6
    (``torch.serialization.add_safe_globals`` takes ``(object, name)`` pairs and builds allow-listed
    classes such as ``HistoryBuffer`` from 2.6 on), and the function is there (a capability test,
    for builds that say 2.6 but lack it)."""
    return torch_at_least(2, 6) and hasattr(torch.serialization, 'add_safe_globals')


def numpy_major() -> int:
    """numpy's major version (1 or 2; numpy 2 pickles its core as ``numpy._core``)."""
    return NUMPY_VERSION[0]
