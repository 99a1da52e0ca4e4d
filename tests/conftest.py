import importlib.util
import os
import os.path as osp
import sys

import pytest

# Triton decides when it is first imported (and when each @triton.jit kernel is decorated) whether
# kernels are compiled or run by its CPU interpreter, process-wide. Without a GPU, let the Triton
# backend of the SNL op run on CPU tensors in the interpreter (tests/test_snl_triton.py); with a
# GPU the same tests run the compiled kernels on CUDA tensors. An explicit setting is kept.
if 'TRITON_INTERPRET' not in os.environ:
    import torch
    if not torch.cuda.is_available():
        os.environ['TRITON_INTERPRET'] = '1'

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
    """A tiny SynthCity (8 train + 4 val images at the configs' 128x256) shared by the tests that
    train."""
    from mmseg_ext.datasets.synthcity import SynthCityConfig, generate
    root = str(tmp_path_factory.mktemp('synthcity'))
    generate(SynthCityConfig(root=root, seed=0, num_train=8, num_val=4))
    return root


@pytest.fixture
def tool_env(synthcity_root):
    """Environment for subprocesses running the tools: the repo importable, the tiny data, 1
    thread."""
    env = dict(os.environ)
    env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
    env['SYNTHCITY_ROOT'] = synthcity_root
    env['OMP_NUM_THREADS'] = '1'
    env.pop('CUDA_VISIBLE_DEVICES', None)
    return env
