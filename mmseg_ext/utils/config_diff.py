# Copyright (c) mmseg_ext contributors. All rights reserved.
"""Is a finished run a run of this config? The comparisons ``zoo_compare.py`` and
``learning_check.py`` make before they report or reuse a run (issue #25 and after).

* :func:`config_difference` compares the config a run dumped (mmengine writes it into the work
  dir) with the config as it is now, key by key;
* :func:`model_record` is the model a config builds *with the code as it is now*: every
  component's constructor arguments with their defaults filled in. Recorded when a run is trained
  and compared when it is reused, it also catches a changed default of a head, which leaves the
  config text the same.
"""
import inspect
import json
import re
from typing import Optional, Sequence

from .launcher import revert_sync_bn_cfg

__all__ = ['plain', 'first_difference', 'config_difference', 'model_record']


def plain(obj):
    """A config value as plain data (tuples as lists, ConfigDicts as dicts), for comparing."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + '...'


def first_difference(a, b, path: str = '') -> Optional[str]:
    """The first key path where ``a`` (a run's) and ``b`` (the asked config's) differ, as
    ``'path a-value vs b-value'``; None when they are equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            sub = f'{path}.{k}' if path else k
            if k not in a or k not in b:
                return (f'{sub} {"absent" if k not in a else _short(a[k])} vs '
                        f'{"absent" if k not in b else _short(b[k])}')
            diff = first_difference(a[k], b[k], sub)
            if diff:
                return diff
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            diff = first_difference(x, y, f'{path}[{i}]')
            if diff:
                return diff
        return None
    return None if a == b else f'{path} {_short(a)} vs {_short(b)}'


def config_difference(run_cfg, cfg, keys: Sequence[str] = ('model', 'train_cfg')) -> Optional[str]:
    """Where the config a run recorded trains another model or schedule than ``cfg`` (None: the
    same). Compared: ``keys`` (SyncBN counted as BN, as tools/train.py switches it on CPU); the
    run's value comes first in the message."""
    for key in keys:
        a = revert_sync_bn_cfg(plain(run_cfg.get(key) or {}))
        b = revert_sync_bn_cfg(plain(cfg.get(key) or {}))
        diff = first_difference(a, b, key)
        if diff:
            return diff
    return None


def _defaults(cls) -> dict:
    """Constructor defaults of ``cls`` and, while a signature passes ``**kwargs`` on, of its bases
    (``SAHead(**kwargs)`` -> ``BaseDecodeHead``); the most derived class wins."""
    out = {}
    # a registered function (a builder) is its own signature; a class, each __init__ of its MRO
    inits = [k.__dict__.get('__init__') for k in cls.__mro__] if isinstance(cls, type) else [cls]
    for init in inits:
        if init is None:
            continue
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            break
        for p in params:
            if p.name != 'self' and p.default is not inspect.Parameter.empty:
                out.setdefault(p.name, p.default)
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            break
    return out


def model_record(model_cfg) -> dict:
    """``model_cfg`` (SyncBN as BN) with every registered component's unset constructor
    arguments filled in from the code's defaults, as JSON data (other objects as their repr).

    A ``type`` the registry does not know is kept as written. Needs mmseg's modules registered
    (``mmseg.utils.register_all_modules()``) and the config's ``custom_imports`` imported.
    """
    from mmseg.registry import MODELS

    def fill(node):
        if isinstance(node, dict):
            node = {k: fill(v) for k, v in node.items()}
            kind = node.get('type')
            cls = MODELS.get(kind) if isinstance(kind, str) else None
            # torch.nn's own defaults (BN's device=None, ...) are left out: they are not the
            # project's and differ between the two torch stacks without changing a model
            if cls is not None and not getattr(cls, '__module__', '').startswith('torch.'):
                for name, value in _defaults(cls).items():
                    node.setdefault(name, fill(plain(value)))
            return node
        if isinstance(node, list):
            return [fill(v) for v in node]
        return node

    record = fill(revert_sync_bn_cfg(plain(model_cfg)))
    return json.loads(json.dumps(record, default=_stable_repr, sort_keys=True))


def _stable_repr(value) -> str:
    """A default that is not JSON data, named the same in every process (no ``at 0x...``)."""
    if callable(value) and hasattr(value, '__qualname__'):
        return f'{getattr(value, "__module__", "")}.{value.__qualname__}'
    return re.sub(r' at 0x[0-9a-fA-F]+', '', repr(value))
