"""Let ``torch.load(weights_only=True)`` (torch >= 2.6's default) read mmengine/mmseg checkpoints.

mmengine 0.10.7 calls ``torch.load(filename, map_location=...)`` without ``weights_only``, so under
torch >= 2.6 every ``tools/test.py``, ``--resume`` and ``load_from`` of a local checkpoint fails with
"Unsupported global". A checkpoint saved by the stock runner pickles, besides torch's own storages:

* ``mmengine.logging.history_buffer.HistoryBuffer`` (the message hub's scalars), whose
  ``_statistics_methods`` dict holds its own methods, pickled as ``getattr(HistoryBuffer, 'mean')``;
* ``_codecs.encode`` (how protocol 2 pickles ``bytes``);
* numpy's ``ndarray``, ``dtype``, ``_reconstruct`` and ``scalar`` (arrays and numpy scalars in
  ``meta`` and the message hub).

Importing this module allow-lists exactly these globals, in :mod:`mmseg_ext.restricted_pickle` (a
pickle interpreter that builds only what a checkpoint needs; its module docstring has the rules) on
every torch, and in torch's weights-only unpickler (``torch.serialization.add_safe_globals``) on
torch >= 2.6. :func:`weights_only_load` runs the interpreter over every checkpoint first
(:func:`check_structure`: globals, calls, state, every tensor inside its storage, every storage the
size of its record, no tar format), then unpickles with torch's weights-only unpickler on torch >=
2.6 and with the interpreter itself on torch 2.0-2.5, which cannot extend torch's
(:data:`NATIVE_ALLOWLIST` says which). ``builtins.getattr`` is not allow-listed
as such: the name is bound to :func:`restricted_getattr`, which answers only
``getattr(HistoryBuffer, <registered statistics method>)`` and refuses everything else, so a
checkpoint cannot use it to reach arbitrary attributes. Any other global is still refused by
torch's weights-only unpickler. Nothing here sets ``weights_only=False`` or
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``.

Every route by which mmengine (hence mmseg and mmpretrain) reads a checkpoint goes through
:func:`safe_load`: importing this module re-registers all of mmengine's ``CheckpointLoader``
schemes (local paths, ``http(s)://``, ``torchvision://``/``modelzoo://``, ``open-mmlab://``/
``openmmlab://``, ``mmcls://``, ``s3://``/``petrel://``, ``pavi://``) with loaders that call
``torch.load(weights_only=True)`` explicitly (so ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` cannot turn it
off), and replaces mmengine's ``load_url`` (``torch.hub.load_state_dict_from_url``, which loads with
``weights_only=False``) by :func:`load_url`. ``load_from``, ``resume``, ``pretrained=`` and
``init_cfg=dict(type='Pretrained')`` all reach ``CheckpointLoader``. Before unpickling,
:func:`verify_checkpoint` refuses empty files and files that are not checkpoints (an HTML page, a
text file) with a message that says what the file is, and checks the CRC-32 of every record of a
zip checkpoint (set ``MMSEG_EXT_CHECK_CRC=0`` to skip that check). URLs are cached one folder per
full URL (:func:`hub_cache_path`).
"""
from __future__ import annotations

import codecs
import contextlib
import hashlib
import io
import logging
import os
import os.path as osp
import pickle
import re
import sys
import tarfile
import zipfile
from tempfile import TemporaryDirectory
from urllib.parse import urlparse

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, print_log


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
    from .restricted_pickle import RefusedPickle
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
    if int(np.__version__.split('.')[0]) >= 2:
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


def _torch_version() -> tuple:
    return tuple(int(p) for p in re.findall(r'\d+', torch.__version__)[:2])


#: True on torch >= 2.6: :data:`SAFE_GLOBALS` extend torch's own weights-only allow-list
#: (``torch.serialization.add_safe_globals``, which takes ``(object, name)`` pairs and builds
#: allow-listed classes such as ``HistoryBuffer`` from 2.6 on). On torch 2.0-2.5 :func:`safe_load`
#: unpickles with :mod:`mmseg_ext.restricted_pickle` instead, whose allow-list is torch's plus the
#: same :data:`SAFE_GLOBALS`; a plain ``torch.load(weights_only=True)`` there knows nothing of them.
NATIVE_ALLOWLIST: bool = (_torch_version() >= (2, 6)
                          and hasattr(torch.serialization, 'add_safe_globals'))


def _global_name(obj) -> str:
    return f'{obj.__module__}.{obj.__qualname__}'


def _torch_allowed_globals() -> dict:
    """torch's weights-only allow-list (``'module.name'`` -> object) with what torch 2.6+ added to
    it (every dtype, ``torch.device``, qschemes, ``Counter``, ``bytearray``, ``set``, ``complex``),
    for :mod:`mmseg_ext.restricted_pickle`."""
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
    """``'module.name'`` -> object: what :mod:`mmseg_ext.restricted_pickle` lets a checkpoint name
    (torch's weights-only allow-list and :data:`SAFE_GLOBALS`)."""
    allowed = _torch_allowed_globals()
    for entry in SAFE_GLOBALS:
        obj, name = entry if isinstance(entry, tuple) else (entry, _global_name(entry))
        allowed[name] = obj
    return allowed


def register_safe_globals() -> None:
    """Allow-list :data:`SAFE_GLOBALS` for :func:`safe_load` (idempotent): in
    :mod:`mmseg_ext.restricted_pickle` on every torch (its scan checks every checkpoint, and it
    unpickles them on torch < 2.6), and in torch's weights-only unpickler on torch >= 2.6."""
    from . import restricted_pickle
    restricted_pickle.ALLOWED.clear()
    restricted_pickle.ALLOWED.update(restricted_allowlist())
    restricted_pickle.NEW_CLASSES.clear()
    restricted_pickle.NEW_CLASSES[HistoryBuffer] = check_history_buffer_state
    if NATIVE_ALLOWLIST:
        torch.serialization.add_safe_globals(SAFE_GLOBALS)


@contextlib.contextmanager
def _opened(source):
    """``source`` as a binary file object, opened once (a path) or as given (left where it was
    found): the checks and the load read the same file even if the path is replaced meanwhile."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, 'rb') as f:
            yield f
        return
    pos = source.tell()
    try:
        yield source
    finally:
        source.seek(pos)


def weights_only_load(source, map_location=None):
    """Unpickle ``source`` allowing only what a checkpoint needs: :func:`check_structure` (the
    restricted interpreter over the whole pickle, every storage against its record) first, then
    ``torch.load(weights_only=True)`` on torch >= 2.6, ``torch.load`` with
    :mod:`mmseg_ext.restricted_pickle` as its ``pickle_module`` before. Refusals raise
    :class:`~mmseg_ext.restricted_pickle.RefusedPickle` (a ``pickle.UnpicklingError``); use
    :func:`safe_load` for messages that name the file."""
    with _opened(source) as f:
        start = f.tell()
        check_structure(f, _source_name(source))
        f.seek(start)
        if NATIVE_ALLOWLIST:
            return torch.load(f, map_location=map_location, weights_only=True)
        from . import restricted_pickle
        # weights_only=True cannot take a pickle_module; the restricted interpreter is the
        # allow-list here
        return torch.load(f, map_location=map_location, pickle_module=restricted_pickle,
                          weights_only=False)


# --------------------------------------------------------------------------------------------
# The structure of a checkpoint, checked before torch reads it: the pickle through the restricted
# interpreter, every storage against the bytes that hold it.
# --------------------------------------------------------------------------------------------

def _refuse_tar(f) -> None:
    """torch's pre-1.0 tar format is refused up front: torch opens its members (a FIFO hangs
    the process) before any check."""
    from .restricted_pickle import RefusedPickle
    start = f.tell()
    block = f.read(tarfile.BLOCKSIZE)
    f.seek(start)
    if len(block) < tarfile.BLOCKSIZE:
        return
    try:
        tarfile.TarInfo.frombuf(block, tarfile.ENCODING, 'surrogateescape')
    except tarfile.TarError:
        return
    raise RefusedPickle('it is a tar archive (torch\'s pre-1.0 checkpoint format), which torch '
                        'unpacks before anything can be checked; load it with the torch that '
                        'wrote it and save it again with torch.save')


def _scan_zip(f, name: str) -> None:
    from .restricted_pickle import RefusedPickle, scan
    with zipfile.ZipFile(f) as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            raise RefusedPickle('two records of the zip share a name (readers disagree on which '
                                'one is read)')
        packed = [i.filename for i in infos if i.compress_type != zipfile.ZIP_STORED]
        if packed:
            raise RefusedPickle(f'records {packed[:3]} are compressed; torch.save stores them '
                                'as they are')
        prefix = names[0].split('/', 1)[0] if names else ''
        pkl = f'{prefix}/data.pkl'
        if pkl not in names:  # torch reads data.pkl in the first record's folder
            raise RefusedPickle(f'its first record {names[:1]} is not beside {pkl}')
        sizes = {i.filename: i.file_size for i in infos}

        def check(key, nbytes, dtype):
            record = f'{prefix}/data/{key}'
            if record not in sizes:
                raise RefusedPickle(f'tensor storage {key!r} has no record {record}')
            if sizes[record] != nbytes:
                raise RefusedPickle(
                    f'tensor storage {key!r} declares {nbytes} bytes ({dtype}) but its record '
                    f'{record} holds {sizes[record]}: reading it would read memory outside the '
                    'file')

        scan(io.BytesIO(zf.read(pkl)), check)


def _scan_legacy(f, name: str) -> None:
    """torch's legacy format: magic number, protocol, system info, the object pickle, the
    storage keys, then each storage as an int64 element count and its bytes."""
    from .restricted_pickle import MalformedPickle, RefusedPickle, scan
    from torch.serialization import MAGIC_NUMBER, PROTOCOL_VERSION
    start = f.tell()
    end = f.seek(0, io.SEEK_END)
    f.seek(start)
    if scan(f)[0] != MAGIC_NUMBER or scan(f)[0] != PROTOCOL_VERSION:
        raise MalformedPickle('it starts as a pickle but not as a torch checkpoint (magic number '
                              'or protocol)')
    scan(f)  # system info: byte order, sizes of short/int/long
    _, storages = scan(f)
    keys = scan(f)[0]
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)
            and len(set(keys)) == len(keys) and set(keys) == set(storages)):
        raise RefusedPickle('its list of storages does not match the storages its tensors use')
    for key in keys:
        stub = storages[key]
        nbytes = stub.numel * torch._utils._element_size(stub.dtype)
        head = f.read(8)
        if len(head) < 8 or f.tell() + nbytes > end:
            raise MalformedPickle(f'it ends inside the data of storage {key!r}')
        count = int.from_bytes(head, 'little', signed=True)
        if count != stub.numel:
            raise RefusedPickle(f'storage {key!r} declares {stub.numel} elements but its data '
                                f'holds {count}')
        f.seek(nbytes, io.SEEK_CUR)


def check_structure(source, name: str | None = None) -> None:
    """Run the restricted interpreter of :mod:`mmseg_ext.restricted_pickle` over the whole
    checkpoint without reading tensor data (every global, call and state it asks for; every
    tensor inside its storage; every storage the size of its record), and refuse torch's tar
    format. Raises ``RefusedPickle`` (unsafe) or ``MalformedPickle`` (not a valid pickle)."""
    from .restricted_pickle import MalformedPickle
    name = name or _source_name(source)
    with _opened(source) as f:
        _refuse_tar(f)
        head = f.read(4)
        f.seek(-len(head), io.SEEK_CUR)
        if head.startswith((_ZIP_MAGIC, _EMPTY_ZIP_MAGIC)):
            _scan_zip(f, name)
        elif head[:1] == b'\x80':
            _scan_legacy(f, name)
        else:
            raise MalformedPickle(f'{name} is neither a torch zip checkpoint nor a legacy torch '
                                  'pickle')


# --------------------------------------------------------------------------------------------
# What a file is before it is unpickled: empty, not a checkpoint, or a zip with a bad CRC-32.
# --------------------------------------------------------------------------------------------

CRC_ENV = 'MMSEG_EXT_CHECK_CRC'
_ZIP_MAGIC = b'PK\x03\x04'
_EMPTY_ZIP_MAGIC = b'PK\x05\x06'


class CheckpointFileError(RuntimeError):
    """The file is empty, is not a checkpoint, or is corrupted (the message names the file)."""


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The checkpoint pickles a global outside the allow-list; nothing of it was executed."""


def crc_check_enabled() -> bool:
    """CRC-32 verification is on unless ``MMSEG_EXT_CHECK_CRC`` is ``0``/``false``/``no``/``off``."""
    return os.environ.get(CRC_ENV, '1').strip().lower() not in ('0', 'false', 'no', 'off')


def _source_name(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return getattr(source, 'name', None) or f'<{type(source).__name__} buffer>'


def _read_head(source, size: int = 256) -> bytes:
    if isinstance(source, (str, os.PathLike)):
        with open(source, 'rb') as f:
            return f.read(size)
    pos = source.tell()
    head = source.read(size)
    source.seek(pos)
    return head


def _describe_text(head: bytes) -> str | None:
    """What a file that starts with ``head`` is, if it is text (HTML, a Git LFS pointer, ...)."""
    text = head.lstrip(b'\xef\xbb\xbf \t\r\n')
    if not text:
        return 'a file of blank lines' if head else None
    shown = text[:60].decode('utf-8', 'replace')
    lower = text[:200].lower()
    if lower.startswith((b'<!doctype html', b'<html', b'<head', b'<body')) or b'<html' in lower:
        return (f'an HTML page (starts with {shown!r}), e.g. an error or login page saved in '
                'place of the checkpoint: check the URL and download it again')
    if lower.startswith(b'<'):
        return f'an XML/HTML document (starts with {shown!r}), e.g. a storage error response'
    if text.startswith(b'version https://git-lfs'):
        return 'a Git LFS pointer, not the file it points to: run `git lfs pull`'
    if lower.startswith((b'{', b'[')):
        return f'a JSON/text file (starts with {shown!r})'
    try:
        text[:200].decode('utf-8')
    except UnicodeDecodeError:
        return None
    if all(c >= 32 or c in b'\t\r\n' for c in text[:200]):
        return f'a text file (starts with {shown!r})'
    return None


def _describe_zip(zf: zipfile.ZipFile) -> str | None:
    """Why a zip archive is not a ``torch.save`` checkpoint, or None if it is one."""
    names = zf.namelist()
    if any(n == 'constants.pkl' or n.endswith('/constants.pkl') for n in names):
        return ('a TorchScript archive (torch.jit.save), not a checkpoint of weights: load it with '
                'torch.jit.load')
    if any(n == 'data.pkl' or n.endswith('/data.pkl') for n in names):
        return None
    return (f'a zip archive without a data.pkl record ({len(names)} entries, e.g. '
            f'{names[:3]}), not a torch.save checkpoint')


def _check_zip(source, name: str, check_crc: bool) -> None:
    """Refuse a zip that is not a torch checkpoint or whose records fail their CRC-32."""
    pos = None if isinstance(source, (str, os.PathLike)) else source.tell()
    try:
        with zipfile.ZipFile(source) as zf:
            what = _describe_zip(zf)
            if what is not None:
                raise CheckpointFileError(f'{name} is not a checkpoint: it is {what}.')
            bad = zf.testzip() if check_crc else None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
        raise CheckpointFileError(
            f'{name} is truncated or corrupted: its zip structure cannot be read ({err}). Copy or '
            'download the checkpoint again.') from err
    finally:
        if pos is not None:
            source.seek(pos)
    if bad is not None:
        raise CheckpointFileError(
            f'{name} is corrupted: the CRC-32 of its record {bad!r} does not match its contents '
            '(bytes changed after the file was written: a bad copy, disk or download). Copy or '
            f'download the checkpoint again. ({CRC_ENV}=0 skips this check; do not use it to load '
            'this file.)')


def verify_checkpoint(source, name: str | None = None, check_crc: bool | None = None) -> None:
    """Raise :class:`CheckpointFileError` (naming the file) unless ``source`` can be a checkpoint.

    ``source`` is a path or a seekable binary file object (left at its position). A zip file
    (``torch.save``'s format since torch 1.6) must hold a ``data.pkl`` record and, unless
    ``check_crc`` is False (default: :func:`crc_check_enabled`), every record must match its
    CRC-32. A legacy (non-zip) torch file must start as a pickle. Empty files, HTML pages and
    other text are refused with a message that says what they are.
    """
    name = name or _source_name(source)
    check_crc = crc_check_enabled() if check_crc is None else check_crc
    with _opened(source) as f:
        _refuse_tar(f)
    head = _read_head(source)
    if not head:
        raise CheckpointFileError(
            f'{name} is empty (0 bytes), not a checkpoint: the download or save that wrote it did '
            'not finish. Delete it and download or save the checkpoint again.')
    if head.startswith((_ZIP_MAGIC, _EMPTY_ZIP_MAGIC)):
        _check_zip(source, name, check_crc)
        return
    if head[:1] == b'\x80':  # a pickle (protocol >= 2): torch's legacy serialization
        return
    what = _describe_text(head) or (
        f'neither a torch zip checkpoint nor a legacy torch pickle (first bytes: {head[:16]!r})')
    raise CheckpointFileError(f'{name} is not a checkpoint: it is {what}.')


def _refusal_detail(err: Exception) -> str:
    """What torch's weights-only error says was refused, without its advice (which is to turn
    ``weights_only`` off, or to allow-list whatever the file asks for)."""
    text = str(err).replace('WeightsUnpickler error:', '\n\n')
    keep = []
    for para in re.split(r'\n\s*\n', text):
        para = ' '.join(para.split())
        if para and not re.search(r'weights_only|Weights only load failed|Check the documentation|'
                                  r'Please file an issue', para):
            keep.append(re.split(r'\s*Please use `torch\.serialization', para)[0])
    return ' '.join(keep) or 'a global outside the allow-list'


def _unsafe(name: str, detail: str) -> UnsafeCheckpointError:
    return UnsafeCheckpointError(
        f'{name} was refused as unsafe by the weights-only loader ({detail}). mmengine/mmseg '
        'checkpoints need only tensors, containers, numbers, strings, numpy arrays and the '
        'globals allow-listed in mmseg_ext/checkpoint.py; this file asks for more, which can run '
        'code or change the process. Nothing of it was executed. Use checkpoints from a source '
        'you trust, saved by mmengine/torch.save; if you know where this file comes from and it '
        'only pickles more metadata than the loader takes (e.g. an argparse.Namespace), convert '
        'it once with `python tools/model_converters/trusted_to_safe.py FILE NEW.pth --trusted`.')


def safe_load(source, map_location=None, name: str | None = None,
              check_crc: bool | None = None):
    """:func:`verify_checkpoint`, then :func:`weights_only_load`, on the file opened once, with
    errors that name the file and say what it is; the only way mmseg_ext's loaders unpickle a
    checkpoint. Anything the restricted interpreter refuses raises
    :class:`UnsafeCheckpointError`; a file that is truncated, corrupted or not a checkpoint
    raises :class:`CheckpointFileError`."""
    from .restricted_pickle import MalformedPickle, RefusedPickle
    name = name or _source_name(source)
    try:
        with _opened(source) as f:
            verify_checkpoint(f, name, check_crc)
            return weights_only_load(f, map_location=map_location)
    except CheckpointFileError:
        raise
    except RefusedPickle as err:
        raise _unsafe(name, str(err)) from None
    except MalformedPickle as err:
        raise CheckpointFileError(
            f'{name} is not a checkpoint or is corrupted: its pickle stream is invalid '
            f'({err}). Copy or download the checkpoint again.') from None
    except pickle.UnpicklingError as err:  # torch's own weights-only unpickler (torch >= 2.6)
        raise _unsafe(name, _refusal_detail(err)) from None
    except EOFError:
        raise CheckpointFileError(
            f'{name} is truncated: its data ends before the checkpoint does. Copy or download the '
            'checkpoint again.') from None
    except (RuntimeError, ValueError) as err:  # torch reading records the checks let through
        raise CheckpointFileError(f'{name} could not be loaded: {_refusal_detail(err)}') from None


# --------------------------------------------------------------------------------------------
# mmengine's CheckpointLoader schemes, each through safe_load.
# --------------------------------------------------------------------------------------------

def _is_legacy_hub_zip(path: str) -> bool:
    """torch.hub's pre-1.6 convention: a zip holding one file that is the checkpoint."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        return len(infos) == 1 and not infos[0].is_dir() and _describe_zip(zf) is not None


def _extract_legacy_hub_zip(path: str) -> str:
    """Extract the one file of a legacy hub zip (after its CRC-32 check) into ``extracted/``
    beside it: that folder belongs to this URL alone (:func:`hub_cache_path`), so the member can
    replace no other URL's checkpoint, nor the zip itself."""
    _check_zip_crc_only(path)
    with zipfile.ZipFile(path) as zf:
        member = zf.infolist()[0]
        # zipfile drops absolute and '..' components
        return zf.extract(member, osp.join(osp.dirname(path), 'extracted'))


def _check_zip_crc_only(path: str) -> None:
    if not crc_check_enabled():
        return
    with zipfile.ZipFile(path) as zf:
        bad = zf.testzip()
    if bad is not None:
        raise CheckpointFileError(f'{path} is corrupted: the CRC-32 of its record {bad!r} does '
                                  'not match its contents. Delete it and download it again.')


def hub_cache_path(url: str, model_dir: str | None = None, file_name: str | None = None) -> str:
    """Where :func:`load_url` caches ``url``: ``<model_dir>/url-<hash>/<file name>``, one folder
    per full URL (``<hash>``: the first 16 hex digits of its SHA-256), so that two URLs with the
    same file name (or a legacy hub zip's member) never share or replace a cached file. The file
    keeps the URL's name, so ``check_hash`` reads its hash prefix as torch.hub does.
    ``model_dir`` defaults to torch hub's ``<hub dir>/checkpoints``."""
    if model_dir is None:
        model_dir = osp.join(torch.hub.get_dir(), 'checkpoints')
    base = file_name or osp.basename(urlparse(url).path)
    if not base or base in ('.', '..'):
        raise ValueError(f'{url!r} names no file (its path ends with "/"): give the URL of the '
                         'checkpoint file itself, or pass file_name=')
    digest = hashlib.sha256(url.encode('utf-8')).hexdigest()[:16]
    return osp.join(model_dir, f'url-{digest}', base)


def load_url(url, model_dir=None, map_location=None, progress=True, check_hash=False,
             file_name=None, weights_only=True):
    """``torch.hub.load_state_dict_from_url`` (same cache, same arguments) through :func:`safe_load`.

    Replaces mmengine's ``load_url``. ``weights_only`` is accepted for signature compatibility
    and must stay True.
    """
    if weights_only is not True:
        raise ValueError('mmseg_ext loads URLs with weights_only=True only')
    cached = hub_cache_path(url, model_dir, file_name)
    os.makedirs(osp.dirname(cached), exist_ok=True)
    if not osp.exists(cached):
        hash_prefix = None
        if check_hash:
            found = torch.hub.HASH_REGEX.search(osp.basename(cached))
            hash_prefix = found.group(1) if found else None
        sys.stderr.write(f'Downloading: "{url}" to {cached}\n')
        torch.hub.download_url_to_file(url, cached, hash_prefix, progress=progress)
    if _is_legacy_hub_zip(cached):
        cached = _extract_legacy_hub_zip(cached)
    try:
        return safe_load(cached, map_location=map_location, name=f'{cached} (cached from {url})')
    except CheckpointFileError as err:
        raise CheckpointFileError(f'{err} Delete the cached file to download it again.') from None


def load_from_local(filename, map_location=None):
    """A local path (mmengine's default scheme ``''``)."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return safe_load(filename, map_location=map_location)


def load_from_http(filename, map_location=None, model_dir=None, progress=os.isatty(0)):
    """``http://``/``https://``: download once into torch hub's cache (rank 0 first)."""
    from mmengine.dist import get_dist_info
    rank, world_size = get_dist_info()
    checkpoint = None
    if rank == 0:
        checkpoint = load_url(filename, model_dir=model_dir, map_location=map_location,
                              progress=progress)
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            checkpoint = load_url(filename, model_dir=model_dir, map_location=map_location,
                                  progress=progress)
    return checkpoint


def load_from_pavi(filename, map_location=None):
    """``pavi://`` (needs the ``pavi`` package): download to a temporary folder, then load."""
    try:
        from pavi import modelcloud
    except ImportError:
        raise ImportError('Please install pavi to load checkpoint from modelcloud.')
    model = modelcloud.get(filename[len('pavi://'):])
    with TemporaryDirectory() as tmp_dir:
        downloaded = osp.join(tmp_dir, model.name)
        model.download(downloaded)
        return safe_load(downloaded, map_location=map_location, name=filename)


def load_from_ceph(filename, map_location=None, backend='petrel'):
    """``s3://``/``petrel://`` (optionally ``cluster:s3://``) through mmengine's file backend."""
    from mmengine import fileio
    file_backend = fileio.get_file_backend(filename, backend_args={'backend': backend})
    with io.BytesIO(file_backend.get(filename)) as buffer:
        return safe_load(buffer, map_location=map_location, name=filename)


def load_from_torchvision(filename, map_location=None):
    """``torchvision://NAME`` (and the deprecated ``modelzoo://NAME``): torchvision's URL for NAME."""
    from mmengine.runner.checkpoint import get_torchvision_models
    if filename.startswith('modelzoo://'):
        print_log('The URL scheme of "modelzoo://" is deprecated, please use "torchvision://" '
                  'instead', logger='current', level=logging.WARNING)
        model_name = filename[len('modelzoo://'):]
    else:
        model_name = filename[len('torchvision://'):]
    return load_from_http(get_torchvision_models()[model_name], map_location=map_location)


def load_from_openmmlab(filename, map_location=None):
    """``open-mmlab://NAME``/``openmmlab://NAME``: a URL, or a file under ``$MMENGINE_HOME``."""
    from mmengine.runner.checkpoint import (_get_mmengine_home, get_deprecated_model_names,
                                            get_external_models)
    prefix = 'open-mmlab://' if filename.startswith('open-mmlab://') else 'openmmlab://'
    model_name = filename[len(prefix):]
    deprecated = get_deprecated_model_names()
    if model_name in deprecated:
        print_log(f'{prefix}{model_name} is deprecated in favor of {prefix}'
                  f'{deprecated[model_name]}', logger='current', level=logging.WARNING)
        model_name = deprecated[model_name]
    model_url = get_external_models()[model_name]
    if model_url.startswith(('http://', 'https://')):
        return load_from_http(model_url, map_location=map_location)
    path = osp.join(_get_mmengine_home(), model_url)
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path} can not be found.')
    return safe_load(path, map_location=map_location)


def load_from_mmcls(filename, map_location=None):
    """``mmcls://NAME``: mmcls's (now mmpretrain's) URL for NAME, backbone weights only."""
    from mmengine.runner.checkpoint import _process_mmcls_checkpoint, get_mmcls_models
    checkpoint = load_from_http(get_mmcls_models()[filename[len('mmcls://'):]],
                                map_location=map_location)
    return _process_mmcls_checkpoint(checkpoint)


# mmengine 0.10.7's prefixes (the same keys, so each registration replaces mmengine's loader)
SAFE_SCHEMES = (
    ('', load_from_local),
    (('http://', 'https://'), load_from_http),
    ('pavi://', load_from_pavi),
    ((r'(\S+\:)?s3://', r'(\S+\:)?petrel://'), load_from_ceph),
    (('modelzoo://', 'torchvision://'), load_from_torchvision),
    (('open-mmlab://', 'openmmlab://'), load_from_openmmlab),
    ('mmcls://', load_from_mmcls),
)


def register_safe_loaders() -> None:
    """Make every ``CheckpointLoader`` scheme, and mmengine's ``load_url``, load through
    :func:`safe_load` (idempotent)."""
    import mmengine.runner.checkpoint as mm_ckpt
    import mmengine.utils.dl_utils as dl_utils
    from mmengine.runner import CheckpointLoader
    for prefixes, loader in SAFE_SCHEMES:
        CheckpointLoader.register_scheme(prefixes, loader, force=True)
        setattr(mm_ckpt, loader.__name__, loader)  # for callers that use the functions directly
    mm_ckpt.load_url = load_url
    dl_utils.load_url = load_url


def unsafe_schemes() -> list:
    """``CheckpointLoader`` prefixes whose loader is not one of this module's (should be empty)."""
    from mmengine.runner import CheckpointLoader
    ours = {loader for _, loader in SAFE_SCHEMES}
    return [p for p, loader in CheckpointLoader._schemes.items() if loader not in ours]


register_safe_globals()
register_safe_loaders()
