# Copyright (c) mmseg_ext contributors. All rights reserved.
"""Params and FLOPs of mmseg's PSPNet R101-d8 vs. PSPNet + GFF (+ DFP) (paper Table 3).

Counted like the paper's Table 3: Cityscapes (19 classes) models, one 512x512 image, without the
auxiliary head, with mmengine.analysis.get_model_complexity_info (which counts one
multiply-add as one FLOP). SyncBN is replaced by BN so that it runs on one CPU.

    python tools/analysis_tools/gffnet_complexity.py            # the default reading only
    python tools/analysis_tools/gffnet_complexity.py --readings  # + the alternative readings
"""
import argparse
import os.path as osp

import torch
from mmengine.analysis import get_model_complexity_info
from mmengine.config import Config

GFF_CFG = osp.join(
    osp.dirname(__file__), '..', '..', 'configs', 'gffnet',
    'gffnet_r101-d8_4xb2-80k_cityscapes-512x1024.py')

# (row name, GFFHead overrides); the first two rows are the configs' default reading
ROWS = [
    ('PSPNet + GFF', dict(use_dfp=False)),
    ('PSPNet + GFF + DFP', dict()),
]
READINGS = [
    ('  + GFF, all levels at 1/8 (align_level=1)', dict(use_dfp=False, align_level=1)),
    ('  + GFF + DFP, all levels at 1/8', dict(align_level=1)),
    ('  + GFF, one 3x3 conv per level', dict(use_dfp=False, num_fuse_convs=1)),
    ('  + GFF + DFP, one 3x3 conv per level', dict(num_fuse_convs=1)),
    ('  + GFF + DFP, one 3x3 conv per level, at 1/8', dict(num_fuse_convs=1, align_level=1)),
    ('  + GFF + DFP, DFP convs 3x3', dict(dfp_kernel_size=3)),
    ('  + GFF + DFP, C-channel gates, sequential', dict(gate_channels=256,
                                                     update_order='sequential')),
]


def psp_cfg():
    import mmseg
    return osp.join(osp.dirname(mmseg.__file__), '.mim', 'configs', 'pspnet',
                    'pspnet_r101-d8_4xb2-80k_cityscapes-512x1024.py')


def build(cfg_path, head_overrides=None):
    from mmseg_ext.apis import build_segmentor
    cfg = Config.fromfile(cfg_path)
    cfg.model.decode_head.update(head_overrides or {})
    # Table 3 counts without the auxiliary head
    return build_segmentor(cfg, weights='offline', cfg_options={'model.auxiliary_head': None})


def measure(model, size=512):
    params = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        info = get_model_complexity_info(
            model, input_shape=(3, size, size), show_table=False, show_arch=False)
    return params, info['flops']


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--readings', action='store_true', help='also the alternative readings')
    parser.add_argument('--size', type=int, default=512)
    args = parser.parse_args()
    base_p, base_f = measure(build(psp_cfg()), args.size)
    paper = {'PSPNet (R101-d8)': (65.6, 580.1), 'PSPNet + GFF': (69.7, 600.1),
             'PSPNet + GFF + DFP': (70.5, 625.5)}
    print(f'| Model | Params (M) | paper | FLOPs (G) @{args.size} | ratio to PSPNet '
          '| paper ratio |')
    print('|---|---|---|---|---|---|')
    pp, pf = paper['PSPNet (R101-d8)']
    print(f'| PSPNet (R101-d8) | {base_p / 1e6:.2f} | {pp} | {base_f / 1e9:.1f} | 1.000 | 1.000 |')
    rows = ROWS + (READINGS if args.readings else [])
    for name, kw in rows:
        p, f = measure(build(GFF_CFG, kw), args.size)
        ref = paper.get(name)
        ref_p = f'{ref[0]}' if ref else ''
        ref_r = f'{ref[1] / pf:.3f}' if ref else ''
        print(f'| {name} | {p / 1e6:.2f} | {ref_p} | {f / 1e9:.1f} | {f / base_f:.3f} | {ref_r} |',
              flush=True)


if __name__ == '__main__':
    main()
