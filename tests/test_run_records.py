"""Issue #37: run records (docs/runs/) and the tables and figures generated from them alone."""
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from mmseg_ext.utils.run_records import (
    CLASSES,
    RECORD_FORMAT,
    config_sha256,
    read_record,
    record_name,
    write_record,
)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
QUICK = '_r18tiny-d8_1xb8-1k_synthcity-128x256.py'
BENCH = '_r18tiny-d8_1xb8-4k_synthcity-bench-128x256.py'


@pytest.fixture(scope='module')
def rt(load_analysis_tool):
    return load_analysis_tool('results_tables')


@pytest.fixture(scope='module')
def lc(load_analysis_tool):
    return load_analysis_tool('learning_check')


def _iou(v, **over):
    return dict({c: v for c in CLASSES}, **over)


def _record(config, seed, val, test, curve=(), **extra):
    model, compared = {'type': 'EncoderDecoder'}, {'train_cfg': {'max_iters': 1000}}
    return dict(config=config, tag='', seed=seed, iters=None, train_opts=[], miou=val,
                iou=_iou(val), test=dict(miou=test, iou=_iou(test)), model_record=model,
                compared=compared, config_sha256=config_sha256(model, compared), seconds=600.0,
                params=1_234_567, flops=503_000_000,
                curve=[dict(iter=i, miou=m, iou=_iou(m)) for i, m in curve],
                environment=dict(machine=dict(cpus=2, cpu='AMD EPYC', gpu=None),
                                 versions=dict(torch='2.14.1', mmseg='1.2.2'),
                                 commit='0123456789abcdef', date=f'2026-12-07 1{seed}:00 UTC'),
                **extra)


def _fake_repo(tmp_path, records):
    """A tree with the files results_tables reads and writes: the blocks of every kind, records."""
    repo = tmp_path / 'repo'
    (repo / 'docs' / 'runs').mkdir(parents=True)
    (repo / 'configs' / 'x').mkdir(parents=True)
    names = ['summary', 'model-gffnet'] + [f'{s}{k}' for s in ('quickstart', 'benchmark')
                                           for k in ('', '-classes', '-curves', '-runs')]
    (repo / 'README.md').write_text('intro\n<!-- results:summary -->\nstale\n'
                                    '<!-- /results:summary -->\nend\n')
    (repo / 'docs' / 'all.md').write_text(''.join(
        f'<!-- results:{n} -->\n<!-- /results:{n} -->\n\n' for n in names))
    (repo / 'configs' / 'x' / 'README.md').write_text('no blocks here\n')
    for rec in records:
        write_record(str(repo / 'docs' / 'runs' / record_name(rec['config'], '', rec['seed'],
                                                              None)), rec)
    return repo


def test_record_round_trip_and_refusals(tmp_path):
    rec = _record('fcn' + QUICK, 0, 30.0, 28.0)
    path = tmp_path / record_name(rec['config'], '', 0, None)
    write_record(str(path), rec)
    got = read_record(str(path))
    assert got['format'] == RECORD_FORMAT and got['test']['miou'] == 28.0
    assert path.name == 'fcn_r18tiny-d8_1xb8-1k_synthcity-128x256_seed0.json'
    assert record_name('a/b.py', 'align1', 2, 300) == 'b-align1_seed2_iters300.json'
    text = path.read_text()
    write_record(str(path), json.loads(text))
    assert path.read_text() == text  # stable bytes: sorted keys, fixed indents
    with pytest.raises(ValueError, match=r"needs \['test'\]"):
        write_record(str(tmp_path / 'x.json'), {k: v for k, v in rec.items() if k != 'test'})
    bad = json.loads(text)
    del bad['test']['iou']['pole']
    (tmp_path / 'bad.json').write_text(json.dumps(bad))
    with pytest.raises(ValueError, match='must name the 19 classes'):
        read_record(str(tmp_path / 'bad.json'))


def test_tables_and_figures_come_from_the_records(rt, tmp_path):
    records = [_record('fcn' + QUICK, 0, 30.0, 28.0), _record('fcn' + QUICK, 1, 31.0, 29.0),
               _record('gffnet' + BENCH, 0, 60.0, 58.5, curve=[(500, 20.0), (1000, 40.0)]),
               # a tagged run and a shortened run are not the config's own: not tabulated
               dict(_record('fcn' + QUICK, 2, 99.0, 99.0), tag='x', train_opts=['a=1']),
               dict(_record('fcn' + QUICK, 2, 98.0, 98.0), iters=300)]
    repo = _fake_repo(tmp_path, records[:3])
    write_record(str(repo / 'docs' / 'runs' / 'tagged.json'), records[3])
    write_record(str(repo / 'docs' / 'runs' / 'short.json'), records[4])
    assert rt.main(['--repo', str(repo), '--check']) == 1  # blocks still empty / stale
    assert rt.main(['--repo', str(repo)]) == 0
    assert rt.main(['--repo', str(repo), '--check']) == 0
    readme = (repo / 'README.md').read_text()
    assert readme.startswith('intro\n<!-- results:summary -->\n| model |') and 'stale' not in readme
    assert '| FCN | 30.5 ± 0.7 | 28.5 ± 0.7 | - | - | - | 1.23M | 0.50G | 0, 1 / - |' in readme
    assert '| GFFNet | - | - | 60.0 | 58.5 | 60.0 / 58.5 | 1.23M | 0.50G | - / 0 |' in readme
    assert '99.0' not in readme and '98.0' not in readme
    docs = (repo / 'docs' / 'all.md').read_text()
    assert '| FCN | 30.5 ± 0.7 | 28.5 ± 0.7 | 30.5 ± 0.7 | 28.5 ± 0.7 |' in docs
    assert '| SANet | - | - | - | - | - | - | - | - | none yet |' in docs
    assert '| pole (thin) | 30.5 ± 0.7 | 28.5 ± 0.7 |' in docs
    assert ('| GFFNet | - | - | 60.0 | 58.5 | 60.0 / 58.5 | 60.0 / 58.5 | - / 0 |\n'
            '| FCN | 30.5 ± 0.7 | 28.5 ± 0.7 | - | - | - | - | 0, 1 / - |\n'
            '| PSPNet | - | - | - | - | - | - | - / - |') in docs
    assert '| 500 | 20.0 |' in docs and '| 1000 | 40.0 |' in docs
    assert 'No seed-0 run of the quickstart set with more than one validation' in docs
    assert '2 runs, records in docs/runs/ (fcn' in docs and '2-CPU AMD EPYC, no GPU' in docs
    assert (repo / 'configs' / 'x' / 'README.md').read_text() == 'no blocks here\n'
    svg = (repo / 'docs' / 'figures' / 'benchmark_results.svg').read_text()
    assert ET.fromstring(svg).tag.endswith('svg') and '>60.0<' in svg and '>58.5<' in svg
    # a hand edit of a generated cell is caught and named
    (repo / 'docs' / 'all.md').write_text(docs.replace('30.5 ± 0.7', '35.5 ± 0.7', 1))
    assert rt.main(['--repo', str(repo), '--check']) == 1


def test_runs_block_says_which_runs_were_resumed(rt):
    plain = [_record('fcn' + QUICK, 0, 30.0, 28.0)]
    assert 'resumed' not in rt.table_runs(plain, 'quickstart')
    resumed = plain + [_record('fcn' + QUICK, 1, 31.0, 29.0, resumed=[dict(iter=500, exact=True)]),
                       _record('fcn' + QUICK, 2, 31.0, 29.0, resumed=[dict(iter=500, exact=False)])]
    text = rt.table_runs(resumed, 'quickstart')
    assert '3 runs' in text and '2 of them killed and resumed from a checkpoint' in text
    assert '1 without its confirmation, see their records' in text


def test_an_unknown_block_is_refused(rt, tmp_path):
    repo = _fake_repo(tmp_path, [])
    (repo / 'docs' / 'typo.md').write_text('<!-- results:benchmak -->\n'
                                           '<!-- /results:benchmak -->\n')
    with pytest.raises(ValueError, match=r"unknown results block 'benchmak'"):
        rt.main(['--repo', str(repo), '--check'])


def test_committed_tables_are_what_the_committed_records_give(rt, tmp_path):
    """The must-show of issue #37: only the committed records and Markdown files (a fresh clone,
    no work_dirs/) reproduce every results table and figure byte for byte."""
    fresh = tmp_path / 'clone'
    for rel in ['README.md'] + [osp.relpath(p, REPO) for p in rt.markdown_files(REPO)[1:]]:
        os.makedirs(fresh / osp.dirname(rel), exist_ok=True)
        shutil.copy(osp.join(REPO, rel), fresh / rel)
    shutil.copytree(osp.join(REPO, 'docs', 'runs'), fresh / 'docs' / 'runs', dirs_exist_ok=True)
    os.makedirs(fresh / 'docs' / 'figures', exist_ok=True)
    for s in rt.SETS:
        shutil.copy(osp.join(REPO, 'docs', 'figures', f'{s}_results.svg'),
                    fresh / 'docs' / 'figures')
    assert rt.main(['--repo', str(fresh), '--check']) == 0
    assert rt.main(['--check']) == 0


def test_a_record_is_reused_without_its_work_dir(lc, tmp_path, monkeypatch):
    """A committed record of the config as it trains now stands for the run on a machine without
    the work dir (nothing trained); a record of another model is refused, naming the record."""
    config = tmp_path / 'cfg.py'
    config.write_text("model = dict(type='EncoderDecoder', decode_head=dict(type='FCNHead', "
                      "in_channels=8, channels=4, num_classes=3))\n"
                      "train_cfg = dict(type='IterBasedTrainLoop', max_iters=4000, "
                      "val_interval=500)\n"
                      "param_scheduler = [dict(type='PolyLR', end=4000)]\n")
    monkeypatch.setattr(lc, 'model_fingerprint', lambda cfg: ('f' * 64, {}))  # no backbone to build
    cfg = lc.config_as_trained(str(config), 0, None, [])
    model, compared = lc.current_model_record(cfg), lc.compared_parts(cfg)
    rec = dict(_record('cfg.py', 0, 40.0, 39.0), model_record=model, compared=compared,
               config_sha256=config_sha256(model, compared))
    records = tmp_path / 'runs'
    write_record(str(records / 'cfg_seed0.json'), rec)
    got = lc.run_one(str(config), 0, str(tmp_path / 'gone'), None, {}, [], (), str(records))
    assert (got['miou'], got['test']['miou']) == (40.0, 39.0)
    assert not (tmp_path / 'gone').exists()
    found = lc.finished_runs([str(config)], [0], str(tmp_path / 'none'), None, str(records))
    assert [(r['config'], r['seed'], r['miou']) for r in found] == [('cfg.py', 0, 40.0)]
    changed = json.loads(json.dumps(rec))
    changed['model_record']['decode_head']['num_convs'] = 1
    write_record(str(records / 'cfg_seed0.json'), changed)
    with pytest.raises(ValueError, match=r'cfg_seed0\.json holds a run of another model.*'
                       r'num_convs 1 vs 2'):
        lc.run_one(str(config), 0, str(tmp_path / 'gone'), None, {}, [], (), str(records))


def test_reuse_follows_what_the_model_computes_not_its_spelling(lc, tmp_path):
    """Issue #37: a record whose model record differs only in spelling (a renamed argument, as a
    refactor does) is reused when the fingerprint — initial weights, first step's losses and
    gradients — is the config's; the same arguments with another fingerprint are refused."""
    config = osp.join(REPO, 'configs', 'quickstart', 'fcn' + QUICK)
    cfg = lc.config_as_trained(config, 0, None, [])
    model, compared = lc.current_model_record(cfg), lc.compared_parts(cfg)
    fingerprint, values = lc.model_fingerprint(cfg)
    assert (fingerprint, values) == lc.model_fingerprint(cfg)  # deterministic
    respelled = json.loads(json.dumps(model))
    respelled['decode_head']['old_name_of_an_argument'] = respelled['decode_head'].pop('num_convs')
    rec = dict(_record('fcn' + QUICK, 0, 30.0, 29.0), model_record=respelled, compared=compared,
               fingerprint=fingerprint, fingerprint_values=lc.compact(values),
               fingerprint_version=lc.FINGERPRINT_VERSION,
               config_sha256=config_sha256(respelled, compared))
    records = tmp_path / 'runs'
    path = str(records / record_name(config, '', 0, None))
    write_record(path, rec)
    got = lc.run_one(config, 0, str(tmp_path / 'gone'), None, {}, [], (), str(records))
    assert got['miou'] == 30.0
    # a changed argument (the dropout of the head) changes the first step, not the weights
    changed = lc.config_as_trained(config, 0, None, ['model.decode_head.dropout_ratio=0.5'])
    changed_fp, changed_values = lc.model_fingerprint(changed)
    assert changed_fp != fingerprint and changed_values['weights'] == values['weights']
    write_record(path, dict(rec, model_record=model, fingerprint='0' * 64,
                            fingerprint_values=lc.compact(changed_values)))
    with pytest.raises(ValueError, match=r"the same arguments, but the first step's "
                                         r'decode\.loss_ce is'):
        lc.run_one(config, 0, str(tmp_path / 'gone'), None, {}, [], (), str(records))
    # another machine: its hash differs, its numbers in the last bits only (as measured between
    # instruction sets, FINGERPRINT_RTOL): reused; ten times the tolerance: refused
    for scale, reused in ((1e-6, True), (1e-2, False)):
        shaken = json.loads(json.dumps(values))
        shaken['grads'] = [None if g is None else [g[0] + scale * g[1], g[1]]
                           for g in shaken['grads']]
        write_record(path, dict(rec, model_record=model, fingerprint='0' * 64,
                                fingerprint_values=lc.compact(shaken)))
        if reused:
            lc.run_one(config, 0, str(tmp_path / 'gone'), None, {}, [], (), str(records))
        else:
            with pytest.raises(ValueError, match=r"but the first step's gradients differ from "
                                                 r"the run's \(tensor 0 of"):
                lc.run_one(config, 0, str(tmp_path / 'gone'), None, {}, [], (), str(records))
    # the fingerprint does not depend on the process's thread count
    import torch
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert lc.model_fingerprint(cfg)[0] == fingerprint
    finally:
        torch.set_num_threads(threads)
    # a record of an earlier fingerprint version (version 2 kept no numbers) is compared by its
    # model record, then fingerprinted anew
    old = dict(rec, model_record=model, fingerprint='1' * 64, fingerprint_version=2)
    del old['fingerprint_values']
    write_record(path, old)
    got = lc.run_one(config, 0, str(tmp_path / 'gone'), None, {}, [], (), str(records))
    assert (got['fingerprint'], got['fingerprint_version']) == (fingerprint,
                                                               lc.FINGERPRINT_VERSION)
    assert json.loads(read_record(path)['fingerprint_values']) == values


def test_fingerprint_numbers_hold_across_instruction_sets(lc):
    """The five models fingerprinted with ATen's default kernels and oneDNN held to SSE4.1 (as
    on a CPU without AVX2 / AVX-512): their hashes may differ, their numbers are within
    FINGERPRINT_RTOL of this process's, so a record made here is reused there."""
    configs = [osp.join(REPO, 'configs', 'quickstart', m + QUICK)
               for m in ('fcn', 'pspnet', 'sanet', 'ssanet', 'gffnet')]
    here = [lc.model_fingerprint(lc.config_as_trained(c, 0, None, [])) for c in configs]
    code = ('import importlib.util, json, sys\n'
            f'spec = importlib.util.spec_from_file_location("learning_check", {lc.__file__!r})\n'
            'lc = importlib.util.module_from_spec(spec); sys.modules["learning_check"] = lc\n'
            'spec.loader.exec_module(lc)\n'
            f'print(json.dumps([lc.model_fingerprint(lc.config_as_trained(c, 0, None, []))'
            f' for c in {configs!r}]))\n')
    env = dict(os.environ, ATEN_CPU_CAPABILITY='default', ONEDNN_MAX_CPU_ISA='SSE41')
    out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                         check=True).stdout
    there = json.loads(out.strip().splitlines()[-1])
    for config, (fingerprint, values), (other_fp, other_values) in zip(configs, here, there):
        assert lc.fingerprint_difference(lc.compact(other_values), values) is None, config
        assert lc.fingerprint_difference(values, other_values) is None, config
        print(osp.basename(config), 'hash', 'equal' if other_fp == fingerprint else 'differs')


def test_building_leaves_the_callers_config_alone():
    """build_segmentor works on its own copy (mmseg's init_model sets model.train_cfg=None)."""
    from mmengine.config import Config

    from mmseg_ext.apis import build_segmentor
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'quickstart', 'fcn' + QUICK))
    before = cfg.to_dict()
    build_segmentor(cfg, weights='offline', cfg_options={'model.auxiliary_head': None})
    assert cfg.to_dict() == before


def test_sanet_against_fcn_is_said_plainly(rt):
    """The comparison block pairs seeds, gives the mean difference and says whether SANet is
    higher or lower on every seed, for test and val, whichever way it falls."""
    records = [_record('fcn' + QUICK, 0, 30.0, 28.0), _record('fcn' + QUICK, 1, 31.0, 30.0),
               _record('sanet' + QUICK, 0, 33.0, 27.0), _record('sanet' + QUICK, 1, 32.0, 29.5),
               _record('sanet' + QUICK, 2, 40.0, 40.0),  # no FCN seed 2: left out
               _record('sanet' + BENCH, 0, 50.0, 50.0)]
    text = rt.comparison(records)
    assert ('- quickstart (2 seeds: 0, 1): on **test** SANet scores 28.2 ± 1.8 against FCN\'s '
            '29.0 ± 1.4, -0.8 points on average, lower on every seed (-1.0, -0.5); on **val** '
            'SANet scores 32.5 ± 0.7 against FCN\'s 30.5 ± 0.7, +2.0 points on average, higher '
            'on every seed (+3.0, +1.0).') in text
    assert '- benchmark: no seed has a record of both SANet and FCN yet.' in text
    one = rt.comparison(records + [_record('fcn' + BENCH, 0, 47.5, 51.0)])
    assert ('- benchmark (1 seed: 0): on **test** SANet scores 50.0 against FCN\'s 51.0, -1.0 '
            'points; on **val** SANet scores 50.0 against FCN\'s 47.5, +2.5 points.') in one
    mixed = rt.comparison(records[:3] + [_record('sanet' + QUICK, 1, 30.0, 31.0)])
    assert 'higher on some seeds, lower on others (-1.0, +1.0)' in mixed


@pytest.mark.parametrize('diffs, verdict, shown', [
    ([0.5, 1.0], 'higher on every seed', '+0.5, +1.0'),
    ([-0.5, -1.0], 'lower on every seed', '-0.5, -1.0'),
    ([0.5, -1.0], 'higher on some seeds, lower on others', '+0.5, -1.0'),
    ([0.0, 0.0], 'level on every seed', '0.0, 0.0'),
    ([0.5, 0.0, -1.0], 'higher on 1, lower on 1, level on 1 of 3 seeds', '+0.5, 0.0, -1.0'),
    ([0.5, 0.0], 'higher on 1, lower on 0, level on 1 of 2 seeds', '+0.5, 0.0'),
    ([-0.04, -0.03], 'lower on every seed', '0.0, 0.0'),  # lower, if by less than 0.05
])
def test_a_tie_is_not_called_a_split_and_no_difference_reads_minus_zero(rt, diffs, verdict,
                                                                         shown):
    fcn = [_record('fcn' + QUICK, s, 30.0, 30.0) for s in range(len(diffs))]
    sanet = [_record('sanet' + QUICK, s, 30.0 + d, 30.0 + d) for s, d in enumerate(diffs)]
    text = rt.comparison(fcn + sanet)
    mean = sum(diffs) / len(diffs)
    m = '0.0' if abs(mean) < 0.05 else f'{mean:+.1f}'
    assert f'{m} points on average, {verdict} ({shown})' in text
    assert '-0.0' not in text and '+0.0' not in text


def test_each_head_against_both_baselines(rt):
    """configs/HEAD/README.md's block: the head, FCN and PSPNet on both sets, then the head against
    each baseline seed by seed; a group mean is over the classes of that group only."""
    thin = {c: 10.0 for c in rt.THIN}
    records = [_record('fcn' + QUICK, 0, 30.0, 28.0), _record('fcn' + QUICK, 1, 31.0, 30.0),
               _record('pspnet' + QUICK, 1, 29.0, 31.0),
               _record('ssanet' + QUICK, 0, 33.0, 29.0), _record('ssanet' + QUICK, 1, 32.0, 29.0),
               _record('ssanet' + BENCH, 0, 50.0, 52.0)]
    records[-1]['iou'].update(thin)
    text = rt.model_results(records, 'ssanet')
    assert ('| SSANet | 32.5 ± 0.7 | 29.0 ± 0.0 | 50.0 | 52.0 | 10.0 / 52.0 | 50.0 / 52.0 '
            '| 0, 1 / 0 |\n| FCN | 30.5 ± 0.7 | 29.0 ± 1.4 | - | - | - | - | 0, 1 / - |\n'
            '| PSPNet | 29.0 | 31.0 | - | - | - | - | 1 / - |') in text
    assert ("SSANet against FCN, on the seeds both have:\n\n- quickstart (2 seeds: 0, 1): on "
            "**test** SSANet scores 29.0 ± 0.0 against FCN's 29.0 ± 1.4, 0.0 points on average, "
            "higher on some seeds, lower on others (+1.0, -1.0)") in text
    assert ("- quickstart (1 seed: 1): on **test** SSANet scores 29.0 against PSPNet's 31.0, "
            "-2.0 points; on **val** SSANet scores 32.0 against PSPNet's 29.0, +3.0 "
            "points.") in text
    # no benchmark FCN or PSPNet record: said so under each baseline
    assert text.count('- benchmark: no seed has a record of both SSANet and ') == 2
    assert '- benchmark: no seed has a record of both SSANet and FCN yet.' in text
    assert '- benchmark: no seed has a record of both SSANet and PSPNet yet.' in text
    assert set(rt.blocks(records)) >= {'model-sanet', 'model-ssanet', 'model-gffnet'}
    assert 'model-fcn' not in rt.blocks(records)
