import os
import os.path as osp

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(scope='session')
def synthcity_root(tmp_path_factory):
    """A tiny SynthCity (8 train + 4 val images at the configs' 128x256) shared by the tests that train."""
    from mmseg_ext.datasets.synthcity import SynthCityConfig, generate
    root = str(tmp_path_factory.mktemp('synthcity'))
    generate(SynthCityConfig(root=root, seed=0, num_train=8, num_val=4))
    return root


@pytest.fixture
def tool_env(synthcity_root):
    """Environment for subprocesses running the tools: the repo importable, the tiny data, 1 thread."""
    env = dict(os.environ)
    env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
    env['SYNTHCITY_ROOT'] = synthcity_root
    env['OMP_NUM_THREADS'] = '1'
    env.pop('CUDA_VISIBLE_DEVICES', None)
    return env
