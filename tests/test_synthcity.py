import dataclasses
import json
import os
import re

import numpy as np
import pytest

from mmseg_ext.datasets.synthcity import BUS, SKY, TRUCK, SynthCityConfig, generate, render_scene


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


@pytest.mark.parametrize('bad,match',
                         [(dict(detail_scale=0.5), r'detail_scale must be in \[1, 6\]'),
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


# ------------------------------------------------ one complete generation per folder (issue #25) --
def _dataset(root, config=None):
    from test_clear_errors import BENCH, QUICK, _synthcity_dataset
    return _synthcity_dataset(root, {'quick': QUICK, 'bench': BENCH}[config or 'quick'])


def _pngs(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob('*.png'))


def test_regenerating_over_old_data_is_refused_or_clean(tmp_path):
    """The issue's case: 2+1 scenes at detail scale 3 into a folder holding 6+3 at scale 1."""
    from mmseg_ext.datasets.synthcity import read_meta
    root = tmp_path / 'data'
    generate(SynthCityConfig(root=str(root), num_train=6, num_val=3))
    old = _pngs(root)
    bench = SynthCityConfig(root=str(root), num_train=2, num_val=1, detail_scale=3,
                            extra_pedestrians=2)
    with pytest.raises(FileExistsError, match=r'is not empty \(it holds gtFine, leftImg8bit, '
                       r'synthcity-manifest\.json, synthcity\.json\).*Pass a new or empty folder, '
                       r'or --overwrite'):
        generate(bench)
    assert _pngs(root) == old and read_meta(str(root))['num_train'] == 6  # untouched
    generate(bench, overwrite=True)
    fresh = tmp_path / 'fresh'
    generate(dataclasses.replace(bench, root=str(fresh)))
    assert _pngs(root) == _pngs(fresh) and len(_pngs(root)) == 2 * 4  # nothing old is left
    for p in _pngs(fresh):
        assert (root / p).read_bytes() == (fresh / p).read_bytes()
    assert len(_dataset(root, 'bench')) == 2
    # --overwrite deletes only SynthCity's own entries; anything else makes it refuse
    (root / 'notes.txt').write_text('mine')
    with pytest.raises(FileExistsError,
                       match=r"holds files the generator did not write: notes\.txt"):
        generate(bench, overwrite=True)
    assert (root / 'notes.txt').read_text() == 'mine' and (root / 'synthcity.json').is_file()


def test_interrupted_generation_is_refused_on_load(tmp_path, monkeypatch):
    import mmseg_ext.datasets.synthcity as sc
    root = tmp_path / 'cut'
    write, calls = sc._write_png, []

    def write_then_die(path, array):
        if len(calls) == 5:
            raise RuntimeError('killed')
        calls.append(path)
        write(path, array)

    generate(SynthCityConfig(root=str(root), num_train=6, num_val=2, seed=1))  # a finished one
    monkeypatch.setattr(sc, '_write_png', write_then_die)
    with pytest.raises(RuntimeError, match='killed'):  # killed while overwriting it
        generate(SynthCityConfig(root=str(root), num_train=4, num_val=2), overwrite=True)
    # the old synthcity.json and files went first; the cut-short run wrote none
    assert len(_pngs(root)) == 5 and not (root / 'synthcity.json').exists()
    with pytest.raises(ValueError, match=r"has no synthcity\.json, which the generator writes "
                       r"last: its generation did not finish.*Regenerate it with `python tools/"
                       r"dataset_converters/synthcity\.py .* --overwrite`"):
        _dataset(root)
    monkeypatch.setattr(sc, '_write_png', write)
    generate(SynthCityConfig(root=str(root), num_train=4, num_val=2), overwrite=True)
    assert len(_dataset(root)) == 4


def test_counts_short_or_mixed_are_refused_on_load(tmp_path):
    root = tmp_path / 'data'
    generate(SynthCityConfig(root=str(root), num_train=3, num_val=1))
    assert len(_dataset(root)) == 3
    img = root / 'leftImg8bit' / 'val' / 'frankfurt' / 'frankfurt_000000_000019_leftImg8bit.png'
    # an image of another generation next to this one's (same size and settings)
    other = tmp_path / 'other'
    generate(SynthCityConfig(root=str(other), num_train=4, num_val=1, seed=5))
    extra = 'leftImg8bit/train/aachen/aachen_000001_000019_leftImg8bit.png'
    (root / extra).write_bytes((other / extra).read_bytes())
    with pytest.raises(ValueError, match=r'holds 4 images in leftImg8bit/train, its '
                       r'synthcity\.json lists 3: 1 are from another generation \(e\.g\. ' + extra):
        _dataset(root)
    (root / extra).unlink()
    img.unlink()  # the val split counts too: the folder must hold the whole generation
    with pytest.raises(FileNotFoundError, match=r'1 of 1 images are missing from leftImg8bit/val'):
        _dataset(root)


def test_data_of_another_size_is_refused_on_load(tmp_path):
    root = tmp_path / 'small'
    generate(SynthCityConfig(root=str(root), num_train=2, num_val=1, height=64, width=96))
    with pytest.raises(ValueError, match=r'generated with --height 64 --width 96, but this config '
                       r'expects --height 128 --width 256\. Generate the right data with `python '
                       r'tools/dataset_converters/synthcity\.py \S+`'):
        _dataset(root)
    # one file of another size inside a folder whose synthcity.json is right
    root = tmp_path / 'data'
    generate(SynthCityConfig(root=str(root), num_train=2, num_val=1))
    lbl = 'gtFine/train/bochum/bochum_000000_000019_gtFine_labelTrainIds.png'
    (root / lbl).write_bytes((tmp_path / 'small' / lbl).read_bytes())
    with pytest.raises(ValueError, match=re.escape(str(root / lbl)) + r' is 64x96 \(HxW\), its '
                       r'synthcity\.json says 128x256'):
        _dataset(root)


def test_truncated_label_png_is_named(tmp_path):
    root = tmp_path / 'data'
    generate(SynthCityConfig(root=str(root), num_train=2, num_val=1))
    lbl = root / 'gtFine' / 'val' / 'frankfurt' / 'frankfurt_000000_000019_gtFine_labelTrainIds.png'
    data = lbl.read_bytes()
    lbl.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match=re.escape(str(lbl)) + r' is truncated \(it lacks the PNG '
                       r'end marker\).*--overwrite'):
        _dataset(root)
    lbl.write_bytes(b'')
    with pytest.raises(ValueError, match=re.escape(str(lbl)) + ' is not a PNG file'):
        _dataset(root)


@pytest.mark.parametrize('text,match', [
    ('{"seed": 0, "num_train": ', 'is not valid JSON'),
    ('[1, 2]', 'holds a list, not an object of settings'),
    ('{"seed": 0, "num_train": 2, "num_val": 1, "height": 128}', r'has width=None, not an integer'),
    ('{"seed": 0, "num_train": "2", "num_val": 1, "height": 128, "width": 256}',
     r"has num_train='2', not an integer"),
])
def test_corrupt_synthcity_json_is_named(tmp_path, text, match):
    from mmseg_ext.datasets.synthcity import read_meta
    root = tmp_path / 'data'
    generate(SynthCityConfig(root=str(root), num_train=2, num_val=1))
    (root / 'synthcity.json').write_text(text)
    for load in (lambda: read_meta(str(root)), lambda: _dataset(root)):
        with pytest.raises(ValueError, match=re.escape(str(root / 'synthcity.json')) + ' ' + match):
            load()


@pytest.mark.parametrize('bad,err,match', [
    (dict(seed=-1), ValueError, r'seed must be >= 0 .*got -1'),
    (dict(seed=True), TypeError, r'seed must be an integer, got True'),
    (dict(seed=1.5), TypeError, r'seed must be an integer'),
    (dict(height=128.0), TypeError, r'height must be an integer'),
])
def test_bad_seed_and_types(bad, err, match):
    with pytest.raises(err, match=match):
        SynthCityConfig(**bad)


def test_converter_refuses_bad_seed_and_a_non_empty_folder(tmp_path, monkeypatch, capsys):
    """tools/dataset_converters/synthcity.py (its main(), in this process): argparse errors that
    say what to change, exit status 2, nothing written."""
    import importlib.util
    import sys
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location(
        'synthcity_converter', f'{repo}/tools/dataset_converters/synthcity.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    small = ['--num-train', '1', '--num-val', '1', '--height', '32', '--width', '32']

    def main(*args):
        monkeypatch.setattr(sys, 'argv', ['synthcity.py', *args, *small])
        with pytest.raises(SystemExit) as stop:
            tool.main()
        return stop.value.code, capsys.readouterr().err

    code, err = main(str(tmp_path / 'a'), '--seed', '-1')
    assert code == 2 and 'error: seed must be >= 0' in err, err
    assert not (tmp_path / 'a').exists()
    generate(SynthCityConfig(root=str(tmp_path / 'b'), num_train=1, num_val=1, height=32, width=32))
    code, err = main(str(tmp_path / 'b'), '--seed', '1')
    assert code == 2 and 'is not empty' in err and '--overwrite' in err, err
    monkeypatch.setattr(sys, 'argv', ['synthcity.py', str(tmp_path / 'b'), '--seed', '1',
                                      '--overwrite', *small])
    tool.main()
    assert json.loads((tmp_path / 'b' / 'synthcity.json').read_text())['seed'] == 1


def test_synthcity_json_is_written_atomically(tmp_path, monkeypatch):
    """A write of synthcity.json that fails half-way leaves no synthcity.json (only its .tmp,
    which --overwrite removes), so the folder is refused rather than read with half a file."""
    import mmseg_ext.datasets.synthcity_files as files
    root = tmp_path / 'data'

    dump = files.json.dump

    def dump_half(meta, f, **kw):  # synthcity.json only (the manifest is written before the PNGs)
        if not f.name.endswith('synthcity.json.tmp'):
            return dump(meta, f, **kw)
        f.write('{"seed": 0, "num_tr')
        raise OSError('disk full')

    monkeypatch.setattr(files.json, 'dump', dump_half)
    with pytest.raises(OSError, match='disk full'):
        generate(SynthCityConfig(root=str(root), num_train=2, num_val=1))
    assert not (root / 'synthcity.json').exists() and (root / 'synthcity.json.tmp').exists()
    with pytest.raises(ValueError, match='has no synthcity.json'):
        _dataset(root)
    monkeypatch.undo()
    generate(SynthCityConfig(root=str(root), num_train=2, num_val=1), overwrite=True)
    assert sorted(p.name for p in root.iterdir()) == ['gtFine', 'leftImg8bit',
                                                      'synthcity-manifest.json', 'synthcity.json']
    assert len(_dataset(root)) == 2


def test_test_split_is_held_out_with_its_own_stream(tmp_path):
    """Issue #37: a test split drawn with its own random key (split id 2), never a val or train
    scene; train and val are the bytes they were before it existed (their keys are unchanged)."""
    import cv2

    from mmseg_ext.datasets.synthcity import SPLITS, read_meta, render_index
    cfg = SynthCityConfig(root=str(tmp_path / 'd'), num_train=2, num_val=3, height=48, width=96)
    assert cfg.num_test == cfg.num_val == 3  # default: as many as val
    assert SPLITS == {'train': 0, 'val': 1, 'test': 2}
    out = generate(cfg)
    assert (out['train'], out['val'], out['test']) == (2, 3, 3)
    assert read_meta(cfg.root)['num_test'] == 3
    imgs = {split: [cv2.imread(str(p))[..., ::-1] for p in sorted(
        (tmp_path / 'd' / 'leftImg8bit' / split).rglob('*.png'))] for split in SPLITS}
    assert len(imgs['test']) == 3
    for i, img in enumerate(imgs['test']):
        assert np.array_equal(img, render_index(cfg, 'test', i)[0])
        assert all(not np.array_equal(img, other) for s in ('train', 'val') for other in imgs[s])
    # the val scenes are those of the key [seed, 1, index], as before the test split existed
    assert np.array_equal(imgs['val'][0], render_scene(np.random.default_rng([0, 1, 0]), 48, 96)[0])
    with pytest.raises(ValueError, match=r'num_test must be in \[1, 100000\]'):
        SynthCityConfig(num_test=0)


def test_data_without_a_test_split_says_how_to_regenerate(tmp_path):
    """Data generated before the test split (synthcity.json without num_test, no test folders):
    train and val still build; the test split is refused with the command that adds it."""
    import shutil

    from mmseg_ext.datasets.synthcity_dataset import SynthCityDataset
    root = tmp_path / 'old'
    generate(SynthCityConfig(root=str(root), num_train=1, num_val=1, height=48, width=96))
    for folder in ('leftImg8bit', 'gtFine'):
        shutil.rmtree(root / folder / 'test')
    meta = json.loads((root / 'synthcity.json').read_text())
    del meta['num_test']
    (root / 'synthcity.json').write_text(json.dumps(meta))

    def build(split):
        return SynthCityDataset(data_root=str(root), image_size=(48, 96), pipeline=[],
                                data_prefix=dict(img_path=f'leftImg8bit/{split}',
                                                 seg_map_path=f'gtFine/{split}'))
    assert len(build('val')) == 1
    with pytest.raises(FileNotFoundError, match=r'leftImg8bit/test does not exist.*--overwrite'):
        build('test')


@pytest.mark.parametrize('config', ['quickstart/fcn_r18tiny-d8_1xb8-1k_synthcity-128x256.py',
                                    'benchmark/fcn_r18tiny-d8_1xb8-4k_synthcity-bench-128x256.py'])
def test_configs_test_on_the_test_split_and_validate_on_val(config):
    from mmengine.config import Config
    cfg = Config.fromfile(os.path.join(os.path.dirname(os.path.dirname(__file__)), 'configs',
                                       config))
    assert cfg.val_dataloader.dataset.data_prefix.img_path == 'leftImg8bit/val'
    test = cfg.test_dataloader.dataset
    assert test.data_prefix == dict(img_path='leftImg8bit/test', seg_map_path='gtFine/test')
    assert (test.data_root, test.get('detail_scale')) == (
        cfg.val_dataloader.dataset.data_root, cfg.val_dataloader.dataset.get('detail_scale'))
