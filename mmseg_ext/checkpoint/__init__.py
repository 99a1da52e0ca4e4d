"""Let ``torch.load(weights_only=True)`` (torch >= 2.6's default) read mmengine/mmseg checkpoints.

mmengine 0.10.7 calls ``torch.load(filename, map_location=...)`` without ``weights_only``, so
under torch >= 2.6 every ``tools/test.py``, ``--resume`` and ``load_from`` of a local checkpoint
fails with "Unsupported global". A checkpoint saved by the stock runner pickles, besides torch's
own storages, mmengine's ``HistoryBuffer`` (with ``getattr(HistoryBuffer, 'mean')`` and the like),
``_codecs.encode`` and numpy's arrays, dtypes and scalars.

Importing this package allow-lists exactly these globals (:mod:`.allowlist`), in
:mod:`.restricted_pickle` (a pickle interpreter that builds only what a checkpoint needs; its
module docstring has the rules) on every torch, and in torch's weights-only unpickler
(``torch.serialization.add_safe_globals``) on torch >= 2.6. :func:`weights_only_load`
(:mod:`.verify`) runs the interpreter over every checkpoint first (:func:`check_structure`:
globals, calls, state, every tensor inside its storage, every storage the size of its record, no
tar format), then unpickles with torch's weights-only unpickler on torch >= 2.6 and with the
interpreter itself on torch 2.0-2.5, which cannot extend torch's (:data:`NATIVE_ALLOWLIST` says
which). ``builtins.getattr`` is not allow-listed as such: the name is bound to
:func:`restricted_getattr`, which answers only ``getattr(HistoryBuffer, <registered statistics
method>)`` and refuses everything else, so a checkpoint cannot use it to reach arbitrary
attributes. Any other global is still refused by torch's weights-only unpickler. Nothing here sets
``weights_only=False`` or ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``.

Every route by which mmengine (hence mmseg and mmpretrain) reads a checkpoint goes through
:func:`safe_load`: importing this package re-registers all of mmengine's ``CheckpointLoader``
schemes with loaders that call ``torch.load(weights_only=True)`` explicitly and replaces
mmengine's ``load_url`` by :func:`load_url` (:mod:`.loaders`). ``load_from``, ``resume``,
``pretrained=`` and ``init_cfg=dict(type='Pretrained')`` all reach ``CheckpointLoader``. Before
unpickling, :func:`verify_checkpoint` refuses empty files and files that are not checkpoints (an
HTML page, a text file) with a message that says what the file is, and checks the CRC-32 of every
record of a zip checkpoint (set ``MMSEG_EXT_CHECK_CRC=0`` to skip that check). URLs are cached one
folder per full URL (:func:`hub_cache_path`).

The names below are re-exported from the submodules; a module-level setting is read where it is
defined, so a test that switches one patches the submodule (e.g. ``allowlist.NATIVE_ALLOWLIST``).
"""
from . import allowlist, loaders, restricted_pickle, verify  # noqa: F401
from .allowlist import (
                        NATIVE_ALLOWLIST,
                        SAFE_GLOBALS,
                        check_history_buffer_state,
                        numpy_multiarray,
                        register_safe_globals,
                        restricted_allowlist,
                        restricted_getattr,
                        safe_globals,
)
from .loaders import (
                        SAFE_SCHEMES,
                        hub_cache_path,
                        load_from_ceph,
                        load_from_http,
                        load_from_local,
                        load_from_mmcls,
                        load_from_openmmlab,
                        load_from_pavi,
                        load_from_torchvision,
                        load_url,
                        register_safe_loaders,
                        unsafe_schemes,
)
from .verify import (
                        CRC_ENV,
                        CheckpointFileError,
                        UnsafeCheckpointError,
                        check_structure,
                        crc_check_enabled,
                        safe_load,
                        verify_checkpoint,
                        weights_only_load,
)

__all__ = [
    'CRC_ENV', 'CheckpointFileError', 'NATIVE_ALLOWLIST', 'SAFE_GLOBALS', 'SAFE_SCHEMES',
    'UnsafeCheckpointError', 'check_history_buffer_state', 'check_structure',
    'crc_check_enabled', 'hub_cache_path', 'load_from_ceph', 'load_from_http', 'load_from_local',
    'load_from_mmcls', 'load_from_openmmlab', 'load_from_pavi', 'load_from_torchvision',
    'load_url', 'numpy_multiarray', 'register_safe_globals', 'register_safe_loaders',
    'restricted_allowlist', 'restricted_getattr', 'safe_globals', 'safe_load', 'unsafe_schemes',
    'verify_checkpoint', 'weights_only_load'
]

register_safe_globals()
register_safe_loaders()
