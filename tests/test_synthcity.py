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
