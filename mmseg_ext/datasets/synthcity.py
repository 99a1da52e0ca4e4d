"""SynthCity: a deterministic, procedural street-scene benchmark in the Cityscapes on-disk layout.

It exists so that every config of this project can be trained and evaluated end to end on a CPU
in minutes, through mmseg's stock ``CityscapesDataset`` and pipelines, without downloading data.

Layout written under ``root`` (exactly what ``CityscapesDataset`` expects)::

    leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png     (RGB, uint8)
    gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png (19 train ids, 255)
    synthcity.json    the settings, written last and atomically (synthcity_files.py: a folder
                      holding it holds one finished generation; SynthCityDataset checks that)
    synthcity-manifest.json   the PNGs above, listed before any is written: what --overwrite deletes

What makes it a small benchmark rather than noise:

* large "stuff" regions (road, sidewalk, buildings, vegetation, terrain, sky) with texture;
* thin and small things — 1-3 px poles carrying traffic lights and signs, fences, bicycles —
  that are lost at 1/8 resolution unless low-level features are fused back (GFFNet's claim);
  ``detail_scale`` (default 1) multiplies their size, see below;
* **context-only classes**: trucks and buses are drawn with *identical* pixels; which class they
  are is decided by the tint of the sky (warm sky: bus, cold sky: truck), which is far away from
  the vehicle. Likewise a rider is a person drawn on a two-wheeler. Only a head that gathers
  long-range context separates them (what SANet/SSANet attention claims to do).

Images are generated independently from ``numpy.random.default_rng([seed, split_id, index])``, so
the same seed gives the same bytes whatever order or subset is generated. The splits' ids are
train 0, val 1, test 2: the held-out **test** split is drawn from a random stream of its own, never
a val or train scene, and adding it left the train and val bytes as they were. The rule of the
learning checks (docs/learning_check.md): every choice is made on val; test is only reported.

``detail_scale`` s multiplies the size of the small things only — pole widths, traffic-light boxes
and sign plates, fence bars (width, spacing and band height), people, two-wheelers and their
riders. Stuff classes and vehicles are drawn as before; s = 1 gives the original bytes. The horizon,
sky and buildings of a scene are the same for every s (they are drawn first). What follows differs
from s = 1 in detail: texture noise draws one number per painted pixel, so larger things move the
random stream on. It is the same distribution of scenes, not the same images.
Why it exists: at 128x256 a 1-3 px pole is 0.1-0.4 feature pixels at output stride 8, while
Cityscapes' 5-20 px poles at 1024x2048 are about 1-2; at s = 3 SynthCity's poles are 3-9 px
(0.4-1.1 feature pixels), closer to what a stride-8 head meets on real streets.

``extra_pedestrians`` n adds n pedestrians per scene, on the sidewalks at random depths, to the 2-6
random objects (of which about 15% are pedestrians). At s = 3 alone a stride-8 FCN learnt every
thin class in 4k iterations but never a pedestrian: 0.2% of the pixels, tall narrow shapes it took
for terrain and poles (docs/learning_check.md). n = 0 draws nothing more (the original bytes).

The benchmark config set (``configs/benchmark/``) uses s = 3, n = 2; the quickstart keeps s = 1,
n = 0.
"""
from __future__ import annotations

import hashlib
import os
import os.path as osp
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .synthcity_files import (  # noqa: F401
    CITIES,
    DETAIL_SCALE_RANGE,
    EXTRA_PEDESTRIANS_RANGE,
    MANIFEST_FILE,
    MAX_SCENES,
    MAX_SIDE,
    META_FILE,
    MIN_SIDE,
    file_pairs,
    generated_files,
    prepare_root,
    read_meta,
    write_meta,
)

# Cityscapes train ids (mmseg's CityscapesDataset.METAINFO['classes'] order).
ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY, PERSON, \
    RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = range(19)
IGNORE = 255
SPLITS = {'train': 0, 'val': 1, 'test': 2}  # the id in each scene's random key


@dataclass(frozen=True)
class SynthCityConfig:
    """What to generate. Defaults: 320 train + 80 val + 80 test images of 128x256 (H x W), detail
    scale 1. ``num_test`` None: as many test scenes as val scenes."""
    root: str = 'data/synthcity'
    seed: int = 0
    num_train: int = 320
    num_val: int = 80
    num_test: Optional[int] = None
    height: int = 128
    width: int = 256
    detail_scale: float = 1.0
    extra_pedestrians: int = 0

    def __post_init__(self):
        if self.num_test is None:
            object.__setattr__(self, 'num_test', self.num_val)  # frozen: set once, here
        for key in ('seed', 'num_train', 'num_val', 'num_test', 'height', 'width',
                    'extra_pedestrians'):
            value = getattr(self, key)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise TypeError(f'{key} must be an integer, got {value!r}')
        if self.seed < 0:
            raise ValueError(f'seed must be >= 0 (numpy seeds its generators with non-negative '
                             f'integers), got {self.seed}')
        # the bounds synthcity.json is read with (synthcity_files.META_RANGE)
        if not (MIN_SIDE <= self.height <= MAX_SIDE and MIN_SIDE <= self.width <= MAX_SIDE):
            raise ValueError(f'height/width must be in [{MIN_SIDE}, {MAX_SIDE}], got '
                             f'{self.height}x{self.width}')
        if not (1 <= self.num_train <= MAX_SCENES and 1 <= self.num_val <= MAX_SCENES):
            raise ValueError(f'num_train and num_val must be in [1, {MAX_SCENES}] (MAX_SCENES), '
                             f'got {self.num_train} and {self.num_val}')
        if not 1 <= self.num_test <= MAX_SCENES:
            raise ValueError(f'num_test must be in [1, {MAX_SCENES}] (MAX_SCENES), got '
                             f'{self.num_test}')
        if not DETAIL_SCALE_RANGE[0] <= self.detail_scale <= DETAIL_SCALE_RANGE[1]:
            raise ValueError(f'detail_scale must be in [1, 6] (1: the quickstart data, 3: the '
                             f'benchmark set), got {self.detail_scale}')
        if not EXTRA_PEDESTRIANS_RANGE[0] <= self.extra_pedestrians <= EXTRA_PEDESTRIANS_RANGE[1]:
            raise ValueError(f'extra_pedestrians must be in [0, 8] (0: the quickstart data, 2: the '
                             f'benchmark set), got {self.extra_pedestrians}')


class _Canvas:
    """An RGB image and its label map drawn together, so pixels and labels never disagree."""

    def __init__(self, h: int, w: int):
        self.h, self.w = h, w
        self.img = np.zeros((h, w, 3), np.float32)
        self.lbl = np.full((h, w), IGNORE, np.uint8)
        self.yy, self.xx = np.mgrid[0:h, 0:w]

    def paint(self, mask: np.ndarray, color, label: int, rng=None, texture: float = 0.0):
        if not mask.any():
            return
        col = np.asarray(color, np.float32)
        if texture and rng is not None:
            noise = rng.normal(0.0, texture, size=(int(mask.sum()), 1)).astype(np.float32)
            self.img[mask] = np.clip(col[None] + noise, 0, 255)
        else:
            self.img[mask] = col
        self.lbl[mask] = label

    def rect(self, y0, y1, x0, x1):
        y0, y1 = max(int(round(y0)), 0), min(int(round(y1)), self.h)
        x0, x1 = max(int(round(x0)), 0), min(int(round(x1)), self.w)
        m = np.zeros((self.h, self.w), bool)
        if y1 > y0 and x1 > x0:
            m[y0:y1, x0:x1] = True
        return m

    def ellipse(self, cy, cx, ry, rx):
        return ((self.yy - cy) / max(ry, 0.5))**2 + ((self.xx - cx) / max(rx, 0.5))**2 <= 1.0


def _vehicle(cv: _Canvas, rng, cx, base_y, scale, kind_label, body_color):
    """A box vehicle: body, window band, two wheels. Trucks and buses share this drawing exactly."""
    if kind_label == CAR:
        bw, bh = 26 * scale, 11 * scale
    elif kind_label == TRAIN:
        bw, bh = 90 * scale, 20 * scale
    else:  # truck / bus: identical shape and colours on purpose
        bw, bh = 44 * scale, 20 * scale
    x0, x1 = cx - bw / 2, cx + bw / 2
    y1 = base_y - 2 * scale
    y0 = y1 - bh
    cv.paint(cv.rect(y0, y1, x0, x1), body_color, kind_label, rng, 6)
    win = cv.rect(y0 + 0.15 * bh, y0 + 0.45 * bh, x0 + 0.08 * bw, x1 - 0.08 * bw)
    cv.paint(win, (60, 80, 100), kind_label, rng, 4)
    if kind_label != TRAIN:
        for wx in (x0 + 0.2 * bw, x1 - 0.2 * bw):
            cv.paint(cv.ellipse(y1, wx, 3 * scale, 3 * scale), (20, 20, 20), kind_label)


def _two_wheeler(cv: _Canvas, rng, cx, base_y, scale, motor: bool, with_rider: bool,
                 detail: float = 1.0):
    """``scale`` is the depth scale, already multiplied by ``detail``; tyres are ``detail`` px
    thick."""
    label = MOTORCYCLE if motor else BICYCLE
    r = (3.2 if motor else 2.6) * scale
    for wx in (cx - 5 * scale, cx + 5 * scale):
        ring = (cv.ellipse(base_y - r, wx, r, r)
                & ~cv.ellipse(base_y - r, wx, r - detail, r - detail))
        cv.paint(ring, (30, 30, 30), label)
    frame = cv.rect(base_y - 2 * r - detail, base_y - r, cx - 5 * scale, cx + 5 * scale)
    cv.paint(frame, (170, 40, 40) if motor else (40, 120, 170), label, rng, 5)
    if with_rider:
        _person(cv, rng, cx, base_y - 2 * r, scale * 0.9, RIDER)


def _person(cv: _Canvas, rng, cx, base_y, scale, label=PERSON):
    """Riders and pedestrians are drawn the same way; only what they stand on tells them apart."""
    h = 16 * scale
    body = cv.ellipse(base_y - 0.45 * h, cx, 0.38 * h, 0.14 * h)
    head = cv.ellipse(base_y - 0.9 * h, cx, 0.1 * h, 0.09 * h)
    cv.paint(body, rng.uniform(40, 200, 3), label, rng, 8)
    cv.paint(head, (220, 180, 150), label, rng, 4)


def _pole(cv: _Canvas, rng, x, base_y, top_y, width, detail: float = 1.0):
    """A pole ``width`` px wide (already multiplied by ``detail``); lamps and plates scale by
    ``detail``."""
    d = detail
    cv.paint(cv.rect(top_y, base_y, x, x + width), (110, 110, 115), POLE, rng, 4)
    kind = rng.integers(3)
    if kind == 0:  # traffic light: dark box with one lit lamp
        box = cv.rect(top_y, top_y + 8 * d, x - 2 * d, x + width + 2 * d)
        cv.paint(box, (25, 25, 25), LIGHT)
        lamp = int(rng.integers(3))
        cv.paint(cv.ellipse(top_y + (1.5 + 2.5 * lamp) * d, x + width / 2, d, d),
                 [(230, 40, 30), (230, 200, 30), (40, 220, 60)][lamp], LIGHT)
    elif kind == 1:  # traffic sign: small round or square plate
        s = rng.uniform(2.5, 4.0) * d
        if rng.random() < 0.5:
            plate = cv.ellipse(top_y + s, x + width / 2, s, s)
        else:
            plate = cv.rect(top_y, top_y + 2 * s, x + width / 2 - s, x + width / 2 + s)
        cv.paint(plate, [(200, 30, 30), (30, 60, 200), (240, 200, 20)][rng.integers(3)], SIGN)


def render_scene(rng: np.random.Generator, height: int, width: int, detail_scale: float = 1.0,
                 extra_pedestrians: int = 0):
    """Draw one street scene; returns (image uint8 HxWx3 RGB, label uint8 HxW).

    ``detail_scale`` multiplies the size of poles, lights, signs, fence bars, people and
    two-wheelers, and ``extra_pedestrians`` adds pedestrians (module docstring); 1 and 0 give the
    original scenes.
    """
    ds = float(detail_scale)
    cv = _Canvas(height, width)
    h, w = height, width
    horizon = rng.uniform(0.38, 0.5) * h
    warm = rng.random() < 0.5  # distant cue deciding bus (warm) vs truck (cold)
    # sky: vertical gradient; its tint is the only thing that tells buses from trucks
    top = np.array((250, 170, 110) if warm else (110, 160, 240), np.float32)
    bottom = np.array((250, 215, 170) if warm else (190, 215, 245), np.float32)
    t = (cv.yy / max(horizon, 1.0))[..., None]
    sky = cv.yy < horizon
    cv.img[sky] = ((1 - t) * top + t * bottom)[sky]
    cv.lbl[sky] = SKY
    ground_y = int(np.ceil(horizon + 0.06 * h))  # first ground row; buildings reach down to it
    # buildings along the horizon, with window grids
    x = -rng.uniform(0, 20)
    while x < w:
        bw = rng.uniform(0.12, 0.3) * w
        btop = horizon - rng.uniform(0.1, 0.35) * h
        if rng.random() < 0.2:  # a gap with trees instead
            trees = cv.ellipse(horizon - 0.08 * h, x + bw / 2, 0.12 * h, bw / 2)
            trees |= cv.rect(horizon - 0.08 * h, ground_y, x, x + bw)
            cv.paint(trees, (50, 120, 45), VEGETATION, rng, 18)
        else:
            base = rng.uniform(90, 170, 3)
            m = cv.rect(btop, ground_y, x, x + bw)
            cv.paint(m, base, BUILDING, rng, 10)
            win = m & ((cv.yy % 7) < 3) & (((cv.xx - int(x)) % 6) < 3) & (cv.yy > btop + 3)
            cv.img[win] = base * 0.45
        x += bw
    # walls and fences in front of the buildings
    if rng.random() < 0.5:
        x0 = rng.uniform(0, 0.7) * w
        cv.paint(cv.rect(horizon + 0.0 * h, horizon + 0.08 * h, x0, x0 + rng.uniform(0.1, 0.3) * w),
                 (160, 150, 135), WALL, rng, 6)
    if rng.random() < 0.6:
        x0 = rng.uniform(0, 0.7) * w
        # bars `ds` px wide every 4*ds px, rails every 5*ds px. The ground painted later covers the
        # band from ground_y down, so about 0.04*h shows at ds = 1; the band's top rises by 0.04*h
        # per unit of ds above 1, so that the visible fence keeps its share of bars and rails.
        top = horizon + 0.02 * h - 0.04 * h * (ds - 1)
        fence = cv.rect(top, horizon + 0.09 * h, x0, x0 + rng.uniform(0.15, 0.3) * w)
        bar, rail = int(round(4 * ds)), int(round(5 * ds))
        thick = int(round(ds))
        bars = fence & (((cv.xx % bar) < thick) | ((cv.yy - int(horizon)) % rail < thick))
        cv.paint(bars, (90, 110, 90), FENCE)
    # ground: road trapezoid towards a vanishing point, sidewalks and terrain beside it
    vx = rng.uniform(0.35, 0.65) * w
    ground = cv.yy >= ground_y
    frac = np.clip((cv.yy - horizon) / max(h - horizon, 1.0), 0, 1)
    half = (0.08 + 0.55 * frac) * w
    road = ground & (np.abs(cv.xx - vx) <= half)
    walk = ground & ~road & (np.abs(cv.xx - vx) <= half * 1.35)
    terrain = ground & ~road & ~walk
    cv.paint(terrain, (120, 140, 70), TERRAIN, rng, 12)
    cv.paint(walk, (175, 165, 160), SIDEWALK, rng, 8)
    cv.paint(road, (80, 80, 85), ROAD, rng, 7)
    dash = road & (np.abs(cv.xx - vx) < 1 + frac) & ((cv.yy // 4) % 2 == 0)
    cv.img[dash] = (235, 235, 235)  # lane marking is still road
    # trees on the terrain
    for _ in range(rng.integers(0, 3)):
        tx = rng.choice([rng.uniform(0, 0.15), rng.uniform(0.85, 1.0)]) * w
        ty = rng.uniform(horizon + 0.05 * h, 0.8 * h)
        cv.paint(cv.ellipse(ty, tx, 0.12 * h, 0.07 * w), (40, 110, 40), VEGETATION, rng, 20)
    # objects, far to near so nearer ones occlude
    objects = []
    for _ in range(rng.integers(2, 7)):
        depth = rng.uniform(0.15, 1.0)
        objects.append((depth, rng.random()))
    if rng.random() < 0.25:
        objects.append((rng.uniform(0.2, 0.5), 2.0))  # a train
    for _ in range(extra_pedestrians):
        objects.append((rng.uniform(0.15, 1.0), 0.7))  # 0.7: the pedestrian branch below
    for depth, kind in sorted(objects):
        base_y = horizon + 0.06 * h + depth * (h - horizon - 0.06 * h)
        scale = 0.35 + 0.9 * depth
        half_here = (0.08 + 0.55 * depth) * w
        on_road_x = vx + rng.uniform(-0.8, 0.8) * half_here
        side = rng.choice([-1, 1])
        on_walk_x = vx + side * half_here * rng.uniform(1.05, 1.3)
        if kind == 2.0:
            _vehicle(cv, rng, on_road_x, base_y, scale, TRAIN, (200, 200, 60))
        elif kind < 0.3:
            _vehicle(cv, rng, on_road_x, base_y, scale, CAR, rng.uniform(30, 220, 3))
        elif kind < 0.5:
            _vehicle(cv, rng, on_road_x, base_y, scale, BUS if warm else TRUCK, (215, 215, 220))
        elif kind < 0.65:
            _two_wheeler(cv, rng, on_road_x, base_y, scale * ds, motor=rng.random() < 0.5,
                         with_rider=rng.random() < 0.8, detail=ds)
        elif kind < 0.8:
            _person(cv, rng, on_walk_x, base_y, scale * ds)
        else:
            _two_wheeler(cv, rng, on_walk_x, base_y, scale * ds, motor=False, with_rider=False,
                         detail=ds)
    # poles with lights and signs, standing on the sidewalk (thin: 1-3 px times detail_scale)
    for _ in range(rng.integers(1, 5)):
        depth = rng.uniform(0.1, 1.0)
        base_y = horizon + 0.06 * h + depth * (h - horizon - 0.06 * h)
        half_here = (0.08 + 0.55 * depth) * w
        px = vx + rng.choice([-1, 1]) * half_here * 1.15
        _pole(cv, rng, px, base_y, base_y - (0.25 + 0.35 * depth) * h,
              (1 + int(depth * 2.5)) * ds, detail=ds)
    # global photometric jitter and sensor noise (labels unaffected)
    img = cv.img * rng.uniform(0.8, 1.15) + rng.normal(0, 4, cv.img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), cv.lbl


def render_index(cfg: SynthCityConfig, split: str, index: int):
    """Scene ``index`` of ``split`` under ``cfg`` (its own random stream): (image, label)."""
    rng = np.random.default_rng([cfg.seed, SPLITS[split], index])
    return render_scene(rng, cfg.height, cfg.width, cfg.detail_scale, cfg.extra_pedestrians)


def _write_png(path: str, array: np.ndarray):
    import cv2
    os.makedirs(osp.dirname(path), exist_ok=True)
    if array.ndim == 3:
        array = array[..., ::-1]  # RGB -> BGR for cv2
    if not cv2.imwrite(path, np.ascontiguousarray(array), [cv2.IMWRITE_PNG_COMPRESSION, 3]):
        raise OSError(f'could not write {path}')


def generate(cfg: SynthCityConfig, progress: bool = False, overwrite: bool = False) -> dict:
    """Write the dataset; returns {'train': n, 'val': n, 'test': n, 'digest': sha256 of all bytes}.

    ``cfg.root`` must be empty or missing; ``overwrite`` deletes the files an earlier generation
    recorded there first, and refuses a folder holding any other file. Before the first PNG,
    ``synthcity-manifest.json`` lists every file this generation writes, so an interrupted one
    can be overwritten too (``synthcity_files.prepare_root``). ``synthcity.json`` is written last
    and atomically, so a folder holding it holds a finished generation.
    """
    prepare_root(cfg.root, overwrite, generated_files(cfg.num_train, cfg.num_val, cfg.num_test))
    digest = hashlib.sha256()
    counts = {}
    for split, n in (('train', cfg.num_train), ('val', cfg.num_val), ('test', cfg.num_test)):
        for i, (irel, lrel) in enumerate(file_pairs(split, n)):
            img, lbl = render_index(cfg, split, i)
            ipath, lpath = osp.join(cfg.root, irel), osp.join(cfg.root, lrel)
            _write_png(ipath, img)
            _write_png(lpath, lbl)
            for p in (ipath, lpath):
                with open(p, 'rb') as f:
                    digest.update(f.read())
            if progress and (i + 1) % 50 == 0:
                print(f'  {split}: {i + 1}/{n}', flush=True)
        counts[split] = n
    counts['digest'] = digest.hexdigest()
    write_meta(cfg.root, dict(
        seed=cfg.seed, num_train=cfg.num_train, num_val=cfg.num_val, num_test=cfg.num_test,
        height=cfg.height,
        width=cfg.width, detail_scale=cfg.detail_scale, extra_pedestrians=cfg.extra_pedestrians,
        sha256=counts['digest']))
    return counts
