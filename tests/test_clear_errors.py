"""Bad inputs that used to give obscure errors now say what to change."""
import os.path as osp
import shutil
import sys

import pytest
import torch

import mmseg_ext  # noqa: F401

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
QUICK = osp.join(REPO, 'configs', 'quickstart', 'fcn_r18tiny-d8_1xb8-1k_synthcity-128x256.py')


def _synthcity_dataset(root, config=QUICK):
    from mmengine.config import Config
    from mmseg.registry import DATASETS
    from mmseg.utils import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(config).train_dataloader.dataset
    cfg.data_root = str(root)
    return DATASETS.build(cfg)


def test_quickstart_reads_synthcity_through_synthcity_dataset(synthcity_root):
    ds = _synthcity_dataset(synthcity_root)
    assert type(ds).__name__ == 'SynthCityDataset' and len(ds) == 8
    assert ds[0]['inputs'].shape[0] == 3


def _generate_hint(root):
    return rf'SynthCity data not found: .*python tools/dataset_converters/synthcity\.py {root}'


def test_synthcity_root_missing(tmp_path):
    root = tmp_path / 'nowhere'
    with pytest.raises(FileNotFoundError, match=_generate_hint(root) + '.*SYNTHCITY_ROOT') as err:
        _synthcity_dataset(root)
    assert 'does not exist' in str(err.value)


def test_synthcity_root_empty(tmp_path):
    root = tmp_path / 'empty'
    (root / 'leftImg8bit' / 'train').mkdir(parents=True)
    (root / 'gtFine' / 'train').mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=_generate_hint(root)) as err:
        _synthcity_dataset(root)
    assert 'holds no *_leftImg8bit.png images' in str(err.value)


BENCH = osp.join(REPO, 'configs', 'benchmark', 'fcn_r18tiny-d8_1xb8-4k_synthcity-bench-128x256.py')


def test_benchmark_config_refuses_the_quickstart_data(synthcity_root, tmp_path):
    """configs/benchmark/ expects the benchmark generator settings; the quickstart data is
    refused."""
    with pytest.raises(ValueError, match=r'generated with --detail-scale 1 --extra-pedestrians 0, '
                       r'but this config expects --detail-scale 3 --extra-pedestrians 2\. Generate '
                       r'the right data with `python tools/dataset_converters/synthcity\.py .* '
                       r'--detail-scale 3 --extra-pedestrians 2`'):
        _synthcity_dataset(synthcity_root, BENCH)
    # and the reverse: benchmark data under a quickstart config
    from mmseg_ext.datasets.synthcity import SynthCityConfig, generate
    root = tmp_path / 'bench'
    generate(SynthCityConfig(root=str(root), num_train=2, num_val=1, detail_scale=3,
                             extra_pedestrians=2))
    assert len(_synthcity_dataset(root, BENCH)) == 2
    with pytest.raises(ValueError, match='expects --detail-scale 1 --extra-pedestrians 0'):
        _synthcity_dataset(root)
    # without synthcity.json (an interrupted generation, or data from before the file existed)
    # what the folder holds is unknown: refused by every config
    (root / 'synthcity.json').unlink()
    for config in (BENCH, QUICK):
        with pytest.raises(ValueError, match='has no synthcity.json'):
            _synthcity_dataset(root, config)


def test_synthcity_labels_missing(tmp_path, synthcity_root):
    root = tmp_path / 'nolabels'
    shutil.copytree(synthcity_root, root)
    for png in (root / 'gtFine' / 'train').rglob('*.png'):
        png.unlink()
        break
    with pytest.raises(FileNotFoundError, match='1 of 8 label maps are missing'):
        _synthcity_dataset(root)


def test_snl_head_batch_of_one_with_bn_in_the_gp_branch():
    from mmseg_ext.models.decode_heads.snl_head import SNLHead
    head = SNLHead(in_channels=16, in_index=0, channels=8, num_classes=3, kernel_size=3,
                   use_gp=True, use_decoder=False, norm_cfg=dict(type='BN', requires_grad=True))
    head.train()
    x = [torch.randn(1, 16, 6, 6)]
    with pytest.raises(ValueError, match=r'SNLHead: the GP .* batch of >= 2 .*GN.*SyncBN'):
        head(x)
    head.eval()
    assert head(x).shape == (1, 3, 6, 6)


def test_amp_on_cpu_says_what_to_do(tmp_path, tool_env):
    """tools/train.py --amp on a machine without CUDA: one clear line instead of an assertion."""
    import subprocess

    from mmengine.config import Config

    from mmseg_ext.utils import check_amp
    if torch.cuda.is_available():
        pytest.skip('AMP runs on this machine')
    cfg = Config.fromfile(QUICK)
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    with pytest.raises(RuntimeError, match='--amp.*needs a CUDA device.*Train without --amp'):
        check_amp(cfg)
    cfg.optim_wrapper.type = 'OptimWrapper'
    assert check_amp(cfg) is cfg
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'train.py'), QUICK, '--amp', '--work-dir',
         str(tmp_path / 'amp')], env=tool_env, cwd=REPO, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode != 0
    assert 'needs a CUDA device' in proc.stderr and 'Train without --amp' in proc.stderr, \
        proc.stderr[-3000:]
