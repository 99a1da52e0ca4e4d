import importlib.util
import os
import os.path as osp
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(scope='session')
def load_analysis_tool():
    """Import a script of ``tools/analysis_tools`` (not a package) by its name."""
    def load(name):
        spec = importlib.util.spec_from_file_location(
            name, osp.join(REPO, 'tools', 'analysis_tools', f'{name}.py'))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod  # dataclasses resolve annotations through sys.modules
        spec.loader.exec_module(mod)
        return mod
    return load


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
