"""Moved to :mod:`mmseg_ext.checkpoint.restricted_pickle`; this module re-exports its public names.

The names are bound to the same objects; rebinding one here (``ALLOWED = ...``) changes nothing
for the interpreter, which reads its own module's globals: patch
``mmseg_ext.checkpoint.restricted_pickle`` instead.
"""
from .checkpoint.restricted_pickle import (
                                           ALLOWED,
                                           NEW_CLASSES,
                                           MalformedPickle,
                                           RefusedGlobal,
                                           RefusedPickle,
                                           StorageStub,
                                           TensorStub,
                                           Unpickler,
                                           UnpicklingError,
                                           check_view,
                                           load,
                                           loads,
                                           scan,
                                           what_of,
)

__all__ = ['ALLOWED', 'NEW_CLASSES', 'MalformedPickle', 'RefusedGlobal', 'RefusedPickle',
           'StorageStub', 'TensorStub', 'Unpickler', 'UnpicklingError', 'check_view', 'load',
           'loads', 'scan', 'what_of']
