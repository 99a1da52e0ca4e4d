"""Params and FLOPs of SANet vs DeepLabV3+ (ResNet-101, VOC, 512x512).

Reproduces the setting of SANet's Table 6 (paper: SANet 204.7G MACs / 55.5M
params, DeepLabV3+ 235.6G / 59.5M) with one counter for all models (also
SANet under the other reading of §3.3, see configs/sanet/README.md):
``mmengine.analysis.get_model_complexity_info`` (fvcore-style: one
multiply-add counts as one FLOP, i.e. its "flops" are MACs). As mmseg's
``tools/analysis_tools/get_flops.py``, SyncBN is reverted to BN, the
auxiliary head is removed and the model runs in eval mode on one image.

    python tools/analysis_tools/sanet_complexity.py [--shape 512 512]
"""
import argparse
import os.path as osp
import platform
import time

import mmseg
import torch
from mmengine.analysis import get_model_complexity_info
from mmengine.config import Config

from mmseg_ext.apis import build_segmentor

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SANET = osp.join(ROOT,
                 'configs/sanet/sanet_r101-d8_4xb4-40k_voc12aug-512x512.py')
# (name, config, decode_head overrides, paper MACs, paper params)
MODELS_TO_COUNT = [
    ('SANet R101-d8 (ours, reading A = configs)', SANET, {}, '204.7G',
     '55.5M'),
    ('SANet R101-d8, reading B (attn width 4, FCNHead 3x3-512)', SANET,
     dict(attn_channels=4, den_num_convs=1, channels=512), '-', '-'),
    ('DeepLabV3+ R101-d8 (mmseg)',
     'mmseg::deeplabv3plus/deeplabv3plus_r101-d8_4xb4-40k_voc12aug-512x512.py',
     {}, '235.6G', '59.5M'),
]


def count(cfg_path, head_overrides, shape):
    if cfg_path.startswith('mmseg::'):  # a config of the installed mmseg
        cfg_path = osp.join(
            osp.dirname(mmseg.__file__), '.mim', 'configs',
            cfg_path[len('mmseg::'):])
    cfg = Config.fromfile(cfg_path)
    cfg.model.decode_head.update(head_overrides)
    # no download; no auxiliary head, as mmseg's get_flops.py
    model = build_segmentor(cfg, weights='offline', cfg_options={'model.auxiliary_head': None})
    params = sum(p.numel() for p in model.parameters())
    x = torch.rand(1, 3, *shape)
    with torch.no_grad():
        info = get_model_complexity_info(
            model, inputs=(x, ), show_table=False, show_arch=False)
    return info['flops'], params


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--shape', type=int, nargs=2, default=[512, 512])
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = []
    for name, path, overrides, paper_macs, paper_params in MODELS_TO_COUNT:
        t0 = time.time()
        flops, params = count(path, overrides, args.shape)
        rows.append((name, flops / 1e9, params / 1e6, paper_macs, paper_params,
                     time.time() - t0))
    h, w = args.shape
    print(f'input 1x3x{h}x{w}, counter mmengine.analysis.'
          f'get_model_complexity_info, torch {torch.__version__}, '
          f'{platform.processor() or platform.machine()}')
    print('| Model | FLOPs (=MACs) | Params | paper MACs | paper Params |')
    print('|---|---|---|---|---|')
    for name, g, m, pm, pp, _ in rows:
        print(f'| {name} | {g:.1f}G | {m:.2f}M | {pm} | {pp} |')
    print(f'(counted in {", ".join(f"{r[5]:.0f}s" for r in rows)})')


if __name__ == '__main__':
    main()
