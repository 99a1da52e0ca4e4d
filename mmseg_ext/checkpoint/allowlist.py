"""What a checkpoint may name: the allow-listed globals and the checks on them.

A checkpoint saved by mmengine's runner pickles, besides torch's own storages:

* ``mmengine.logging.history_buffer.HistoryBuffer`` (the message hub's scalars), whose
  ``_statistics_methods`` dict holds its own methods, pickled as ``getattr(HistoryBuffer, 'mean')``;
* ``_codecs.encode`` (how protocol 2 pickles ``bytes``);
* numpy's ``ndarray``, ``dtype``, ``_reconstruct`` and ``scalar`` (arrays and numpy scalars in
  ``meta`` and the message hub), under the module names numpy 1.x and 2.x pickle them with.

:data:`SAFE_GLOBALS` lists exactly these; :func:`register_safe_globals` allow-lists them in
:mod:`mmseg_ext.checkpoint.restricted_pickle` on every torch and in torch's weights-only unpickler
on torch >= 2.6 (:data:`NATIVE_ALLOWLIST`). ``builtins.getattr`` is bound to
:func:`restricted_getattr`, which answers only ``getattr(HistoryBuffer, <registered statistics
method>)``; :func:`check_history_buffer_state` is the only state a ``HistoryBuffer`` may be given.
"""
from __future__ import annotations

import codecs

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

from ..utils import versions
from . import restricted_pickle
from .restricted_pickle import RefusedPickle

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


def check_history_buffer_state(state) -> None:
    """Refuse a pickled ``HistoryBuffer`` state other than the one mmengine writes: the buffer's
    two 1-D numeric arrays, ``max_length`` and its statistics methods, each the method already
    registered under that name (``HistoryBuffer.__setstate__`` merges them into the class-wide
    registry, so any other value would change every buffer of the process)."""
    keys = {'max_length', '_log_history', '_count_history', 'statistics_methods'}
    if not (isinstance(state, dict) and set(state) <= keys
            and {'_log_history', '_count_history'} <= set(state)):
        given = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise RefusedPickle(f'a HistoryBuffer is given state {given}; mmengine writes '
                            f'{sorted(keys)}')
    max_length = state.get('max_length', 1)
    arrays = state['_log_history'], state['_count_history']
    if not (isinstance(max_length, int) and not isinstance(max_length, bool) and max_length > 0
            and all(type(a) is np.ndarray and a.ndim == 1 and not a.dtype.hasobject
                    for a in arrays) and len(arrays[0]) == len(arrays[1])):
        raise RefusedPickle('a HistoryBuffer is given a malformed history or max_length')
    methods = state.get('statistics_methods', {})
    if not isinstance(methods, dict) or any(_registered_statistic(k) is not v
                                            for k, v in methods.items()):
        raise RefusedPickle('a HistoryBuffer would replace the statistics methods registered for '
                            'every HistoryBuffer of the process')


def _registered_statistic(name):
    """The method registered under ``name`` for every HistoryBuffer: in the class-wide registry,
    or one of the four defaults (registered by the first HistoryBuffer of a process, which may not
    exist yet when a checkpoint is loaded)."""
    if name in HistoryBuffer._statistics_methods:
        return HistoryBuffer._statistics_methods[name]
    return getattr(HistoryBuffer, name) if name in _DEFAULT_STATISTICS else None


def numpy_multiarray():
    """numpy's ``multiarray`` module and the name numpy pickles it under (numpy 2 names its core
    ``numpy._core``)."""
    if versions.numpy_major() >= 2:
        from numpy._core import multiarray
        return multiarray, 'numpy._core.multiarray'
    from numpy.core import multiarray
    return multiarray, 'numpy.core.multiarray'


def _numpy_globals() -> list:
    """numpy objects under the module paths that numpy 1.x and 2.x pickle them with."""
    _multiarray, core = numpy_multiarray()
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
    # pickled as ``numpy.dtype(...)`` but its class may be named when pickled directly. (A
    # capability test: the module is there or not.)
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        entries += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')
                    and isinstance(getattr(dtypes, n), type)]
    return entries


def safe_globals() -> list:
    """What :data:`SAFE_GLOBALS` holds, for the numpy this process has
    (:func:`mmseg_ext.utils.versions.numpy_major`)."""
    return [
        HistoryBuffer,
        (restricted_getattr, 'builtins.getattr'),
        (codecs.encode, '_codecs.encode'),
        *_numpy_globals(),
    ]


#: The globals a checkpoint may name beyond torch's weights-only allow-list: objects, or
#: ``(object, 'module.name')`` pairs where the pickled name is not the object's own.
SAFE_GLOBALS = safe_globals()

#: True on torch >= 2.6: :data:`SAFE_GLOBALS` extend torch's own weights-only allow-list
#: (``torch.serialization.add_safe_globals``, which takes ``(object, name)`` pairs and builds
#: allow-listed classes such as ``HistoryBuffer`` from 2.6 on). On torch 2.0-2.5
#: :func:`~mmseg_ext.checkpoint.safe_load` unpickles with
#: :mod:`mmseg_ext.checkpoint.restricted_pickle` instead, whose allow-list is torch's plus the
#: same :data:`SAFE_GLOBALS`; a plain ``torch.load(weights_only=True)`` there knows nothing of them.
#: Read at call time (``allowlist.NATIVE_ALLOWLIST``), so tests patch it here.
NATIVE_ALLOWLIST: bool = versions.torch_has_native_allowlist()


def _global_name(obj) -> str:
    return f'{obj.__module__}.{obj.__qualname__}'


def _torch_allowed_globals() -> dict:
    """torch's weights-only allow-list (``'module.name'`` -> object) with what torch 2.6+ added to
    it (every dtype, ``torch.device``, qschemes, ``Counter``, ``bytearray``, ``set``, ``complex``),
    for :mod:`mmseg_ext.checkpoint.restricted_pickle`."""
    import collections

    from torch import _weights_only_unpickler
    allowed = dict(_weights_only_unpickler._get_allowed_globals())
    extra = [torch.device, collections.Counter, collections.OrderedDict]
    allowed.update({_global_name(o): o for o in extra})
    allowed.update({f'builtins.{o.__name__}': o for o in (bytearray, set, complex)})
    for value in vars(torch).values():
        if isinstance(value, (torch.dtype, torch.qscheme)):
            allowed[str(value)] = value
    return allowed


def restricted_allowlist() -> dict:
    """``'module.name'`` -> object: what :mod:`mmseg_ext.checkpoint.restricted_pickle` lets a
    checkpoint name (torch's weights-only allow-list and :data:`SAFE_GLOBALS`)."""
    allowed = _torch_allowed_globals()
    for entry in SAFE_GLOBALS:
        obj, name = entry if isinstance(entry, tuple) else (entry, _global_name(entry))
        allowed[name] = obj
    return allowed


def register_safe_globals() -> None:
    """Allow-list :data:`SAFE_GLOBALS` for :func:`~mmseg_ext.checkpoint.safe_load` (idempotent):
    in :mod:`mmseg_ext.checkpoint.restricted_pickle` on every torch (its scan checks every
    checkpoint, and it unpickles them on torch < 2.6), and in torch's weights-only unpickler on
    torch >= 2.6."""
    restricted_pickle.ALLOWED.clear()
    restricted_pickle.ALLOWED.update(restricted_allowlist())
    restricted_pickle.NEW_CLASSES.clear()
    restricted_pickle.NEW_CLASSES[HistoryBuffer] = check_history_buffer_state
    if NATIVE_ALLOWLIST:
        torch.serialization.add_safe_globals(SAFE_GLOBALS)
