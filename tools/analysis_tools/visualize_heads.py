"""See inside the heads: attention maps (SAHead), gates (GFFHead), sampling locations (SNLHead).

    python tools/analysis_tools/visualize_heads.py CONFIG CHECKPOINT IMAGE [IMAGE ...] \
        --out-dir DIR [--points Y,X ...] [--device cpu|cuda:0] [--scale 2] [--with-labels] \
        [--stretch]

Runs the model once per image and writes, per image ``NAME``:

* ``NAME_pred.png``: the prediction over the image (mmseg's SegLocalVisualizer, dataset palette);
* SAHead: ``NAME_sa_stageI.png``, the attention ``X_attn`` of each SA block (mean over channels)
  over the image, with the value at each ``--points`` point;
* GFFHead: ``NAME_gff_levelL.png``, each level's gate map, likewise;
* SNLHead: ``NAME_snl.png``, for each point the K sampling locations of its query (grey rings:
  initial regular grid; dots: learned = grid + offsets, area proportional to the softmax weight).

CHECKPOINT ``none`` visualises the config's random initialisation; a checkpoint is loaded
strictly (one of another model, e.g. an FCN's, is refused: its head would be drawn untrained).
Points are ``y,x`` pixel indices of the original image. See docs/visualize_heads.md.
"""
import argparse
import os.path as osp
import sys

from mmengine.utils import track_iter_progress


def parse_point(text):
    try:
        y, x = (int(v) for v in text.split(','))
    except ValueError:
        raise argparse.ArgumentTypeError(f'a point is "y,x" in pixels (e.g. 64,128), got {text!r}')
    return y, x


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help="checkpoint file, or 'none' for a random init")
    parser.add_argument('images', nargs='+', help='image files')
    parser.add_argument('--out-dir', required=True, help='where the PNGs go')
    parser.add_argument('--points', nargs='*', type=parse_point, default=[],
                        help='query points "y,x" in the original image (SNL: the image centre '
                        'if none)')
    parser.add_argument('--device', default='cpu', help='e.g. cpu or cuda:0')
    parser.add_argument('--scale', type=int, default=1, help='enlarge the pictures (int)')
    parser.add_argument('--with-labels', action='store_true',
                        help='write class names on the prediction')
    parser.add_argument('--stretch', action='store_true',
                        help='colour each heat map over its own [min, max] instead of [0, 1] '
                        '(a map leaving [0, 1], e.g. ReLU attention, is never clipped)')
    args = parser.parse_args(argv)
    if args.scale < 1:
        parser.error(f'--scale must be an int >= 1, got {args.scale}')
    return args


def main(argv=None):
    args = parse_args(argv)
    from mmseg_ext.visualization import compute_head_maps, init_segmentor, save_head_maps
    for img in args.images:
        if not osp.isfile(img):
            raise FileNotFoundError(f'image not found: {img}')
    model = init_segmentor(args.config, args.checkpoint, args.device)
    written = []
    for img in track_iter_progress(args.images):
        maps = compute_head_maps(model, img, args.points)
        stem = osp.splitext(osp.basename(img))[0]
        written += save_head_maps(model, maps, args.out_dir, stem, args.scale, args.with_labels,
                                  args.stretch)
    print(f'\nwrote {len(written)} files to {args.out_dir}')
    return written


if __name__ == '__main__':
    try:
        main()
    except (ValueError, FileNotFoundError) as e:  # what to change, without a traceback
        sys.exit(f'visualize_heads: error: {e}')
