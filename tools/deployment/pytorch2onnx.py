"""Export a segmentor to ONNX and check it in onnxruntime against PyTorch.

    python tools/deployment/pytorch2onnx.py CONFIG [CHECKPOINT] --shape H W \
        [--dynamo | --no-dynamo] [--verify] [--atol 1e-4] [--out FILE] [--dynamic-batch] \
        [--opset N] [--no-strict] [--cfg-options KEY=VALUE ...]

The graph maps ``img`` (B, 3, H, W), the data preprocessor's output (channel order converted,
mean/std normalised), to ``seg_logits`` (B, num_classes, H, W): the decode head's prediction (the
config's ``test_cfg`` whole-image inference, SAHead's ``infer_mode``) resized to the input size,
before the argmax. H, W are fixed; ``--dynamic-batch`` makes the batch axis dynamic.

Exporter: ``--no-dynamo`` = TorchScript exporter (any torch), ``--dynamo`` = torch.export based
(torch >= 2.5, needs onnxscript); neither flag: the TorchScript exporter where it can export the
model, else the dynamo one. What cannot be exported is reported before exporting, with what to
use instead. ``--verify`` runs the file in onnxruntime and PyTorch on random inputs, prints the
max abs error and fails (exit 1) above ``--atol``. Without CHECKPOINT the config's initialisation
is exported (to try the export). CHECKPOINT is loaded strictly: one whose weights are not those of
the config's model (another model's checkpoint) is refused with the keys that differ, unless
``--no-strict``. See docs/deploy.md.
"""
import argparse
import os
import os.path as osp
import sys

from torch import nn


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', nargs='?', default=None,
                        help='checkpoint file (loaded weights-only); none: the initialisation')
    parser.add_argument('--shape', type=int, nargs=2, required=True, metavar=('H', 'W'),
                        help='input height and width of the exported graph')
    parser.add_argument('--dynamo', action=argparse.BooleanOptionalAction, default=None,
                        help='torch.onnx.export(dynamo=True) (--dynamo) or the TorchScript '
                        'exporter (--no-dynamo); default: TorchScript where it works')
    parser.add_argument('--verify', action='store_true',
                        help='compare onnxruntime with PyTorch and print the max abs error')
    parser.add_argument('--atol', type=float, default=1e-4,
                        help='--verify fails above this max abs error of the logits')
    parser.add_argument('--out', default=None,
                        help='output file (default: work_dirs/onnx/CONFIGNAME_HxW.onnx)')
    parser.add_argument('--dynamic-batch', action='store_true', help='dynamic batch axis')
    parser.add_argument('--dynamic-shape', action='store_true',
                        help='dynamic H and W axes (TorchScript exporter; --verify then checks '
                        'three sizes); refused, saying why, for models whose graph keeps sizes '
                        '(adaptive pooling: PSPNet, GFFNet, SAHead with attn_grid)')
    parser.add_argument('--opset', type=int, default=None,
                        help='ONNX opset (default: 17 TorchScript, the exporter default dynamo)')
    parser.add_argument('--no-strict', dest='strict', action='store_false',
                        help="load only the checkpoint's weights that match the model (same "
                        'name and shape), with a warning listing the others, which keep the '
                        "config's initialisation (e.g. a checkpoint with an auxiliary head the "
                        'export config drops). Default: a checkpoint whose weights are not '
                        "exactly the model's is refused")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default=None,
                        help='override config settings, e.g. model.test_cfg.mode=whole')
    args = parser.parse_args(argv)
    if min(args.shape) <= 0:
        parser.error(f'--shape takes two positive ints H W, got {args.shape}')
    if args.atol <= 0:
        parser.error(f'--atol must be > 0, got {args.atol}')
    if not args.strict and args.checkpoint is None:
        parser.error('--no-strict is about loading a CHECKPOINT, and none is given')
    return args


def describe(model, shape, dynamic_batch: bool) -> str:
    """What goes in and out of the graph, in words."""
    pre = getattr(model, 'data_preprocessor', None)
    mean, std = getattr(pre, 'mean', None), getattr(pre, 'std', None)
    norm = ''
    if mean is not None and std is not None:
        norm = (f', mean {[round(v, 3) for v in mean.flatten().tolist()]} std '
                f'{[round(v, 3) for v in std.flatten().tolist()]}')
    # mmseg loads images as BGR; the preprocessor flips them when it converts channels
    order = 'RGB' if getattr(pre, 'channel_conversion', False) else 'BGR'
    head = model.decode_head
    if isinstance(head, nn.ModuleList):  # CascadeEncoderDecoder: the last head predicts
        head = head[-1]
    mode = getattr(head, 'infer_mode', None)
    pred = f"{type(head).__name__} prediction{f' (infer_mode={mode!r})' if mode else ''}"
    b = 'batch' if dynamic_batch else '1'
    return (f'input img ({b}, 3, {shape[0]}, {shape[1]}) float32: the data preprocessor\'s '
            f'output (channels {order}{norm}); output seg_logits ({b}, {head.out_channels}, '
            f'{shape[0]}, {shape[1]}): the {pred} resized to the input size, before argmax')


def main(argv=None):
    args = parse_args(argv)
    from mmseg_ext.deployment import (
        CheckpointMismatchError,
        ExportError,
        build_segmentor,
        check_dynamic_shape,
        choose_exporter,
        export_onnx,
        exporter_name,
        verify_onnx,
    )
    if not osp.isfile(args.config):
        sys.exit(f'pytorch2onnx: config not found: {args.config}')
    if args.checkpoint is not None and not osp.isfile(args.checkpoint):
        sys.exit(f'pytorch2onnx: checkpoint not found: {args.checkpoint}')
    shape = tuple(args.shape)
    out = args.out or osp.join('work_dirs', 'onnx', osp.splitext(osp.basename(args.config))[0]
                               + f'_{shape[0]}x{shape[1]}.onnx')
    try:
        model = build_segmentor(
            args.config, args.checkpoint, cfg_options=args.cfg_options, strict=args.strict,
            advice='Give the checkpoint trained with this config, or export it with the config '
            'it was trained with; --no-strict (strict=False) exports it anyway, the weights that '
            "do not match keeping the config's initialisation")
    except CheckpointMismatchError as e:
        sys.exit(f'pytorch2onnx: {e}')
    if osp.dirname(out):
        os.makedirs(osp.dirname(out), exist_ok=True)
    try:
        if args.dynamic_shape:
            check_dynamic_shape(model, bool(args.dynamo))
        dynamo = choose_exporter(model, shape, args.dynamo)
        export_onnx(model, shape, out, dynamo, dynamic_batch=args.dynamic_batch,
                    opset=args.opset, check=False, dynamic_shape=args.dynamic_shape)
    except ExportError as e:
        sys.exit(f'pytorch2onnx: {e}')
    print(f'exported {osp.basename(args.config)} with {exporter_name(dynamo)} to {out}')
    print(describe(model, shape, args.dynamic_batch))
    if args.verify:
        batches = (1, 3) if args.dynamic_batch else (1, )
        sizes = verify_sizes(shape) if args.dynamic_shape else [shape]
        for size in sizes:
            res = verify_onnx(model, out, size, batches)
            print(f'onnxruntime vs PyTorch at {size[0]}x{size[1]} (batch '
                  f'{", ".join(map(str, batches))}): max abs error {res["max_abs_error"]:.3g} '
                  f'(max |logit| {res["max_abs_logit"]:.3g}), argmax differs on '
                  f'{100 * res["argmax_mismatch"]:.4g}% of pixels')
            if not res['max_abs_error'] <= args.atol:
                sys.exit(f'pytorch2onnx: verification failed at {size[0]}x{size[1]}: max abs '
                         f'error {res["max_abs_error"]:.3g} > --atol {args.atol:g}')


def verify_sizes(shape):
    """The export size and two others (one larger, one of other proportions), at least 32."""
    h, w = shape
    return [(h, w), (h + 32, w + 64), (max(32, h - 24), w + 40)]

if __name__ == '__main__':
    main()
