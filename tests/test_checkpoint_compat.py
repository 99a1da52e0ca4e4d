"""The restricted unpickler that :func:`mmseg_ext.checkpoint.safe_load` uses on torch < 2.6.

On torch 2.0-2.5, ``torch.serialization.add_safe_globals`` is missing or cannot build the classes
mmengine pickles, so ``safe_load`` unpickles with :mod:`mmseg_ext.checkpoint.restricted_pickle`
(allow-list: torch's weights-only globals + ``SAFE_GLOBALS``). These tests run that path on every
torch (on the current stack by switching ``NATIVE_ALLOWLIST`` off), so both stacks of CI test it.
"""
import os
import pickle

import numpy as np
import pytest
import torch

import mmseg_ext  # noqa: F401
from mmseg_ext.checkpoint import UnsafeCheckpointError, allowlist, restricted_pickle, safe_load
from mmseg_ext.utils import versions
from test_checkpoint_safety import _pickle_calling_getattr, _runner_like_checkpoint


@pytest.fixture
def restricted(monkeypatch):
    """safe_load through the restricted unpickler, whatever this torch is."""
    monkeypatch.setattr(allowlist, 'NATIVE_ALLOWLIST', False)  # where weights_only_load reads it
    monkeypatch.setattr(restricted_pickle, 'ALLOWED', allowlist.restricted_allowlist())


def test_native_allowlist_exactly_from_torch_2_6():
    release = tuple(int(p) for p in torch.__version__.split('+')[0].split('.')[:2])
    assert allowlist.NATIVE_ALLOWLIST == (release >= (2, 6))
    assert allowlist.NATIVE_ALLOWLIST == versions.torch_has_native_allowlist()


@pytest.mark.parametrize('zip_format', [True, False], ids=['zip', 'legacy'])
def test_runner_checkpoint_loads(tmp_path, restricted, zip_format):
    path = tmp_path / 'ckpt.pth'
    ckpt = _runner_like_checkpoint()
    ckpt['meta'].update(devices=torch.device('cpu'), dtype_t=torch.bfloat16, ids={1, 2})
    torch.save(ckpt, path, _use_new_zipfile_serialization=zip_format)
    loaded = safe_load(path, map_location='cpu')
    assert loaded['meta']['seed'] == 7 and loaded['meta']['blob'] == b'\x00\xffbytes'
    assert loaded['meta']['ids'] == {1, 2} and loaded['meta']['dtype_t'] is torch.bfloat16
    np.testing.assert_array_equal(loaded['meta']['mean'], [1.0, 2.0])
    assert loaded['message_hub']['log_scalars']['train/loss'].mean() == pytest.approx(1.0)
    torch.testing.assert_close(loaded['state_dict']['weight'], ckpt['state_dict']['weight'])
    torch.testing.assert_close(loaded['optimizer']['state'][0]['momentum_buffer'],
                               ckpt['optimizer']['state'][0]['momentum_buffer'])


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


class _Evals:
    def __reduce__(self):
        return (eval, ("__import__('os').system('true')", ))


@pytest.mark.parametrize('zip_format', [True, False], ids=['zip', 'legacy'])
@pytest.mark.parametrize('payload', ['system', 'eval', 'class'])
def test_foreign_globals_are_refused_and_run_nothing(tmp_path, restricted, zip_format, payload):
    marker = tmp_path / 'pwned'
    obj = {'system': _RunsCode(marker), 'eval': _Evals(), 'class': _RunsCode}[payload]
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'payload': obj}, path, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(UnsafeCheckpointError, match='Unsupported global') as err:
        safe_load(path)
    assert 'Nothing of it was executed' in str(err.value)
    assert 'weights_only=False' not in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize('obj,attr', [('HistoryBuffer', '__init__'), ('HistoryBuffer', '__class__')])
def test_getattr_is_restricted(restricted, obj, attr):
    data = _pickle_calling_getattr('mmengine.logging.history_buffer', obj, attr)
    with pytest.raises(pickle.UnpicklingError, match='refuses getattr'):
        restricted_pickle.loads(data)
    ok = _pickle_calling_getattr('mmengine.logging.history_buffer', 'HistoryBuffer', 'mean')
    from mmengine.logging import HistoryBuffer
    assert restricted_pickle.loads(ok) is HistoryBuffer.mean


def test_protocol2_builtin_names_are_mapped(restricted):
    """Protocol < 3 pickles name builtins ``__builtin__``; they map to the allow-list's names."""
    assert restricted_pickle.loads(pickle.dumps({1, 2}, protocol=2)) == {1, 2}
    assert restricted_pickle.loads(pickle.dumps(bytearray(b'ab'), protocol=2)) == bytearray(b'ab')
    with pytest.raises(restricted_pickle.RefusedGlobal, match='builtins.eval'):
        restricted_pickle.loads(b'\x80\x02c__builtin__\neval\nX\x01\x00\x00\x001\x85R.')


def test_invalid_pickle_stream_is_a_file_error(tmp_path, restricted):
    """A zip checkpoint whose data.pkl is not a pickle: 'corrupted', not 'unsafe'."""
    import io
    import zipfile

    from mmseg_ext.checkpoint import CheckpointFileError
    buf = io.BytesIO()
    torch.save({}, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    path = tmp_path / 'bad.pth'
    with zipfile.ZipFile(path, 'w') as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            dst.writestr(item, b'\x80\x02\xff garbage' if item.filename.endswith('data.pkl') else data)
    with pytest.raises(CheckpointFileError, match='bad.pth is not a checkpoint or is corrupted'):
        safe_load(path)
