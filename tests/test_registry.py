"""Importing mmseg_ext registers its modules into mmseg's registries, and only there."""
import importlib

import pytest

EXPECTED = {'SAHead', 'SNLHead', 'GFFHead', 'CategoricalLoss'}


def _ours():
    from mmseg.registry import MODELS

    import mmseg_ext  # noqa: F401
    return {name: cls for name, cls in MODELS.module_dict.items()
            if cls.__module__.startswith('mmseg_ext.')}


def test_every_expected_name_is_registered():
    ours = _ours()
    assert EXPECTED <= set(ours), f'missing from mmseg.registry.MODELS: {EXPECTED - set(ours)}'


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_registry_round_trip(name):
    from mmseg.registry import MODELS
    cls = _ours()[name]
    assert MODELS.get(name) is cls
    assert MODELS.get(f'mmseg.{name}') is cls  # the scoped name the configs may use
    module = importlib.import_module(cls.__module__)
    assert getattr(module, cls.__name__) is cls


def test_import_is_idempotent():
    """Registering again (a reload of the module that registers the loaders) changes nothing;
    in a subprocess, since a reload replaces the module's classes for every later test."""
    import os.path as osp
    import subprocess
    import sys
    code = ('import importlib, mmseg_ext; from test_registry import EXPECTED, _ours; '
            "importlib.reload(importlib.import_module('mmseg_ext.checkpoint')); "
            'from mmseg_ext.checkpoint import unsafe_schemes; '
            'assert _ours().keys() >= EXPECTED and unsafe_schemes() == [] '
            'and mmseg_ext.__version__')
    tests = osp.dirname(osp.abspath(__file__))
    proc = subprocess.run([sys.executable, '-c', f'import sys; sys.path[:0] = [{tests!r}]; {code}'],
                          capture_output=True, text=True, timeout=300, cwd=osp.dirname(tests))
    assert proc.returncode == 0, proc.stderr[-2000:]
