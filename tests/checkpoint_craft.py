"""Crafted checkpoints for the loader's tests: zip checkpoints with a pickle and records of our
choosing, pickles written opcode by opcode, and a snapshot of the process state a malicious file
could change."""
import collections
import copyreg
import io
import os
import pickle
import pickletools
import struct
import zipfile

import torch


class Call:
    """Pickled as ``func(*args)`` (REDUCE), then ``BUILD state`` when ``state`` is given."""

    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state


class Pid:
    """Pickled as a persistent id (BINPERSID) with this tuple."""

    def __init__(self, *pid):
        self.pid = pid


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, Pid) else None

    def reducer_override(self, obj):
        if isinstance(obj, Call):
            return (obj.func, obj.args) if obj.state is None else (obj.func, obj.args, obj.state)
        return NotImplemented


def dumps(obj, protocol=2) -> bytes:
    buf = io.BytesIO()
    _Pickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


def storage(key, numel, storage_type=torch.FloatStorage, location='cpu'):
    return Pid('storage', storage_type, key, location, numel)


def tensor(stor, offset, size, stride, hooks=None, metadata=None):
    args = (stor, offset, tuple(size), tuple(stride), False,
            collections.OrderedDict() if hooks is None else hooks)
    if metadata is not None:
        args += (metadata, )
    return Call(torch._utils._rebuild_tensor_v2, args)


def template_records():
    """The records torch.save writes besides data.pkl and data/* (version, byteorder, ...)."""
    buf = io.BytesIO()
    torch.save({}, buf)
    zf = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    prefix = zf.namelist()[0].split('/')[0]
    rest = [(n, zf.read(n)) for n in zf.namelist()
            if not (n.endswith('/data.pkl') or '/data/' in n)]
    return prefix, rest


def write_zip(path, data_pkl: bytes, records: dict = None, extra=()):
    """A zip checkpoint: ``data.pkl`` first, the template's records, ``data/<key>`` records
    (CRC-32s computed by zipfile, so only the loader's own checks can refuse it)."""
    prefix, rest = template_records()
    with zipfile.ZipFile(path, 'w') as zf:
        zf.writestr(f'{prefix}/data.pkl', data_pkl)
        for name, data in rest:
            zf.writestr(name, data)
        for key, data in (records or {}).items():
            zf.writestr(f'{prefix}/data/{key}', data)
        for name, data in extra:
            zf.writestr(name, data)
    return path


def floats(*values) -> bytes:
    return struct.pack(f'<{len(values)}f', *values)


# ---- opcode-level pickles -------------------------------------------------------------------

def op_global(module, name) -> bytes:
    return b'c' + f'{module}\n{name}\n'.encode()


def op_str(text) -> bytes:
    data = text.encode()
    return b'X' + struct.pack('<I', len(data)) + data


def build_on(target: bytes, state: bytes) -> bytes:
    """A protocol-2 pickle that pushes ``target`` and sets ``state`` on it with BUILD, then
    returns ``{'state_dict': {}}``."""
    return (b'\x80\x02' + target + state + b'b' + b'0'  # BUILD, POP the target
            + b'}' + op_str('state_dict') + b'}' + b's.')


def slot_state(**attrs) -> bytes:
    """``(None, {attr: value})``: pickle's slot-state form, which plain ``pickle`` applies with
    ``setattr`` (values: protocol-2 opcodes)."""
    body = b'}(' + b''.join(op_str(k) + v for k, v in attrs.items()) + b'u'
    return b'N' + body + b'\x86'


# ---- what a malicious file could change in the process ----------------------------------------

def process_snapshot() -> dict:
    """State that a file refused or loaded must leave as it was."""
    from mmengine.logging import HistoryBuffer

    from mmseg_ext import checkpoint
    from mmseg_ext.checkpoint import restricted_pickle
    funcs = [torch._utils._rebuild_tensor_v2, torch._utils._rebuild_tensor,
             torch._utils._rebuild_parameter, torch._tensor._rebuild_from_type_v2,
             checkpoint.restricted_getattr, collections.OrderedDict.__init__]
    classes = [collections.Counter, collections.OrderedDict, HistoryBuffer, torch.Tensor,
               torch.nn.Parameter]
    return {
        'defaults': [(getattr(f, '__defaults__', None), getattr(f, '__kwdefaults__', None),
                      dict(getattr(f, '__dict__', {}))) for f in funcs],
        'classes': [sorted(vars(c)) for c in classes] + [vars(collections.Counter)['most_common']],
        'stats': dict(HistoryBuffer._statistics_methods),
        'extensions': dict(copyreg._extension_registry),
        'allowed': dict(restricted_pickle.ALLOWED),
    }


# ---- the fuzzer -------------------------------------------------------------------------------

def _rezip(src: bytes, mutate) -> bytes:
    """``src`` (a zip checkpoint) with ``mutate(name, data) -> data`` applied to its records,
    CRC-32s recomputed by zipfile."""
    zin = zipfile.ZipFile(io.BytesIO(src))
    out = io.BytesIO()
    with zipfile.ZipFile(out, 'w') as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, mutate(info.filename, zin.read(info.filename)))
    return out.getvalue()


def _opcode_offsets(data: bytes):
    try:
        return [pos for _, _, pos in pickletools.genops(data)]
    except Exception:  # noqa: BLE001  (a mutated pickle may not parse; offsets up to there)
        return [0]


def _flip(rng, data: bytes, count=None) -> bytes:
    data = bytearray(data)
    for _ in range(count or rng.randint(1, 3)):
        pos = rng.randrange(len(data))
        data[pos] ^= rng.randint(1, 255)
    return bytes(data)


def _tensors(obj, prefix=''):
    """(path, tensor) of every tensor in a loaded checkpoint."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f'{prefix}/{k}')
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f'{prefix}/{i}')


def fuzz(seed: int, count: int, workdir: str, restricted: bool) -> dict:
    """Load ``count`` mutations of real checkpoints (zip and legacy): flipped and truncated
    records with recomputed CRC-32s, flipped and replaced pickle opcodes, flipped and cut legacy
    files. Each must be refused with the project's errors or load; a load of a mutated tensor
    record must give exactly the record's bytes; afterwards the process state is unchanged and a
    trusted checkpoint loads exactly. Returns counts per outcome and the failures."""
    import os.path as osp
    import random

    from mmseg_ext.checkpoint import (
        CheckpointFileError,
        UnsafeCheckpointError,
        allowlist,
        safe_load,
    )
    if restricted:
        allowlist.NATIVE_ALLOWLIST = False  # where weights_only_load reads it
    rng = random.Random(seed)
    from test_checkpoint_safety import _runner_like_checkpoint  # noqa: F401  (tests on sys.path)
    ckpt = _runner_like_checkpoint()
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    zipped = buf.getvalue()
    buf = io.BytesIO()
    torch.save(ckpt, buf, _use_new_zipfile_serialization=False)
    legacy = buf.getvalue()
    names = zipfile.ZipFile(io.BytesIO(zipped)).namelist()
    pkl = next(n for n in names if n.endswith('/data.pkl'))
    records = [n for n in names if '/data/' in n]
    pkl_bytes = zipfile.ZipFile(io.BytesIO(zipped)).read(pkl)
    offsets = _opcode_offsets(pkl_bytes)
    valid_ops = sorted({op.code.encode('latin-1')[0] for op in pickletools.opcodes})
    before = process_snapshot()
    outcomes = collections.Counter()
    failures = []
    for i in range(count):
        kind = rng.choice(['pkl-flip', 'pkl-cut', 'pkl-opcode', 'record-flip', 'record-cut',
                           'record-grow', 'legacy-flip', 'legacy-cut'])
        expect_record = None
        if kind == 'pkl-flip':
            data = _rezip(zipped, lambda n, d: _flip(rng, d) if n == pkl else d)
        elif kind == 'pkl-cut':
            cut = rng.randrange(len(pkl_bytes))
            data = _rezip(zipped, lambda n, d: d[:cut] if n == pkl else d)
        elif kind == 'pkl-opcode':
            pos, op = rng.choice(offsets), rng.choice(valid_ops)
            data = _rezip(zipped, lambda n, d: d[:pos] + bytes([op]) + d[pos + 1:]
                          if n == pkl else d)
        elif kind.startswith('record'):
            target = rng.choice(records)
            if kind == 'record-flip':
                flipped = {}

                def mutate(n, d):
                    if n != target or not d:
                        return d
                    flipped[n] = _flip(rng, d)
                    return flipped[n]
                data = _rezip(zipped, mutate)
                expect_record = (target.rsplit('/', 1)[1], flipped.get(target))
            elif kind == 'record-cut':
                data = _rezip(zipped, lambda n, d: d[:rng.randrange(len(d))] if n == target
                              and d else d)
            else:
                data = _rezip(zipped, lambda n, d: d + b'\0' * rng.randint(1, 64)
                              if n == target else d)
        elif kind == 'legacy-flip':
            data = _flip(rng, legacy, rng.randint(1, 4))
        else:
            data = legacy[:rng.randrange(len(legacy))]
        path = osp.join(workdir, f'm{i}.pth')
        with open(path, 'wb') as f:
            f.write(data)
        try:
            loaded = safe_load(path, map_location='cpu')
        except UnsafeCheckpointError as err:
            outcome = 'unsafe' if path in str(err) else 'unnamed'
        except CheckpointFileError as err:
            outcome = 'file-error' if path in str(err) else 'unnamed'
        except Exception as err:  # noqa: BLE001  (anything else is a failure of the loader)
            outcome = 'raw-error'
            failures.append(f'{kind} #{i}: {type(err).__name__}: {err}'[:300])
        else:
            outcome = 'loaded'
            if expect_record is not None and expect_record[1] is not None:
                key, raw = expect_record
                got = [t for _, t in _tensors(loaded)
                       if t.untyped_storage().nbytes() == len(raw)
                       and bytes(t.untyped_storage()) == raw]
                if not got:
                    outcome = 'record-mismatch'
                    failures.append(f'{kind} #{i}: no tensor holds the bytes of record {key}')
        if outcome == 'unnamed':
            failures.append(f'{kind} #{i}: the error does not name the file')
        outcomes[f'{kind}:{outcome}'] += 1
        os.remove(path)
    if process_snapshot() != before:
        failures.append('the process state changed')
    trusted = osp.join(workdir, 'trusted.pth')
    torch.save(ckpt, trusted)
    again = safe_load(trusted, map_location='cpu')
    for (k, a), (_, b) in zip(_tensors(ckpt), _tensors(again)):
        if not (torch.equal(a, b) and not b.is_neg()):
            failures.append(f'trusted tensor {k} differs after the fuzzing')
    return {'outcomes': dict(outcomes), 'failures': failures}
