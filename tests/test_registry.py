"""Importing mmseg_ext registers its modules into mmseg's registries, and only there."""
import importlib

import pytest

EXPECTED = {'SAHead', 'SNLHead', 'GFFHead', 'CategoricalLoss'}


def _ours():
    import mmseg_ext  # noqa: F401
    from mmseg.registry import MODELS
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
    import mmseg_ext
    importlib.reload(importlib.import_module('mmseg_ext.checkpoint'))
    assert _ours().keys() >= EXPECTED
    assert mmseg_ext.__version__
