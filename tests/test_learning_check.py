"""learning_check.py's bookkeeping (no training here): variant parsing, reuse rules, report rows."""
import argparse
import json

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
