"""FLOPs and parameters of a config's segmentor, as mmseg's get_flops.py, for every config here.

    python tools/analysis_tools/get_flops.py CONFIG [--shape H [W]] [--cfg-options KEY=VALUE ...]

mmseg 1.2.2's own ``tools/analysis_tools/get_flops.py`` stops on mmengine 0.10.7 with
``"input_shape" and "inputs" cannot be both set``, and what mmengine's counter sees of SSANet's
sparse non-local op depends on the path it traced. This tool builds the model offline (no
checkpoint, no download; SyncBN as BN, the auxiliary head dropped as mmseg's tool does), counts
with :func:`mmseg_ext.utils.flops.count_flops` (mmengine's ``FlopAnalyzer``, one multiply-add =
one FLOP; the sparse non-local op counted by a handle registered for the module that calls it,
whichever backend it runs) and prints the result. ``--shape``: the input (H, W); one value means a
square; default the config's ``crop_size`` (else 512 x 512).
"""
import argparse
import sys

from mmengine.config import DictAction


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs='+', help='input H [W] in pixels')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. model.decode_head.kernel_size=7')
    args = parser.parse_args(argv)
    if args.shape is not None and (len(args.shape) > 2 or min(args.shape) <= 0):
        parser.error(f'--shape takes H or H W, positive pixels, got {args.shape}')
    return args


def input_shape(cfg, shape):
    if shape:
        return (shape[0], shape[-1])
    crop = cfg.get('crop_size')
    return tuple(crop) if crop else (512, 512)


def main(argv=None):
    args = parse_args(argv)
    from mmseg_ext.apis import build_segmentor, load_config
    from mmseg_ext.utils.flops import count_flops
    cfg = load_config(args.config, args.cfg_options)
    shape = input_shape(cfg, args.shape)
    model = build_segmentor(cfg, weights='offline', cfg_options={'model.auxiliary_head': None})
    res = count_flops(model, shape)
    line = '=' * 30
    print(f'{line}\nCompute type: direct: randomly generate a picture\n'
          f'Input shape: {shape}\nFlops: {res["flops"] / 1e9:.3f}G\n'
          f'Params: {res["params"] / 1e6:.3f}M\n{line}')
    for name, flops in res['extra'].items():
        print(f'{name}: sparse non-local op {flops / 1e9:.3f}G, counted by the handle of '
              f'mmseg_ext.utils.flops (the trace counted {res["replaced"][name] / 1e9:.3f}G '
              'there)')
    return res


if __name__ == '__main__':
    main(sys.argv[1:])
