"""The restricted unpickler that :func:`mmseg_ext.checkpoint.safe_load` uses on torch < 2.6.

On torch 2.0-2.5, ``torch.serialization.add_safe_globals`` is missing or cannot build the classes
mmengine pickles, so ``safe_load`` unpickles with :mod:`mmseg_ext.checkpoint.restricted_pickle`
(allow-list: torch's weights-only globals + ``SAFE_GLOBALS``). These tests run that path on every
torch (on the current stack by switching ``NATIVE_ALLOWLIST`` off), so both stacks of CI test it;
and numpy 2's module names on numpy 1.26 (which has numpy 2's ``numpy._core`` aliases), by
patching the version fact.
"""
import os
import pickle

import numpy as np
import pytest
import torch
from checkpoint_craft import write_zip
from mmengine.utils import digit_version
from test_checkpoint_safety import _pickle_calling_getattr, _runner_like_checkpoint

import mmseg_ext  # noqa: F401
from mmseg_ext.checkpoint import UnsafeCheckpointError, allowlist, restricted_pickle, safe_load
from mmseg_ext.utils import versions


@pytest.fixture
def restricted(monkeypatch):
    """safe_load through the restricted unpickler, whatever this torch is."""
    monkeypatch.setattr(allowlist, 'NATIVE_ALLOWLIST', False)  # where weights_only_load reads it
    monkeypatch.setattr(restricted_pickle, 'ALLOWED', allowlist.restricted_allowlist())


def test_native_allowlist_exactly_from_torch_2_6():
    release = tuple(int(p) for p in torch.__version__.split('+')[0].split('.')[:2])
    assert allowlist.NATIVE_ALLOWLIST == (release >= (2, 6))
    assert allowlist.NATIVE_ALLOWLIST == versions.torch_has_native_allowlist()


@pytest.mark.parametrize('version,expected', [('2.5.1+cu121', False), ('2.6.0', True),
                                              ('2.6.0a0+git1234abc', True),
                                              ('2.6.0.dev20241001', True), ('2.14.1', True),
                                              ('1.13.1', False), ('3.0.0', True)])
def test_torch_version_fact_counts_the_release(monkeypatch, version, expected):
    """Pre-releases and source builds of 2.6 (NGC containers ship ``2.6.0a0+git...``) have what
    2.6 has, as when the version was parsed with a regex."""
    monkeypatch.setattr(versions, 'TORCH_VERSION', digit_version(version))
    assert versions.torch_at_least(2, 6) is expected


def test_restricted_fixture_takes_the_restricted_path(tmp_path, restricted, monkeypatch):
    """The fixture's patch reaches the code that reads it: torch.load gets the interpreter as its
    pickle_module (on torch >= 2.6 too, where it would otherwise load with weights_only=True)."""
    calls = []
    load = torch.load
    monkeypatch.setattr(torch, 'load', lambda *a, **k: calls.append(k) or load(*a, **k))
    path = tmp_path / 'ckpt.pth'
    torch.save({'w': torch.ones(2)}, path)
    assert safe_load(path)['w'].tolist() == [1.0, 1.0]
    assert [k.get('pickle_module') for k in calls] == [restricted_pickle]
    assert calls[0]['weights_only'] is False


def _numpy2_pickle(obj) -> bytes:
    """``obj`` pickled (protocol 2) as numpy 2 writes it: its core module is ``numpy._core``."""
    data = pickle.dumps(obj, protocol=2)
    assert b'cnumpy.core.multiarray\n' in data
    return data.replace(b'cnumpy.core.multiarray\n', b'cnumpy._core.multiarray\n')


def test_numpy_module_names_follow_the_numpy_major_version(monkeypatch):
    """numpy 1 pickles ``numpy.core.multiarray``; numpy 2 ``numpy._core.multiarray`` and still
    loads the old name. Checked for numpy 2 on numpy 1.26, whose ``numpy._core`` aliases the same
    functions."""
    from numpy.core import multiarray
    names = {'_reconstruct', 'scalar'}

    def allowed_numpy_names():
        listed = [e for e in allowlist.safe_globals() if isinstance(e, tuple)]
        return {name: obj for obj, name in listed if 'multiarray' in name}

    monkeypatch.setattr(versions, 'NUMPY_VERSION', digit_version('1.26.4'))
    assert allowlist.numpy_multiarray()[1] == 'numpy.core.multiarray'
    assert allowed_numpy_names() == {f'numpy.core.multiarray.{n}': getattr(multiarray, n)
                                     for n in names}
    monkeypatch.setattr(versions, 'NUMPY_VERSION', digit_version('2.0.0'))
    assert allowlist.numpy_multiarray()[1] == 'numpy._core.multiarray'
    assert allowed_numpy_names() == {f'{core}.multiarray.{n}': getattr(multiarray, n)
                                     for core in ('numpy.core', 'numpy._core') for n in names}


def test_numpy2_checkpoint_loads_under_numpy2_allow_list(tmp_path, restricted, monkeypatch):
    """A checkpoint written under numpy 2 (arrays and scalars named ``numpy._core``) loads
    through the restricted interpreter with the allow-list built for numpy 2, and one written
    under numpy 1 still does."""
    monkeypatch.setattr(versions, 'NUMPY_VERSION', digit_version('2.0.0'))
    monkeypatch.setattr(allowlist, 'SAFE_GLOBALS', allowlist.safe_globals())
    monkeypatch.setattr(restricted_pickle, 'ALLOWED', allowlist.restricted_allowlist())
    meta = {'mean': np.arange(6, dtype=np.float32).reshape(2, 3), 'lr': np.float64(0.5)}
    for numpy_major, data in ((2, _numpy2_pickle(meta)), (1, pickle.dumps(meta, protocol=2))):
        for loaded in (restricted_pickle.loads(data),
                       safe_load(write_zip(tmp_path / f'numpy{numpy_major}.pth', data))):
            np.testing.assert_array_equal(loaded['mean'], meta['mean'])
            assert loaded['lr'] == 0.5 and type(loaded['lr']) is np.float64


def test_old_restricted_pickle_module_reexports_the_package_module():
    import mmseg_ext.restricted_pickle as shim
    for name in shim.__all__:
        assert getattr(shim, name) is getattr(restricted_pickle, name), name
    assert set(restricted_pickle.__all__) <= set(shim.__all__)


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


@pytest.mark.parametrize('obj,attr',
                         [('HistoryBuffer', '__init__'), ('HistoryBuffer', '__class__')])
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
            dst.writestr(item, b'\x80\x02\xff garbage' if item.filename.endswith('data.pkl')
                         else data)
    with pytest.raises(CheckpointFileError, match='bad.pth is not a checkpoint or is corrupted'):
        safe_load(path)
