"""Rewrite a checkpoint you trust, but that the weights-only loader refuses, as one it accepts.

    python tools/model_converters/trusted_to_safe.py OLD.pth NEW.pth --trusted

After ``import mmseg_ext`` every checkpoint is loaded by the restricted loader
(:func:`mmseg_ext.checkpoint.safe_load`), which refuses a file that pickles anything beyond
tensors, containers, numbers, strings, numpy arrays and a few mmengine objects: e.g. an older
checkpoint whose ``meta`` holds an ``argparse.Namespace``. If you know where such a file comes from,
this tool loads it **once with Python's full unpickler** (which runs whatever the file asks for:
never use it on a file from an unknown source) and writes ``NEW.pth`` holding

* ``state_dict``: every tensor of the old ``state_dict`` (or of the file itself, when it is a bare
  mapping of names to tensors), unchanged;
* ``meta``: the old ``meta`` reduced to what the loader accepts: containers, numbers, strings,
  numpy arrays and scalars stay; an object with attributes becomes a dict of them
  (``Namespace(lr=0.1)`` -> ``{'lr': 0.1}``); anything else becomes its ``repr`` string;
* any other top-level key named with ``--keep`` (e.g. ``optimizer``), reduced the same way.

It then loads ``NEW.pth`` with :func:`~mmseg_ext.checkpoint.safe_load` and checks that every tensor
is bit-identical to the old one. Nothing is written without ``--trusted``.
"""
import argparse
import os
import os.path as osp
import sys

import numpy as np
import torch

_PLAIN = (str, int, float, bool, complex, bytes, type(None), torch.Tensor, torch.dtype,
          torch.device, np.ndarray, np.generic)


def reduce_to_safe(obj, path='meta', notes=None):
    """``obj`` with every value the loader would refuse replaced (see the module docstring);
    ``notes`` collects what was replaced, by path."""
    notes = [] if notes is None else notes
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject:
        notes.append(f'{path}: numpy object array -> list')
        return reduce_to_safe(obj.tolist(), path, notes)
    if isinstance(obj, _PLAIN):
        return obj
    if isinstance(obj, dict):
        return {(k if isinstance(k, (str, int, float, bool, type(None))) else repr(k)):
                reduce_to_safe(v, f'{path}.{k}', notes) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = [reduce_to_safe(v, f'{path}[{i}]', notes) for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items) if isinstance(obj, tuple) \
            else set(items) if isinstance(obj, set) else frozenset(items)
    if hasattr(obj, '__dict__') and not callable(obj):
        notes.append(f'{path}: {type(obj).__name__} -> dict of its attributes')
        return reduce_to_safe(dict(vars(obj)), path, notes)
    notes.append(f'{path}: {type(obj).__name__} -> its repr string')
    return repr(obj)


def convert(src: str, dst: str, keep=()) -> list:
    """Load ``src`` with the full unpickler, write ``dst`` for the weights-only loader, verify it;
    return the notes of what was reduced."""
    # Python's full unpickler, on the user's explicit statement that the file is trusted
    old = torch.load(src, map_location='cpu', weights_only=False)
    if not isinstance(old, dict):
        raise SystemExit(f'{src} holds a {type(old).__name__}, not a checkpoint dict: nothing to '
                         'convert')
    if 'state_dict' in old:
        state_dict = old['state_dict']
    elif old and all(isinstance(v, torch.Tensor) for v in old.values()):
        state_dict = old  # a bare state dict
    else:
        raise SystemExit(f'{src} has no state_dict (keys: {sorted(map(str, old))[:8]}); name the '
                         'keys to keep with --keep')
    bad = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise SystemExit(f'{src}: state_dict entries {bad[:5]} are not tensors')
    notes = []
    new = {'state_dict': {k: v.detach() if isinstance(v, torch.nn.Parameter) else v
                          for k, v in state_dict.items()}}
    if 'meta' in old:
        new['meta'] = reduce_to_safe(old['meta'], 'meta', notes)
    for key in keep:
        if key not in old:
            raise SystemExit(f'--keep {key}: {src} has no key {key!r} (keys: {sorted(old)[:8]})')
        new[key] = reduce_to_safe(old[key], key, notes)
    dropped = sorted(str(k) for k in old if k not in new and old is not state_dict)
    if dropped:
        notes.append(f'dropped top-level keys {dropped} (keep them with --keep)')
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    torch.save(new, dst)
    from mmseg_ext.checkpoint import safe_load
    loaded = safe_load(dst, map_location='cpu')['state_dict']
    for k, v in new['state_dict'].items():
        if not (loaded[k].dtype == v.dtype and torch.equal(loaded[k], v)):
            raise SystemExit(f'{dst}: tensor {k} differs after reloading; nothing should differ')
    return notes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='the checkpoint the weights-only loader refuses')
    parser.add_argument('dst', help='where to write the converted checkpoint (must not exist)')
    parser.add_argument('--trusted', action='store_true',
                        help='state that you trust SRC: it is unpickled with Python\'s full '
                        'unpickler, which can run any code the file contains')
    parser.add_argument('--keep', nargs='*', default=[], metavar='KEY',
                        help='other top-level keys to keep (reduced like meta), e.g. optimizer')
    args = parser.parse_args(argv)
    if not args.trusted:
        parser.error(f'{args.src} would be unpickled with the full unpickler, which runs any code '
                     'in it. Add --trusted only if you know where the file comes from.')
    if not osp.isfile(args.src):
        parser.error(f'{args.src} can not be found')
    if osp.exists(args.dst):
        parser.error(f'{args.dst} exists; choose a new file name')
    sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
    import mmseg_ext  # noqa: F401  (the safe loader that verifies the result)
    notes = convert(args.src, args.dst, args.keep)
    for note in notes:
        print(f'  {note}')
    print(f'{args.dst}: written and verified with mmseg_ext.checkpoint.safe_load '
          f'({len(notes)} values reduced)')


if __name__ == '__main__':
    main()
