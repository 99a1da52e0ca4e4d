"""Config to model, one door (mirroring ``mmseg.apis``): every tool, the exporter and the
visualisation build segmentors through :func:`build_segmentor`.

* :func:`build_segmentor` — the segmentor of a config (path or ``Config``), SyncBN as BN off
  CUDA, optionally a checkpoint loaded strictly by :func:`load_weights`, in eval mode;
* :func:`load_weights` — a checkpoint into a model, refusing another model's weights with
  :class:`CheckpointMismatchError` (file, keys, recorded config, what to do);
* :func:`revert_sync_bn_cfg` — ``SyncBN`` -> ``BN`` in a config, for CPU and single processes.
"""
import logging
import os.path as osp
import re
import warnings
from typing import Optional

from torch import nn

__all__ = ['build_segmentor', 'load_weights', 'CheckpointMismatchError', 'mismatch_summary',
           'revert_sync_bn_cfg', 'load_config']

#: What ``weights=`` of :func:`build_segmentor` accepts.
WEIGHTS = ('init', 'offline')


class CheckpointMismatchError(ValueError):
    """A checkpoint whose weights are not the model's (another model's checkpoint, or one of the
    config before its model changed); the message names the file, what differs and what to do."""


def revert_sync_bn_cfg(node):
    """Return ``node`` with every ``type='SyncBN'`` replaced by ``'BN'`` (recursively, in place)."""
    if isinstance(node, dict):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
        for value in node.values():
            revert_sync_bn_cfg(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            revert_sync_bn_cfg(value)
    return node


def load_config(config, cfg_options: Optional[dict] = None):
    """``config`` (a path, or a ``Config`` deep-copied: building never changes the caller's)
    with ``cfg_options`` merged; it must define a model."""
    import copy

    from mmengine import Config
    cfg = Config.fromfile(config) if isinstance(config, str) else copy.deepcopy(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if 'model' not in cfg:
        raise ValueError(f'{config if isinstance(config, str) else "the config"} defines no '
                         'model (a dataset, schedule or runtime config?): give a full model '
                         'config, e.g. configs/quickstart/sanet_r18tiny-d8_1xb8-1k_synthcity-'
                         '128x256.py')
    return cfg


MISMATCH_EXAMPLES = 3


def _shape(text: str) -> str:
    return 'x'.join(d.strip() for d in text.split(',') if d.strip()) or 'scalar'


def mismatch_summary(message: str, examples: int = MISMATCH_EXAMPLES) -> str:
    """mmengine's strict ``load_state_dict`` error ``message`` in words: how many weights the
    checkpoint lacks, has in excess and has in another shape, per top-level module, each with
    its first ``examples`` keys, e.g. ``'it lacks 24 weights of the model (in decode_head),
    e.g. decode_head.conv_seg.weight, ...'``."""
    sizes = re.findall(r'size mismatch for ([\w.]+): copying a param with shape torch\.Size\('
                       r'\[([^\]]*)\]\) from checkpoint, the shape in current model is '
                       r'torch\.Size\(\[([^\]]*)\]\)', message)
    shapes = {k: f'{_shape(a)} in the file, {_shape(b)} in the model' for k, a, b in sizes}
    parts = []
    for label, pattern in (('lacks {} of the model', 'missing keys in source state_dict'),
                           ('has {} the model does not have',
                            'unexpected key in source state_dict'),
                           ('has {} of another shape', None)):
        if pattern is None:
            keys = re.findall(r'size mismatch for ([\w.]+)', message)
        else:
            found = re.search(pattern + r': ([^\n]*)', message)
            keys = [k.strip() for k in found.group(1).split(',') if k.strip()] if found else []
        if not keys:
            continue
        modules = sorted({k.split('.')[0] for k in keys})
        count = f'{len(keys)} weight' + ('s' if len(keys) > 1 else '')
        shown = ', '.join(f'{k} ({shapes[k]})' if k in shapes else k for k in keys[:examples])
        more = ', e.g. ' if len(keys) > examples else ': '
        parts.append('it ' + label.format(count) + f' (in {", ".join(modules)}){more}{shown}')
    return '; '.join(parts) or message.strip()[:300]


def _recorded_config(checkpoint) -> Optional[str]:
    """What an mmengine runner's checkpoint records of its config, in words, or None: its
    ``meta``'s ``experiment_name`` is ``{config name}_{YYYYmmdd_HHMMSS}`` (unless the config
    set ``experiment_name``)."""
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    name = meta.get('experiment_name') if isinstance(meta, dict) else None
    found = re.fullmatch(r'([\w.+-]{1,200})_\d{8}_\d{6}', name) if isinstance(name, str) else None
    return f'the run {name}, i.e. the config {found.group(1)}.py' if found else None


def load_weights(model: nn.Module, checkpoint: str, strict: bool = True,
                 model_name: str = 'this model',
                 advice: str = 'Give the checkpoint trained with this config, or the config it '
                 'was trained with') -> dict:
    """Load the file ``checkpoint`` into ``model`` (CPU) as mmengine's ``load_checkpoint`` does
    (read with the weights-only unpickler ``mmseg_ext`` sets up, a ``module.`` prefix stripped)
    and return the checkpoint (a dict, ``meta`` included).

    ``strict`` (the default): the checkpoint must hold every weight of the model, in its shape,
    and no other; if not, :class:`CheckpointMismatchError` names the file, the first missing,
    unexpected and mis-shaped keys (:func:`mismatch_summary`) and the config the checkpoint's
    meta records, says that it looks like another model's checkpoint, and ends with ``advice``
    (what to give instead, which flag to pass). A partial load would leave, e.g., the decode
    head of an FCN checkpoint loaded into an SANet model at its random initialisation, without
    an error. ``strict=False`` loads the weights that match (same key and shape) and warns with
    the same summary; the others keep their values in ``model``.
    """
    from mmengine.runner.checkpoint import _load_checkpoint, _load_checkpoint_to_model

    # mmengine's load_checkpoint in two steps, to keep the checkpoint for the message
    ckpt = _load_checkpoint(checkpoint, map_location='cpu')
    if not isinstance(ckpt, dict):
        raise CheckpointMismatchError(f'{checkpoint} holds no state_dict (it holds a '
                                      f'{type(ckpt).__name__}): give a model checkpoint')
    try:
        # strict=True copies every weight that matches, then raises if any did not
        _load_checkpoint_to_model(model, ckpt, strict=True)
    except RuntimeError as e:
        if 'do not match' not in str(e):
            raise
        summary = mismatch_summary(str(e))
        if not strict:
            warnings.warn(f'{checkpoint} loaded partially (not strict): {summary}; those weights '
                          'keep their values in the model')
            return ckpt
        recorded = _recorded_config(ckpt)
        trained = f' (its meta names {recorded})' if recorded else ''
        raise CheckpointMismatchError(
            f'{checkpoint} is not a checkpoint of {model_name}: {summary}. It looks like another '
            f"model's checkpoint{trained}, or one of this config before its model changed. "
            f'{advice}.') from None
    return ckpt


def _quiet_init(model: nn.Module) -> None:
    """``model.init_weights()`` without mmengine's INFO line per parameter."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)


def _describe(config, cfg) -> str:
    name = (config if isinstance(config, str) else cfg.filename) or 'this config'
    head = cfg.model.get('decode_head') or {}
    head = (head[-1] if isinstance(head, (list, tuple)) else head).get('type')
    return f"the model of {osp.basename(name)}{f' ({head})' if head else ''}"


def build_segmentor(config, checkpoint: Optional[str] = None, device: str = 'cpu',
                    cfg_options: Optional[dict] = None, strict: bool = True,
                    weights: str = 'init', part: Optional[str] = None,
                    advice: Optional[str] = None) -> nn.Module:
    """The segmentor of ``config`` (a path or a ``Config``, not modified) in eval mode on
    ``device``; SyncBN becomes BN unless ``device`` is CUDA. The one builder of the project.

    Args:
        checkpoint (str, optional): loaded by :func:`load_weights` (read with the weights-only
            unpickler of :mod:`mmseg_ext.checkpoint`). ``strict`` (the default): a checkpoint
            whose weights are not this config's model's is refused with
            :class:`CheckpointMismatchError`, ending with ``advice``; ``strict=False`` loads the
            weights that match, the rest keep the config's initialisation. Its ``meta``'s
            ``dataset_meta`` becomes the model's.
        cfg_options (dict, optional): merged into the config first (``--cfg-options``).
        weights (str): what the model starts from before a checkpoint. ``'init'`` (default):
            the config's initialisation, ``init_weights()`` (which reads a backbone's
            ``init_cfg=dict(type='Pretrained')`` if the config has one). ``'offline'``: the
            constructors' initialisation, ``pretrained`` and the backbone's ``init_cfg`` dropped
            and nothing read or downloaded (parameter counts, FLOPs, benchmarks).
        part (str, optional): build only this part of ``model`` (e.g. ``'decode_head'``),
            in eval mode on ``device``; no checkpoint.
    """
    from mmseg.apis import init_model

    import mmseg_ext  # noqa: F401  (registry entries + safe checkpoint loading)
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
    if part is not None and checkpoint is not None:
        raise ValueError('build_segmentor loads a checkpoint into the whole segmentor only: '
                         'leave part=None, or checkpoint=None')
    cfg = load_config(config, cfg_options)
    if not str(device).startswith('cuda'):
        revert_sync_bn_cfg(cfg.model)  # SyncBN needs CUDA and a process group
    if weights == 'offline':
        cfg.model.pretrained = None
        if isinstance(cfg.model.get('backbone'), dict):
            cfg.model.backbone.pop('init_cfg', None)
    if part is not None:
        from mmengine.registry import init_default_scope
        from mmseg.registry import MODELS
        init_default_scope(cfg.get('default_scope', 'mmseg'))
        return MODELS.build(cfg.model[part]).to(device).eval()
    model = init_model(cfg, None, device='cpu')
    if weights == 'init' and (checkpoint is None or not strict):
        _quiet_init(model)
    if checkpoint is not None:
        ckpt = load_weights(model, checkpoint, strict, _describe(config, cfg), advice or (
            'Give the checkpoint trained with this config, or the config it was trained with; '
            "strict=False loads it anyway, the weights that do not match keeping the config's "
            'initialisation'))
        meta = ckpt.get('meta')
        if isinstance(meta, dict) and meta.get('dataset_meta'):
            model.dataset_meta = meta['dataset_meta']
    return model.to(device).eval()
