"""Generate SynthCity, the embedded Cityscapes-layout benchmark (see mmseg_ext/datasets/synthcity.py).

    python tools/dataset_converters/synthcity.py data/synthcity [--seed 0] [--num-train 320] [--num-val 80]
    python tools/dataset_converters/synthcity.py data/synthcity-bench --detail-scale 3 --extra-pedestrians 2
        (the data of configs/benchmark/)
"""
import argparse
import time

from mmseg_ext.datasets.synthcity import SynthCityConfig, generate


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('root', nargs='?', default='data/synthcity', help='output folder')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--num-train', type=int, default=SynthCityConfig.num_train)
    parser.add_argument('--num-val', type=int, default=SynthCityConfig.num_val)
    parser.add_argument('--height', type=int, default=SynthCityConfig.height)
    parser.add_argument('--width', type=int, default=SynthCityConfig.width)
    parser.add_argument('--detail-scale', type=float, default=SynthCityConfig.detail_scale,
                        help='size multiplier of poles, lights, signs, fences, people and '
                        'two-wheelers (1: quickstart data, 3: configs/benchmark/)')
    parser.add_argument('--extra-pedestrians', type=int, default=SynthCityConfig.extra_pedestrians,
                        help='pedestrians added to each scene (0: quickstart data, 2: configs/benchmark/)')
    args = parser.parse_args()
    cfg = SynthCityConfig(root=args.root, seed=args.seed, num_train=args.num_train,
                          num_val=args.num_val, height=args.height, width=args.width,
                          detail_scale=args.detail_scale,
                          extra_pedestrians=args.extra_pedestrians)
    start = time.time()
    out = generate(cfg, progress=True)
    print(f"SynthCity written to {cfg.root}: {out['train']} train + {out['val']} val images "
          f"({cfg.height}x{cfg.width}, seed {cfg.seed}, detail scale {cfg.detail_scale:g}, "
          f"{cfg.extra_pedestrians} extra pedestrians) in {time.time() - start:.1f}s; sha256 {out['digest']}")


if __name__ == '__main__':
    main()
