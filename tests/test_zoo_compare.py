"""tools/analysis_tools/zoo_compare.py finds the right twins in the installed mmseg's model zoo."""
import csv
import glob
import io
import json
import os.path as osp

import pytest
import yaml

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CFG = {
    'sanet': osp.join(REPO, 'configs', 'sanet', 'sanet_r101-d8_4xb2-80k_cityscapes-512x1024.py'),
    'ssanet': osp.join(REPO, 'configs', 'ssanet',
                       'ssanet_r101-d8_4xb2-80k_cityscapes-512x1024.py'),
    'gffnet': osp.join(REPO, 'configs', 'gffnet',
                       'gffnet_r101-d8_4xb2-80k_cityscapes-512x1024.py'),
}


@pytest.fixture(scope='module')
def zc(load_analysis_tool):
    return load_analysis_tool('zoo_compare')


def metafile_model(name):
    """Read the installed mmseg's metafiles directly (independently of the tool)."""
    import mmseg
    for meta in glob.glob(osp.join(osp.dirname(mmseg.__file__), '.mim', 'configs', '*',
                                   'metafile.yaml')):
        with open(meta) as f:
            for model in yaml.safe_load(f).get('Models', []):
                if model['Name'] == name:
                    return model
    raise AssertionError(f'{name} not in the installed mmseg metafiles')


@pytest.mark.parametrize('algo,family', [('gffnet', 'pspnet'), ('ssanet', 'nonlocal_net'),
                                         ('sanet', 'pspnet')])
def test_cityscapes_r101_80k_twin(zc, algo, family):
    from mmengine.config import Config
    ours = zc.setting_of(Config.fromfile(CFG[algo]))
    assert (ours.dataset, ours.crop, ours.iters, ours.backbone, ours.output_stride) == (
        'CityscapesDataset', (512, 1024), 80000, 'ResNetV1c-101', 8)
    match = zc.find_twin(ours)
    assert match.exact, match.how
    assert match.entry.family == family
    # the twin's own config, parsed independently, trains exactly the same setting
    import mmseg
    twin = Config.fromfile(osp.join(osp.dirname(mmseg.__file__), '.mim', match.entry.config))
    assert twin.train_cfg.max_iters == 80000
    assert twin.model.backbone.depth == 101
    assert twin.train_dataloader.dataset.type == 'CityscapesDataset'
    assert tuple(twin.crop_size) == (512, 1024)
    # the published number is the metafile's
    model = metafile_model(match.entry.name)
    assert match.entry.metrics['mIoU'] == model['Results']['Metrics']['mIoU']
    assert match.entry.metrics.get('mIoU(ms+flip)') == \
        model['Results']['Metrics'].get('mIoU(ms+flip)')
    expected_name = {'pspnet': 'pspnet_r101-d8_4xb2-80k_cityscapes-512x1024',
                     'nonlocal_net': 'nonlocal_r101-d8_4xb2-80k_cityscapes-512x1024'}[family]
    assert match.entry.name == expected_name


def test_partial_match_names_the_differences(zc):
    from mmengine.config import Config
    cfg = osp.join(REPO, 'configs', 'gffnet', 'gffnet_r101-d8_4xb2-100k_cityscapes-864x864.py')
    ours = zc.setting_of(Config.fromfile(cfg))
    match = zc.find_twin(ours)
    assert not match.exact
    assert match.setting.dataset == ours.dataset and match.setting.backbone == ours.backbone
    assert 'crop' in match.how and '864x864' in match.how and 'iters' in match.how
    # among the partial twins the closest crop area / schedule wins: 769x769 80k over 512x1024 40k
    assert match.setting.crop == (769, 769) and match.setting.iters == 80000


def test_unmatched_dataset_says_why(zc):
    s = zc.Setting(dataset='NoSuchDataset', data_root=None, crop=(64, 64), iters=10, batch=1,
                   backbone='ResNetV1c-50', output_stride=8, head='PSPHead')
    match = zc.find_twin(s)
    assert match.entry is None and 'NoSuchDataset' in match.how


def test_read_work_dir(zc, tmp_path):
    assert zc.read_work_dir(str(tmp_path / 'missing'))['mIoU'] is None
    run = tmp_path / '20261122_010203'
    (run / 'vis_data').mkdir(parents=True)
    with open(run / 'vis_data' / 'scalars.json', 'w') as f:
        f.write(json.dumps({'loss': 1.0, 'memory': 2048, 'step': 1}) + '\n')
        f.write(json.dumps({'aAcc': 90.0, 'mIoU': 41.5, 'step': 100}) + '\n')
        f.write(json.dumps({'aAcc': 91.0, 'mIoU': 43.25, 'step': 200}) + '\n')
    res = zc.read_work_dir(str(tmp_path))
    assert res['mIoU'] == 43.25 and res['memory_gb'] == 2.0
    # log fallback for a run without scalars.json
    other = tmp_path / 'wd2' / '20261122_020000'
    other.mkdir(parents=True)
    (other / '20261122_020000.log').write_text(
        'Iter(val) [10/10]    aAcc: 80.0000  mIoU: 12.3400  mAcc: 20.0\n')
    assert zc.read_work_dir(str(tmp_path / 'wd2'))['mIoU'] == 12.34


def test_cli_csv_row(zc, tmp_path, capsys):
    """One cheap config end to end: zoo number, our number, paper number, params of both."""
    cfg = osp.join(REPO, 'configs', 'ssanet',
                   'ssanet_mobilenet-v2-d16_4xb2-80k_cityscapes-512x1024.py')
    run = tmp_path / 'wd' / '20261122_000000' / 'vis_data'
    run.mkdir(parents=True)
    (run / 'scalars.json').write_text(json.dumps({'mIoU': 70.5, 'step': 80000}) + '\n')
    zc.main([cfg, '--work-dir', str(tmp_path / 'wd'), '--format', 'csv'])
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 1
    row = rows[0]
    model = metafile_model(row['twin (mmseg zoo)'])
    assert float(row['zoo mIoU']) == pytest.approx(model['Results']['Metrics']['mIoU'])
    assert float(row['our mIoU']) == 70.5
    with open(osp.join(REPO, 'configs', 'ssanet', 'metafile.yaml')) as f:
        ours = [m for m in yaml.safe_load(f)['Models']
                if osp.basename(m['Config']) == osp.basename(cfg)][0]
    assert float(row['paper mIoU']) == pytest.approx(ours['Results']['Metrics']['mIoU'])
    p_ours, p_twin = (float(v) for v in row['params ours / twin (M)'].split('/'))
    assert 0 < p_ours and 0 < p_twin
    assert 'partial' in row['match'] and 'output_stride' in row['match']


def test_cli_rejects_mismatched_work_dirs(zc):
    with pytest.raises(SystemExit):
        zc.main([CFG['gffnet'], CFG['sanet'], '--work-dir', 'a'])


def test_flops_of_the_sparse_attention_model(zc):
    """SSANet: the sparse non-local op counted by the handle of mmseg_ext.utils.flops, the
    traced rest (convolutions) on top, as tools/analysis_tools/get_flops.py counts it."""
    from mmengine.config import Config

    from mmseg_ext.utils.flops import count_flops
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'quickstart',
                                   'ssanet_r18tiny-d8_1xb8-1k_synthcity-128x256.py'))
    res = zc.complexity(cfg, (64, 128), with_flops=True)
    assert 'counted by its handle' in res['note']
    direct = count_flops(zc.build_inference_model(cfg), (64, 128))
    assert res['flops'] == direct['flops'] > sum(direct['extra'].values()) > 0


def _fake_run(work_dir, stamp, cfg, miou, step):
    """One mmengine run folder as the runner leaves it: the config it ran and its scalars."""
    vis = work_dir / stamp / 'vis_data'
    vis.mkdir(parents=True)
    cfg.dump(str(vis / 'config.py'))
    (vis / 'scalars.json').write_text(
        json.dumps({'loss': 1.0, 'memory': 1024, 'step': 1}) + '\n'
        + json.dumps({'aAcc': 80.0, 'mIoU': miou, 'step': step}) + '\n')


def test_read_work_dir_reads_the_run_of_the_config(zc, tmp_path):
    """Issue #25 item 5: a later 4-iteration trial in the same work dir is not our result."""
    from mmengine.config import Config
    path = osp.join(REPO, 'configs', 'quickstart', 'gffnet_r18tiny-d8_1xb8-1k_synthcity-128x256.py')
    cfg = Config.fromfile(path)
    assert cfg.train_cfg.max_iters == 1000
    trial = Config.fromfile(path)
    trial.merge_from_dict({'train_cfg.max_iters': 4})
    wd = tmp_path / 'wd'
    _fake_run(wd, '20261201_100000', cfg, 28.90, 1000)  # the full run
    _fake_run(wd, '20261201_120000', cfg, 20.00, 500)  # the same config, stopped half-way
    _fake_run(wd, '20261202_090000', trial, 2.19, 4)  # the newest: a 4-iteration trial
    res = zc.read_work_dir(str(wd), cfg)
    assert res['mIoU'] == 28.90 and res['memory_gb'] == 1.0
    assert res['source'].endswith(osp.join('20261201_100000', 'vis_data', 'scalars.json'))
    assert res['run'].startswith('run 20261201_100000: validation at iteration 1000 of 1000, '
                                 'complete; its recorded config matches')
    assert '20261202_090000 (train_cfg.max_iters 4 vs 1000)' in res['run']
    # without the full run, the incomplete one is read and called so
    import shutil
    shutil.rmtree(wd / '20261201_100000')
    res = zc.read_work_dir(str(wd), cfg)
    assert res['mIoU'] == 20.0 and 'INCOMPLETE' in res['run']
    # only the trial: no result of this config (it is not reported as ours)
    shutil.rmtree(wd / '20261201_120000')
    res = zc.read_work_dir(str(wd), cfg)
    assert res['mIoU'] is None
    assert res['run'].startswith('no evaluated run of this config; passed over 1 run')


def test_read_work_dir_judges_a_test_run_by_its_checkpoint(zc, tmp_path):
    """A tools/test.py run records the config given to test.py; what counts is the config the
    tested checkpoint was trained with (mmengine saves its text and iteration in ``meta``)."""
    import torch
    from mmengine.config import Config
    path = osp.join(REPO, 'configs', 'quickstart', 'gffnet_r18tiny-d8_1xb8-1k_synthcity-128x256.py')
    cfg = Config.fromfile(path)
    trial = Config.fromfile(path)
    trial.merge_from_dict({'train_cfg.max_iters': 4})
    wd = tmp_path / 'wd'
    for stamp, train_cfg, it, miou in (('20261201_100000', cfg, 1000, 28.9),
                                        ('20261202_090000', trial, 4, 2.19)):
        ckpt = wd / f'iter_{it}.pth'
        wd.mkdir(exist_ok=True)
        torch.save(dict(meta=dict(cfg=train_cfg.pretty_text, iter=it), state_dict={}), ckpt)
        run = wd / stamp
        (run / 'vis_data').mkdir(parents=True)
        cfg.dump(str(run / 'vis_data' / 'config.py'))  # test.py was given the full config
        (run / f'{stamp}.log').write_text(
            f'Loads checkpoint by local backend from path: {ckpt}\nLoad checkpoint from {ckpt}\n'
            f'Iter(test) [4/4]    aAcc: 80.0000  mIoU: {miou:.4f}  mAcc: 40.0000\n')
    res = zc.read_work_dir(str(wd), cfg)
    assert res['mIoU'] == 28.9
    assert res['run'].startswith(f"run 20261201_100000: test of {wd / 'iter_1000.pth'} (saved at "
                                 "iteration 1000 of 1000), complete; its checkpoint's training "
                                 'config matches')
    assert f"20261202_090000 (a test of {wd / 'iter_4.pth'}, trained with train_cfg.max_iters 4 " \
        'vs 1000)' in res['run']


def test_cli_refuses_a_config_without_a_model(zc, capsys):
    """Issue #25 item 7: a dataset-only or model-only config says what is missing."""
    for part, missing in (('datasets/synthcity_128x256.py', 'defines no model'),
                          ('models/r18tiny-d8_gffnet.py', 'defines no train_dataloader')):
        with pytest.raises(SystemExit) as e:
            zc.main([osp.join(REPO, 'configs', '_base_', part)])
        assert e.value.code != 0
        assert missing in capsys.readouterr().err
