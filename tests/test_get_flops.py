"""Issue #39: tools/analysis_tools/get_flops.py works on this stack for every kind of config, and
the sparse non-local op is counted by its handle, checked against a hand count."""
import glob
import os.path as osp

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
QUICK = 'configs/quickstart/{}_r18tiny-d8_1xb8-1k_synthcity-128x256.py'


@pytest.fixture(scope='module')
def tool(load_analysis_tool):
    return load_analysis_tool('get_flops')


@pytest.mark.parametrize('algo', ['fcn', 'pspnet', 'sanet', 'ssanet', 'gffnet'])
def test_quickstart_configs(tool, algo, capsys):
    res = tool.main([osp.join(REPO, QUICK.format(algo))])
    out = capsys.readouterr().out
    assert 'Input shape: (128, 256)' in out and f"Flops: {res['flops'] / 1e9:.3f}G" in out
    assert res['flops'] > 0.3e9 and 0.8e6 < res['params'] < 1.2e6
    assert bool(res['extra']) == (algo == 'ssanet')


def test_snl_op_counted_by_its_handle(tool, capsys):
    """4 corners x K points x (C + Cv) channels per query position of the 1/8 map."""
    res = tool.main([osp.join(REPO, QUICK.format('ssanet')), '--shape', '64', '96',
                     '--cfg-options', 'model.decode_head.kernel_size=7'])
    (name, flops), = res['extra'].items()
    assert name == 'decode_head.snl'
    assert flops == 4 * (64 // 8) * (96 // 8) * 49 * (32 + 64)
    assert res['flops'] == res['traced'] - res['replaced'][name] + flops
    assert 'sparse non-local op' in capsys.readouterr().out


PAPER_CONFIGS = sorted(osp.relpath(p, REPO) for algo in ('sanet', 'ssanet', 'gffnet')
                       for p in glob.glob(osp.join(REPO, 'configs', algo, '*.py')))


def test_every_paper_config_counts(tool, capsys):
    """Every paper config (SANet, SSANet, GFFNet) builds offline (no checkpoint, no download)
    and counts, at 64x64 to keep it quick; the SNL op through its handle in every SSANet."""
    assert len(PAPER_CONFIGS) > 40
    for config in PAPER_CONFIGS:
        res = tool.main([osp.join(REPO, config), '--shape', '64'])
        assert res['flops'] > 0 and res['params'] > 1e6, config
        assert bool(res['extra']) == ('ssanet' in osp.basename(config)), config
    capsys.readouterr()


def test_bad_shape_is_a_usage_error(tool, capsys):
    with pytest.raises(SystemExit) as e:
        tool.parse_args(['x.py', '--shape', '0', '64'])
    assert e.value.code == 2 and '--shape takes H or H W' in capsys.readouterr().err
