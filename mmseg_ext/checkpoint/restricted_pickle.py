"""A pickle interpreter that builds only what a checkpoint needs (see :mod:`mmseg_ext.checkpoint`).

Moved from ``mmseg_ext/restricted_pickle.py`` (which re-exports its public names).

Python's ``pickle.Unpickler`` restricted through ``find_class`` alone is not safe: its ``BUILD``
sets state on whatever object the stream names (an allow-listed *function or class* included, so a
1-KB file could change a default argument of torch's tensor-rebuild function for the whole
process), its ``EXT*`` opcodes resolve through ``copyreg``'s cache without ``find_class``, and it
checks no tensor against the bytes behind it. :class:`Unpickler` is therefore an interpreter of
its own, opcode by opcode (the approach of torch's ``_weights_only_unpickler``), with these rules:

* **Globals** come only from :data:`ALLOWED` (``GLOBAL``/``STACK_GLOBAL`` through
  :meth:`Unpickler.find_class`); ``INST``, ``OBJ``, ``EXT1/2/4``, ``NEWOBJ_EX``, text ``PERSID``
  and out-of-band buffers are refused.
* **Calls** (``REDUCE``) only of the callables in the table of :func:`_call_table`, each with its
  arguments checked: torch's tensor-rebuild functions (storage bounds, empty backward hooks, no
  extra state), the containers, ``torch.device``/``torch.Size``, numpy's array/dtype/scalar
  reconstructors (a *copy* of a dtype, never the shared one; no object arrays), ``codecs.encode``
  to latin-1 (protocol 2's ``bytes``) and :func:`mmseg_ext.checkpoint.restricted_getattr`.
  ``NEWOBJ`` only of the classes in :data:`NEW_CLASSES` (mmengine's ``HistoryBuffer``).
* **State** (``BUILD``) only on an instance this load created, of a class with a rule in
  :func:`_build_rules`, with the state that class defines; never on a function, class, module or
  any object that existed before the load. ``APPEND``/``SETITEM``/``ADDITEMS`` only on the plain
  containers the stream created.
* **Tensors**: every view (offset, sizes, strides) must lie inside its storage; in
  :func:`scan` mode each storage is checked against the record that holds its bytes (a callback
  of the caller, which knows the file format) before anything is read.
* **Lengths** (strings, bytes, big ints) may not exceed the bytes left in the stream.

A refusal raises :class:`RefusedPickle` (a subclass of ``pickle.UnpicklingError``; nothing the
stream asked for was called); a stream that is not a valid pickle (unknown opcode, truncated, a
stack that does not add up) raises :class:`MalformedPickle`. :func:`mmseg_ext.checkpoint.safe_load`
runs :func:`scan` over every checkpoint on every torch, and on torch < 2.6 also passes this module
to ``torch.load`` as its ``pickle_module`` (torch's loader subclasses :class:`Unpickler` and sets
``persistent_load``; it reads storages itself).
"""
from __future__ import annotations

import _compat_pickle
import codecs
import collections
import io
import pickle
import pickletools
import warnings
from pickle import UnpicklingError
from struct import unpack

import numpy as np
import torch

__all__ = ['ALLOWED', 'NEW_CLASSES', 'MalformedPickle', 'RefusedGlobal', 'RefusedPickle',
           'Unpickler', 'load', 'loads', 'scan', 'UnpicklingError']

#: ``'module.name'`` -> the object a pickle may name (filled by
#: :func:`~mmseg_ext.checkpoint.allowlist.register_safe_globals`).
ALLOWED: dict = {}
#: class -> validator(state) for the classes ``NEWOBJ`` may create (filled by the same).
NEW_CLASSES: dict = {}

_VALID_OPCODES = frozenset(op.code.encode('latin-1')[0] for op in pickletools.opcodes)


class RefusedPickle(UnpicklingError):
    """The pickle asks for something a checkpoint never needs; nothing of it was executed."""


class RefusedGlobal(RefusedPickle):
    """The pickle names a global outside :data:`ALLOWED`; nothing of it was executed."""


class MalformedPickle(UnpicklingError):
    """The stream is not a valid pickle (an unknown opcode, truncated, an inconsistent stack)."""


def _python3_name(module: str, name: str):
    """The Python 3 name of a global written by a protocol < 3 pickler (``__builtin__.set`` ->
    ``builtins.set``), as Python's and torch's weights-only unpicklers map it."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


# ---- placeholders of scan mode: a storage / tensor whose bytes are not read ------------------

class StorageStub:
    """A storage in :func:`scan` mode: its dtype and number of elements, no data."""
    __slots__ = ('dtype', 'numel')

    def __init__(self, dtype, numel):
        self.dtype, self.numel = dtype, numel


class TensorStub:
    """A tensor in :func:`scan` mode (what a rebuild function would have returned)."""
    __slots__ = ()


_TENSORS = (torch.Tensor, TensorStub)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _refuse(msg):
    raise RefusedPickle(msg)


def _storage_numel_dtype(storage):
    if isinstance(storage, StorageStub):
        return storage.numel, storage.dtype
    if isinstance(storage, torch.storage.TypedStorage):  # what torch's loader hands a rebuild
        with warnings.catch_warnings():  # torch's "TypedStorage is deprecated", meant for users
            warnings.simplefilter('ignore', UserWarning)
            return storage.size(), storage.dtype
    _refuse(f'a tensor is rebuilt on a {type(storage).__name__}, not on a storage of the file')


def check_view(storage, offset, size, stride):
    """Refuse a tensor view whose elements do not all lie inside ``storage``."""
    numel, _ = _storage_numel_dtype(storage)
    if not (_is_int(offset) and isinstance(size, tuple) and isinstance(stride, tuple)
            and len(size) == len(stride) and all(_is_int(s) for s in size + stride)):
        _refuse(f'a tensor has a malformed view (offset {offset!r}, size {size!r}, stride '
                f'{stride!r})')
    if offset < 0 or any(s < 0 for s in size + stride):
        _refuse(f'a tensor has a negative offset, size or stride ({offset}, {size}, {stride})')
    last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset - 1
    if last >= numel:
        _refuse(f'a tensor (offset {offset}, size {list(size)}, stride {list(stride)}) reaches '
                f'element {last}, past the end of its storage of {numel} elements: it would read '
                'memory outside the file')


def _check_hooks(hooks):
    if not (isinstance(hooks, dict) and not hooks):
        _refuse('a tensor carries backward hooks; a checkpoint stores none')


def _check_no_state(state):
    if state not in (None, {}) and not (isinstance(state, tuple) and all(s in (None, {})
                                                                          for s in state)):
        _refuse('a tensor carries Python attributes; a checkpoint stores none')


def _check_args(name, args, count):
    lo, hi = count if isinstance(count, tuple) else (count, count)
    if not lo <= len(args) <= hi:
        _refuse(f'{name} called with {len(args)} arguments')


# ---- the calls a checkpoint may make (REDUCE), each checked ------------------------------------

def _tensor_fn(fn, check):
    name = f'torch._utils.{fn.__name__}'

    def call(u, args):
        check(name, args)
        return TensorStub() if u.scan_mode else fn(*args)
    return call


def _check_rebuild_v2(name, args):
    _check_args(name, args, (6, 7))
    storage, offset, size, stride, requires_grad, hooks = args[:6]
    check_view(storage, offset, size, stride)
    _check_hooks(hooks)
    if not isinstance(requires_grad, bool):
        _refuse(f'{name}: requires_grad is {requires_grad!r}')
    if len(args) == 7 and args[6] is not None and not (
            isinstance(args[6], dict) and all(isinstance(k, str) and isinstance(v, bool)
                                              for k, v in args[6].items())):
        _refuse(f'{name}: malformed tensor metadata')


def _check_rebuild_v1(name, args):
    _check_args(name, args, 4)
    check_view(*args)


def _check_parameter(name, args):
    _check_args(name, args, (3, 4))
    data, requires_grad, hooks = args[:3]
    if not isinstance(data, _TENSORS) or not isinstance(requires_grad, bool):
        _refuse(f'{name}: malformed arguments')
    _check_hooks(hooks)
    if len(args) == 4:
        _check_no_state(args[3])


def _check_sparse(name, args):
    _check_args(name, args, 2)
    layout, data = args
    if not isinstance(layout, torch.layout) or not isinstance(data, tuple):
        _refuse(f'{name}: malformed arguments')


def _check_meta(name, args):
    _check_args(name, args, 4)
    dtype, size, stride, requires_grad = args
    if not (isinstance(dtype, torch.dtype) and isinstance(size, tuple)
            and isinstance(stride, tuple) and all(_is_int(s) and s >= 0 for s in size + stride)
            and isinstance(requires_grad, bool)):
        _refuse(f'{name}: malformed arguments')


def _from_type_v2(u, args):
    _check_args('torch._tensor._rebuild_from_type_v2', args, 4)
    func, new_type, inner, state = args
    if new_type not in (torch.Tensor, torch.nn.Parameter) or not isinstance(inner, tuple):
        _refuse(f'torch._tensor._rebuild_from_type_v2 asks for {new_type!r}; only plain tensors '
                'and parameters are loaded')
    _check_no_state(state)
    ret = u.call(func, inner)
    if not u.scan_mode and type(ret) is not new_type:
        ret = ret.as_subclass(new_type)
    return ret


def _plain(fn, check):
    def call(u, args):
        check(args)
        return u.fresh(fn(*args))
    return call


def _container_args(args):
    if len(args) > 1 or (args and not isinstance(args[0], (list, tuple, dict, set, frozenset))):
        _refuse(f'a container is built from {type(args[0]).__name__ if args else args!r}')


def _bytearray_args(args):
    if not (args == () or (len(args) == 1 and isinstance(args[0], bytes))
            or (len(args) == 2 and isinstance(args[0], str) and args[1] in ('latin-1', 'latin1'))):
        _refuse('bytearray is built from something other than bytes')


def _codecs_encode(u, args):
    if not (len(args) == 2 and isinstance(args[0], str) and args[1] in ('latin1', 'latin-1')):
        _refuse(f'_codecs.encode called with {args[1:]!r}; protocol-2 bytes use latin1 only')
    return codecs.encode(*args)


def _np_dtype(u, args):
    if not (len(args) == 3 and isinstance(args[0], str) and isinstance(args[1], bool)
            and args[2] is True):
        _refuse(f'numpy.dtype called with {args!r}; a pickled dtype is a copy '
                "(numpy.dtype(str, bool, True))")
    return u.fresh(np.dtype(*args))


def _np_reconstruct(fn):
    def call(u, args):
        if not (len(args) == 3 and args[0] is np.ndarray and isinstance(args[1], tuple)
                and isinstance(args[2], bytes)):
            _refuse(f'numpy _reconstruct called with {args!r:.200}')
        return u.fresh(fn(*args))
    return call


def _np_scalar(fn):
    def call(u, args):
        if not (1 <= len(args) <= 2 and isinstance(args[0], np.dtype) and not args[0].hasobject
                and (len(args) == 1 or isinstance(args[1], bytes))):
            _refuse('a numpy scalar of an object dtype or malformed data')
        return fn(*args)
    return call


def _simple(fn, check=None):
    def call(u, args):
        if check is not None:
            check(args)
        return fn(*args)
    return call


def _device_args(args):
    if not (1 <= len(args) <= 2 and isinstance(args[0], str)
            and (len(args) == 1 or _is_int(args[1]))):
        _refuse(f'torch.device called with {args!r}')


def _size_args(args):
    if not (len(args) == 1 and isinstance(args[0], (tuple, list))
            and all(_is_int(v) for v in args[0])):
        _refuse(f'torch.Size called with {args!r}')


def _complex_args(args):
    if len(args) > 2 or not all(isinstance(a, (int, float, str)) for a in args):
        _refuse(f'complex called with {args!r}')


def _layout_args(args):
    if not (len(args) == 1 and isinstance(args[0], str)):
        _refuse(f'torch.serialization._get_layout called with {args!r}')


def _call_table() -> dict:
    """id(callable) -> (callable, handler(unpickler, args)) for every call a checkpoint may make."""
    from .allowlist import numpy_multiarray, restricted_getattr  # not at the top: it imports us
    multiarray, _ = numpy_multiarray()
    u = torch._utils
    table = [
        (u._rebuild_tensor_v2, _tensor_fn(u._rebuild_tensor_v2, _check_rebuild_v2)),
        (u._rebuild_tensor, _tensor_fn(u._rebuild_tensor, _check_rebuild_v1)),
        (u._rebuild_parameter, _tensor_fn(u._rebuild_parameter, _check_parameter)),
        (u._rebuild_sparse_tensor, _tensor_fn(u._rebuild_sparse_tensor, _check_sparse)),
        (u._rebuild_meta_tensor_no_storage,
         _tensor_fn(u._rebuild_meta_tensor_no_storage, _check_meta)),
        (torch._tensor._rebuild_from_type_v2, _from_type_v2),
        (torch.serialization._get_layout, _simple(torch.serialization._get_layout, _layout_args)),
        (torch.device, _simple(torch.device, _device_args)),
        (torch.Size, _simple(torch.Size, _size_args)),
        (collections.OrderedDict, _plain(collections.OrderedDict, _container_args)),
        (collections.Counter, _plain(collections.Counter, _container_args)),
        (set, _plain(set, _container_args)),
        (frozenset, _simple(frozenset, _container_args)),
        (bytearray, _plain(bytearray, _bytearray_args)),
        (complex, _simple(complex, _complex_args)),
        (codecs.encode, _codecs_encode),
        (np.dtype, _np_dtype),
        (multiarray._reconstruct, _np_reconstruct(multiarray._reconstruct)),
        (multiarray.scalar, _np_scalar(multiarray.scalar)),
        (restricted_getattr, _simple(restricted_getattr)),
    ]
    if hasattr(u, '_rebuild_parameter_with_state'):
        table.append((u._rebuild_parameter_with_state,
                      _tensor_fn(u._rebuild_parameter_with_state, _check_parameter)))
    return {id(fn): (fn, handler) for fn, handler in table}


# ---- the state a checkpoint may set (BUILD), on instances this load created ------------------

def _build_ordered_dict(inst, state):
    if not (isinstance(state, dict) and all(isinstance(k, str) for k in state)):
        _refuse('an OrderedDict is given state other than a dict of attributes')
    inst.__dict__.update(state)


def _build_numpy(inst, state):
    if not isinstance(state, tuple):
        _refuse(f'a numpy {type(inst).__name__} is given state {type(state).__name__}')
    inst.__setstate__(state)
    if (inst if isinstance(inst, np.dtype) else inst.dtype).hasobject:
        _refuse('a numpy array or dtype of Python objects; a checkpoint stores numbers')


def _build_rules(inst):
    if type(inst) is collections.OrderedDict:
        return _build_ordered_dict
    if type(inst) is np.ndarray or isinstance(inst, np.dtype):
        return _build_numpy
    validate = NEW_CLASSES.get(type(inst))
    if validate is not None:
        def build(inst, state):
            validate(state)
            inst.__setstate__(state)
        return build
    return None


# ---- the interpreter -----------------------------------------------------------------------

_REFUSED_OPS = {
    pickle.INST[0]: 'INST (instantiates any class)',
    pickle.OBJ[0]: 'OBJ (instantiates any class)',
    pickle.EXT1[0]: 'EXT1 (a copyreg extension code)',
    pickle.EXT2[0]: 'EXT2 (a copyreg extension code)',
    pickle.EXT4[0]: 'EXT4 (a copyreg extension code)',
    pickle.NEWOBJ_EX[0]: 'NEWOBJ_EX',
    pickle.PERSID[0]: 'PERSID (text persistent id)',
    pickle.NEXT_BUFFER[0]: 'NEXT_BUFFER (out-of-band data)',
    pickle.READONLY_BUFFER[0]: 'READONLY_BUFFER (out-of-band data)',
}


class Unpickler:
    """The interpreter (see the module docstring). ``torch.load`` subclasses it (overriding
    :meth:`find_class` and setting ``persistent_load``); ``scan_mode`` (used by :func:`scan`)
    returns placeholders for storages and tensors and reads no tensor data."""

    def __init__(self, file, *, encoding='ASCII', errors='strict', fix_imports=True,
                 scan_mode=False, storage_check=None):
        self._file = file
        self.encoding, self.errors, self.fix_imports = encoding, errors, fix_imports
        self.scan_mode = scan_mode
        self._storage_check = storage_check
        self._storages: dict = {}
        self.memo: dict = {}
        self.proto = 0
        self._fresh: dict = {}
        self._calls = _call_table()
        try:
            pos = file.tell()
            self._end = file.seek(0, io.SEEK_END)
            file.seek(pos)
        except (AttributeError, OSError, ValueError):
            self._end = None

    # -- reading, never past the end of the stream
    def _read(self, n):
        if n < 0 or (self._end is not None and n > self._end - self._file.tell()):
            raise MalformedPickle(f'a {n}-byte item runs past the end of the pickle')
        data = self._file.read(n)
        if len(data) != n:
            raise MalformedPickle('the pickle ends in the middle of an item')
        return data

    def _readline(self):
        line = self._file.readline(1 << 16)
        if not line.endswith(b'\n'):
            raise MalformedPickle('a text line of the pickle has no end')
        return line[:-1]

    def persistent_load(self, pid):
        raise RefusedPickle('the pickle refers to external data (a persistent id) outside a '
                            'checkpoint')

    def find_class(self, module, name):
        if not (isinstance(module, str) and isinstance(name, str)):
            raise RefusedGlobal(f'Unsupported global: a non-string name {module!r}.{name!r}')
        if self.proto < 3 and self.fix_imports:
            module, name = _python3_name(module, name)
        full = f'{module}.{name}'
        try:
            return ALLOWED[full]
        except KeyError:  # the message as before the split (the allow-list: allowlist.py)
            raise RefusedGlobal(f'Unsupported global: GLOBAL {full} is not in the allow-list of '
                                'mmseg_ext/checkpoint.py') from None

    def fresh(self, obj):
        """Mark ``obj`` as created by this load (BUILD may set its state)."""
        self._fresh[id(obj)] = obj
        return obj

    def call(self, func, args):
        """REDUCE: call ``func`` if the table has it, with its arguments checked."""
        entry = self._calls.get(id(func))
        if entry is None or entry[0] is not func:
            what = getattr(func, '__qualname__', None) or type(func).__name__
            raise RefusedPickle(f'calling {getattr(func, "__module__", "")}.{what} is not needed '
                                'by a checkpoint and is refused')
        if not isinstance(args, tuple):
            raise MalformedPickle(f'{what_of(func)} is called with {type(args).__name__} '
                                  'arguments')
        try:
            return entry[1](self, args)
        except RefusedPickle:
            raise
        except UnpicklingError as err:  # restricted_getattr's refusal
            raise RefusedPickle(str(err)) from None
        except (TypeError, ValueError, RuntimeError, AttributeError, KeyError, OverflowError,
                IndexError) as err:
            raise MalformedPickle(f'{what_of(func)}{args!r:.200} failed: {err}') from None

    def _persistent(self, pid):
        if not (isinstance(pid, tuple) and pid and _ascii(pid[0]) == 'storage'
                and len(pid) in (5, 6)):
            raise RefusedPickle(f'persistent id {pid!r:.200}: only tensor storages are loaded')
        storage_type, key, location, numel = pid[1:5]
        dtype = _storage_dtype(storage_type)
        if not (isinstance(key, str) and isinstance(_ascii(location), str) and _is_int(numel)
                and numel >= 0):
            raise RefusedPickle(f'malformed storage id {pid!r:.200}')
        view = pid[5] if len(pid) == 6 else None
        if view is not None and not (isinstance(view, tuple) and len(view) == 3
                                     and isinstance(view[0], str) and _is_int(view[1])
                                     and _is_int(view[2]) and view[1] >= 0 and view[2] >= 0
                                     and view[1] + view[2] <= numel):
            raise RefusedPickle(f'storage view {view!r:.200} lies outside its storage of {numel} '
                                'elements')
        if not self.scan_mode:
            return self.persistent_load(pid)
        if key not in self._storages:
            nbytes = numel * torch._utils._element_size(dtype)
            if self._storage_check is not None:
                self._storage_check(key, nbytes, dtype)
            self._storages[key] = StorageStub(dtype, numel)
        root = self._storages[key]
        return StorageStub(root.dtype, view[2]) if view is not None else root

    def load(self):
        """Read one pickle from the stream and return the object it builds."""
        try:
            return self._load()
        except (RefusedPickle, MalformedPickle):
            raise
        except (IndexError, KeyError, TypeError, ValueError, UnicodeDecodeError, OverflowError,
                RecursionError, AttributeError) as err:
            raise MalformedPickle(f'invalid pickle stream ({type(err).__name__}: {err})') from None

    def _load(self):  # noqa: C901  (one branch per opcode, as pickle.py)
        stack: list = []
        metastack: list = []
        read, memo = self._read, self.memo

        def pop_mark():
            nonlocal stack
            items = stack
            stack = metastack.pop()
            return items

        def container(kind):
            # the stream can only reach containers it created: no allow-listed global or call
            # returns an existing list, dict or set
            obj = stack[-1]
            if type(obj) not in kind:
                raise RefusedPickle(f'items are added to {what_of(obj)}')
            return obj

        while True:
            key = read(1)[0]
            if key in _REFUSED_OPS:
                raise RefusedPickle(f'opcode {_REFUSED_OPS[key]} is refused: a checkpoint never '
                                    'needs it')
            if key not in _VALID_OPCODES:
                raise MalformedPickle(f'invalid pickle opcode {key:#04x}')
            if key == pickle.PROTO[0]:
                self.proto = read(1)[0]
                if self.proto > pickle.HIGHEST_PROTOCOL:
                    raise MalformedPickle(f'unsupported pickle protocol {self.proto}')
            elif key == pickle.FRAME[0]:
                read(8)  # framing is a read-ahead hint; frames are read inline
            elif key == pickle.STOP[0]:
                if len(stack) != 1 or metastack:
                    raise MalformedPickle('the pickle stops with an inconsistent stack')
                return stack.pop()
            elif key == pickle.MARK[0]:
                metastack.append(stack)
                stack = []
            elif key == pickle.POP[0]:
                stack.pop() if stack else pop_mark()
            elif key == pickle.POP_MARK[0]:
                pop_mark()
            elif key == pickle.DUP[0]:
                stack.append(stack[-1])
            # -- scalars
            elif key == pickle.NONE[0]:
                stack.append(None)
            elif key == pickle.NEWTRUE[0]:
                stack.append(True)
            elif key == pickle.NEWFALSE[0]:
                stack.append(False)
            elif key == pickle.BININT[0]:
                stack.append(unpack('<i', read(4))[0])
            elif key == pickle.BININT1[0]:
                stack.append(read(1)[0])
            elif key == pickle.BININT2[0]:
                stack.append(unpack('<H', read(2))[0])
            elif key == pickle.LONG1[0]:
                stack.append(pickle.decode_long(read(read(1)[0])))
            elif key == pickle.LONG4[0]:
                stack.append(pickle.decode_long(read(unpack('<i', read(4))[0])))
            elif key == pickle.BINFLOAT[0]:
                stack.append(unpack('>d', read(8))[0])
            elif key in (pickle.BINUNICODE[0], pickle.SHORT_BINUNICODE[0], pickle.BINUNICODE8[0]):
                n = {pickle.BINUNICODE[0]: '<I', pickle.SHORT_BINUNICODE[0]: '<B',
                     pickle.BINUNICODE8[0]: '<Q'}[key]
                size = unpack(n, read({'<I': 4, '<B': 1, '<Q': 8}[n]))[0]
                stack.append(str(read(size), 'utf-8', 'surrogatepass'))
            elif key in (pickle.BINBYTES[0], pickle.SHORT_BINBYTES[0], pickle.BINBYTES8[0],
                         pickle.BYTEARRAY8[0]):
                fmt, width = {pickle.BINBYTES[0]: ('<I', 4), pickle.SHORT_BINBYTES[0]: ('<B', 1),
                              pickle.BINBYTES8[0]: ('<Q', 8), pickle.BYTEARRAY8[0]: ('<Q', 8)}[key]
                data = read(unpack(fmt, read(width))[0])
                stack.append(bytearray(data) if key == pickle.BYTEARRAY8[0] else data)
            elif key in (pickle.BINSTRING[0], pickle.SHORT_BINSTRING[0]):
                size = read(1)[0] if key == pickle.SHORT_BINSTRING[0] else unpack('<i', read(4))[0]
                data = read(size)
                stack.append(data if self.encoding == 'bytes'
                             else data.decode(self.encoding, self.errors))
            # -- containers
            elif key == pickle.EMPTY_TUPLE[0]:
                stack.append(())
            elif key == pickle.TUPLE[0]:
                items = pop_mark()
                stack.append(tuple(items))
            elif key in (pickle.TUPLE1[0], pickle.TUPLE2[0], pickle.TUPLE3[0]):
                n = {pickle.TUPLE1[0]: 1, pickle.TUPLE2[0]: 2, pickle.TUPLE3[0]: 3}[key]
                if len(stack) < n:
                    raise MalformedPickle('a tuple opcode finds too few items on the stack')
                stack[-n:] = [tuple(stack[-n:])]
            elif key == pickle.EMPTY_LIST[0]:
                stack.append([])
            elif key == pickle.LIST[0]:
                items = pop_mark()
                stack.append(items)
            elif key == pickle.APPEND[0]:
                item = stack.pop()
                container((list,)).append(item)
            elif key == pickle.APPENDS[0]:
                items = pop_mark()
                container((list,)).extend(items)
            elif key == pickle.EMPTY_DICT[0]:
                stack.append({})
            elif key == pickle.DICT[0]:
                items = pop_mark()
                stack.append({items[i]: items[i + 1] for i in range(0, len(items), 2)})
            elif key == pickle.SETITEM[0]:
                value, k = stack.pop(), stack.pop()
                container((dict, collections.OrderedDict, collections.Counter))[k] = value
            elif key == pickle.SETITEMS[0]:
                items = pop_mark()
                target = container((dict, collections.OrderedDict, collections.Counter))
                if len(items) % 2:
                    raise MalformedPickle('SETITEMS with an odd number of items')
                for i in range(0, len(items), 2):
                    target[items[i]] = items[i + 1]
            elif key == pickle.EMPTY_SET[0]:
                stack.append(set())
            elif key == pickle.ADDITEMS[0]:
                items = pop_mark()
                container((set,)).update(items)
            elif key == pickle.FROZENSET[0]:
                items = pop_mark()
                stack.append(frozenset(items))
            # -- memo
            elif key in (pickle.BINPUT[0], pickle.LONG_BINPUT[0], pickle.PUT[0]):
                idx = (read(1)[0] if key == pickle.BINPUT[0] else
                       unpack('<I', read(4))[0] if key == pickle.LONG_BINPUT[0] else
                       int(self._readline()))
                memo[idx] = stack[-1]
            elif key == pickle.MEMOIZE[0]:
                memo[len(memo)] = stack[-1]
            elif key in (pickle.BINGET[0], pickle.LONG_BINGET[0], pickle.GET[0]):
                idx = (read(1)[0] if key == pickle.BINGET[0] else
                       unpack('<I', read(4))[0] if key == pickle.LONG_BINGET[0] else
                       int(self._readline()))
                if idx not in memo:
                    raise MalformedPickle(f'memo entry {idx} is read before it is written')
                stack.append(memo[idx])
            # -- the risky ones, each restricted
            elif key == pickle.GLOBAL[0]:
                module = self._readline().decode('utf-8')
                name = self._readline().decode('utf-8')
                stack.append(self.find_class(module, name))
            elif key == pickle.STACK_GLOBAL[0]:
                name, module = stack.pop(), stack.pop()
                stack.append(self.find_class(module, name))
            elif key == pickle.REDUCE[0]:
                args = stack.pop()
                stack[-1] = self.call(stack[-1], args)
            elif key == pickle.NEWOBJ[0]:
                args, cls = stack.pop(), stack.pop()
                if type(cls) is not type or cls not in NEW_CLASSES:
                    raise RefusedPickle(f'NEWOBJ of {what_of(cls)}: only '
                                        f'{[c.__name__ for c in NEW_CLASSES]} are created so')
                if args != ():
                    raise RefusedPickle(f'NEWOBJ of {cls.__name__} with arguments {args!r:.100}')
                stack.append(self.fresh(cls.__new__(cls)))
            elif key == pickle.BUILD[0]:
                state = stack.pop()
                inst = stack[-1]
                rule = _build_rules(inst) if id(inst) in self._fresh else None
                if rule is None:
                    raise RefusedPickle(
                        f'BUILD sets state on {what_of(inst)}: state is only set on the '
                        'containers, numpy arrays and mmengine HistoryBuffers this file creates')
                try:
                    rule(inst, state)
                except (RefusedPickle, MalformedPickle):
                    raise
                except (TypeError, ValueError, AttributeError) as err:
                    raise MalformedPickle(f'invalid state for {what_of(inst)}: {err}') from None
            elif key == pickle.BINPERSID[0]:
                stack.append(self._persistent(stack.pop()))
            else:
                raise RefusedPickle(f'opcode {pickletools.code2op[chr(key)].name} is refused: a '
                                    'checkpoint never needs it')


def what_of(obj) -> str:
    """How an object is named in a refusal (a class or function by name, else its type)."""
    if isinstance(obj, type) or callable(obj) and hasattr(obj, '__qualname__'):
        kind = 'class' if isinstance(obj, type) else 'function'
        return f'the {kind} {getattr(obj, "__module__", "")}.{obj.__qualname__}'
    return f'a {type(obj).__module__}.{type(obj).__qualname__} object'


def _ascii(value):
    return value.decode('ascii') if isinstance(value, bytes) else value


def _storage_dtype(storage_type):
    """The dtype of a pickled storage type (a storage class in scan mode, torch's ``StorageType``
    when torch's loader answers the name)."""
    if storage_type is torch.UntypedStorage:
        return torch.uint8
    dtype = getattr(storage_type, 'dtype', None)
    # torch's loader's StorageType is recognised by its class name, whichever module defines it
    # (not a version check)
    if isinstance(storage_type, type) and issubclass(storage_type, torch.storage.TypedStorage) \
            or type(storage_type).__name__ == 'StorageType':
        if isinstance(dtype, torch.dtype):
            return dtype
    raise RefusedPickle(f'a tensor storage of type {storage_type!r:.100} is not a torch storage')


def load(file, **kwargs):
    """``pickle.load`` with :class:`Unpickler` (torch's legacy format reads headers with it)."""
    return Unpickler(file, **kwargs).load()


def loads(data, **kwargs):
    """``pickle.loads`` with :class:`Unpickler`."""
    return Unpickler(io.BytesIO(data), **kwargs).load()


def scan(file, storage_check=None, encoding='utf-8'):
    """Interpret one pickle from ``file`` without reading tensor data: every rule above applies,
    storages become :class:`StorageStub` (``storage_check(key, nbytes, dtype)`` is called once per
    storage; it raises to refuse it) and tensors :class:`TensorStub`. Returns the placeholder
    object and the storages seen (``key -> StorageStub``)."""
    u = Unpickler(file, encoding=encoding, scan_mode=True, storage_check=storage_check)
    return u.load(), u._storages
