"""How large are SANet's two summed maps? Logit scales of ``Y_den`` and ``Y_SA4`` (issue #23).

    python tools/analysis_tools/sanet_logit_scales.py CONFIG CHECKPOINT \
        [--max-images N] [--device cpu] [--out FILE.json] [--cfg-options KEY=VALUE ...]

SAHead predicts ``Y_den + Y_SA4`` (``infer_mode='den_sa4'``). When one map's logits are much larger
than the other's, the sum is that map's prediction. This tool runs the config's test set through a
trained SANet (the head's own ``forward`` under each ``infer_mode``, then mmseg's own
``postprocess_result``, as ``tools/test.py`` does) and prints one row per map:

* ``std``: the spread of a pixel's logits over the classes (population std), mean over pixels;
* ``margin``: top-1 minus top-2 logit, mean over pixels;
* ``acc`` / ``mIoU``: of the map's argmax (mIoU as mmseg's IoUMetric: dataset-wide intersections
  over unions, classes absent from labels and predictions left out);
* for ``den_sa4``: where ``Y_den`` and ``Y_SA4`` disagree, the share of pixels the sum gives to
  ``Y_den``'s class and to ``Y_SA4``'s class (the rest: a third class).

Pixels with the ignore label are left out. Inference is whole-image (one head pass per image), as
the benchmark configs test. It is a script, not a test.
"""
import argparse
import copy
import json
import sys

import numpy as np
import torch

MAPS = ('den', 'sa4', 'den_sa4', 'mask')


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='a config whose decode head is SAHead')
    parser.add_argument('checkpoint', help="checkpoint file, or 'none' for a random init")
    parser.add_argument('--max-images', type=int, default=None,
                        help='only the first N test images (default: all)')
    parser.add_argument('--device', default='cpu', help='e.g. cpu or cuda:0')
    parser.add_argument('--out', default=None, help='also write the numbers as JSON here')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help="config overrides, as tools/test.py's")
    args = parser.parse_args(argv)
    if args.max_images is not None and args.max_images < 1:
        parser.error(f'--max-images must be >= 1, got {args.max_images}')
    return args


class MapStats:
    """Running sums for one map: logit spread, margin, accuracy and the confusion matrix."""

    def __init__(self, num_classes: int):
        self.k = num_classes
        self.pixels = 0
        self.std = 0.0
        self.margin = 0.0
        self.correct = 0
        self.confusion = np.zeros((num_classes, num_classes), np.int64)

    def update(self, logits: torch.Tensor, label: torch.Tensor, valid: torch.Tensor):
        """``logits`` (K, H, W), ``label`` (H, W) long, ``valid`` (H, W) bool."""
        x = logits.double().flatten(1)[:, valid.flatten()]  # K x N
        y = label.flatten()[valid.flatten()]
        if x.shape[1] == 0:
            return
        top2 = x.topk(2, dim=0).values  # k >= 2: a binary head is given as two classes
        pred = x.argmax(0)
        self.pixels += x.shape[1]
        self.std += x.std(0, unbiased=False).sum().item()
        self.margin += (top2[0] - top2[1]).sum().item()
        self.correct += (pred == y).sum().item()
        np.add.at(self.confusion, (y.cpu().numpy(), pred.cpu().numpy()), 1)

    def summary(self) -> dict:
        if not self.pixels:
            raise ValueError('no labelled pixel was seen: every label is the ignore index')
        inter = np.diag(self.confusion).astype(np.float64)
        union = self.confusion.sum(0) + self.confusion.sum(1) - inter
        with np.errstate(invalid='ignore', divide='ignore'):
            iou = inter / union  # nan where a class is in neither labels nor predictions
        return dict(std=self.std / self.pixels, margin=self.margin / self.pixels,
                    acc=100.0 * self.correct / self.pixels, miou=100.0 * np.nanmean(iou),
                    pixels=self.pixels)


class SumDecision:
    """Where ``Y_den`` and ``Y_SA4`` disagree: whose class the sum takes."""

    def __init__(self):
        self.disagree = self.den = self.sa4 = 0

    def update(self, den, sa4, total, valid):
        pd, ps, pt = (m.argmax(0)[valid] for m in (den, sa4, total))
        d = pd != ps
        self.disagree += d.sum().item()
        self.den += (d & (pt == pd)).sum().item()
        self.sa4 += (d & (pt == ps)).sum().item()

    def summary(self, pixels: int) -> dict:
        n = max(self.disagree, 1)
        return dict(disagree=100.0 * self.disagree / pixels, to_den=100.0 * self.den / n,
                    to_sa4=100.0 * self.sa4 / n)


def check_head(head):
    from mmseg_ext.models.decode_heads.sa_head import SAHead
    if not isinstance(head, SAHead):
        raise SystemExit(f'the decode head is {type(head).__name__}; this tool reads SAHead '
                         '(a SANet config, e.g. configs/benchmark/sanet_*.py)')
    if head.den_convs is None:
        raise SystemExit('this SAHead has no dense branch (loss_den=None): there is no Y_den to '
                         'measure')


@torch.no_grad()
def branch_logits(model, batch) -> dict:
    """``{map: [seg_logits (K, H, W) per image]}`` at label size, after mmseg's post-processing."""
    head = model.decode_head
    data = model.data_preprocessor(batch, False)
    feats = model.extract_feat(data['inputs'])
    mode = head.infer_mode
    out = {}
    try:
        for name in MAPS:
            head.infer_mode = name
            logits = head.forward(feats).seg_pred
            samples = model.postprocess_result(logits, copy.deepcopy(data['data_samples']))
            out[name] = [s.seg_logits.data for s in samples]
    finally:
        head.infer_mode = mode
    out['label'] = [s.gt_sem_seg.data[0].long() for s in data['data_samples']]
    return out


def measure(model, dataset, max_images=None, batch_size=4) -> dict:
    from mmengine.dataset import pseudo_collate
    head = model.decode_head
    check_head(head)
    k = head.out_channels if head.out_channels > 1 else 2
    stats = {name: MapStats(k) for name in MAPS}
    decision = SumDecision()
    n = len(dataset) if max_images is None else min(max_images, len(dataset))
    for start in range(0, n, batch_size):
        batch = pseudo_collate([dataset[i] for i in range(start, min(start + batch_size, n))])
        got = branch_logits(model, batch)
        for i, label in enumerate(got['label']):
            valid = label != head.ignore_index
            maps = {name: got[name][i] for name in MAPS}
            if head.out_channels == 1:  # binary: the logit is the class-1 log-odds
                maps = {name: torch.cat([torch.zeros_like(m), m]) for name, m in maps.items()}
            for name in MAPS:
                stats[name].update(maps[name], label, valid)
            decision.update(maps['den'], maps['sa4'], maps['den_sa4'], valid)
    res = {name: s.summary() for name, s in stats.items()}
    res['den_sa4'].update(decision.summary(res['den_sa4']['pixels']))
    res['images'] = n
    res['den_sa4_sum'] = head.den_sa4_sum
    res['sa4_over_den_std'] = res['sa4']['std'] / res['den']['std']
    return res


def table(res) -> str:
    rows = ['| map | logit std over classes | top-1 minus top-2 | acc | mIoU |',
            '| --- | --- | --- | --- | --- |']
    for name in MAPS:
        r = res[name]
        rows.append(f'| {name} | {r["std"]:.3f} | {r["margin"]:.3f} | {r["acc"]:.2f} | '
                    f'{r["miou"]:.2f} |')
    s = res['den_sa4']
    rows += ['', f'{res["images"]} images, {s["pixels"]} labelled pixels; Y_SA4 / Y_den logit std: '
             f'{res["sa4_over_den_std"]:.3f}; sum of {res["den_sa4_sum"]}.',
             f'Y_den and Y_SA4 disagree on {s["disagree"]:.2f}% of the pixels; there the sum takes '
             f'Y_den\'s class on {s["to_den"]:.1f}%, Y_SA4\'s on {s["to_sa4"]:.1f}%.']
    return '\n'.join(rows)


def main(argv=None):
    args = parse_args(argv)
    from mmengine.config import Config
    from mmseg.registry import DATASETS
    from mmseg.utils import register_all_modules

    from mmseg_ext.visualization import init_segmentor
    register_all_modules()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    model = init_segmentor(cfg, None if args.checkpoint == 'none' else args.checkpoint,
                           device=args.device)
    check_head(model.decode_head)
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    res = measure(model, dataset, args.max_images)
    print(table(res))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
