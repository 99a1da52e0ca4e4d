"""Every config under configs/ parses, follows the project's conventions, and builds its model."""
import glob
import os.path as osp
import re

import pytest
from mmengine.config import Config

from mmseg_ext.utils import revert_sync_bn_cfg

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(
    p for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
    if '_base_' not in p.split(osp.sep))
NAME = re.compile(r'^[a-z0-9\-+]+_[a-zA-Z0-9\-.+]+_\d+xb\d+-\d+k_'
                  r'[a-zA-Z0-9\-]+-\d+x\d+(-[a-z0-9\-]+)?\.py$')


def test_there_are_configs():
    assert len(CONFIGS) > 0


def _depth(path, seen=()):
    """Inheritance depth of a config file (mmseg:: bases count as one level each, plus theirs)."""
    text = open(path).read()
    m = re.search(r'_base_\s*=\s*(\[[^\]]*\]|[\'"][^\'"]+[\'"])', text, re.S)
    if not m:
        return 0
    bases = re.findall(r'[\'"]([^\'"]+)[\'"]', m.group(1))
    depth = 0
    for b in bases:
        if b.startswith('mmseg::'):
            import mmseg
            b_path = osp.join(osp.dirname(mmseg.__file__), '.mim', 'configs', b[len('mmseg::'):])
        else:
            b_path = osp.normpath(osp.join(osp.dirname(path), b))
        depth = max(depth, 1 + _depth(b_path))
    return depth


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: osp.relpath(p, REPO))
def test_config_builds(path):
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    import mmseg_ext  # noqa: F401
    register_all_modules()  # default scope 'mmseg', as the tools set it
    cfg = Config.fromfile(path)
    assert cfg.get('custom_imports', {}).get('imports') == ['mmseg_ext'], \
        'every config needs custom_imports=dict(imports=[\'mmseg_ext\'], ...)'
    assert _depth(path) <= 3, 'at most 3 inheritance levels'
    # bit-exact --resume: the RNG states go into the checkpoints (configs/_base_/default_runtime.py)
    assert 'RNGStateHook' in [h.get('type') for h in cfg.get('custom_hooks', [])], \
        "inherit '../_base_/default_runtime.py' (mmseg's runtime plus RNGStateHook)"
    assert NAME.match(osp.basename(path)), \
        f'{osp.basename(path)}: use ' \
        f'{{algo}}_{{backbone}}_{{gpus}}xb{{batch}}-{{iters}}_{{dataset}}-{{crop}}.py'
    # the name's schedule is the config's schedule, and no base schedule says another
    iters = int(re.search(r'xb\d+-(\d+)k_', osp.basename(path)).group(1)) * 1000
    for base_iters in re.findall(r'schedule[\w\-]*?_(\d+)k\.py', open(path).read()):
        assert int(base_iters) * 1000 == iters, \
            f'name says {iters} iterations, base schedule {base_iters}k'
    assert cfg.train_cfg.max_iters == iters, \
        f'name says {iters} iterations, config {cfg.train_cfg.max_iters}'
    batch = int(re.search(r'_\d+xb(\d+)-', osp.basename(path)).group(1))
    assert cfg.train_dataloader.batch_size == batch
    crop = tuple(int(v) for v in re.search(r'-(\d+)x(\d+)(?:-[a-z0-9\-]+)?\.py$',
                                           osp.basename(path)).groups())
    if 'crop_size' in cfg:
        assert tuple(cfg.crop_size) == crop, f'name says crop {crop}, config {cfg.crop_size}'
    model_cfg = revert_sync_bn_cfg(cfg.model.copy())
    model_cfg.pop('pretrained', None)
    if 'init_cfg' in model_cfg.get('backbone', {}):
        model_cfg['backbone'].pop('init_cfg')
    model = MODELS.build(model_cfg)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_runtime_base_is_mmseg_runtime_plus_rng_hook():
    """configs/_base_/default_runtime.py copies mmseg's (to stay within 3 levels): keep them
    equal."""
    import mmseg
    ours = Config.fromfile(osp.join(REPO, 'configs', '_base_', 'default_runtime.py')).to_dict()
    stock = Config.fromfile(osp.join(osp.dirname(mmseg.__file__), '.mim', 'configs', '_base_',
                                     'default_runtime.py')).to_dict()
    assert ours.pop('custom_hooks') == [dict(type='RNGStateHook')]
    assert ours == stock
