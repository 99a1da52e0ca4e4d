"""The papers' own test settings (issue #13, item 4) are ready in the configs, and the TTA one
runs.

* GFFNet (Table 2): sliding-window test, and with ``--tta`` the mean of the softmax maps at the
  scales {0.75, 1, 1.25, 1.5, 1.75}, without flip; on Cityscapes and on the embedded SynthCity.
* SSANet (footnote 1): N = 2401 = 49x49 at output stride 16 is the map of a 769x769 crop, and the
  ``-769x769`` configs test with mmseg's 769x769 sliding window.
* SANet: the VOC paper recipe from ImageNet weights trains at lr 1e-3.
"""
import glob
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config
from test_tools import miou_of, run  # the subprocess helpers of the tool tests

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CFG = osp.join(REPO, 'configs')
GFF_CITYSCAPES = osp.join(CFG, 'gffnet', 'gffnet_r101-d8_4xb2-100k_cityscapes-864x864.py')
GFF_SYNTHCITY = osp.join(CFG, 'gffnet', 'gffnet_r18tiny-d8_1xb8-1k_synthcity-128x256-slide-ms.py')
PAPER_SCALES = [0.75, 1.0, 1.25, 1.5, 1.75]  # GFFNet, "Ablation Study for Improvement Strategies"


def _tta_transforms(cfg):
    """The TestTimeAug groups of a config's ``tta_pipeline``."""
    tta = [t for t in cfg.tta_pipeline if t['type'] == 'TestTimeAug']
    assert len(tta) == 1
    return tta[0]['transforms']


@pytest.mark.parametrize('path', [GFF_CITYSCAPES, GFF_SYNTHCITY], ids=['cityscapes', 'synthcity'])
def test_gffnet_paper_tta_is_table2_ms(path, synthcity_root):
    """Five scales, no flip; applied to a real image it yields one input per scale at that scale."""
    from mmcv.transforms import Compose
    from mmseg.utils import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(path)
    groups = _tta_transforms(cfg)
    assert [t['scale_factor'] for t in groups[0]] == PAPER_SCALES
    assert not any(t['type'] == 'RandomFlip' for group in groups for t in group)
    img = glob.glob(osp.join(synthcity_root, 'leftImg8bit', 'val', '*', '*.png'))[0]
    seg = img.replace('leftImg8bit', 'gtFine', 1).replace('_leftImg8bit.png',
                                                          '_gtFine_labelTrainIds.png')
    out = Compose(cfg.tta_pipeline)(dict(img_path=img, seg_map_path=seg, reduce_zero_label=False,
                                         seg_fields=[]))
    import mmcv
    h, w = mmcv.imread(img).shape[:2]
    assert [tuple(x.shape[-2:]) for x in out['inputs']] == \
        [(int(h * s + 0.5), int(w * s + 0.5)) for s in PAPER_SCALES]
    assert not any(d.metainfo.get('flip', False) for d in out['data_samples'])


def test_gffnet_paper_configs_slide(monkeypatch):
    """Every 864x864 paper config tests with 864x864 windows (the training crop), stride 2/3 of
    it."""
    import functools

    import mmengine.config.utils as cfg_utils
    # each mmseg:: base re-reads mmseg's metafiles (about 1 s); they are read-only, cache them
    monkeypatch.setattr(cfg_utils, 'load', functools.lru_cache(maxsize=None)(cfg_utils.load))
    paths = sorted(glob.glob(osp.join(CFG, 'gffnet', '*864x864*.py')))
    assert len(paths) >= 7
    for path in paths:
        cfg = Config.fromfile(path)
        assert cfg.model.test_cfg == dict(mode='slide', crop_size=(864, 864),
                                          stride=(576, 576)), path
        assert [t['scale_factor'] for t in _tta_transforms(cfg)[0]] == PAPER_SCALES, path


def test_gffnet_paper_tta_runs_on_synthcity(tmp_path, tool_env):
    """``tools/test.py CONFIG CKPT --tta`` runs the paper's MS + sliding-window test on the tiny
    data.

    The checkpoint is the random initialisation (nothing is trained): this checks the path, not a
    score.
    """
    from mmengine.runner import save_checkpoint
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    import mmseg_ext  # noqa: F401
    register_all_modules()
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(GFF_SYNTHCITY).model)
    model.init_weights()
    ckpt = str(tmp_path / 'init.pth')
    save_checkpoint(dict(state_dict=model.state_dict(), meta=dict()), ckpt)
    work = tmp_path / 'tta'
    out = run([sys.executable, osp.join(REPO, 'tools', 'test.py'), GFF_SYNTHCITY, ckpt, '--tta',
               '--work-dir', str(work), '--cfg-options', 'test_dataloader.num_workers=0',
               'test_dataloader.persistent_workers=False'], tool_env)
    assert 0.0 <= miou_of(out) <= 100.0
    assert 'do not match exactly' not in out  # the checkpoint fits the model inside SegTTAModel
    # the run really was the TTA one: the runner's dumped config has mmseg's TTA model around the
    # sliding-window segmentor, and the five-scale pipeline as the test pipeline
    dumped = Config.fromfile(glob.glob(str(work / '*' / 'vis_data' / 'config.py'))[0])
    assert dumped.model.type == 'SegTTAModel'
    assert dumped.model.module.test_cfg.mode == 'slide'
    pipeline = dumped.test_dataloader.dataset.pipeline
    assert [t['scale_factor'] for t in pipeline[1]['transforms'][0]] == PAPER_SCALES


@pytest.mark.parametrize('name,stride,size', [
    ('ssanet_r101-d16_4xb2-80k_cityscapes-769x769.py', 16, 49),
    ('ssanet_r101-d8_4xb2-80k_cityscapes-769x769.py', 8, 97),
])
def test_ssanet_cityscapes_769(name, stride, size):
    """mmseg's 769x769 setting; at output stride 16 the SNL block sees 49x49 = 2401 positions
    (footnote 1: "N is 2401 ... K is 81")."""
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    import mmseg_ext  # noqa: F401
    register_all_modules()
    cfg = Config.fromfile(osp.join(CFG, 'ssanet', name))
    assert tuple(cfg.crop_size) == (769, 769)
    assert any(t['type'] == 'RandomCrop' and tuple(t['crop_size']) == (769, 769)
               for t in cfg.train_dataloader.dataset.pipeline)
    assert cfg.model.test_cfg == dict(mode='slide', crop_size=(769, 769), stride=(513, 513))
    assert cfg.model.decode_head.align_corners
    assert cfg.model.auxiliary_head is None or cfg.model.auxiliary_head.align_corners
    k = cfg.model.decode_head.kernel_size
    assert k * k == 81
    # the map size depends only on the strides and dilations: a narrow ResNet-18 with the config's
    # strides/dilations stands in for ResNet-101 to keep this fast
    backbone = dict(cfg.model.backbone, depth=18, stem_channels=8, base_channels=8,
                    norm_cfg=dict(type='BN', requires_grad=True), init_cfg=None)
    net = MODELS.build(backbone)
    net.eval()  # mmseg's ResNet.train() returns None, so no chaining
    with torch.no_grad():
        feats = net(torch.zeros(1, 3, 769, 769))
    assert tuple(feats[-1].shape[-2:]) == (size, size)
    assert 769 / feats[-1].shape[-1] == pytest.approx(stride, rel=0.03)
    if stride == 16:
        assert size * size == 2401


@pytest.mark.parametrize('backbone', ['r50', 'r101'])
def test_sanet_voc_paper_recipe_lr(backbone):
    """80 epochs on VOC aug from ImageNet weights at lr 1e-3 (1e-4 is §4.1's post-COCO
    fine-tuning)."""
    cfg = Config.fromfile(osp.join(CFG, 'sanet',
                                   f'sanet_{backbone}-d8_4xb4-53k_voc12aug-512x512-paper.py'))
    assert cfg.optim_wrapper.optimizer.lr == 1e-3
    assert cfg.param_scheduler[0].end == cfg.train_cfg.max_iters == 53000
