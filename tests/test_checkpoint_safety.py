"""Checkpoints load through torch's weights_only unpickler with an exact allow-list."""
import io
import os
import pickle

import numpy as np
import pytest
import torch

import mmseg_ext  # noqa: F401  (registers the allow-list)
from mmseg_ext.checkpoint import restricted_getattr, weights_only_load


def _runner_like_checkpoint():
    """What mmengine's CheckpointHook saves: meta, state_dict, optimizer, message_hub."""
    from mmengine.logging import HistoryBuffer, MessageHub
    hub = MessageHub.get_instance('mmseg_ext_ckpt_test')
    for i in range(3):
        hub.update_scalar('train/loss', float(i))
    hub.update_info('iter', 3)
    model = torch.nn.Conv2d(3, 4, 1)
    optim = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(1, 3, 4, 4)).sum().backward()
    optim.step()
    return {
        'meta': dict(epoch=0, iter=3, seed=np.int64(7), mean=np.array([1.0, 2.0]),
                     dtype=np.dtype('float32'), blob=b'\x00\xffbytes', classes=('a', 'b'),
                     hist=HistoryBuffer([1.0, 2.0], [1, 1])),
        'state_dict': model.state_dict(),
        'optimizer': optim.state_dict(),
        'message_hub': hub.state_dict(),
    }


def test_runner_checkpoint_loads_with_weights_only(tmp_path):
    path = tmp_path / 'ckpt.pth'
    ckpt = _runner_like_checkpoint()
    torch.save(ckpt, path)
    loaded = weights_only_load(path, map_location="cpu")
    assert loaded['meta']['seed'] == 7
    np.testing.assert_array_equal(loaded['meta']['mean'], [1.0, 2.0])
    assert loaded['meta']['blob'] == b'\x00\xffbytes'
    hub = loaded['message_hub']['log_scalars']['train/loss']
    assert hub.mean() == pytest.approx(1.0) and hub.current() == 2.0
    torch.testing.assert_close(loaded['state_dict']['weight'], ckpt['state_dict']['weight'])


def test_mmengine_load_checkpoint_uses_the_safe_path(tmp_path):
    """mmengine's own loader (used by test.py, --resume, load_from) reads it unchanged."""
    from mmengine.runner import load_checkpoint
    path = tmp_path / 'ckpt.pth'
    torch.save(_runner_like_checkpoint(), path)
    model = torch.nn.Conv2d(3, 4, 1)
    out = load_checkpoint(model, str(path), map_location='cpu')
    assert out['meta']['iter'] == 3


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def test_foreign_global_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'payload': _RunsCode(marker)}, path)
    with pytest.raises(pickle.UnpicklingError, match='posix.system|os.system|Unsupported global'):
        weights_only_load(path)
    assert not marker.exists()
    # and through mmengine's loader, as tools/test.py would call it
    from mmengine.runner import CheckpointLoader
    with pytest.raises(pickle.UnpicklingError):
        CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
    assert not marker.exists()


def _pickle_calling_getattr(obj_module, obj_name, attr):
    """A protocol-2 pickle of getattr(<module.obj>, attr), written by hand."""
    body = (b'\x80\x02cbuiltins\ngetattr\n' + f'c{obj_module}\n{obj_name}\n'.encode() +
            b'X' + len(attr).to_bytes(4, 'little') + attr.encode() + b'\x86R.')
    return body


@pytest.mark.parametrize('module,name,attr', [
    ('mmengine.logging.history_buffer', 'HistoryBuffer', '__init__'),
    ('mmengine.logging.history_buffer', 'HistoryBuffer', '__class__'),
    ('collections', 'OrderedDict', '__init__'),
])
def test_getattr_is_restricted(tmp_path, module, name, attr):
    path = tmp_path / 'g.pth'
    buf = io.BytesIO()
    torch.save({}, buf)  # a valid zip container; replace its data.pkl with our pickle
    import zipfile
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    with zipfile.ZipFile(path, 'w') as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith('data.pkl'):
                data = _pickle_calling_getattr(module, name, attr)
            dst.writestr(item, data)
    with pytest.raises(pickle.UnpicklingError):
        weights_only_load(path)


def test_restricted_getattr_allows_only_statistics_methods():
    from mmengine.logging import HistoryBuffer
    assert restricted_getattr(HistoryBuffer, 'mean') is HistoryBuffer.mean
    for obj, name in [(HistoryBuffer, '__init__'), (HistoryBuffer, '__globals__'), (os, 'system'),
                      (HistoryBuffer, 'mean', )]:
        if name == 'mean':
            with pytest.raises(pickle.UnpicklingError):
                restricted_getattr(obj, name, None)  # the 3-argument form is not needed
        else:
            with pytest.raises(pickle.UnpicklingError):
                restricted_getattr(obj, name)


# ---- files that are not (intact) checkpoints: messages that say what the file is -----------

def _load_via_mmengine(path):
    from mmengine.runner import CheckpointLoader
    return CheckpointLoader.load_checkpoint(str(path), map_location='cpu')


def _assert_no_unsafe_advice(message):
    assert 'weights_only' not in message and 'add_safe_globals' not in message, message


def _flip_middle(path, count=64):
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + count] = bytes(b ^ 0xFF for b in data[mid:mid + count])
    path.write_bytes(bytes(data))


def test_flipped_bytes_are_refused_naming_the_file(tmp_path):
    from mmseg_ext.checkpoint import CheckpointFileError
    path = tmp_path / 'iter_4.pth'
    torch.save({'state_dict': {'w': torch.randn(256, 256)}}, path)
    _flip_middle(path)
    with pytest.raises(CheckpointFileError, match=r'iter_4\.pth is corrupted: the CRC-32') as err:
        _load_via_mmengine(path)
    _assert_no_unsafe_advice(str(err.value))


def test_crc_check_can_be_turned_off(tmp_path, monkeypatch):
    """MMSEG_EXT_CHECK_CRC=0 (or check_crc=False) skips it: the corruption then goes unnoticed."""
    from mmseg_ext.checkpoint import safe_load
    path = tmp_path / 'ckpt.pth'
    weight = torch.randn(256, 256)
    torch.save({'w': weight}, path)
    _flip_middle(path)
    assert not torch.equal(safe_load(path, check_crc=False)['w'], weight)
    monkeypatch.setenv('MMSEG_EXT_CHECK_CRC', '0')
    assert not torch.equal(_load_via_mmengine(path)['w'], weight)


@pytest.mark.parametrize('content,expected', [
    (b'', r'empty \(0 bytes\), not a checkpoint'),
    (b'<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head></html>',
     r'not a checkpoint: it is an HTML page'),
    (b'version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n', r'Git LFS pointer'),
    (b'model weights go here\n', r'not a checkpoint: it is a text file'),
    (b'\x00\x01\x02\x03binary', r'neither a torch zip checkpoint nor a legacy torch pickle'),
], ids=['empty', 'html', 'lfs', 'text', 'binary'])
def test_non_checkpoints_say_what_they_are(tmp_path, content, expected):
    from mmseg_ext.checkpoint import CheckpointFileError
    path = tmp_path / 'model.pth'
    path.write_bytes(content)
    with pytest.raises(CheckpointFileError, match=expected) as err:
        _load_via_mmengine(path)
    assert str(path) in str(err.value)
    _assert_no_unsafe_advice(str(err.value))


def test_truncated_checkpoint_and_non_torch_zips(tmp_path):
    import zipfile

    from mmseg_ext.checkpoint import CheckpointFileError
    path = tmp_path / 'ckpt.pth'
    torch.save({'w': torch.randn(64, 64)}, path)
    path.write_bytes(path.read_bytes()[:8000])
    with pytest.raises(CheckpointFileError, match='ckpt.pth is truncated or corrupted'):
        _load_via_mmengine(path)
    other = tmp_path / 'other.pth'
    with zipfile.ZipFile(other, 'w') as zf:
        zf.writestr('readme.txt', 'hello')
    with pytest.raises(CheckpointFileError, match='zip archive without a data.pkl'):
        _load_via_mmengine(other)
    scripted = tmp_path / 'scripted.pt'
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), scripted)
    with pytest.raises(CheckpointFileError, match='TorchScript archive'):
        _load_via_mmengine(scripted)


def test_refusal_message_gives_no_unsafe_advice(tmp_path):
    from mmseg_ext.checkpoint import UnsafeCheckpointError
    path = tmp_path / 'evil.pth'
    torch.save({'payload': _RunsCode(tmp_path / 'pwned')}, path)
    with pytest.raises(UnsafeCheckpointError) as err:
        _load_via_mmengine(path)
    assert 'evil.pth' in str(err.value) and 'system' in str(err.value)
    _assert_no_unsafe_advice(str(err.value))
    assert err.value.__cause__ is None and err.value.__suppress_context__  # torch's advice hidden
    assert not (tmp_path / 'pwned').exists()


def test_legacy_pickle_checkpoint_still_loads(tmp_path):
    path = tmp_path / 'legacy.pth'
    torch.save({'w': torch.ones(3)}, path, _use_new_zipfile_serialization=False)
    assert torch.equal(_load_via_mmengine(path)['w'], torch.ones(3))


def test_tools_test_refuses_a_flipped_checkpoint(tmp_path, tool_env):
    """The issue's case end to end: tools/test.py with a corrupted iter_4.pth exits non-zero."""
    import subprocess
    import sys
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = tmp_path / 'iter_4.pth'
    torch.save({'meta': {'iter': 4}, 'state_dict': {'w': torch.randn(256, 256)}}, path)
    _flip_middle(path)
    config = os.path.join(repo, 'configs', 'quickstart',
                          'fcn_r18tiny-d8_1xb8-1k_synthcity-128x256.py')
    proc = subprocess.run(
        [sys.executable, os.path.join(repo, 'tools', 'test.py'), config, str(path), '--work-dir',
         str(tmp_path / 'test'), '--cfg-options', 'test_dataloader.num_workers=0',
         'test_dataloader.persistent_workers=False'],
        env=tool_env, cwd=repo, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert f'{path} is corrupted: the CRC-32' in proc.stderr, proc.stderr[-3000:]
