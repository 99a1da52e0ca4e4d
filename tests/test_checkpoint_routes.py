"""Every route by which mmengine/mmseg/mmpretrain loads a checkpoint goes through the allow-list.

No test touches the network: torch hub's cache (and ``$MMENGINE_HOME``) live in a temporary folder
that is pre-seeded with the file each URL maps to, and a download attempt fails the test. For each
route a malicious pickle (its unpickling would run ``touch MARKER``) is refused and creates no
marker, and a legitimate checkpoint served the same way loads.
"""
import json
import os
import os.path as osp
import pickle
import sys
import types

import pytest
import torch

import mmseg_ext  # noqa: F401  (registers the safe loaders)
from mmseg_ext.checkpoint import UnsafeCheckpointError, hub_cache_path, unsafe_schemes


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def _legit():
    return {'state_dict': {'backbone.conv.weight': torch.arange(6.).reshape(1, 6, 1, 1)},
            'meta': {'iter': 1}}


def _write(path, obj):
    os.makedirs(osp.dirname(path), exist_ok=True)
    torch.save(obj, path)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """torch hub's cache and $MMENGINE_HOME under tmp_path; downloading fails the test."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.setenv('MMENGINE_HOME', str(tmp_path / 'mmengine_home'))
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / 'torch' / 'hub'))

    def no_download(url, *args, **kwargs):
        raise AssertionError(f'the test tried to download {url}')

    monkeypatch.setattr(torch.hub, 'download_url_to_file', no_download)
    yield tmp_path
    torch.hub.set_dir(previous)


def _url_of(route):
    """The http(s) URL that mmengine maps a ``scheme://name`` route to."""
    from mmengine.runner.checkpoint import (
        get_external_models,
        get_mmcls_models,
        get_torchvision_models,
    )
    scheme, name = route.split('://', 1)
    if scheme in ('torchvision', 'modelzoo'):
        return get_torchvision_models()[name]
    if scheme in ('open-mmlab', 'openmmlab'):
        return get_external_models()[name]
    if scheme == 'mmcls':
        return get_mmcls_models()[name]
    return route


URL_ROUTES = [
    'https://example.invalid/models/evil_net-1234abcd.pth',
    'http://example.invalid/a/b/net.pth',
    'torchvision://resnet18',
    'modelzoo://resnet50',
    'open-mmlab://resnet50_v1c',
    'openmmlab://resnet101_v1c',
    'mmcls://mobilenet_v2',
]


def _serve(route, obj, hub_root, monkeypatch):
    """Put ``obj`` where ``route`` reads it from; return the route string to load."""
    if route == 'local':
        path = str(hub_root / 'local' / 'ckpt.pth')
        _write(path, obj)
        return path
    if route == 'open-mmlab-local':  # an $MMENGINE_HOME/open_mmlab.json entry naming a file
        home = hub_root / 'mmengine_home'
        os.makedirs(home, exist_ok=True)
        (home / 'open_mmlab.json').write_text(json.dumps({'my_net': 'weights/my_net.pth'}))
        _write(str(home / 'weights' / 'my_net.pth'), obj)
        return 'open-mmlab://my_net'
    if route.startswith(('s3', 'cluster1:')):
        path = str(hub_root / 'bucket.pth')
        _write(path, obj)
        backend = types.SimpleNamespace(get=lambda filename: open(path, 'rb').read())
        import mmengine.fileio
        monkeypatch.setattr(mmengine.fileio, 'get_file_backend', lambda *a, **k: backend)
        return route
    if route == 'pavi':
        fake = types.ModuleType('pavi')
        fake.modelcloud = types.SimpleNamespace(get=lambda name: types.SimpleNamespace(
            name='model.pth', download=lambda dst: torch.save(obj, dst)))
        monkeypatch.setitem(sys.modules, 'pavi', fake)
        return 'pavi://project/model'
    _write(hub_cache_path(_url_of(route)), obj)
    return route


ALL_ROUTES = ['local', 'open-mmlab-local', 's3://bucket/net.pth', 'cluster1:petrel://b/net.pth',
              'pavi', *URL_ROUTES]


def test_every_registered_scheme_is_safe():
    import mmseg  # noqa: F401
    try:
        import mmpretrain  # noqa: F401  (mmpretrain registers no scheme of its own)
    except ImportError:
        pass
    assert unsafe_schemes() == []


@pytest.mark.parametrize('route', ALL_ROUTES)
def test_malicious_checkpoint_is_refused_on_every_route(route, hub, monkeypatch):
    from mmengine.runner import CheckpointLoader
    marker = hub / 'pwned'
    src = _serve(route, {'state_dict': {}, 'payload': _RunsCode(marker)}, hub, monkeypatch)
    with pytest.raises(UnsafeCheckpointError, match='posix.system|os.system'):
        CheckpointLoader.load_checkpoint(src, map_location='cpu')
    assert not marker.exists()


@pytest.mark.parametrize('route', ALL_ROUTES)
def test_legitimate_checkpoint_loads_on_every_route(route, hub, monkeypatch):
    from mmengine.runner import CheckpointLoader
    src = _serve(route, _legit(), hub, monkeypatch)
    ckpt = CheckpointLoader.load_checkpoint(src, map_location='cpu')
    key = 'conv.weight' if route.startswith('mmcls') else 'backbone.conv.weight'  # mmcls strips it
    torch.testing.assert_close(ckpt['state_dict'][key],
                               _legit()['state_dict']['backbone.conv.weight'])


def test_mmengine_load_url_is_the_safe_one(hub):
    """Code that calls mmengine's load_url (torch.hub's loader, weights_only=False) directly."""
    from mmengine.utils.dl_utils import load_url
    marker = hub / 'pwned'
    url = 'https://example.invalid/x/evil.pth'
    _write(hub_cache_path(url), {'p': _RunsCode(marker)})
    with pytest.raises(pickle.UnpicklingError):
        load_url(url)
    import mmengine.runner.checkpoint as mm_ckpt
    with pytest.raises(pickle.UnpicklingError):
        mm_ckpt.load_url(url)
    with pytest.raises(pickle.UnpicklingError):
        mm_ckpt.load_from_http(url)
    assert not marker.exists()


def test_force_no_weights_only_env_does_not_open_the_door(hub, monkeypatch):
    from mmengine.runner import CheckpointLoader
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    marker = hub / 'pwned'
    src = _serve('https://example.invalid/m/evil.pth', {'p': _RunsCode(marker)}, hub, monkeypatch)
    with pytest.raises(pickle.UnpicklingError):
        CheckpointLoader.load_checkpoint(src)
    assert not marker.exists()


class _Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(6, 1, 1, bias=False)


def test_pretrained_init_cfg_with_and_without_prefix(hub, monkeypatch):
    """``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=...)`` (mmengine's
    PretrainedInit)."""
    from mmengine.model.weight_init import PretrainedInit
    url = 'https://example.invalid/pretrained/net.pth'
    _serve(url, _legit(), hub, monkeypatch)
    model = _Toy()
    PretrainedInit(checkpoint=url, prefix='backbone.')(model)
    torch.testing.assert_close(model.conv.weight, _legit()['state_dict']['backbone.conv.weight'])
    marker = hub / 'pwned'
    _serve('open-mmlab://resnet50_v1c', {'state_dict': {'p': _RunsCode(marker)}}, hub, monkeypatch)
    for prefix in (None, 'backbone.'):
        with pytest.raises(pickle.UnpicklingError):
            PretrainedInit(checkpoint='open-mmlab://resnet50_v1c', prefix=prefix)(_Toy())
    assert not marker.exists()


def test_mmseg_backbone_pretrained_argument(hub, monkeypatch):
    """``pretrained='torchvision://...'`` on an mmseg backbone becomes a Pretrained init_cfg."""
    from mmseg.models.backbones import ResNet
    weight = torch.full((64, 3, 7, 7), 0.5)
    _serve('torchvision://resnet18', {'conv1.weight': weight}, hub, monkeypatch)
    backbone = ResNet(depth=18, pretrained='torchvision://resnet18')
    backbone.init_weights()
    torch.testing.assert_close(backbone.conv1.weight, weight)
    marker = hub / 'pwned'
    _serve('torchvision://resnet18', {'conv1.weight': _RunsCode(marker)}, hub, monkeypatch)
    with pytest.raises(pickle.UnpicklingError):
        ResNet(depth=18, pretrained='torchvision://resnet18').init_weights()
    assert not marker.exists()


@pytest.mark.parametrize('resume', [False, True], ids=['load_from', 'resume'])
def test_runner_load_from_and_resume(resume, hub, monkeypatch):
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    class Model(BaseModel):
        def __init__(self):
            super().__init__()
            self.backbone = _Toy()

        def forward(self, *args, **kwargs):
            return {}

    marker = hub / 'pwned'
    url = _serve('https://example.invalid/run/iter_2.pth',
                 {'state_dict': {}, 'meta': {'iter': 2, 'p': _RunsCode(marker)}}, hub, monkeypatch)
    runner = Runner(model=Model(), work_dir=str(hub / f'work_{resume}'), load_from=url,
                    experiment_name=f'evil_{resume}',
                    resume=resume, default_scope='mmseg')
    with pytest.raises(pickle.UnpicklingError):
        runner.load_or_resume()
    assert not marker.exists()
    if not resume:  # a legitimate load_from loads its weights
        local = _serve('local', _legit(), hub, monkeypatch)
        runner = Runner(model=Model(), work_dir=str(hub / 'work_ok'), load_from=local,
                        experiment_name='legit_load_from',
                        default_scope='mmseg')
        runner.load_or_resume()
        torch.testing.assert_close(runner.model.backbone.conv.weight,
                                   _legit()['state_dict']['backbone.conv.weight'])


def test_mmpretrain_get_model_pretrained(hub, monkeypatch):
    mmpretrain = pytest.importorskip('mmpretrain')
    marker = hub / 'pwned'
    url = _serve('https://example.invalid/cls/evil.pth', {'state_dict': {'p': _RunsCode(marker)}},
                 hub, monkeypatch)
    with pytest.raises(pickle.UnpicklingError):
        mmpretrain.get_model('resnet18_8xb32_in1k', pretrained=url)
    assert not marker.exists()


def test_legacy_hub_zip_is_extracted_and_loaded_safely(hub):
    """torch.hub's pre-1.6 convention (a zip holding one checkpoint file) keeps working, safely."""
    import zipfile

    from mmengine.runner import CheckpointLoader
    marker = hub / 'pwned'
    for name, obj in (('good', _legit()), ('evil', {'p': _RunsCode(marker)})):
        url = f'https://example.invalid/legacy/{name}_net.zip'
        inner = hub / f'{name}_net.pth'
        torch.save(obj, inner, _use_new_zipfile_serialization=False)
        os.makedirs(osp.dirname(hub_cache_path(url)), exist_ok=True)
        with zipfile.ZipFile(hub_cache_path(url), 'w') as zf:
            zf.write(inner, arcname=f'{name}_net.pth')
        if name == 'good':
            ckpt = CheckpointLoader.load_checkpoint(url)
            assert torch.equal(ckpt['state_dict']['backbone.conv.weight'],
                               _legit()['state_dict']['backbone.conv.weight'])
        else:
            with pytest.raises(UnsafeCheckpointError):
                CheckpointLoader.load_checkpoint(url)
    assert not marker.exists()


def test_url_cache_is_per_full_url(hub):
    """Two URLs with the same file name keep separate cached checkpoints (torch.hub would cache
    both as checkpoints/net.pth and return the first for the second)."""
    from mmengine.runner import CheckpointLoader
    one, two = 'https://example.invalid/one/net.pth', 'https://example.invalid/two/net.pth'
    assert hub_cache_path(one) != hub_cache_path(two)
    assert osp.basename(hub_cache_path(one)) == osp.basename(hub_cache_path(two)) == 'net.pth'
    _write(hub_cache_path(one), {'state_dict': {'w': torch.zeros(2)}})
    _write(hub_cache_path(two), {'state_dict': {'w': torch.ones(2)}})
    assert torch.equal(CheckpointLoader.load_checkpoint(one)['state_dict']['w'], torch.zeros(2))
    assert torch.equal(CheckpointLoader.load_checkpoint(two)['state_dict']['w'], torch.ones(2))


def test_legacy_hub_zip_cannot_replace_another_urls_checkpoint(hub):
    """The issue's case: a legacy hub zip whose member has another URL's file name. Loading it
    once left that URL returning the substituted weights; now each URL keeps its own."""
    import zipfile

    from mmengine.runner import CheckpointLoader
    victim = 'https://example.invalid/models/net.pth'
    _write(hub_cache_path(victim), {'state_dict': {'w': torch.zeros(2)}})
    attacker = 'https://example.invalid/other/bundle.zip'
    inner = hub / 'net.pth'
    torch.save({'state_dict': {'w': torch.full((2, ), 7.0)}}, inner,
               _use_new_zipfile_serialization=False)
    os.makedirs(osp.dirname(hub_cache_path(attacker)), exist_ok=True)
    with zipfile.ZipFile(hub_cache_path(attacker), 'w') as zf:
        zf.write(inner, arcname='net.pth')
    assert torch.equal(CheckpointLoader.load_checkpoint(attacker)['state_dict']['w'],
                       torch.full((2, ), 7.0))
    for _ in range(2):
        assert torch.equal(CheckpointLoader.load_checkpoint(victim)['state_dict']['w'],
                           torch.zeros(2))


@pytest.mark.parametrize('url', ['https://example.invalid/models/', 'https://example.invalid'])
def test_url_without_a_file_name_is_refused(hub, url):
    from mmengine.runner import CheckpointLoader
    with pytest.raises(ValueError, match='names no file.*URL of the checkpoint file itself'):
        CheckpointLoader.load_checkpoint(url)
