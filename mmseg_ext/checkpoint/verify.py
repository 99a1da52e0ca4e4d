"""Checking a file before it is unpickled, and unpickling it: :func:`safe_load`.

:func:`verify_checkpoint` refuses empty files and files that are not checkpoints (an HTML page, a
text file, a TorchScript archive) with a message that says what the file is, and checks the CRC-32
of every record of a zip checkpoint (``MMSEG_EXT_CHECK_CRC=0`` skips that check).
:func:`check_structure` runs the restricted interpreter of
:mod:`mmseg_ext.checkpoint.restricted_pickle` over the whole pickle (globals, calls, state, every
tensor inside its storage, every storage the size of its record) and refuses torch's tar format.
:func:`weights_only_load` then unpickles with torch's weights-only unpickler on torch >= 2.6 and
with the interpreter itself before (:data:`~mmseg_ext.checkpoint.allowlist.NATIVE_ALLOWLIST`).
:func:`safe_load` does all three on the file opened once, with errors that name the file.
"""
from __future__ import annotations

import contextlib
import io
import os
import pickle
import re
import tarfile
import zipfile

import torch
from torch.serialization import MAGIC_NUMBER, PROTOCOL_VERSION

from . import allowlist, restricted_pickle
from .restricted_pickle import MalformedPickle, RefusedPickle, scan


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
    :mod:`mmseg_ext.checkpoint.restricted_pickle` as its ``pickle_module`` before. Refusals raise
    :class:`~mmseg_ext.checkpoint.restricted_pickle.RefusedPickle` (a ``pickle.UnpicklingError``);
    use :func:`safe_load` for messages that name the file."""
    with _opened(source) as f:
        start = f.tell()
        check_structure(f, _source_name(source))
        f.seek(start)
        if allowlist.NATIVE_ALLOWLIST:
            return torch.load(f, map_location=map_location, weights_only=True)
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
    """Run the restricted interpreter of :mod:`mmseg_ext.checkpoint.restricted_pickle` over the
    whole checkpoint without reading tensor data (every global, call and state it asks for; every
    tensor inside its storage; every storage the size of its record), and refuse torch's tar
    format. Raises ``RefusedPickle`` (unsafe) or ``MalformedPickle`` (not a valid pickle)."""
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
    """CRC-32 verification is on unless ``MMSEG_EXT_CHECK_CRC`` is ``0``/``false``/``no``/
    ``off``."""
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
    # 'mmseg_ext/checkpoint.py': the message as it was before the package split (now allowlist.py)
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
