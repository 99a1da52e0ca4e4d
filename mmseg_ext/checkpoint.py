"""Let ``torch.load(weights_only=True)`` (torch >= 2.6's default) read mmengine/mmseg checkpoints.

mmengine 0.10.7 calls ``torch.load(filename, map_location=...)`` without ``weights_only``, so under
torch >= 2.6 every ``tools/test.py``, ``--resume`` and ``load_from`` of a local checkpoint fails with
"Unsupported global". A checkpoint saved by the stock runner pickles, besides torch's own storages:

* ``mmengine.logging.history_buffer.HistoryBuffer`` (the message hub's scalars), whose
  ``_statistics_methods`` dict holds its own methods, pickled as ``getattr(HistoryBuffer, 'mean')``;
* ``_codecs.encode`` (how protocol 2 pickles ``bytes``);
* numpy's ``ndarray``, ``dtype``, ``_reconstruct`` and ``scalar`` (arrays and numpy scalars in
  ``meta`` and the message hub).

Importing this module allow-lists exactly these globals. ``builtins.getattr`` is not allow-listed
as such: the name is bound to :func:`restricted_getattr`, which answers only
``getattr(HistoryBuffer, <registered statistics method>)`` and refuses everything else, so a
checkpoint cannot use it to reach arbitrary attributes. Any other global is still refused by
torch's weights-only unpickler. Nothing here sets ``weights_only=False`` or
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``.
"""
from __future__ import annotations

import codecs

import numpy as np
import torch
from mmengine.logging import HistoryBuffer


# HistoryBuffer registers these four on its first instantiation; others via register_statistics
_DEFAULT_STATISTICS = ('min', 'max', 'current', 'mean')


def _statistics_names() -> frozenset:
    return frozenset(_DEFAULT_STATISTICS) | frozenset(HistoryBuffer._statistics_methods)


def restricted_getattr(obj, name, *default):
    """``getattr`` for unpickling: only ``HistoryBuffer``'s registered statistics methods."""
    if obj is HistoryBuffer and isinstance(name, str) and name in _statistics_names() \
            and not default:
        return getattr(obj, name)
    raise torch.serialization.pickle.UnpicklingError(
        f'mmseg_ext refuses getattr({obj!r}, {name!r}) while loading a checkpoint: only '
        f'HistoryBuffer statistics methods {sorted(_statistics_names())} are allowed.')


def _numpy_globals() -> list:
    """numpy objects under the module paths that numpy 1.x and 2.x pickle them with."""
    if int(np.__version__.split('.')[0]) >= 2:  # numpy 2 names its core ``numpy._core``
        from numpy._core import multiarray as _multiarray
        core = 'numpy._core.multiarray'
    else:
        from numpy.core import multiarray as _multiarray
        core = 'numpy.core.multiarray'
    entries = [
        np.ndarray,
        np.dtype,
        (_multiarray._reconstruct, f'{core}._reconstruct'),
        (_multiarray.scalar, f'{core}.scalar'),
    ]
    if core == 'numpy._core.multiarray':
        # checkpoints written under numpy 1.x name the old path; numpy 2 still resolves it
        entries += [(_multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
                    (_multiarray.scalar, 'numpy.core.multiarray.scalar')]
    # numpy >= 1.25 gives each dtype its own class (numpy.dtypes.Float64DType, ...); a dtype is
    # pickled as ``numpy.dtype(...)`` but its class may be named when pickled directly.
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        entries += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')
                    and isinstance(getattr(dtypes, n), type)]
    return entries


SAFE_GLOBALS = [
    HistoryBuffer,
    (restricted_getattr, 'builtins.getattr'),
    (codecs.encode, '_codecs.encode'),
    *_numpy_globals(),
]


def register_safe_globals() -> None:
    """Allow-list :data:`SAFE_GLOBALS` for ``torch.load(weights_only=True)`` (idempotent)."""
    torch.serialization.add_safe_globals(SAFE_GLOBALS)


register_safe_globals()
