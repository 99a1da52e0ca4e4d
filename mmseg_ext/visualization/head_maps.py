# Copyright (c) mmseg_ext contributors. All rights reserved.
"""See inside the heads: capture what SAHead / GFFHead / SNLHead compute and draw it.

The maps are the heads' own tensors, captured during one ordinary ``model.predict`` pass; nothing
of the heads' maths is computed again here. They are read by forward hooks registered for that
pass only and removed afterwards, also on errors (:mod:`mmseg_ext.models.utils.taps`); the
heads keep no state of it:

* :class:`~mmseg_ext.models.decode_heads.SAHead`: ``X_attn`` of every SA block, i.e. the return
  value of :meth:`SqueezeAttentionModule.attention` (``attn_act`` then ``Up``), the output of
  the block's ``attn_tap``. Drawn: its mean over channels.
* :class:`~mmseg_ext.models.decode_heads.GFFHead`: the gate maps ``G_l``, the second output of
  ``head.fusion`` (mean over channels when ``gate_channels > 1``).
* :class:`~mmseg_ext.models.decode_heads.SNLHead`: the offsets (output of the block's ``offset``
  conv) and the softmax weights the op itself returns (output of the block's ``weights_tap``:
  while it is hooked the block calls ``sparse_nonlocal_attention(..., return_weights=True)``);
  the sampling locations come from the op's :func:`~mmseg_ext.ops.sparse_nonlocal.
  sample_coordinates` (zero offsets = the initial regular grid).

Maps go from the head's resolution to the original image exactly as mmseg does for the logits
(``BaseSegmentor.postprocess_result``): bilinear resize to the network input, crop the padding,
bilinear resize to ``ori_shape``. Points are ``(y, x)`` pixel indices of the original image.
"""
import contextlib
import os.path as osp
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import mmcv
import numpy as np
import torch
from mmengine.dataset import Compose
from mmengine.utils import mkdir_or_exist
from mmseg.models.utils import resize
from torch import Tensor

from mmseg_ext.models.utils.taps import capture_outputs

__all__ = [
    'HeadMaps', 'head_kind', 'init_segmentor', 'compute_head_maps', 'draw_heatmap', 'draw_snl',
    'draw_prediction', 'save_head_maps', 'heat_range', 'HEATMAP_ALPHA'
]

HEATMAP_ALPHA = 0.6  # weight of the heat map over the image
HEATMAP_CMAP = 'viridis'  # fixed range [0, 1] (sigmoid attention, gates) unless a map leaves it
SUPPORTED = ('SAHead', 'GFFHead', 'SNLHead')


@dataclass
class HeadMaps:
    """What :func:`compute_head_maps` captured for one image.

    Attributes:
        kind (str): ``'sa'``, ``'gff'`` or ``'snl'``.
        image (ndarray): the original image, RGB uint8 (H, W, 3).
        pred (SegDataSample): mmseg's prediction (``pred_sem_seg`` at the original size).
        names (list[str]): one name per map (``'stage1'``.., ``'level1'``..).
        raw (list[ndarray]): SA/GFF: the head's maps at their own resolution (channel mean).
        maps (list[ndarray]): SA/GFF: the same maps at the original image size (gates and
            sigmoid attention in (0, 1); ReLU attention, ``attn_act='relu'``, in [0, inf)).
        points (ndarray): (P, 2) query points ``(y, x)`` in the original image.
        values (ndarray): SA/GFF: (P, n_maps) ``maps[m][y, x]`` at every point.
        grid, learned (ndarray): SNL: (P, K, 2) sampling locations ``(y, x)`` of each point's
            feature-map query pixel, in original-image pixel coordinates (``grid``: zero offsets,
            ``learned``: grid + the head's offsets).
        weights (ndarray): SNL: (P, K) softmax weights of each point's query.
        query_feat (ndarray): SNL: (P, 2) the query pixel ``(fy, fx)`` on the SNL feature map.
        feat_shape (tuple): SNL: (h, w) of the SNL feature map.
    """
    kind: str
    image: np.ndarray
    pred: object
    names: List[str] = field(default_factory=list)
    raw: List[np.ndarray] = field(default_factory=list)
    maps: List[np.ndarray] = field(default_factory=list)
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), int))
    values: Optional[np.ndarray] = None
    grid: Optional[np.ndarray] = None
    learned: Optional[np.ndarray] = None
    weights: Optional[np.ndarray] = None
    query_feat: Optional[np.ndarray] = None
    feat_shape: Optional[Tuple[int, int]] = None


# -------------------------------------------------------------------------------------------
# model
# -------------------------------------------------------------------------------------------
def head_kind(head) -> str:
    """``'sa'`` / ``'gff'`` / ``'snl'`` for a head that has maps to show, else ValueError."""
    from mmseg_ext.models.decode_heads.gff_head import GFFHead
    from mmseg_ext.models.decode_heads.sa_head import SAHead
    from mmseg_ext.models.decode_heads.snl_head import SNLHead
    from mmseg_ext.models.utils.sa_module import SqueezeAttentionModule
    name = type(head).__name__
    if isinstance(head, SAHead):
        if not all(isinstance(m, SqueezeAttentionModule) for m in head.sa_modules):
            raise ValueError(f"SAHead with module_type other than 'sa' has no spatial attention "
                             f'map to show (got {type(head.sa_modules[0]).__name__})')
        return 'sa'
    if isinstance(head, GFFHead):
        if getattr(head.fusion, 'gates', None) is None:
            raise ValueError(f'GFFHead with fusion={head.fusion_type!r} has no gates to show; '
                             "use fusion='gff' or 'gated_fpn'")
        return 'gff'
    if isinstance(head, SNLHead):
        return 'snl'
    raise ValueError(f'the decode head {name} has nothing to show: visualize_heads supports '
                     f'{", ".join(SUPPORTED)} (the config\'s model.decode_head.type)')


def init_segmentor(config, checkpoint: Optional[str] = None, device: str = 'cpu'):
    """Build the segmentor of ``config`` (path or Config) in eval mode on ``device``.

    ``checkpoint`` None (or ``'none'``) keeps the config's initialisation (``init_weights``);
    otherwise it is loaded strictly by :func:`mmseg_ext.deployment.load_weights` (mmengine's
    ``load_checkpoint``, which reads with torch's weights-only unpickler; ``mmseg_ext``
    allow-lists what it needs): a checkpoint of another model (e.g. an FCN's, without this head's
    weights) is refused with a ValueError (``CheckpointMismatchError``) naming the file and the
    first keys that differ, instead of leaving the head untrained. The decode head is checked
    first (:func:`head_kind`), so a config without one of the supported heads fails before any
    weight is read. ``test_cfg`` is set to whole-image inference (one head pass per image).
    ``dataset_meta`` comes from the checkpoint, else from the config's test dataset class.
    """
    from mmseg.registry import DATASETS
    from mmseg.utils import get_classes, get_palette

    from mmseg_ext.apis import build_segmentor, load_config

    cfg = load_config(config)
    head_type = cfg.model.get('decode_head', {}).get('type')
    if head_type not in SUPPORTED:
        raise ValueError(f'the decode head {head_type} has nothing to show: visualize_heads '
                         f'supports {", ".join(SUPPORTED)} (the config\'s '
                         'model.decode_head.type)')
    test_cfg = cfg.model.get('test_cfg') or {}
    if test_cfg.get('mode', 'whole') != 'whole':  # one head pass per image, not per crop
        warnings.warn(f"visualize_heads runs whole-image inference (the config's test_cfg "
                      f"mode is {test_cfg.get('mode')!r})")
        cfg.model.test_cfg = dict(mode='whole')
    if isinstance(checkpoint, str) and checkpoint.lower() == 'none':
        checkpoint = None
    model = build_segmentor(cfg, checkpoint, device, advice=(
        'Give the checkpoint trained with this config (or the config it was trained with), or '
        "'none' for a random initialisation"))
    meta = getattr(model, 'dataset_meta', None) if checkpoint is not None else None
    head_kind(model.decode_head)
    if not meta or 'palette' not in meta:
        meta = None
        dataset = cfg.get('test_dataloader', {}).get('dataset', {}).get('type')
        cls = DATASETS.get(dataset) if dataset else None
        if cls is not None and 'palette' in getattr(cls, 'METAINFO', {}):
            meta = dict(classes=cls.METAINFO['classes'], palette=cls.METAINFO['palette'])
    num_classes = model.decode_head.num_classes
    if meta is None or len(meta['classes']) != num_classes:
        name = next((n for n in ('cityscapes', 'ade', 'voc', 'pcontext')
                     if len(get_classes(n)) == num_classes), None)
        meta = (dict(classes=get_classes(name), palette=get_palette(name)) if name else dict(
            classes=[str(i) for i in range(num_classes)],
            palette=[[int(c) for c in np.random.default_rng(i).integers(0, 256, 3)]
                     for i in range(num_classes)]))
    model.dataset_meta = dict(classes=meta['classes'], palette=meta['palette'])
    return model.to(device).eval()


def _detach(t: Tensor) -> Tensor:
    """A captured tensor without its graph (the maps are only drawn)."""
    return t.detach()


def _detach_gates(out) -> List[Tensor]:
    """The gates of a fusion block's output ``(fused, gates)``, detached."""
    return [g.detach() for g in out[1]]


def _hooked_outputs(head, kind: str) -> Dict[str, Tuple[list, Callable]]:
    """What :func:`_capture` records, per name: the head's modules whose outputs carry it and
    how to read one output (see :mod:`mmseg_ext.models.utils.taps`)."""
    if kind == 'sa':  # X_attn, passed through each SA block's attn_tap
        return dict(attn=([m.attn_tap for m in head.sa_modules], _detach))
    if kind == 'gff':  # the fusion block returns (fused, gates)
        return dict(gates=([head.fusion], _detach_gates))
    # a hook on weights_tap makes the block ask the op for its softmax weights
    return dict(offset=([head.snl.offset], _detach), weights=([head.snl.weights_tap], _detach))


@contextlib.contextmanager
def _capture(head, kind: str, store: Dict[str, list]):
    """Record the head's own tensors during the forward pass, one entry per module call, by
    forward hooks removed on exit (exceptions included); the head itself is not modified."""
    with contextlib.ExitStack() as stack:
        for name, (modules, select) in _hooked_outputs(head, kind).items():
            store[name] = stack.enter_context(capture_outputs(modules, select))
        yield


def _load_inputs(model, image: Union[str, np.ndarray]):
    """Run the config's test pipeline (without annotations) and the data preprocessor."""
    pipeline = [dict(t) for t in model.cfg.test_pipeline if t.get('type') != 'LoadAnnotations']
    if isinstance(image, np.ndarray):
        pipeline[0]['type'] = 'LoadImageFromNDArray'
        data = dict(img=image)
    else:
        data = dict(img_path=image)
    data = Compose(pipeline)(data)
    data = model.data_preprocessor(
        dict(inputs=[data['inputs']], data_samples=[data['data_samples']]), False)
    return data['inputs'], data['data_samples']


class _Geometry:
    """Coordinates between the original image, the network input and a head's feature map."""

    def __init__(self, meta: dict, input_hw: Tuple[int, int], align_corners: bool):
        if meta.get('flip', False):
            raise ValueError('flipped test pipelines are not supported')
        self.ori = tuple(int(v) for v in meta['ori_shape'][:2])
        self.img = tuple(int(v) for v in meta['img_shape'][:2])
        self.inp = tuple(int(v) for v in input_hw)
        pad = meta.get('img_padding_size', meta.get('padding_size', [0, 0, 0, 0]))
        self.left, self.right, self.top, self.bottom = (int(p) for p in pad)
        self.align_corners = align_corners

    def to_image(self, t: Tensor) -> np.ndarray:
        """(1, C, h, w) head map -> (C, H_ori, W_ori), as ``postprocess_result`` for logits."""
        t = resize(t.float(), size=self.inp, mode='bilinear', align_corners=self.align_corners,
                   warning=False)
        t = t[:, :, self.top:self.inp[0] - self.bottom, self.left:self.inp[1] - self.right]
        t = resize(t, size=self.ori, mode='bilinear', align_corners=self.align_corners,
                   warning=False)
        return t[0].cpu().numpy()

    def image_to_feat(self, yx, feat_hw) -> Tuple[int, int]:
        """Original-image pixel -> index of the feature-map pixel whose cell contains it."""
        out = []
        for v, ori, img, pad, inp, f in zip(yx, self.ori, self.img, (self.top, self.left),
                                            self.inp, feat_hw):
            vin = (v + 0.5) * img / ori + pad  # continuous coordinate in the network input
            out.append(int(min(max(np.floor(vin * f / inp), 0), f - 1)))
        return out[0], out[1]

    def feat_to_image(self, c: np.ndarray, axis: int, feat_size: int) -> np.ndarray:
        """Feature-map pixel index (pixel centres at integers) -> original-image pixel index."""
        ori, img, pad, inp = (self.ori[axis], self.img[axis], (self.top, self.left)[axis],
                              self.inp[axis])
        vin = (c + 0.5) * inp / feat_size - pad  # continuous, in the un-padded input
        return vin * ori / img - 0.5


def _check_points(points, hw) -> np.ndarray:
    pts = np.asarray(points if points is not None else [], dtype=np.int64).reshape(-1, 2)
    for y, x in pts:
        if not (0 <= y < hw[0] and 0 <= x < hw[1]):
            raise ValueError(f'point (y={y}, x={x}) is outside the image of size '
                             f'{hw[0]}x{hw[1]} (H x W): use 0 <= y < {hw[0]}, 0 <= x < {hw[1]}')
    return pts


@torch.no_grad()
def compute_head_maps(model, image: Union[str, np.ndarray],
                      points: Optional[Sequence[Tuple[int, int]]] = None) -> HeadMaps:
    """Run ``model`` once on ``image`` (path, or BGR array as mmcv loads it) and return the
    head's maps (:class:`HeadMaps`). ``points``: ``(y, x)`` in the original image; SNL needs at
    least one (the centre is used when none is given)."""
    head = model.decode_head
    kind = head_kind(head)
    inputs, samples = _load_inputs(model, image)
    geo = _Geometry(samples[0].metainfo, inputs.shape[2:], head.align_corners)
    pts = _check_points(points, geo.ori)
    store: Dict[str, list] = {}
    with _capture(head, kind, store):
        pred = model.predict(inputs, samples)[0]
    n_expected = len(head.sa_modules) if kind == 'sa' else 1
    got = len(store[dict(sa='attn', gff='gates', snl='offset')[kind]])
    if got != n_expected:
        raise RuntimeError(f'expected one head pass ({n_expected} maps), captured {got}')
    rgb = (mmcv.imread(image, channel_order='rgb') if isinstance(image, str) else
           mmcv.bgr2rgb(image))
    out = HeadMaps(kind=kind, image=rgb, pred=pred, points=pts)
    if kind in ('sa', 'gff'):
        tensors = store['attn'] if kind == 'sa' else store['gates'][0]
        for i, t in enumerate(tensors):
            m = t[:1].float().mean(dim=1, keepdim=True)  # channel mean, (1, 1, h, w)
            out.raw.append(m[0, 0].cpu().numpy())
            out.maps.append(geo.to_image(m)[0])
            if kind == 'sa':  # SA block i reads backbone stage in_index[i]
                out.names.append(f'stage{head.in_index[i] + 1}')
            else:  # gated_fpn adds the PPM level's gate after the input levels
                out.names.append(f'level{i + 1}' if i < len(head.in_channels) else 'ppm')
        out.values = np.array([[m[y, x] for m in out.maps] for y, x in pts]).reshape(
            len(pts), len(out.maps))
        return out
    # SNL
    from mmseg_ext.ops.sparse_nonlocal import sample_coordinates
    if len(pts) == 0:
        pts = out.points = np.array([[geo.ori[0] // 2, geo.ori[1] // 2]])
    offset = store['offset'][0][:1]
    weights = store['weights'][0][:1]
    fh, fw = offset.shape[2:]
    snl = head.snl
    K = snl.num_points
    sy, sx = sample_coordinates(offset.double(), snl.kernel_size, snl.dilation)
    gy, gx = sample_coordinates(torch.zeros_like(offset, dtype=torch.float64), snl.kernel_size,
                                snl.dilation)
    q = np.array([geo.image_to_feat(p, (fh, fw)) for p in pts])
    idx = torch.as_tensor(q[:, 0] * fw + q[:, 1])
    out.query_feat, out.feat_shape = q, (fh, fw)

    def to_img(cy, cx):
        cy, cx = cy[0, idx].cpu().numpy(), cx[0, idx].cpu().numpy()
        return np.stack([geo.feat_to_image(cy, 0, fh), geo.feat_to_image(cx, 1, fw)], -1)

    out.learned, out.grid = to_img(sy, sx), to_img(gy, gx)
    w = weights[0].reshape(K, fh * fw)
    out.weights = w[:, idx].t().cpu().numpy()
    return out


# -------------------------------------------------------------------------------------------
# drawing
# -------------------------------------------------------------------------------------------
def colormap_lut(name: str = HEATMAP_CMAP) -> np.ndarray:
    """(256, 3) uint8 RGB lookup table of a matplotlib colormap."""
    import matplotlib
    return (matplotlib.colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(
        np.uint8)


def draw_heatmap(image: np.ndarray, heat: np.ndarray, alpha: float = HEATMAP_ALPHA,
                 points: Optional[np.ndarray] = None, values: Optional[np.ndarray] = None,
                 scale: int = 1, colorbar: bool = True,
                 vrange: Optional[Tuple[float, float]] = None) -> np.ndarray:
    """``(1 - alpha) * image + alpha * colormap(heat)``, RGB uint8, with ``vrange = (lo, hi)``
    mapped linearly onto the colormap; None means the fixed range (0, 1) of sigmoid attention
    and gates, so pictures compare. Points are marked with a white circle and their value; a
    colour bar (``lo`` at the bottom, ``hi`` at the top) is appended on the right; a range other
    than (0, 1) is written in the top-left corner. ``scale`` enlarges the picture (nearest)
    before the marks are drawn."""
    lut = colormap_lut()
    lo, hi = (0.0, 1.0) if vrange is None else (float(vrange[0]), float(vrange[1]))
    norm = (np.asarray(heat, np.float64) - lo) / max(hi - lo, 1e-12)
    idx = np.clip(np.round(norm * 255), 0, 255).astype(np.int64)
    blend = (1 - alpha) * image.astype(np.float64) + alpha * lut[idx].astype(np.float64)
    canvas = np.ascontiguousarray(np.round(blend).astype(np.uint8))
    if scale != 1:
        canvas = cv2.resize(canvas, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    if points is not None:
        for i, (y, x) in enumerate(points):
            c = (int(round((x + 0.5) * scale - 0.5)), int(round((y + 0.5) * scale - 0.5)))
            cv2.circle(canvas, c, 3 * scale, (255, 255, 255), 1, cv2.LINE_AA)
            if values is not None:
                cv2.putText(canvas, f'{values[i]:.2f}', (c[0] + 4 * scale, c[1] - 2 * scale),
                            cv2.FONT_HERSHEY_SIMPLEX, 0.3 * scale, (255, 255, 255), 1,
                            cv2.LINE_AA)
    if (lo, hi) != (0.0, 1.0):
        cv2.putText(canvas, f'colour range {lo:.2f}..{hi:.2f}', (3 * scale, 9 * scale),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.3 * scale, (255, 255, 255), 1, cv2.LINE_AA)
    if colorbar:
        h = canvas.shape[0]
        bar = lut[np.round(np.linspace(255, 0, h)).astype(np.int64)]
        bar = np.repeat(bar[:, None], 6 * scale, axis=1)
        canvas = np.concatenate([canvas, np.full((h, 2 * scale, 3), 255, np.uint8), bar], 1)
    return canvas


def draw_snl(image: np.ndarray, maps: HeadMaps, scale: int = 1,
             max_radius: Optional[float] = None) -> np.ndarray:
    """SNL sampling locations on the (dimmed) image: per query point, the initial regular grid
    as small grey rings, the learned locations (grid + offsets) as filled dots whose area is
    proportional to the softmax weight (largest weight of that query = ``max_radius`` pixels
    of the output, default 0.4 of the grid spacing), joined to their grid point by a thin line,
    and the query as a white cross. Query colours cycle."""
    colors = [(255, 64, 64), (64, 200, 255), (255, 200, 0), (200, 80, 255), (80, 255, 120)]
    canvas = np.round(image.astype(np.float64) * 0.6).astype(np.uint8)
    if scale != 1:
        canvas = cv2.resize(canvas, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    canvas = np.ascontiguousarray(canvas)
    shift = 4  # sub-pixel drawing
    f = 1 << shift
    if max_radius is None:  # 0.4 of the grid spacing (in output pixels)
        g = maps.grid[0].reshape(-1, 2)
        d = np.sqrt(((g[:, None] - g[None]) ** 2).sum(-1))
        spacing = d[d > 1e-6].min() if (d > 1e-6).any() else 4.0
        max_radius = 0.4 * spacing

    def pt(y, x):
        return (int(round(((x + 0.5) * scale - 0.5) * f)), int(round(((y + 0.5) * scale - 0.5)
                                                                     * f)))

    for i, (y, x) in enumerate(maps.points):
        col = colors[i % len(colors)]
        w = maps.weights[i]
        for (gy, gx), (ly, lx) in zip(maps.grid[i], maps.learned[i]):
            cv2.circle(canvas, pt(gy, gx), int(1.5 * scale * f), (160, 160, 160), 1, cv2.LINE_AA,
                       shift)
            cv2.line(canvas, pt(gy, gx), pt(ly, lx), col, 1, cv2.LINE_AA, shift)
        for (ly, lx), wj in zip(maps.learned[i], w):
            r = max_radius * scale * np.sqrt(wj / max(w.max(), 1e-12))
            cv2.circle(canvas, pt(ly, lx), max(int(r * f), f // 2), col, -1, cv2.LINE_AA, shift)
        c = pt(y, x)
        d = 3 * scale * f
        cv2.line(canvas, (c[0] - d, c[1]), (c[0] + d, c[1]), (255, 255, 255), 1, cv2.LINE_AA,
                 shift)
        cv2.line(canvas, (c[0], c[1] - d), (c[0], c[1] + d), (255, 255, 255), 1, cv2.LINE_AA,
                 shift)
    return canvas


def draw_prediction(model, image: np.ndarray, pred, scale: int = 1, alpha: float = 0.5,
                    with_labels: bool = False) -> np.ndarray:
    """The prediction over the image with mmseg's ``SegLocalVisualizer`` and the model's
    ``dataset_meta`` palette; RGB uint8."""
    from mmseg.visualization import SegLocalVisualizer
    vis = SegLocalVisualizer.get_instance('mmseg_ext_visualize_heads', alpha=alpha)
    vis.dataset_meta = dict(classes=model.dataset_meta['classes'],
                            palette=model.dataset_meta['palette'])
    vis.alpha = alpha
    vis.add_datasample('pred', image, pred, draw_gt=False, draw_pred=True, show=False,
                       with_labels=with_labels)
    out = vis.get_image()
    if scale != 1:
        out = cv2.resize(out, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    return out


def heat_range(heat: np.ndarray, stretch: bool = False) -> Optional[Tuple[float, float]]:
    """The colour range :func:`save_head_maps` draws ``heat`` over: its own ``(min, max)`` with
    ``stretch``; else None (the fixed [0, 1], so pictures compare) while the map stays inside it,
    and ``(min(0, lo), max(1, hi))`` once it leaves it (ReLU attention, unbounded above), so
    nothing is clipped."""
    lo, hi = float(heat.min()), float(heat.max())
    if stretch:
        return lo, hi
    return None if lo >= 0 and hi <= 1 else (min(0.0, lo), max(1.0, hi))


def save_head_maps(model, maps: HeadMaps, out_dir: str, stem: str, scale: int = 1,
                   with_labels: bool = False, stretch: bool = False) -> List[str]:
    """Write ``{stem}_pred.png`` and ``{stem}_{sa|gff}_{name}.png`` (one per map) or
    ``{stem}_snl.png`` into ``out_dir``; returns the paths. Each heat map is coloured over
    :func:`heat_range` (``stretch``: its own [min, max]; a range other than [0, 1] is written
    on the picture)."""
    mkdir_or_exist(out_dir)
    files = []

    def write(img, suffix):
        path = osp.join(out_dir, f'{stem}_{suffix}.png')
        mmcv.imwrite(mmcv.rgb2bgr(img), path)
        files.append(path)

    write(draw_prediction(model, maps.image, maps.pred, scale, with_labels=with_labels), 'pred')
    if maps.kind == 'snl':
        write(draw_snl(maps.image, maps, scale), 'snl')
    else:
        for name, heat, vals in zip(maps.names, maps.maps, maps.values.T):
            vrange = heat_range(heat, stretch)
            write(draw_heatmap(maps.image, heat, points=maps.points, values=vals, scale=scale,
                               vrange=vrange), f'{maps.kind}_{name}')
    return files
