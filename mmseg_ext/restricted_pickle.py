"""An allow-list ``pickle_module`` for ``torch.load`` on torch < 2.6 (see :mod:`mmseg_ext.checkpoint`).

torch >= 2.6 lets a package extend the allow-list of ``torch.load(weights_only=True)`` with
``torch.serialization.add_safe_globals`` (given as ``(object, "module.name")`` pairs); torch 2.0-2.5
either lack that API (< 2.4) or the pair form and the unpickling of allow-listed classes that
mmengine checkpoints need (``HistoryBuffer`` is built with ``NEWOBJ`` + ``BUILD``). On those
versions :func:`mmseg_ext.checkpoint.safe_load` passes this module as ``torch.load``'s
``pickle_module`` instead: torch's own ``Unpickler`` subclass (which resolves storages and
persistent ids itself) then asks :meth:`Unpickler.find_class` for every other global, and that
answers only from :data:`ALLOWED`, a dict filled by :func:`mmseg_ext.checkpoint.register_safe_globals`
with the same entries on every torch: torch's tensor-rebuild functions, dtypes, tensor and storage
classes (torch's own weights-only allow-list, plus the entries newer torch added to it) and the
project's allow-list. Any other global raises :class:`RefusedGlobal` before anything is called, so
a pickle cannot reach ``os.system``, ``eval`` or any other callable; ``GLOBAL``, ``STACK_GLOBAL``,
``INST``, ``OBJ`` and the ``EXT*`` (copyreg extension) opcodes all resolve names through
``find_class``. Nothing here is ``pickle.load`` with the unpickler unrestricted.
"""
from __future__ import annotations

import _compat_pickle
import io
import pickle
from pickle import UnpicklingError

__all__ = ['ALLOWED', 'RefusedGlobal', 'Unpickler', 'load', 'loads', 'UnpicklingError']

#: ``'module.name'`` -> the object a pickle may name (filled by ``register_safe_globals``).
ALLOWED: dict = {}


class RefusedGlobal(UnpicklingError):
    """The pickle names a global outside :data:`ALLOWED`; nothing of it was executed."""


def _python3_name(module: str, name: str):
    """The Python 3 name of a global written by a protocol < 3 pickler (``__builtin__.set`` ->
    ``builtins.set``), as Python's and torch's weights-only unpicklers map it."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


class Unpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose globals come only from :data:`ALLOWED`."""

    def find_class(self, module, name):
        module, name = _python3_name(module, name)
        full = f'{module}.{name}'
        try:
            return ALLOWED[full]
        except KeyError:
            raise RefusedGlobal(f'Unsupported global: GLOBAL {full} is not in the allow-list of '
                                'mmseg_ext/checkpoint.py') from None


def load(file, **kwargs):
    """``pickle.load`` with :class:`Unpickler` (torch's legacy format reads headers with it)."""
    return Unpickler(file, **kwargs).load()


def loads(data, **kwargs):
    """``pickle.loads`` with :class:`Unpickler`."""
    return Unpickler(io.BytesIO(data), **kwargs).load()
