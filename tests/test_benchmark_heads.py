"""tools/analysis_tools/benchmark_heads.py measures every requested head (tiny sizes here)."""
import argparse
import json
import os.path as osp

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(scope='module')
def bh(load_analysis_tool):
    return load_analysis_tool('benchmark_heads')


def test_one_row_per_requested_head(bh, tmp_path, capsys):
    heads = ['SAHead', 'CC']  # ours + the one whose op might lack a CPU kernel
    rows = bh.main(['--heads', *heads, '--size', '64', '64', '--repeats', '1', '--warmup', '0',
                    '--threads', '1', '--out-dir', str(tmp_path)])
    assert [r['head'] for r in rows] == ['SAHead', 'CCHead']
    for r in rows:
        assert r['ok'], r
        assert r['fwd_s'] > 0 and r['train_s'] > 0 and r['params'] > 0
        assert r['train_mem_mib'] >= 0
    out = capsys.readouterr().out
    for head in ('SAHead', 'CCHead'):
        assert f'| {head} | 64x64 |' in out
    saved = json.loads((tmp_path / 'benchmark_heads.json').read_text())
    assert len(saved['rows']) == 2


def test_head_settings_are_the_configs(bh):
    """Every head's config exists and its decode_head has the type the table names."""
    from mmengine.config import Config
    for head, cfg in bh.HEAD_CONFIGS.items():
        assert Config.fromfile(bh.resolve_config(cfg)).model.decode_head.type == head


def test_unknown_head_is_rejected(bh):
    with pytest.raises(SystemExit):
        bh.main(['--heads', 'NoSuchHead', '--size', '64', '64'])


def test_sweep_skips_what_exceeds_the_budget(bh, monkeypatch, tmp_path):
    calls = []

    def fake_run(job, timeout, threads):  # time grows with pixels^2 (attention-like)
        calls.append(tuple(job['size']))
        px = job['size'][0] * job['size'][1]
        return {'ok': True, 'params': 1, 'fwd_s': 1e-10 * px ** 2, 'train_s': 3e-10 * px ** 2,
                'fwd_mem_mib': 1.0, 'train_mem_mib': px / 1e4, 'mem_method': 'fake'}

    monkeypatch.setattr(bh, 'run_job', fake_run)
    args = argparse.Namespace(budget_time=50.0, budget_mem=100.0, batch=2, device='cpu',
                              repeats=1, warmup=0, amp=False, threads=1)
    rows = bh.benchmark(['NLHead'], bh.SWEEP_SIZES, args)
    assert len(rows) == len(bh.SWEEP_SIZES)
    ran = [r for r in rows if r.get('ok')]
    skipped = [r for r in rows if not r.get('ok')]
    # 512x1024 takes 3e-10 * (2^19)^2 = 82 s > 50 s: predicted from 256x512 and 512x512 and skipped
    assert [r['size'] for r in ran] == ['256x256', '256x512', '512x512']
    assert skipped and 'skipped (predicted' in skipped[0]['status']
    assert [r['status'] for r in skipped[1:]] == ['skipped (over budget at 512x1024)',
                                                  'skipped (over budget at 768x1536)']
    assert len(calls) == 3
    bh.plot(rows, str(tmp_path / 'sweep.png'), 'test')
    assert (tmp_path / 'sweep.png').stat().st_size > 1000


def test_predict_power_law(bh):
    pts = [(100, {'ok': True, 't': 1.0}), (200, {'ok': True, 't': 4.0})]
    assert bh._predict(pts, 400, 't') == pytest.approx(16.0)  # exponent 2
    pts = [(100, {'ok': True, 't': 1.0}), (200, {'ok': True, 't': 1.5})]
    assert bh._predict(pts, 400, 't') == pytest.approx(3.0)  # exponent clamped to 1


def test_pair_times_both_whole_models(bh, tmp_path, capsys):
    """--pair OURS TWIN: one train-step row per config, a project config next to a zoo config."""
    ours = osp.join(REPO, 'configs', 'quickstart', 'sanet_r18tiny-d8_1xb8-1k_synthcity-128x256.py')
    twin = 'mmseg::fcn/fcn_r18-d8_4xb2-80k_cityscapes-512x1024.py'
    bh.main(['--heads', 'FCN', '--size', '32', '48', '--batch', '2', '--repeats', '1',
             '--warmup', '0', '--threads', '1', '--pair', ours, twin, '--out-dir', str(tmp_path)])
    pairs = json.loads((tmp_path / 'benchmark_heads.json').read_text())['pairs']
    assert [p['config'] for p in pairs] == [ours, twin]
    for p in pairs:
        assert p['ok'], p
        assert p['train_s'] > 0 and p['train_mem_mib'] >= 0
    # the tiny quickstart SANet is far smaller than mmseg's R18-d8 FCN (~12M parameters)
    assert pairs[0]['params'] < pairs[1]['params']
    assert 10e6 < pairs[1]['params'] < 15e6
    out = capsys.readouterr().out
    assert 'Whole-model train step' in out and f'| {twin} | 32x48 | 2 |' in out


def test_pair_rejects_a_missing_config(bh, capsys):
    with pytest.raises(SystemExit):
        bh.main(['--heads', 'FCN', '--size', '32', '32', '--pair', 'configs/nope.py',
                 'mmseg::pspnet/nope.py'])
    assert "--pair: config 'configs/nope.py' not found" in capsys.readouterr().err


def test_snl_backend_reaches_every_snl_head(bh):
    cfg = {'decode_head': [{'type': 'FCNHead'}, {'type': 'SNLHead', 'kernel_size': 3}]}
    bh._set_snl_backend(cfg, 'triton')
    assert cfg['decode_head'] == [{'type': 'FCNHead'}, {'type': 'SNLHead', 'kernel_size': 3,
                                                          'backend': 'triton'}]
    head = bh._build_from_cfg(bh.HEAD_CONFIGS['SNLHead'], 'decode_head', 'sparse')
    assert head.snl.backend == 'sparse'
    assert bh._build_from_cfg(bh.HEAD_CONFIGS['SNLHead'], 'decode_head').snl.backend == 'auto'
    with pytest.raises(SystemExit):
        bh.main(['--heads', 'SNL', '--snl-backend', 'cuda'])


def test_only_a_missing_kernel_is_na_on_cpu(bh, monkeypatch, capsys):
    """Issue #25 item 6: a real error is reported as such and the tool exits non-zero."""
    mmcv_cpu = "RuntimeError: ca_forward_impl: implementation for device cpu not found."
    triton_cpu = ("ValueError: backend='triton' cannot run here: the tensors are on cpu. "
                  "Use backend='auto'")
    real = 'ValueError: Expected more than 1 value per channel when training'
    for msg, unavailable in ((mmcv_cpu, True), (triton_cpu, True), (real, False),
                             ('RuntimeError: shape mismatch', False)):
        assert bool(bh.UNAVAILABLE_ON_DEVICE.search(msg)) is unavailable, msg
    answers = {'CCHead': {'ok': False, 'error': mmcv_cpu, 'unavailable': True},
               'SAHead': {'ok': False, 'error': real, 'unavailable': False}}
    monkeypatch.setattr(bh, 'run_job', lambda job, timeout, threads: dict(answers[job['head']]))
    rows = bh.main(['--heads', 'CC', '--size', '32', '32'])  # n/a only: no failure
    assert rows[0]['status'] == f'n/a on CPU ({mmcv_cpu})'
    with pytest.raises(SystemExit) as e:
        bh.main(['--heads', 'CC', 'SA', '--size', '32', '32', '--batch', '1'])
    assert 'SAHead 32x32: ' + real + ' (train-mode BN of the pooled branches needs --batch >= 2)' \
        in str(e.value.code)
    out = capsys.readouterr().out
    assert f'| SAHead | 32x32 | - | - | - | - | - | - | error: {real} |' in out
    assert 'n/a on CPU (ValueError' not in out


def test_batch_one_gff_fails_loudly(bh, capsys):
    """The issue's case end to end, in the worker subprocess: the real error, exit non-zero."""
    with pytest.raises(SystemExit) as e:
        bh.main(['--heads', 'GFF', '--size', '32', '32', '--batch', '1', '--repeats', '1',
                 '--warmup', '0', '--threads', '1'])
    msg = str(e.value.code)
    assert 'GFFHead 32x32: ValueError: GFFHead: the PPM (pool_scales) branch pools to 1x1' in msg
    assert 'Expected more than 1 value per channel' in msg and 'n/a' not in msg
    out = capsys.readouterr().out
    assert '| GFFHead | 32x32 | - | - | - | - | - | - | error: ValueError' in out


def test_pair_refuses_a_config_without_a_model(bh, capsys):
    with pytest.raises(SystemExit) as e:
        bh.main(['--heads', 'FCN', '--size', '32', '32', '--pair',
                 'mmseg::_base_/datasets/cityscapes.py', 'mmseg::_base_/models/fcn_r50-d8.py'])
    assert e.value.code != 0
    assert "config 'mmseg::_base_/datasets/cityscapes.py' defines no model" in \
        capsys.readouterr().err
