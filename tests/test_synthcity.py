import os

import numpy as np
import pytest

from mmseg_ext.datasets.synthcity import (BUS, SKY, TRUCK, SynthCityConfig, generate,
                                          render_scene)


def test_generator_is_deterministic(tmp_path):
    kw = dict(num_train=3, num_val=2, height=48, width=96)
    a = generate(SynthCityConfig(root=str(tmp_path / 'a'), seed=3, **kw))
    b = generate(SynthCityConfig(root=str(tmp_path / 'b'), seed=3, **kw))
    c = generate(SynthCityConfig(root=str(tmp_path / 'c'), seed=4, **kw))
    assert a == b
    assert a['digest'] != c['digest']
    # same bytes, file by file
    for p in (tmp_path / 'a').rglob('*.png'):
        assert p.read_bytes() == (tmp_path / 'b' / p.relative_to(tmp_path / 'a')).read_bytes()


def test_scenes_are_a_benchmark_not_noise():
    counts = np.zeros(256, np.int64)
    for i in range(60):
        img, lbl = render_scene(np.random.default_rng([0, 0, i]), 128, 256)
        assert img.shape == (128, 256, 3) and img.dtype == np.uint8
        assert lbl.shape == (128, 256)
        assert set(np.unique(lbl)) <= set(range(19)) | {255}
        counts += np.bincount(lbl.ravel(), minlength=256)
        # context-only classes: buses and trucks never share a scene; the sky tint tells which
        assert not ((lbl == BUS).any() and (lbl == TRUCK).any())
        if (lbl == BUS).any() or (lbl == TRUCK).any():
            sky = img[lbl == SKY].astype(float).mean(0)
            warm = sky[0] > sky[2]
            assert warm == (lbl == BUS).any()
    assert (counts[:19] > 0).all(), f'classes never drawn: {np.where(counts[:19] == 0)[0]}'
    frac = counts[:19] / counts[:19].sum()
    assert frac.max() < 0.5  # no single class dominates
    assert counts[255] == 0  # every pixel is labelled


@pytest.mark.parametrize('bad', [dict(height=8), dict(num_train=0)])
def test_bad_config(bad):
    with pytest.raises(ValueError):
        SynthCityConfig(**bad)


def test_loads_through_stock_cityscapes_dataset(synthcity_root):
    from mmseg.datasets import CityscapesDataset
    from mmseg.utils import register_all_modules
    register_all_modules()
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                dict(type='PackSegInputs')]
    for split, n in (('train', 8), ('val', 4)):
        ds = CityscapesDataset(
            data_root=synthcity_root,
            data_prefix=dict(img_path=f'leftImg8bit/{split}', seg_map_path=f'gtFine/{split}'),
            pipeline=pipeline)
        assert len(ds) == n
        sample = ds[0]
        assert tuple(sample['inputs'].shape) == (3, 128, 256)
        seg = sample['data_samples'].gt_sem_seg.data
        assert tuple(seg.shape) == (1, 128, 256)
        assert int(seg.max()) < 19


SMALL_THINGS = (5, 6, 7, 11, 12, 17, 18)  # pole, light, sign, person, rider, motorcycle, bicycle


def _counts(detail_scale, n=40):
    counts = np.zeros(256, np.int64)
    for i in range(n):
        _, lbl = render_scene(np.random.default_rng([0, 0, i]), 128, 256, detail_scale)
        counts += np.bincount(lbl.ravel(), minlength=256)
    return counts


def test_detail_scale_one_is_the_default():
    for i in range(5):
        a = render_scene(np.random.default_rng([0, 0, i]), 128, 256)
        b = render_scene(np.random.default_rng([0, 0, i]), 128, 256, 1.0)
        assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_detail_scale_keeps_the_layout_and_enlarges_small_things():
    for i in range(10):
        img1, lbl1 = render_scene(np.random.default_rng([0, 0, i]), 128, 256, 1.0)
        img3, lbl3 = render_scene(np.random.default_rng([0, 0, i]), 128, 256, 3.0)
        # the same horizon, sky and buildings: they are drawn before anything the scale changes,
        # so the sky differs only where a (larger) small thing now covers it
        small1, small3 = np.isin(lbl1, SMALL_THINGS), np.isin(lbl3, SMALL_THINGS)
        assert np.array_equal((lbl1 == SKY) & ~small1 & ~small3, (lbl3 == SKY) & ~small1 & ~small3)
        assert (lbl1 == SKY).sum() > 1000
    c1, c3 = _counts(1.0), _counts(3.0)
    for c in SMALL_THINGS:  # widths x3, areas up to x9, less what occlusion and borders take
        assert c3[c] > 2 * c1[c] > 0, (c, c1[c], c3[c])
    for c in (0, 2, 10):  # road, building, sky: the layout is the same
        assert abs(c3[c] - c1[c]) < 0.1 * c1[c]
    assert c3[4] > 1.5 * c1[4]  # fence: taller band, thicker bars


def test_poles_are_detail_scale_pixels_wide_at_least():
    widths = []
    for i in range(30):
        _, lbl = render_scene(np.random.default_rng([0, 0, i]), 128, 256, 3.0)
        pole = lbl == 5
        for row in pole[pole.any(1)]:
            runs = np.diff(np.flatnonzero(np.diff(np.r_[0, row.astype(np.int8), 0])))[::2]
            widths += list(runs)
    widths = np.array(widths)
    assert len(widths) > 100
    # a pole is (1 + int(2.5 depth)) * 3 px wide; narrower runs only where something occludes it
    # or the image border cuts it
    assert np.median(widths) >= 3 and (widths >= 3).mean() > 0.9


def test_extra_pedestrians():
    c0, c2 = _counts(3.0), np.zeros(256, np.int64)
    for i in range(40):
        a = render_scene(np.random.default_rng([0, 0, i]), 128, 256, 3.0, 0)
        b = render_scene(np.random.default_rng([0, 0, i]), 128, 256, 3.0)
        assert all(np.array_equal(x, y) for x, y in zip(a, b))  # 0 is the default
        _, lbl = render_scene(np.random.default_rng([0, 0, i]), 128, 256, 3.0, 2)
        c2 += np.bincount(lbl.ravel(), minlength=256)
    person = 11
    assert c2[person] > 3 * c0[person] > 0  # about 0.6 pedestrians per scene before, 2.6 after
    for c in (0, 2, 10):  # road, building, sky: the layout is the same
        assert abs(c2[c] - c0[c]) < 0.1 * c0[c]


def test_generate_writes_its_settings(tmp_path):
    from mmseg_ext.datasets.synthcity import read_meta
    out = generate(SynthCityConfig(root=str(tmp_path), num_train=1, num_val=1, height=48,
                                   width=96, detail_scale=2.5, extra_pedestrians=1))
    meta = read_meta(str(tmp_path))
    assert meta['detail_scale'] == 2.5 and meta['extra_pedestrians'] == 1
    assert meta['sha256'] == out['digest']
    assert read_meta(str(tmp_path / 'nothing')) is None


@pytest.mark.parametrize('bad,match', [(dict(detail_scale=0.5), r'detail_scale must be in \[1, 6\]'),
                                       (dict(detail_scale=7.0), r'detail_scale must be in \[1, 6\]'),
                                       (dict(extra_pedestrians=-1), r'extra_pedestrians must be in'),
                                       (dict(extra_pedestrians=9), r'extra_pedestrians must be in')])
def test_bad_generator_settings(bad, match):
    with pytest.raises(ValueError, match=match):
        SynthCityConfig(**bad)


def test_converter_preview_writes_only_the_figure(tmp_path, tool_env):
    import subprocess
    import sys

    import cv2
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path / 'p.png'
    subprocess.run([sys.executable, f'{repo}/tools/dataset_converters/synthcity.py', '--preview',
                    str(out), '--detail-scale', '3', '--extra-pedestrians', '2', '--height', '48',
                    '--width', '96'], env=tool_env, check=True, cwd=tmp_path)
    assert cv2.imread(str(out)).shape == (4 * 48, 2 * 96, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['p.png']
