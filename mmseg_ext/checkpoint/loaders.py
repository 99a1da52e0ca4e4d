"""mmengine's ``CheckpointLoader`` schemes, each through :func:`~mmseg_ext.checkpoint.safe_load`.

:func:`register_safe_loaders` re-registers every scheme of mmengine 0.10.7 (local paths,
``http(s)://``, ``torchvision://``/``modelzoo://``, ``open-mmlab://``/``openmmlab://``,
``mmcls://``, ``s3://``/``petrel://``, ``pavi://``) with loaders that call
``torch.load(weights_only=True)`` explicitly (so ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` cannot turn it
off), and replaces mmengine's ``load_url`` (``torch.hub.load_state_dict_from_url``, which loads
with ``weights_only=False``) by :func:`load_url`. URLs are cached one folder per full URL
(:func:`hub_cache_path`); a legacy hub zip (one member) is extracted beside it after its CRC-32
check. :func:`unsafe_schemes` lists the schemes whose loader is not one of these (none).
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import os.path as osp
import sys
import zipfile
from tempfile import TemporaryDirectory
from urllib.parse import urlparse

import torch
from mmengine.logging import print_log

from .verify import CheckpointFileError, _describe_zip, crc_check_enabled, safe_load


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
    """``torch.hub.load_state_dict_from_url`` (same cache, same arguments) through
    :func:`safe_load`.

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
    """``torchvision://NAME`` (and the deprecated ``modelzoo://NAME``): torchvision's URL for
    NAME."""
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
    from mmengine.runner.checkpoint import (
        _get_mmengine_home,
        get_deprecated_model_names,
        get_external_models,
    )
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
