"""Checkpoints load through torch's weights_only unpickler with an exact allow-list."""
import io
import os
import pickle

import numpy as np
import pytest
import torch

import mmseg_ext  # noqa: F401  (registers the allow-list)
from mmseg_ext.checkpoint import restricted_getattr


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
    loaded = torch.load(path, map_location='cpu', weights_only=True)
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
        torch.load(path, weights_only=True)
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
        torch.load(path, weights_only=True)


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
