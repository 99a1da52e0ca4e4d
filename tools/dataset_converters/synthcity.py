"""Generate SynthCity, the embedded Cityscapes-layout benchmark (see
mmseg_ext/datasets/synthcity.py).

    python tools/dataset_converters/synthcity.py data/synthcity [--seed 0] [--num-train 320]
        [--num-val 80]
        [--num-test N]    (the held-out test split, its own random stream; default: as many as val)
        [--overwrite]     (the folder must be new or empty; --overwrite deletes the SynthCity data
                           in it: the files its synthcity-manifest.json lists, and refuses,
                           deleting nothing, a folder holding any other file)
    python tools/dataset_converters/synthcity.py data/synthcity-bench --detail-scale 3
        --extra-pedestrians 2
        (the data of configs/benchmark/)
    python tools/dataset_converters/synthcity.py --preview docs/figures/synthcity_bench.png \
        --detail-scale 3 --extra-pedestrians 2     # the first 4 training scenes, no dataset written
"""
import argparse
import time

import numpy as np

from mmseg_ext.datasets.synthcity import (
    MAX_SCENES,
    MAX_SIDE,
    MIN_SIDE,
    SynthCityConfig,
    generate,
    render_index,
)


def write_preview(path, cfg, num=4):
    """Image and coloured labels of the first ``num`` training scenes, one row each."""
    import cv2
    from mmseg.datasets import CityscapesDataset
    palette = np.zeros((256, 3), np.uint8)
    palette[:19] = CityscapesDataset.METAINFO['palette']
    rows = []
    for i in range(num):
        img, lbl = render_index(cfg, 'train', i)
        rows.append(np.concatenate([img, palette[lbl]], 1))
    grid = np.concatenate(rows, 0)[..., ::-1]  # RGB -> BGR
    if not cv2.imwrite(path, np.ascontiguousarray(grid)):
        raise OSError(f'could not write {path}')
    print(f'{path}: {num} scenes, detail scale {cfg.detail_scale:g}, '
          f'{cfg.extra_pedestrians} extra pedestrians')


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('root', nargs='?', default='data/synthcity', help='output folder')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--num-train', type=int, default=SynthCityConfig.num_train,
                        help=f'train images, 1 to {MAX_SCENES}')
    parser.add_argument('--num-val', type=int, default=SynthCityConfig.num_val,
                        help=f'val images, 1 to {MAX_SCENES}')
    parser.add_argument('--num-test', type=int, default=None,
                        help=f'held-out test images, 1 to {MAX_SCENES}, drawn from a random stream '
                        'of their own (never a val scene); default: as many as --num-val')
    parser.add_argument('--height', type=int, default=SynthCityConfig.height,
                        help=f'image height in pixels, {MIN_SIDE} to {MAX_SIDE}')
    parser.add_argument('--width', type=int, default=SynthCityConfig.width,
                        help=f'image width in pixels, {MIN_SIDE} to {MAX_SIDE}')
    parser.add_argument('--detail-scale', type=float, default=SynthCityConfig.detail_scale,
                        help='size multiplier of poles, lights, signs, fences, people and '
                        'two-wheelers (1: quickstart data, 3: configs/benchmark/)')
    parser.add_argument('--extra-pedestrians', type=int, default=SynthCityConfig.extra_pedestrians,
                        help='pedestrians added to each scene (0: quickstart data, '
                        '2: configs/benchmark/)')
    parser.add_argument('--preview', metavar='PNG',
                        help='only write the first 4 training scenes (image | Cityscapes-coloured '
                        'labels) with these settings into this PNG')
    parser.add_argument('--overwrite', action='store_true',
                        help='delete the SynthCity data in a non-empty output folder first: only '
                        'the files an earlier (finished or interrupted) generation listed in its '
                        'synthcity-manifest.json (or synthcity.json); a folder holding any other '
                        'file, also inside leftImg8bit/ or gtFine/, is refused and nothing '
                        'deleted. Without --overwrite any non-empty folder is refused')
    args = parser.parse_args()
    try:
        cfg = SynthCityConfig(root=args.root, seed=args.seed, num_train=args.num_train,
                              num_val=args.num_val, num_test=args.num_test, height=args.height,
                              width=args.width, detail_scale=args.detail_scale,
                              extra_pedestrians=args.extra_pedestrians)
    except (TypeError, ValueError) as e:
        parser.error(str(e))
    if args.preview:
        return write_preview(args.preview, cfg)
    start = time.time()
    try:
        out = generate(cfg, progress=True, overwrite=args.overwrite)
    except (FileExistsError, NotADirectoryError) as e:
        parser.error(str(e))
    print(f"SynthCity written to {cfg.root}: {out['train']} train + {out['val']} val + "
          f"{out['test']} test images "
          f"({cfg.height}x{cfg.width}, seed {cfg.seed}, detail scale {cfg.detail_scale:g}, "
          f"{cfg.extra_pedestrians} extra pedestrians) in {time.time() - start:.1f}s; "
          f"sha256 {out['digest']}")


if __name__ == '__main__':
    main()
