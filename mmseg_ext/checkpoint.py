"""Let ``torch.load(weights_only=True)`` (torch >= 2.6's default) read mmengine/mmseg checkpoints.

mmengine 0.10.7 calls ``torch.load(filename, map_location=...)`` without ``weights_only``, so under
torch >= 2.6 every ``tools/test.py``, ``--resume`` and ``load_from`` of a local checkpoint fails with
"Unsupported global". A checkpoint saved by the stock runner pickles, besides torch's own storages:

* ``mmengine.logging.history_buffer.HistoryBuffer`` (the message hub's scalars), whose
  ``_statistics_methods`` dict holds its own methods, pickled as ``getattr(HistoryBuffer, 'mean')``;
* ``_codecs.encode`` (how protocol 2 pickles ``bytes``);
* numpy's ``ndarray``, ``dtype``, ``_reconstruct`` and ``scalar`` (arrays and numpy scalars in
  ``meta`` and the message hub).

Importing this module allow-lists exactly these globals: in torch's weights-only unpickler
(``torch.serialization.add_safe_globals``) on torch >= 2.6, and on torch 2.0-2.5, which cannot
extend that unpickler with them, in :mod:`mmseg_ext.restricted_pickle`, an unpickler whose only
globals are torch's weights-only allow-list plus these (:data:`NATIVE_ALLOWLIST` says which is in
use; :func:`weights_only_load` is the one call for both). ``builtins.getattr`` is not allow-listed
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
zip checkpoint (set ``MMSEG_EXT_CHECK_CRC=0`` to skip that check).
"""
from __future__ import annotations

import codecs
import io
import logging
import os
import os.path as osp
import pickle
import re
import sys
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
    """Allow-list :data:`SAFE_GLOBALS` for :func:`safe_load` (idempotent): in torch's weights-only
    unpickler on torch >= 2.6, in :mod:`mmseg_ext.restricted_pickle` before that."""
    if NATIVE_ALLOWLIST:
        torch.serialization.add_safe_globals(SAFE_GLOBALS)
        return
    from . import restricted_pickle
    restricted_pickle.ALLOWED.clear()
    restricted_pickle.ALLOWED.update(restricted_allowlist())


def weights_only_load(source, map_location=None):
    """Unpickle ``source`` allowing only torch's tensor globals and :data:`SAFE_GLOBALS`:
    ``torch.load(weights_only=True)`` on torch >= 2.6, ``torch.load`` with
    :mod:`mmseg_ext.restricted_pickle` as its ``pickle_module`` before (no file checks; use
    :func:`safe_load`)."""
    if NATIVE_ALLOWLIST:
        return torch.load(source, map_location=map_location, weights_only=True)
    from . import restricted_pickle
    # weights_only=True cannot take a pickle_module; the restricted module is the allow-list here
    return torch.load(source, map_location=map_location, pickle_module=restricted_pickle,
                      weights_only=False)


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


def safe_load(source, map_location=None, name: str | None = None,
              check_crc: bool | None = None):
    """``torch.load(source, weights_only=True)`` after :func:`verify_checkpoint`, with errors that
    name the file and say what it is; the only way mmseg_ext's loaders unpickle a checkpoint."""
    name = name or _source_name(source)
    verify_checkpoint(source, name, check_crc)
    try:
        return weights_only_load(source, map_location=map_location)
    except pickle.UnpicklingError as err:
        detail = _refusal_detail(err)
        if detail.startswith('Unsupported operand') or not (
                NATIVE_ALLOWLIST or detail.startswith(('Unsupported global', 'mmseg_ext refuses'))):
            raise CheckpointFileError(
                f'{name} is not a checkpoint or is corrupted: its pickle stream is invalid '
                f'({detail}). Copy or download the checkpoint again.') from None
        raise UnsafeCheckpointError(
            f'{name} was refused by the weights-only loader ({detail}). mmengine/mmseg '
            'checkpoints need only tensors, containers, numbers, strings, numpy arrays and the '
            'globals allow-listed in mmseg_ext/checkpoint.py; this file asks for more, which can '
            'run code. Nothing of it was executed. Use checkpoints from a source you trust, saved '
            'by mmengine/torch.save.') from None
    except EOFError:
        raise CheckpointFileError(
            f'{name} is truncated: its data ends before the checkpoint does. Copy or download the '
            'checkpoint again.') from None


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


def _extract_legacy_hub_zip(path: str, model_dir: str) -> str:
    """Extract the one file of a legacy hub zip into ``model_dir`` (after its CRC-32 check)."""
    _check_zip_crc_only(path)
    with zipfile.ZipFile(path) as zf:
        member = zf.infolist()[0]
        return zf.extract(member, model_dir)  # zipfile drops absolute and '..' components


def _check_zip_crc_only(path: str) -> None:
    if not crc_check_enabled():
        return
    with zipfile.ZipFile(path) as zf:
        bad = zf.testzip()
    if bad is not None:
        raise CheckpointFileError(f'{path} is corrupted: the CRC-32 of its record {bad!r} does '
                                  'not match its contents. Delete it and download it again.')


def hub_cache_path(url: str, model_dir: str | None = None, file_name: str | None = None) -> str:
    """Where :func:`load_url` (like ``torch.hub.load_state_dict_from_url``) caches ``url``."""
    if model_dir is None:
        model_dir = osp.join(torch.hub.get_dir(), 'checkpoints')
    return osp.join(model_dir, file_name or osp.basename(urlparse(url).path))


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
        cached = _extract_legacy_hub_zip(cached, osp.dirname(cached))
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
