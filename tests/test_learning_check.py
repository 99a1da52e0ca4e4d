"""learning_check.py's bookkeeping (no training here): variant parsing, reuse rules, report rows."""
import argparse
import functools
import json
import os
import os.path as osp
import subprocess
import sys

import pytest


@pytest.fixture(scope='module')
def lc(load_analysis_tool):
    return load_analysis_tool('learning_check')


def _iou(v):
    return {c: v for c in ('road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light',
                           'traffic sign', 'vegetation', 'terrain', 'sky', 'person', 'rider', 'car',
                           'truck', 'bus', 'train', 'motorcycle', 'bicycle')}


def test_parse_variant(lc):
    assert lc.parse_variant('den:model.decode_head.infer_mode=den') == \
        ('den', ['model.decode_head.infer_mode=den'])
    assert lc.parse_variant('x:a=1,b=2') == ('x', ['a=1', 'b=2'])
    for bad in ('den', ':a=1', 'den:', 'den:infer_mode'):
        with pytest.raises(argparse.ArgumentTypeError, match='LABEL:KEY=VALUE'):
            lc.parse_variant(bad)


def test_finished_run_is_reused_only_with_the_same_options(lc, tmp_path):
    res = dict(config='a.py', seed=0, iou=_iou(10.0), miou=10.0, seconds=60.0, iters=None,
               train_opts=['model.decode_head.mask_fusion=deep'])
    (tmp_path / 'result.json').write_text(json.dumps(res))
    got = lc.run_one('a.py', 0, str(tmp_path), None, {}, ['model.decode_head.mask_fusion=deep'])
    assert got['miou'] == 10.0
    with pytest.raises(ValueError, match='--tag'):
        lc.run_one('a.py', 0, str(tmp_path), None, {}, [])
    with pytest.raises(ValueError, match='--iters'):
        lc.run_one('a.py', 0, str(tmp_path), 500, {}, res['train_opts'])


def test_report_has_a_row_per_test_variant(lc, tmp_path):
    runs = [dict(config='sanet_x.py', seed=s, iou=_iou(20.0 + s), miou=20.0 + s, seconds=60.0,
                 tests={'den': dict(opts=['m=den'], iou=_iou(30.0 + s), miou=30.0 + s)})
            for s in (0, 1)]
    text = lc.write_report(runs, str(tmp_path), [0, 1], None)
    assert '| sanet_x.py | 20.5 ± 0.7 |' in text
    assert '| sanet_x.py [den] | 30.5 ± 0.7 |' in text
    assert '| class | sanet | sanet [den] |' in text


def test_test_variant_builds_the_trained_model(lc, tmp_path, monkeypatch):
    """A variant of a run trained with --cfg-options is tested on that model, not the config's."""
    res = dict(config='a.py', seed=0, iou=_iou(10.0), miou=10.0, seconds=60.0, iters=None,
               train_opts=['model.decode_head.mask_fusion=deep'],
               tests={'mask': dict(opts=['model.decode_head.infer_mode=mask'], iou=_iou(0.0),
                                   miou=0.0)})
    (tmp_path / 'result.json').write_text(json.dumps(res))
    calls = []

    def fake_test(config, work_dir, label, opts, env, iters):
        calls.append(opts)
        return dict(opts=opts, iou=_iou(20.0), miou=20.0)
    monkeypatch.setattr(lc, 'test_variant', fake_test)
    variant = [('mask', ['model.decode_head.infer_mode=mask'])]
    got = lc.run_one('a.py', 0, str(tmp_path), None, {}, res['train_opts'], variant)
    # the stale result (tested without the training options) is redone, with them first
    assert calls == [['model.decode_head.mask_fusion=deep', 'model.decode_head.infer_mode=mask']]
    assert got['tests']['mask']['miou'] == 20.0
    lc.run_one('a.py', 0, str(tmp_path), None, {}, res['train_opts'], variant)
    assert len(calls) == 1  # and then reused


def _table(v):
    rows = '\n'.join(f'| {c} | {v:.2f} | 50.0 |' for c in _iou(0))
    return f'per class results:\n+---+\n| Class | IoU | Acc |\n{rows}\n'


def test_curve_is_read_from_every_validation_in_the_log(lc, tmp_path):
    log = ('Iter(train) [ 480/1000]  lr: 1\nIter(train) [ 500/1000]  lr: 1\n' + _table(3.0)
           + 'Iter(val) [4/4]    aAcc: 90.0000  mIoU: 3.0000  mAcc: 50.0000\n'
           + 'Iter(train) [1000/1000]  lr: 1\n' + _table(7.5)
           + 'Iter(val) [4/4]    aAcc: 91.0000  mIoU: 7.5000  mAcc: 50.0000\n')
    curve = lc.parse_curve(log)
    assert [p['iter'] for p in curve] == [500, 1000]
    assert [p['miou'] for p in curve] == [3.0, 7.5]
    assert curve[1]['iou']['pole'] == 7.5
    # a finished run without a curve gets one from its train.log
    (tmp_path / 'train.log').write_text(log)
    res = dict(config='a.py', seed=0, iou=_iou(7.5), miou=7.5, seconds=60.0, iters=None,
               train_opts=[])
    (tmp_path / 'result.json').write_text(json.dumps(res))
    got = lc.run_one('a.py', 0, str(tmp_path), None, {}, [])
    assert [p['iter'] for p in got['curve']] == [500, 1000]
    text = lc.write_curves([got], str(tmp_path))
    assert '| 1000 | 7.5 | 7.5 |' in text and (tmp_path / 'curves.md').is_file()
    assert lc.write_curves([dict(got, curve=got['curve'][:1])], str(tmp_path)) == ''


def test_report_names_the_lowest_small_class(lc, tmp_path):
    iou = dict(_iou(20.0), person=2.0)
    runs = [dict(config='fcn_x.py', seed=s, iou=iou, miou=20.0, seconds=60.0) for s in (0, 1)]
    text = lc.write_report(runs, str(tmp_path), [0, 1], None)
    assert '| person 2.0 | 1.0 min | 0, 1 |' in text
    one = lc.write_report(runs[:1], str(tmp_path), [0], None)
    assert '| fcn_x.py | 20.0 | - | 20.0 |' in one  # one seed: no '± 0.0' spread; no test yet


def _put_run(root, dirname, seed, miou, opts=(), config='gff_x.py'):
    d = root / dirname
    d.mkdir()
    (d / 'result.json').write_text(json.dumps(dict(
        config=config, seed=seed, iou=_iou(miou), miou=miou, seconds=60.0, iters=None,
        train_opts=list(opts))))
    return d


def test_finished_only_collects_finished_and_tagged_runs(lc, tmp_path):
    put = functools.partial(_put_run, tmp_path)
    put('gff_x_seed0', 0, 10.0)
    put('gff_x_seed2', 2, 12.0)
    put('gff_x-align1_seed0', 0, 20.0, ['model.decode_head.align_level=1'])
    put('gff_xl_seed0', 0, 99.0, config='gff_xl.py')  # another config whose name starts alike
    put('gff_x-k-9_seed1', 1, 30.0, ['model.decode_head.kernel=9'])  # a tag with a hyphen
    (tmp_path / 'gff_x_seed1').mkdir()  # still training: no result.json
    put('gff_x_seed3', 3, 50.0)  # a seed not asked for
    runs = lc.finished_runs(['configs/gff_x.py'], [0, 1, 2], str(tmp_path), None)
    assert [(r['config'], r['seed'], r['miou']) for r in runs] == [
        ('gff_x.py', 0, 10.0), ('gff_x.py', 2, 12.0), ('gff_x-align1', 0, 20.0),
        ('gff_x-k-9', 1, 30.0)]
    assert runs[2]['short'] == 'gff-align1'
    text = lc.write_report(runs, str(tmp_path), [0, 1, 2], None)
    assert '| gff_x.py | 11.0 ± 1.4 |' in text and '| gff_x-align1 | 20.0 |' in text
    assert lc.finished_runs(['configs/gff_x.py'], [0], str(tmp_path / 'none'), None) == []


def test_sa4_variant_reaches_the_benchmark_sanet(lc):
    """--test-variants sa4:... (issue #23) gives tools/test.py a model predicting Y_SA4 alone, with
    the parameters of the trained one (old checkpoints load strictly)."""
    import os.path as osp

    from mmengine.config import Config, DictAction
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    import mmseg_ext  # noqa: F401
    from mmseg_ext.utils import revert_sync_bn_cfg
    register_all_modules()
    label, opts = lc.parse_variant('sa4:model.decode_head.infer_mode=sa4')
    assert label == 'sa4'
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    path = osp.join(lc.REPO, 'configs', 'benchmark',
                    'sanet_r18tiny-d8_1xb8-4k_synthcity-bench-128x256.py')
    cfg = Config.fromfile(path)
    trained = MODELS.build(revert_sync_bn_cfg(cfg.model.copy()))
    cfg.merge_from_dict(parser.parse_args(['--cfg-options', *opts]).cfg_options)
    tested = MODELS.build(revert_sync_bn_cfg(cfg.model.copy()))
    assert tested.decode_head.infer_mode == 'sa4'
    tested.load_state_dict(trained.state_dict(), strict=True)


def test_finished_only_matches_runs_by_their_recorded_config(lc, tmp_path, capsys):
    """Issue #25 item 5: a config whose name extends another's (``-slide-ms``) is not a tagged
    variant of it, and each run is listed once, under its own config, when both are given."""
    put = functools.partial(_put_run, tmp_path)
    put('gff_x_seed0', 0, 28.9)
    put('gff_x-slide-ms_seed0', 0, 99.0, config='gff_x-slide-ms.py')
    put('gff_x-align1_seed0', 0, 20.0, ['model.decode_head.align_level=1'])
    # no result.json config: the config mmengine dumped into the work dir says whose run it is
    old = put('gff_x-slide-ms_seed1', 1, 98.0, config=None)
    (old / 'gff_x-slide-ms.py').write_text('model = dict()\n')
    # a run named like a tag of gff_x but trained without options: its name does not fit
    put('gff_x-notag_seed1', 1, 77.0)
    runs = lc.finished_runs(['configs/gff_x.py'], [0, 1], str(tmp_path), None)
    assert [(r['config'], r['seed'], r['miou']) for r in runs] == [
        ('gff_x.py', 0, 28.9), ('gff_x-align1', 0, 20.0)]
    err = capsys.readouterr().err
    assert "skipped" in err and "gff_x-notag_seed1" in err
    # the dumped config is compared with the config as it is now (unchanged here)
    (tmp_path / 'gff_x-slide-ms.py').write_text('model = dict()\n')
    both = lc.finished_runs(['configs/gff_x.py', str(tmp_path / 'gff_x-slide-ms.py')], [0, 1],
                            str(tmp_path), None)
    assert [(r['config'], r['seed'], r['miou']) for r in both] == [
        ('gff_x.py', 0, 28.9), ('gff_x-align1', 0, 20.0), ('gff_x-slide-ms.py', 0, 99.0),
        ('gff_x-slide-ms.py', 1, 98.0)]
    text = lc.write_report(both, str(tmp_path), [0, 1], None)
    assert '| gff_x.py | 28.9 |' in text and '| gff_x-slide-ms.py | 98.5 ± 0.7 |' in text


_HEAD = ("model = dict(type='EncoderDecoder', decode_head=dict(type='FCNHead', in_channels=8, "
         "channels=4, num_classes=3{extra}))\n"
         "train_cfg = dict(type='IterBasedTrainLoop', max_iters=4000, val_interval=500)\n"
         "param_scheduler = [dict(type='PolyLR', end=4000)]\n")


def _finished(tmp_path, dumped_extra='', record=None, iters=None):
    """A finished run of tmp_path/cfg.py in tmp_path/run: result.json, the dumped config."""
    run = tmp_path / 'run'
    run.mkdir()
    res = dict(config='cfg.py', seed=0, iou=_iou(10.0), miou=10.0, seconds=60.0, iters=iters,
               train_opts=[])
    if record is not None:
        res['model_record'] = record
    (run / 'result.json').write_text(json.dumps(res))
    (run / 'cfg.py').write_text(_HEAD.format(extra=dumped_extra))
    return run


def test_a_run_of_a_changed_config_is_not_reused(lc, tmp_path):
    """The dumped config of a finished run is compared with the config as it trains now: a
    changed model, schedule or optimizer is refused with the first difference, not reported
    with the old run's numbers."""
    config = tmp_path / 'cfg.py'
    config.write_text(_HEAD.format(extra=', num_convs=1'))
    run = _finished(tmp_path, dumped_extra=', num_convs=2')
    with pytest.raises(ValueError, match=r'model\.decode_head\.num_convs 2 vs 1.*move it away'):
        lc.run_one(str(config), 0, str(run), None, {}, [])
    config.write_text(_HEAD.format(extra=', num_convs=2'))
    assert lc.run_one(str(config), 0, str(run), None, {}, [])['miou'] == 10.0
    # the --iters a run was trained with are merged into the config before comparing
    (run / 'result.json').write_text(json.dumps(dict(
        json.loads((run / 'result.json').read_text()), iters=1000)))
    with pytest.raises(ValueError, match=r'train_cfg\.max_iters 4000 vs 1000'):
        lc.run_one(str(config), 0, str(run), 1000, {}, [])


def test_a_run_trained_before_a_default_changed_is_not_reused(lc, tmp_path):
    """result.json's model record holds every default of the code when the run trained, so a
    changed default of a head (the config text unchanged) is caught too."""
    config = tmp_path / 'cfg.py'
    config.write_text(_HEAD.format(extra=''))
    cfg = lc.config_as_trained(str(config), 0, None, [])
    now = lc.current_model_record(cfg)
    assert now['decode_head']['num_convs'] == 2  # FCNHead's default, filled in
    assert lc.run_one(str(config), 0, str(_finished(tmp_path, record=now)), None, {}, [])
    then = json.loads(json.dumps(now))
    then['decode_head']['num_convs'] = 1  # as if FCNHead's default had been 1 when it trained
    (tmp_path / 'old').mkdir()
    run = _finished(tmp_path / 'old', record=then)
    with pytest.raises(ValueError, match=r'model\.decode_head\.num_convs 1 vs 2 \(a default'):
        lc.run_one(str(config), 0, str(run), None, {}, [])
    # a config that pins the old default trains what the run trained: reused (its dumped config
    # does not name num_convs; the record, with the defaults of its day, is what is compared)
    (tmp_path / 'pin').mkdir()
    pinned = tmp_path / 'pin' / 'cfg.py'
    pinned.write_text(_HEAD.format(extra=', num_convs=1'))
    assert lc.run_one(str(pinned), 0, str(run), None, {}, [])['miou'] == 10.0
    # ... while the rest of the dumped config is still compared
    (run / 'cfg.py').write_text(_HEAD.format(extra='').replace('max_iters=4000', 'max_iters=8000'))
    with pytest.raises(ValueError, match=r'train_cfg\.max_iters 8000 vs 4000'):
        lc.run_one(str(pinned), 0, str(run), None, {}, [])


def test_train_one_records_the_model_it_trains(lc, tmp_path, monkeypatch):
    config = tmp_path / 'cfg.py'
    config.write_text(_HEAD.format(extra=''))
    log = 'Iter(train) [4000/4000]  lr: 1\n' + _table(5.0) + 'Iter(val) [1/1]  mIoU: 5.0000\n'
    calls = []

    real_run = subprocess.run

    def fake_run(cmd, **kwargs):
        if not cmd[1].endswith(osp.join('tools', 'train.py')):
            return real_run(cmd, **kwargs)  # git, for the record's commit
        calls.append(cmd)
        kwargs['stdout'].write(log)
        return argparse.Namespace(returncode=0)
    monkeypatch.setattr(lc.subprocess, 'run', fake_run)
    monkeypatch.setattr(lc, 'count_params', lambda cfg: 123)  # _HEAD builds no backbone
    monkeypatch.setattr(lc, 'model_fingerprint', lambda cfg: ('f' * 64, {}))
    res = lc.train_one(str(config), 3, str(tmp_path / 'w'), 1000, {},
                       ['model.decode_head.num_convs=1'])
    assert calls[0][-len(lc.train_options(3, 1000, [])) - 1:] == \
        lc.train_options(3, 1000, ['model.decode_head.num_convs=1'])
    assert res['model_record']['decode_head']['num_convs'] == 1  # the trained options, merged
    assert res['model_record']['decode_head']['dropout_ratio'] == 0.1  # BaseDecodeHead's default
    # what a run record needs besides the numbers (issue #37)
    assert res['compared']['train_cfg']['max_iters'] == 1000 and res['params'] == 123
    assert res['config_sha256'] == lc.config_sha256(res['model_record'], res['compared'])
    env = res['environment']
    assert env['machine']['cpus'] >= 1 and env['versions']['torch'] and env['date'].endswith('UTC')


def _no_run(*args, **kwargs):
    raise AssertionError('a run started')


@pytest.mark.parametrize('iters', ['0', '-5', 'x'])
def test_non_positive_iters_are_refused_by_argparse(lc, tmp_path, monkeypatch, capsys, iters):
    """Issue #36 items 8, 9: --iters 0 trained the full schedule and --iters -5 failed 19 s into
    training; both are argparse errors now, before any run (usage error: exit status 2)."""
    monkeypatch.setattr(lc, 'run_one', _no_run)
    monkeypatch.setattr(lc, 'finished_runs', _no_run)
    config = osp.join(lc.REPO, 'configs', 'quickstart',
                      'fcn_r18tiny-d8_1xb8-1k_synthcity-128x256.py')
    for extra in ([], ['--finished-only']):
        monkeypatch.setattr(sys, 'argv', ['learning_check.py', config, '--iters', iters,
                                          '--out-dir', str(tmp_path / 'out'), *extra])
        with pytest.raises(SystemExit) as exit_:
            lc.main()
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert f"argument --iters: takes a positive number of iterations, e.g. --iters 300, got " \
               f"'{iters}'; leave --iters out" in err, err
    assert not (tmp_path / 'out').exists()


def test_positive_iters_reach_the_runs(lc, tmp_path, monkeypatch):
    got = []

    class Stop(Exception):
        pass

    def run_one(config, seed, work_dir, iters, *args):
        got.append(iters)
        raise Stop  # the first run is asked for with --iters: enough
    monkeypatch.setattr(lc, 'run_one', run_one)
    with pytest.raises(Stop):
        lc.main(['a.py', '--iters', '3', '--seeds', '0', '--out-dir', str(tmp_path)])
    assert got == [3] and lc.positive_iters('+7') == 7


def test_negative_iters_fail_fast_on_the_command_line(lc, tmp_path):
    """The script itself: refused by argparse in well under a second of work (no training)."""
    config = osp.join(lc.REPO, 'configs', 'quickstart',
                      'fcn_r18tiny-d8_1xb8-1k_synthcity-128x256.py')
    proc = subprocess.run([sys.executable, osp.join(lc.REPO, 'tools', 'analysis_tools',
                                                   'learning_check.py'), config, '--iters', '-5',
                           '--out-dir', str(tmp_path / 'out')],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr[-3000:]
    assert "error: argument --iters: takes a positive number of iterations" in proc.stderr
    assert not (tmp_path / 'out').exists()  # refused before any run (no training)


def _val(it, v):
    return f'Iter(train) [{it}/4000]  lr: 1\n' + _table(v) + f'Iter(val) [1/1]  mIoU: {v:.4f}\n'


def _fake_training(lc, monkeypatch, segments):
    """tools/train.py replaced by ``segments``, one per call: (log text, iterations whose
    checkpoints it writes, exit status, seconds after the segment's start each checkpoint is
    written at). Returns the commands it was called with."""
    calls = []

    def fake_segment(cmd, env, log_path):
        text, ckpts, code, after = segments[len(calls)]
        calls.append(cmd)
        work = osp.dirname(log_path)
        with open(osp.join(work, lc.PROGRESS)) as f:
            start = json.load(f)['segments'][-1]['start']
        for it in ckpts:
            path = osp.join(work, f'iter_{it}.pth')
            with open(path, 'w') as f:
                f.write('weights')
            os.utime(path, (start + after, start + after))
            with open(osp.join(work, 'last_checkpoint'), 'w') as f:
                f.write(path)
        with open(log_path, 'w') as f:
            f.write(text)
        return code
    monkeypatch.setattr(lc, '_train_segment', fake_segment)
    monkeypatch.setattr(lc, 'count_params', lambda cfg: 123)  # _HEAD builds no backbone
    monkeypatch.setattr(lc, 'model_fingerprint', lambda cfg: ('f' * 64, {}))
    return calls


def test_a_killed_run_is_resumed_from_its_last_checkpoint(lc, tmp_path, monkeypatch):
    """The session ends during a run (killed after checkpoint 1000 and validation 1500): the
    same command resumes it from iter_1000, the curve keeps the first segment's validations up
    to 1000 and the resumed one's after, the time counts the first segment up to its checkpoint
    only, and the record says where it resumed and that RNGStateHook confirmed exactness."""
    config = tmp_path / 'cfg.py'
    config.write_text(_HEAD.format(extra=''))
    work = tmp_path / 'w'
    exact = ('RNGStateHook: resuming at iteration 1000 with the settings the checkpoint was '
             'written with (...)\n')
    calls = _fake_training(lc, monkeypatch, [
        (_val(500, 1.0) + _val(1000, 2.0) + _val(1500, 99.0), [1000], -9, 100.0),
        (exact + _val(1500, 3.0) + ''.join(_val(i, i / 500) for i in range(2000, 4001, 500)),
         [2000, 3000, 4000], 0, 1.0)])
    with pytest.raises(RuntimeError, match='failed'):
        lc.train_one(str(config), 0, str(work), None, {}, [], checkpoint_interval=1000)
    assert '--resume' not in calls[0] and 'default_hooks.checkpoint.interval=1000' in calls[0]
    assert (work / lc.PROGRESS).is_file()
    res = lc.train_one(str(config), 0, str(work), None, {}, [], checkpoint_interval=1000)
    assert '--resume' in calls[1] and calls[1][-1] == f'load_from={work / "iter_1000.pth"}'
    assert [(p['iter'], p['miou']) for p in res['curve']] == \
        [(500, 1.0), (1000, 2.0), (1500, 3.0), (2000, 4.0), (2500, 5.0), (3000, 6.0),
         (3500, 7.0), (4000, 8.0)]
    assert res['miou'] == 8.0 and res['iou']['road'] == 8.0
    assert res['resumed'] == [dict(iter=1000, exact=True)]
    assert 100.0 <= res['seconds'] < 130.0  # 100 s to iter_1000, the lost rest not counted
    assert not (work / lc.PROGRESS).exists()
    assert '# learning_check: resumed at iteration 1000' in (work / 'train.log').read_text()


def test_a_resume_without_the_hooks_confirmation_is_recorded(lc, tmp_path, monkeypatch,
                                                             capsys):
    config = tmp_path / 'cfg.py'
    config.write_text(_HEAD.format(extra=''))
    work = tmp_path / 'w'
    _fake_training(lc, monkeypatch, [
        (_val(500, 1.0), [1000], -9, 5.0),
        ('RNGStateHook: resuming at iteration 1000, this run CANNOT be bit-exact\n'
         + _val(4000, 8.0), [4000], 0, 1.0)])
    with pytest.raises(RuntimeError):
        lc.train_one(str(config), 0, str(work), None, {}, [])
    res = lc.train_one(str(config), 0, str(work), None, {}, [])
    assert res['resumed'] == [dict(iter=1000, exact=False)]
    assert 'without RNGStateHook\'s confirmation' in capsys.readouterr().err


def test_a_run_killed_before_its_first_checkpoint_starts_again(lc, tmp_path, monkeypatch):
    config = tmp_path / 'cfg.py'
    config.write_text(_HEAD.format(extra=''))
    work = tmp_path / 'w'
    calls = _fake_training(lc, monkeypatch, [
        (_val(500, 1.0), [], -9, 0.0), (_val(500, 1.0) + _val(4000, 8.0), [4000], 0, 1.0)])
    with pytest.raises(RuntimeError):
        lc.train_one(str(config), 0, str(work), None, {}, [])
    res = lc.train_one(str(config), 0, str(work), None, {}, [])
    assert '--resume' not in calls[1] and 'resumed' not in res
    assert [p['iter'] for p in res['curve']] == [500, 4000]
    assert res['seconds'] < 30.0  # the killed start is not counted


def test_a_run_killed_before_its_final_validation_is_validated(lc, tmp_path, monkeypatch):
    """Killed between saving the last checkpoint and validating it: the resumed run trains
    nothing and validates nothing, so the final checkpoint is validated with tools/test.py."""
    config = tmp_path / 'cfg.py'
    config.write_text(_HEAD.format(extra=''))
    work = tmp_path / 'w'
    _fake_training(lc, monkeypatch, [
        (_val(3500, 7.0) + 'Iter(train) [4000/4000]  lr: 1\n', [4000], -9, 10.0),
        ('RNGStateHook: resuming at iteration 4000 with the settings the checkpoint was '
         'written with\n', [], 0, 0.0)])
    asked = []

    def fake_evaluate(config, work_dir, label, opts, env, iters, split='test'):
        asked.append((label, split))
        return dict(iou=_iou(8.5), miou=8.5)
    monkeypatch.setattr(lc, 'evaluate', fake_evaluate)
    with pytest.raises(RuntimeError):
        lc.train_one(str(config), 0, str(work), None, {}, [])
    res = lc.train_one(str(config), 0, str(work), None, {}, [])
    assert asked == [('val_final', 'val')] and res['miou'] == 8.5
    assert [(p['iter'], p['miou']) for p in res['curve']] == [(3500, 7.0), (4000, 8.5)]


def test_an_unfinished_run_of_another_model_is_not_resumed(lc, tmp_path, monkeypatch):
    config = tmp_path / 'cfg.py'
    config.write_text(_HEAD.format(extra=''))
    work = tmp_path / 'w'
    _fake_training(lc, monkeypatch, [(_val(500, 1.0), [1000], -9, 5.0)])
    with pytest.raises(RuntimeError):
        lc.train_one(str(config), 0, str(work), None, {}, [])
    config.write_text(_HEAD.format(extra=', num_convs=1'))  # the head changed meanwhile
    with pytest.raises(ValueError, match='unfinished run of another model or options '
                                         r'\(config_sha256 differ'):
        lc.train_one(str(config), 0, str(work), None, {}, [])
    with pytest.raises(ValueError, match=r'\(seed, '):
        lc.train_one(str(config), 1, str(work), None, {}, [])


def test_merge_curves_keeps_each_segment_up_to_the_next_ones_start(lc):
    pts = lambda *its: [dict(iter=i, miou=float(k)) for k, i in enumerate(its)]  # noqa: E731
    assert [p['iter'] for p in lc.merge_curves([pts(500, 1000, 1500), pts(1500, 2000)],
                                               [1000])] == [500, 1000, 1500, 2000]
    assert lc.merge_curves([pts(500), pts(), pts(1000)], [500, 500])[-1]['iter'] == 1000


FCN = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs', 'quickstart',
               'fcn_r18tiny-d8_1xb8-1k_synthcity-128x256.py')
_TINY = ['default_hooks.logger.interval=1', 'train_dataloader.batch_size=2',
         'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
         'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False']


def test_a_really_killed_run_resumes_to_the_uninterrupted_result(lc, tmp_path, monkeypatch,
                                                                 tool_env):
    """tools/train.py itself, SIGKILLed once its checkpoint at 2 of 6 iterations is written:
    the same learning_check call again resumes it, and the run's final weights and numbers are
    those of the run trained without interruption."""
    import signal
    import time

    import torch

    from mmseg_ext.checkpoint import weights_only_load
    full = lc.train_one(FCN, 0, str(tmp_path / 'full'), 6, tool_env, _TINY,
                        checkpoint_interval=2)
    work = tmp_path / 'killed'
    real = lc._train_segment

    def killed_at_2(cmd, env, log_path):
        with open(log_path, 'w') as log:
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
            last = work / 'last_checkpoint'
            while proc.poll() is None:
                if last.is_file() and last.read_text().strip().endswith('iter_2.pth'):
                    proc.send_signal(signal.SIGKILL)
                time.sleep(0.02)
            return proc.wait()
    monkeypatch.setattr(lc, '_train_segment', killed_at_2)
    with pytest.raises(RuntimeError, match='failed'):
        lc.train_one(FCN, 0, str(work), 6, tool_env, _TINY, checkpoint_interval=2)
    assert not (work / 'iter_6.pth').exists()
    monkeypatch.setattr(lc, '_train_segment', real)
    res = lc.train_one(FCN, 0, str(work), 6, tool_env, _TINY, checkpoint_interval=2)
    assert res['resumed'][0]['exact'] and res['resumed'][0]['iter'] >= 2
    assert json.dumps([res['miou'], res['iou']]) == json.dumps([full['miou'], full['iou']])
    a = weights_only_load(str(tmp_path / 'full' / 'iter_6.pth'), map_location='cpu')
    b = weights_only_load(str(work / 'iter_6.pth'), map_location='cpu')
    assert [k for k in a['state_dict'] if not torch.equal(a['state_dict'][k],
                                                           b['state_dict'][k])] == []


def test_a_run_in_use_by_another_process_is_refused(lc, tmp_path):
    """Two learning_check processes on one run would train it twice into the same checkpoints:
    the second is refused with the first's pid, and a holder that is killed (its session ended)
    leaves no stale lock behind."""
    import signal
    work = tmp_path / 'w'
    holder = subprocess.Popen(
        [sys.executable, '-c', 'import importlib.util, sys, time\n'
         f'spec = importlib.util.spec_from_file_location("lc", {lc.__file__!r})\n'
         'lc = importlib.util.module_from_spec(spec); spec.loader.exec_module(lc)\n'
         f'with lc.run_lock({str(work)!r}):\n'
         '    print("held", flush=True); time.sleep(60)\n'],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        with pytest.raises(RuntimeError, match=rf'in use by another learning_check '
                                               rf'\(pid {holder.pid}, since '):
            with lc.run_lock(str(work)):
                pass
        with pytest.raises(RuntimeError, match='in use by another'):  # before any training
            lc.run_one(str(tmp_path / 'cfg.py'), 0, str(work), None, {})
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with lc.run_lock(str(work)):  # released by the kernel with the killed holder
        with pytest.raises(RuntimeError, match=rf'pid {os.getpid()}'):  # and held again here
            with lc.run_lock(str(work)):
                pass


def test_a_recorded_run_without_a_work_dir_takes_no_lock(lc, tmp_path, monkeypatch):
    """Reading a committed record (a fresh clone, no work_dirs/) creates no work dir."""
    config = tmp_path / 'cfg.py'
    config.write_text(_HEAD.format(extra=''))
    rec_dir = tmp_path / 'runs'
    rec_dir.mkdir()
    (rec_dir / lc.record_name(str(config), '', 0, None)).write_text('{}')
    monkeypatch.setattr(lc, 'read_record', lambda path: {'iters': 5})
    with pytest.raises(ValueError, match='--iters 5, not None'):
        lc.run_one(str(config), 0, str(tmp_path / 'w'), None, {}, record_dir=str(rec_dir))
    assert not (tmp_path / 'w').exists()
