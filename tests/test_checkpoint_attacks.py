"""Crafted checkpoints that try to change the process, read outside the file, crash or hang it.

Each is refused as unsafe, naming the file, with nothing executed; afterwards the process is as it
was (:func:`checkpoint_craft.process_snapshot`) and a trusted checkpoint loads to its exact values.
Every test runs on both stacks: through torch's weights-only unpickler after the restricted scan
(torch >= 2.6) and through :mod:`mmseg_ext.checkpoint.restricted_pickle` alone (torch < 2.6, and
here on every torch with ``NATIVE_ALLOWLIST`` switched off).
"""
import collections
import copyreg
import os
import pickle
import tarfile

import pytest
import torch
from checkpoint_craft import (
    Call,
    build_on,
    dumps,
    floats,
    op_global,
    op_str,
    process_snapshot,
    slot_state,
    storage,
    tensor,
    write_zip,
)

import mmseg_ext  # noqa: F401
from mmseg_ext.checkpoint import (
    CheckpointFileError,
    UnsafeCheckpointError,
    allowlist,
    restricted_pickle,
    safe_load,
)


@pytest.fixture(params=['native', 'restricted'])
def loader(request, monkeypatch):
    """Both unpicklers: torch's own (where this torch has the extensible one) and ours."""
    if request.param == 'native' and not allowlist.NATIVE_ALLOWLIST:
        pytest.skip('torch < 2.6: the restricted unpickler is the only one')
    if request.param == 'restricted':
        # where weights_only_load reads it
        monkeypatch.setattr(allowlist, 'NATIVE_ALLOWLIST', False)
    return request.param


def _trusted(tmp_path):
    path = tmp_path / 'trusted.pth'
    weights = {'w': torch.tensor([1.0, 2.0, -0.5]), 'b': torch.arange(6).reshape(2, 3)}
    torch.save({'state_dict': weights, 'meta': {'iter': 3}}, path)
    return path, weights


def _assert_refused(path, *patterns):
    before = process_snapshot()
    with pytest.raises(UnsafeCheckpointError) as err:
        safe_load(path)
    message = str(err.value)
    assert str(path) in message and 'Nothing of it was executed' in message, message
    assert 'weights_only' not in message and 'will likely succeed' not in message, message
    for pattern in patterns:
        assert pattern in message, message
    assert process_snapshot() == before
    return message


def _assert_intact(tmp_path):
    path, weights = _trusted(tmp_path)
    loaded = safe_load(path)['state_dict']
    for k, v in weights.items():
        assert torch.equal(loaded[k], v) and not loaded[k].is_neg(), k


# ---- 1. BUILD on allow-listed functions and classes ------------------------------------------

def test_build_on_function_cannot_negate_later_tensors(tmp_path, loader):
    """The issue's file: BUILD sets ``__defaults__`` of torch's tensor-rebuild function so that
    every later tensor gets the negative bit."""
    neg = b'(' + op_str('neg') + b'\x88d'  # {'neg': True}
    evil = build_on(op_global('torch._utils', '_rebuild_tensor_v2'),
                    slot_state(__defaults__=b'(' + neg + b't'))
    path = write_zip(tmp_path / 'evil.pth', evil)
    _assert_refused(path, 'BUILD', '_rebuild_tensor_v2')
    _assert_intact(tmp_path)


@pytest.mark.parametrize('module,name', [
    ('collections', 'Counter'), ('collections', 'OrderedDict'),
    ('mmengine.logging.history_buffer', 'HistoryBuffer'), ('torch', 'Tensor'),
])
def test_build_on_class_is_refused(tmp_path, loader, module, name):
    """State on a class (``Counter.most_common`` replaced process-wide, in the issue)."""
    evil = build_on(op_global(module, name),
                    slot_state(most_common=op_global('torch._utils', '_rebuild_tensor')))
    _assert_refused(write_zip(tmp_path / 'cls.pth', evil), 'BUILD', name)
    _assert_intact(tmp_path)


def test_build_on_returned_function_and_dict_state(tmp_path, loader):
    """A function reached through the restricted getattr, and the plain-dict form of BUILD."""
    target = (op_global('builtins', 'getattr') + op_global('mmengine.logging.history_buffer',
                                                           'HistoryBuffer')
              + op_str('mean') + b'\x86R')
    evil = build_on(target, b'}' + op_str('__defaults__') + b'N' + b's')
    _assert_refused(write_zip(tmp_path / 'fn.pth', evil), 'BUILD')


def test_history_buffer_cannot_swap_statistics_methods(tmp_path, loader, monkeypatch):
    """HistoryBuffer.__setstate__ merges statistics methods into the class-wide registry: a file
    may only restate the registered ones."""
    from mmengine.logging import HistoryBuffer
    buf = HistoryBuffer([1.0, 2.0], [1, 1])
    good = dumps({'b': buf})
    path = write_zip(tmp_path / 'good.pth', good)
    assert safe_load(path)['b'].mean() == 1.5
    state = dict(vars(buf), statistics_methods={'mean': HistoryBuffer.max})
    with monkeypatch.context() as m:  # what a writer of the file would pickle
        m.setattr(HistoryBuffer, '__getstate__', lambda self: state)
        evil = dumps({'b': buf})  # NEWOBJ + BUILD
    _assert_refused(write_zip(tmp_path / 'swap.pth', evil), 'statistics methods')
    assert HistoryBuffer([1.0, 3.0], [1, 1]).mean() == 2.0


def test_numpy_dtype_must_be_a_copy(tmp_path, loader):
    """``numpy.dtype(..., copy=False)`` returns numpy's shared dtype, whose BUILD would change it
    for the whole process."""
    import numpy as np
    evil = dumps({'d': Call(np.dtype, ('f8', False, False), (3, '>', None, None, None, -1, -1, 0))})
    _assert_refused(write_zip(tmp_path / 'dtype.pth', evil), 'numpy.dtype')
    assert np.dtype('f8').byteorder in ('=', '<')


# ---- 2. tensors against the bytes behind them --------------------------------------------------

@pytest.mark.parametrize('numel,record,size,stride,offset,what', [
    (1 << 20, floats(1, 2), (1 << 20,), (1,), 0, 'declares 4194304 bytes'),
    (3, floats(1, 2), (3,), (1,), 0, 'declares 12 bytes'),
    (2, floats(1, 2), (3,), (1,), 0, 'past the end of its storage'),
    (2, floats(1, 2), (2,), (1,), 1, 'past the end of its storage'),
    (2, floats(1, 2), (2, 2), (0, 5), 0, 'past the end of its storage'),
    (2, floats(1, 2), (2,), (-1,), 1, 'negative'),
    (2, floats(1, 2), (2,), (1,), -1, 'negative'),
], ids=['huge-numel', 'short-record', 'size', 'offset', 'stride', 'neg-stride', 'neg-offset'])
def test_tensor_outside_its_record_is_refused(tmp_path, loader, numel, record, size, stride,
                                              offset, what):
    data = dumps({'state_dict': {'w': tensor(storage('0', numel), offset, size, stride)}})
    path = write_zip(tmp_path / 'over.pth', data, {'0': record})
    _assert_refused(path, what)
    _assert_intact(tmp_path)


def test_well_formed_crafted_tensor_loads(tmp_path, loader):
    """The same writer with consistent sizes loads: the refusals above are the checks, not the
    writer."""
    data = dumps({'state_dict': {'w': tensor(storage('0', 4), 1, (2,), (2,))}})
    path = write_zip(tmp_path / 'ok.pth', data, {'0': floats(1, 2, 3, 4)})
    assert safe_load(path)['state_dict']['w'].tolist() == [2.0, 4.0]


def test_hooks_and_metadata_are_refused(tmp_path, loader):
    hooks = collections.OrderedDict([(0, torch._utils._rebuild_tensor)])
    data = dumps({'w': tensor(storage('0', 2), 0, (2,), (1,), hooks=hooks)})
    _assert_refused(write_zip(tmp_path / 'hooks.pth', data, {'0': floats(1, 2)}), 'hooks')
    data = dumps({'w': tensor(storage('0', 2), 0, (2,), (1,), metadata={'neg': 'x'})})
    _assert_refused(write_zip(tmp_path / 'meta.pth', data, {'0': floats(1, 2)}), 'metadata')


def test_real_checkpoint_with_a_record_cut_short(tmp_path, loader):
    """The issue's case: a real checkpoint, one record shortened, checksums recomputed."""
    import zipfile
    path, _ = _trusted(tmp_path)
    src = zipfile.ZipFile(path)
    cut = tmp_path / 'cut.pth'
    with zipfile.ZipFile(cut, 'w') as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith('/data/0'):
                data = data[:4]
            dst.writestr(info.filename, data)
    _assert_refused(cut, 'reading it would read memory outside the file')


# ---- 3. legacy tar format -------------------------------------------------------------------

def test_legacy_tar_with_a_fifo_is_refused_up_front(tmp_path, loader):
    """A tar whose first byte is 0x80 (it passes a 'starts as a pickle' check) holding a FIFO:
    torch 2.1 opens the FIFO and hangs; here it is refused before torch reads anything."""
    path = tmp_path / 'tar.pth'
    with tarfile.open(path, 'w', format=tarfile.GNU_FORMAT, encoding='latin-1') as tar:
        fifo = tarfile.TarInfo('\x80storages')
        fifo.type = tarfile.FIFOTYPE
        tar.addfile(fifo)
    assert path.read_bytes()[:1] == b'\x80'
    _assert_refused(path, 'tar archive')
    _assert_intact(tmp_path)


# ---- 4. extension opcodes --------------------------------------------------------------------

@pytest.mark.parametrize('registered', [False, True], ids=['unregistered', 'registered'])
def test_extension_opcodes_are_refused(tmp_path, loader, registered):
    """EXT1 resolves through copyreg's cache, not the allow-list: refused whatever is registered
    (even ``os.system`` used once in the process)."""
    marker = tmp_path / 'pwned'
    evil = b'\x80\x02\x82\xf0' + op_str(f'touch {marker}') + b'\x85R.'
    path = write_zip(tmp_path / 'ext.pth', evil)
    if registered:
        copyreg.add_extension('os', 'system', 240)
        pickle.loads(b'\x80\x02\x82\xf0.')  # now in copyreg's cache
    try:
        _assert_refused(path, 'EXT1')
    finally:
        if registered:
            copyreg.remove_extension('os', 'system', 240)
            copyreg._extension_cache.pop(240, None)
    assert not marker.exists()


def test_stack_global_pickle_is_reported_unsafe(tmp_path, loader):
    """Protocol 4 names globals with STACK_GLOBAL: 'unsafe', never 'corrupted'."""
    marker = tmp_path / 'pwned'
    evil = dumps({'state_dict': {}, 'p': Call(os.system, (f'touch {marker}', ))}, protocol=4)
    assert b'\x93' in evil  # STACK_GLOBAL
    _assert_refused(write_zip(tmp_path / 'sg.pth', evil), 'system')
    assert not marker.exists()


@pytest.mark.parametrize('opcode', [b'i', b'o', b'\x92', b'\x83', b'\x84'],
                         ids=['INST', 'OBJ', 'NEWOBJ_EX', 'EXT2', 'EXT4'])
def test_other_instantiating_opcodes_are_refused(tmp_path, loader, opcode):
    _assert_refused(write_zip(tmp_path / 'op.pth', b'\x80\x02' + opcode + b'\x00' * 8 + b'.'),
                    'is refused')


def test_invalid_opcode_is_corrupted_not_unsafe(tmp_path, loader):
    path = write_zip(tmp_path / 'bad.pth', b'\x80\x02\xff garbage')
    with pytest.raises(CheckpointFileError, match='bad.pth is not a checkpoint or is corrupted'):
        safe_load(path)


@pytest.mark.parametrize('payload', [
    b'\x80\x02\x8e' + (1 << 62).to_bytes(8, 'little') + b'.',  # BINBYTES8 of 4 EiB
    b'\x80\x02\x8b' + (1 << 30).to_bytes(4, 'little') + b'.',  # LONG4 of 1 GiB
], ids=['binbytes8', 'long4'])
def test_lengths_past_the_stream_are_refused_without_allocating(tmp_path, loader, payload):
    with pytest.raises(CheckpointFileError, match='past the end of the pickle'):
        safe_load(write_zip(tmp_path / 'len.pth', payload))


def test_zip_tricks_are_refused(tmp_path, loader):
    import zipfile
    path, _ = _trusted(tmp_path)
    src = zipfile.ZipFile(path)
    dup = tmp_path / 'dup.pth'
    with pytest.warns(UserWarning, match='Duplicate name'):
        with zipfile.ZipFile(dup, 'w') as dst:
            for info in src.infolist():
                dst.writestr(info.filename, src.read(info.filename))
            dst.writestr(src.namelist()[0], b'\x80\x02}.')
    _assert_refused(dup, 'share a name')
    packed = tmp_path / 'deflated.pth'
    with zipfile.ZipFile(packed, 'w', compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    _assert_refused(packed, 'compressed')


# ---- the loaders mmengine calls, and the restricted pickle module on its own --------------------

def test_mmengine_route_refuses_and_stays_intact(tmp_path, loader):
    from mmengine.runner import CheckpointLoader
    neg = b'(' + op_str('neg') + b'\x88d'
    evil = write_zip(tmp_path / 'evil.pth',
                     build_on(op_global('torch._utils', '_rebuild_tensor_v2'),
                              slot_state(__defaults__=b'(' + neg + b't')))
    with pytest.raises(UnsafeCheckpointError):
        CheckpointLoader.load_checkpoint(str(evil), map_location='cpu')
    path, weights = _trusted(tmp_path)
    loaded = CheckpointLoader.load_checkpoint(str(path), map_location='cpu')['state_dict']
    assert all(torch.equal(loaded[k], v) for k, v in weights.items())


def test_restricted_pickle_module_refuses_build_on_globals():
    neg = b'(' + op_str('neg') + b'\x88d'
    evil = build_on(op_global('torch._utils', '_rebuild_tensor_v2'),
                    slot_state(__defaults__=b'(' + neg + b't'))
    before = process_snapshot()
    with pytest.raises(restricted_pickle.RefusedPickle, match='BUILD'):
        restricted_pickle.loads(evil)
    assert process_snapshot() == before


def test_runner_checkpoint_loads_in_a_fresh_process(tmp_path):
    """A process that has created no HistoryBuffer yet (a resume, tools/test.py) has not
    registered the default statistics methods; the checkpoint's restatement of them loads."""
    import subprocess
    import sys

    from test_checkpoint_safety import _runner_like_checkpoint
    path = tmp_path / 'iter_2.pth'
    torch.save(_runner_like_checkpoint(), path)
    code = ('import mmseg_ext; from mmengine.logging import HistoryBuffer; '
            'assert not HistoryBuffer._statistics_methods; '
            'from mmseg_ext.checkpoint import safe_load; '
            f'print(safe_load({str(path)!r})["message_hub"]["log_scalars"]["train/loss"].mean())')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=300, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert proc.returncode == 0 and proc.stdout.split()[-1] == '1.0', proc.stderr[-2000:]
