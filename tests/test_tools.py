"""The stock mmseg tools, the project's tools and mim run project configs end to end on CPU."""
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

from mmseg_ext.checkpoint import weights_only_load

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
QUICK = osp.join(REPO, 'configs', 'quickstart', 'fcn_r18tiny-d8_1xb8-1k_synthcity-128x256.py')
HEAD_QUICKSTARTS = [
    osp.join(REPO, 'configs', 'quickstart', f'{algo}_r18tiny-d8_1xb8-1k_synthcity-128x256.py')
    for algo in ('fcn', 'sanet', 'ssanet', 'gffnet')
]


def short_run(iters, workers=0, batch=2):
    """--cfg-options that shrink a config's schedule to ``iters`` iterations on tiny data."""
    return [
        f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
        f'default_hooks.checkpoint.interval={iters}', 'default_hooks.logger.interval=1',
        f'train_dataloader.batch_size={batch}', f'train_dataloader.num_workers={workers}',
        'train_dataloader.persistent_workers=False', 'val_dataloader.num_workers=0',
        'val_dataloader.persistent_workers=False', 'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False',
    ]


def mmseg_tool(name):
    import mmseg
    path = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools', name)
    assert osp.isfile(path), f'installed mmseg has no {path}'
    return path


def run(cmd, env, timeout=600):
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f'{" ".join(cmd)} failed ({proc.returncode}):\n{out[-6000:]}'
    return out


def miou_of(output):
    m = re.findall(r'mIoU: ([0-9.]+)', output)
    assert m, f'no mIoU in output:\n{output[-3000:]}'
    return float(m[-1])


def train_test_with(train_py, test_py, config, tmp_path, env, iters=3):
    work = tmp_path / 'work'
    out = run([sys.executable, train_py, config, '--work-dir', str(work), '--cfg-options',
               *short_run(iters)], env)
    assert re.search(r'Iter\(train\) \[\s*%d/%d\]' % (iters, iters), out), out[-3000:]
    ckpt = work / f'iter_{iters}.pth'
    assert ckpt.is_file()
    out = run([sys.executable, test_py, config, str(ckpt), '--work-dir', str(tmp_path / 'test'),
               '--cfg-options', *short_run(iters)], env)
    assert 0.0 <= miou_of(out) <= 100.0
    return ckpt


@pytest.mark.parametrize('config', HEAD_QUICKSTARTS, ids=lambda p: osp.basename(p).split('_')[0])
def test_stock_mmseg_tools_run_a_project_config(config, tmp_path, tool_env):
    """The installed mmseg's own train.py/test.py train each head end to end and test its
    checkpoint."""
    train_test_with(mmseg_tool('train.py'), mmseg_tool('test.py'), config, tmp_path, tool_env)


def test_project_tools_match_stock_arguments(tmp_path, tool_env):
    train_test_with(osp.join(REPO, 'tools', 'train.py'), osp.join(REPO, 'tools', 'test.py'), QUICK,
                    tmp_path, tool_env, iters=2)


@pytest.mark.skipif(torch.cuda.is_available(),
                    reason='the CPU multi-process path is for machines without CUDA')
def test_dist_train_two_cpu_processes_then_resume(tmp_path, tool_env):
    tool_env = dict(tool_env, PATH=osp.dirname(sys.executable) + ':' + tool_env['PATH'],
                    PORT='29517')
    work = tmp_path / 'dist'
    base = ['bash', osp.join(REPO, 'tools', 'dist_train.sh'), QUICK, '2', '--work-dir', str(work)]
    out = run(base + ['--cfg-options', *short_run(2)], tool_env)
    assert 'Distributed training: True' in out
    assert re.search(r'GPU number: 2|world_size.*2|World size: 2', out, re.I), out[-3000:]
    assert (work / 'iter_2.pth').is_file()
    # resume continues from iteration 2 to 4 (not from scratch)
    out = run(base + ['--resume', '--cfg-options', *short_run(4)], tool_env)
    assert re.search(r'resumed (epoch|iter)', out, re.I) or 'Load checkpoint from' in out, \
        out[-3000:]
    assert re.search(r'Iter\(train\) \[\s*3/4\]', out) and \
        not re.search(r'Iter\(train\) \[\s*1/4\]', out)
    ckpt = weights_only_load(work / 'iter_4.pth', map_location='cpu')
    assert ckpt['meta']['iter'] == 4
    # and the multi-process test path evaluates it
    out = run(['bash', osp.join(REPO, 'tools', 'dist_test.sh'), QUICK, str(work / 'iter_4.pth'),
               '2', '--work-dir', str(tmp_path / 'dist_test'), '--cfg-options', *short_run(4)],
              tool_env)
    assert 0.0 <= miou_of(out) <= 100.0


def test_mim_train_and_test_mmseg(tmp_path, tool_env):
    mim = osp.join(osp.dirname(sys.executable), 'mim')
    if not osp.isfile(mim):
        pytest.fail('openmim is not installed in this environment (tools/install.sh installs it)')
    work = tmp_path / 'mim'
    run([mim, 'train', 'mmseg', QUICK, '--work-dir', str(work), '--cfg-options', *short_run(2)],
        tool_env)
    assert (work / 'iter_2.pth').is_file()
    out = run([mim, 'test', 'mmseg', QUICK, '--checkpoint', str(work / 'iter_2.pth'), '--work-dir',
               str(tmp_path / 'mimtest'), '--cfg-options', *short_run(2)], tool_env)
    assert 0.0 <= miou_of(out) <= 100.0


def test_project_tools_destroy_the_process_group_after_a_run(monkeypatch, tmp_path):
    """A gloo group left to interpreter finalization can abort a finished run (SIGABRT); the
    project's train.py/test.py wrapper destroys it once mmseg's script has returned."""
    import runpy

    import torch.distributed as dist

    from mmseg_ext.utils import launcher

    def script(path, run_name):
        dist.init_process_group('gloo', init_method=f'file://{tmp_path / "store"}', rank=0,
                                world_size=1)

    monkeypatch.setattr(runpy, 'run_path', script)
    launcher.run_mmseg_tool('test.py')
    assert not dist.is_initialized()
