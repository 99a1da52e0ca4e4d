"""SynthCity's --overwrite deletes only the generator's own files, and the dataset's errors say
what to change (issue #36, items 6 and 9): a suggested command that works when pasted, a label
PNG with a corrupt data block named at dataset build, synthcity.json fields out of bounds."""
import importlib.util
import json
import math
import os
import re
import shlex
import struct
import sys
import time
import zlib

import pytest

from mmseg_ext.datasets.synthcity import SynthCityConfig, generate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(num_train=2, num_val=1, height=32, width=32)
TINY_ARGS = ['--num-train', '2', '--num-val', '1', '--height', '32', '--width', '32']
LBL = 'gtFine/train/aachen/aachen_000000_000019_gtFine_labelTrainIds.png'


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob('*') if not p.is_dir())


def _converter(monkeypatch, capsys):
    """tools/dataset_converters/synthcity.py's main() in this process: (exit code, stderr)."""
    spec = importlib.util.spec_from_file_location(
        'synthcity_converter', f'{REPO}/tools/dataset_converters/synthcity.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)

    def run(*args):
        monkeypatch.setattr(sys, 'argv', ['synthcity.py', *args])
        try:
            tool.main()
        except SystemExit as stop:
            return stop.code, capsys.readouterr().err
        return 0, capsys.readouterr().err
    return run


def _dataset(root, split='train', size=(32, 32)):
    from mmseg_ext.datasets.synthcity_dataset import SynthCityDataset
    return SynthCityDataset(data_root=str(root), image_size=size, pipeline=[],
                            data_prefix=dict(img_path=f'leftImg8bit/{split}',
                                             seg_map_path=f'gtFine/{split}'))


# ------------------------------------------------------------------------------- item 6 --
def test_overwrite_refuses_a_folder_of_the_users_own_data(tmp_path, monkeypatch, capsys):
    """The issue's case: a folder holding only the user's leftImg8bit/ and gtFine/ (here under
    Cityscapes' names, which SynthCity's match) and no SynthCity record: refused, none deleted."""
    root = tmp_path / 'cityscapes'
    mine = {'leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png': b'my image',
            LBL: b'my labels', 'gtFine/val/frankfurt/notes.txt': b'mine'}
    for rel, data in mine.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    code, err = _converter(monkeypatch, capsys)(str(root), '--overwrite', *TINY_ARGS)
    assert code == 2, err
    assert re.search(re.escape(repr(str(root))) + r' holds files the generator did not write: '
                     r'gtFine/train/aachen/aachen_000000_000019_gtFine_labelTrainIds\.png, '
                     r'gtFine/val/frankfurt/notes\.txt, leftImg8bit/.* \(it has no valid '
                     r'synthcity-manifest\.json or synthcity\.json.*Move those files out of the '
                     r'folder', ' '.join(err.split())), err
    assert {rel: (root / rel).read_bytes() for rel in mine} == mine and len(_files(root)) == 3


def test_overwrite_refuses_user_files_inside_generated_folders(tmp_path):
    root = tmp_path / 'data'
    generate(SynthCityConfig(root=str(root), **TINY))
    before = {rel: (root / rel).read_bytes() for rel in _files(root)}
    (root / 'leftImg8bit/train/aachen/mine.png').write_bytes(b'mine')
    (root / 'gtFine/notes.txt').write_text('mine')
    with pytest.raises(FileExistsError, match=r"holds files the generator did not write: "
                       r"gtFine/notes\.txt, leftImg8bit/train/aachen/mine\.png\. --overwrite "
                       r"deletes only the files its synthcity-manifest\.json / synthcity\.json"):
        generate(SynthCityConfig(root=str(root), seed=1, **TINY), overwrite=True)
    assert {rel: (root / rel).read_bytes() for rel in before} == before  # nothing deleted
    # a linked folder is not the generator's either: refused, never followed
    (root / 'leftImg8bit/train/aachen/mine.png').unlink()
    (root / 'gtFine/notes.txt').unlink()
    theirs = tmp_path / 'theirs'
    theirs.mkdir()
    (theirs / 'keep.txt').write_text('keep')
    (root / 'leftImg8bit/link').symlink_to(theirs, target_is_directory=True)
    with pytest.raises(FileExistsError, match=r'did not write: leftImg8bit/link\.'):
        generate(SynthCityConfig(root=str(root), seed=1, **TINY), overwrite=True)
    (root / 'leftImg8bit/link').unlink()
    # only the generator's files left (and an empty folder it did not make, which stays)
    (root / 'gtFine/empty').mkdir()
    generate(SynthCityConfig(root=str(root), seed=1, num_train=1, num_val=1, height=32, width=32),
             overwrite=True)
    fresh = tmp_path / 'fresh'
    generate(SynthCityConfig(root=str(fresh), seed=1, num_train=1, num_val=1, height=32, width=32))
    assert _files(root) == _files(fresh) and len(_files(root)) == 8  # 6 PNGs, 2 records
    assert (root / 'gtFine/empty').is_dir() and not (root / 'gtFine/train/bochum').exists()
    assert (theirs / 'keep.txt').read_text() == 'keep'


def test_overwrite_of_an_interrupted_generation_or_overwrite(tmp_path, monkeypatch):
    """Killed while writing PNGs, or while --overwrite deletes: every file left is in the manifest
    on disk, so --overwrite clears it; data from before the manifest existed is read from its
    synthcity.json."""
    import mmseg_ext.datasets.synthcity as sc
    import mmseg_ext.datasets.synthcity_files as files
    from mmseg_ext.datasets.synthcity_files import foreign_files
    root, fresh = tmp_path / 'data', tmp_path / 'fresh'
    generate(SynthCityConfig(root=str(fresh), **TINY))
    write = sc._write_png

    def die_after(n, real):
        calls = []

        def once(*args):
            if len(calls) == n:
                raise RuntimeError('killed')
            calls.append(args)
            return real(*args)
        return once

    monkeypatch.setattr(sc, '_write_png', die_after(3, write))  # a first generation, cut short
    with pytest.raises(RuntimeError, match='killed'):
        generate(SynthCityConfig(root=str(root), num_train=6, num_val=2, height=32, width=32))
    assert len(_files(root)) == 4 and foreign_files(str(root)) == []  # 3 PNGs and the manifest
    monkeypatch.setattr(sc, '_write_png', write)
    generate(SynthCityConfig(root=str(root), num_train=6, num_val=2, height=32, width=32),
             overwrite=True)
    monkeypatch.setattr(files.os, 'remove', die_after(5, os.remove))  # an overwrite, cut short
    with pytest.raises(RuntimeError, match='killed'):
        generate(SynthCityConfig(root=str(root), **TINY), overwrite=True)
    assert not (root / 'synthcity.json').exists() and foreign_files(str(root)) == []
    monkeypatch.undo()
    generate(SynthCityConfig(root=str(root), **TINY), overwrite=True)
    assert _files(root) == _files(fresh)
    for rel in _files(fresh):
        assert (root / rel).read_bytes() == (fresh / rel).read_bytes()
    # a folder from before the manifest existed: its synthcity.json says what it wrote
    (root / 'synthcity-manifest.json').unlink()
    generate(SynthCityConfig(root=str(root), num_train=1, num_val=1, height=32, width=32),
             overwrite=True)
    assert len(_files(root)) == 8 and len(_dataset(root)) == 1  # 6 PNGs, 2 records


def test_a_damaged_manifest_cannot_point_overwrite_elsewhere(tmp_path):
    root = tmp_path / 'data'
    generate(SynthCityConfig(root=str(root), **TINY))
    (tmp_path / 'outside.txt').write_text('keep')
    manifest = root / 'synthcity-manifest.json'
    listed = json.loads(manifest.read_text())['files']
    manifest.write_text(json.dumps(dict(files=listed + ['../outside.txt', '/etc/hostname',
                                                        'leftImg8bit/../../outside.txt'])))
    generate(SynthCityConfig(root=str(root), seed=1, **TINY), overwrite=True)
    assert (tmp_path / 'outside.txt').read_text() == 'keep'


# --------------------------------------------------------------------------- item 9 --
def _suggested(err):
    """The command between backticks in a dataset error, as argv after the script's name."""
    cmd = re.search(r'`(python tools/dataset_converters/synthcity\.py [^`]*)`', str(err)).group(1)
    assert '--height 32 --width 32' in cmd, cmd  # the size the dataset expects
    return shlex.split(cmd)[2:]


def test_interrupted_folders_suggested_command_works_when_pasted(tmp_path, monkeypatch, capsys):
    """Killed in the train split: the val dataset finds no leftImg8bit/val; the command it gives
    must not be refused (it was: no --overwrite, and the folder is not empty)."""
    import mmseg_ext.datasets.synthcity as sc
    root = tmp_path / 'cut'
    write = sc._write_png

    def die(path, array):
        if '/val/' in path:
            raise RuntimeError('killed')
        write(path, array)

    monkeypatch.setattr(sc, '_write_png', die)
    with pytest.raises(RuntimeError, match='killed'):
        generate(SynthCityConfig(root=str(root), **TINY))
    monkeypatch.setattr(sc, '_write_png', write)
    with pytest.raises(FileNotFoundError, match=r'leftImg8bit/val does not exist') as err:
        _dataset(root, 'val')
    argv = _suggested(err.value)
    assert argv[-1] == '--overwrite', argv
    run = _converter(monkeypatch, capsys)
    code, out = run(*argv, '--num-train', '2', '--num-val', '1')  # fewer images than the default
    assert code == 0, out
    assert len(_dataset(root, 'val')) == 1 and len(_dataset(root)) == 2
    # a folder of empty split folders (made by hand) takes --overwrite too
    empty = tmp_path / 'empty'
    for folder in ('leftImg8bit', 'gtFine'):
        (empty / folder / 'val').mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match='holds no') as err:
        _dataset(empty, 'val')
    code, out = run(*_suggested(err.value), '--num-train', '1', '--num-val', '1')
    assert code == 0, out
    # one holding a user's file: --overwrite would be refused, so the error says to move it first
    (root / 'synthcity.json').unlink()
    (root / 'gtFine' / 'mine.txt').write_text('mine')
    with pytest.raises(ValueError, match=r"has no synthcity\.json.*new folder with `python "
                       r"tools/dataset_converters/synthcity\.py NEW_FOLDER .*move the file the "
                       r"generator did not write out of .* \(gtFine/mine\.txt: --overwrite "
                       r"refuses"):
        _dataset(root)


def _chunks(data):
    pos = 8
    while pos < len(data):
        length, name = struct.unpack('>I4s', data[pos:pos + 8])
        yield pos, name, data[pos + 8:pos + 8 + length]
        pos += 12 + length


def _with_idat(data, idat):
    """``data`` (a PNG of one IDAT chunk) with that chunk's data replaced, CRC made right."""
    (pos, _, old), = [c for c in _chunks(data) if c[1] == b'IDAT']
    chunk = struct.pack('>I4s', len(idat), b'IDAT') + idat + struct.pack('>I', zlib.crc32(
        b'IDAT' + idat))
    return data[:pos] + chunk + data[pos + 12 + len(old):]


def test_label_png_with_a_corrupt_data_block_is_named_at_build(tmp_path):
    import cv2
    root = tmp_path / 'data'
    generate(SynthCityConfig(root=str(root), **TINY))
    lbl = root / LBL
    good = lbl.read_bytes()
    (pos, _, idat), = [c for c in _chunks(good) if c[1] == b'IDAT']
    raw = zlib.decompress(idat)
    stride = 1 + 32
    bad_filter = bytearray(raw)
    bad_filter[stride * 5] = 7  # row 5's filter type
    cases = {
        # bytes flipped inside the data block, length and end marker kept: its CRC does not match
        'flipped': good[:pos + 10] + bytes(b ^ 0xFF for b in good[pos + 10:pos + 14])
        + good[pos + 14:],
        # a damaged zlib stream behind a right CRC
        'deflate': _with_idat(good, idat[:2] + b'\xff' * (len(idat) - 6) + idat[-4:]),
        'short': _with_idat(good, zlib.compress(raw[:-stride])),
        'filter': _with_idat(good, zlib.compress(bytes(bad_filter))),
    }
    match = {'flipped': r'the CRC of its IDAT chunk at byte 33 does not match its data',
             'deflate': r'its image data does not inflate',
             'short': r'its image data inflates to 1023 bytes, not the 1056 of 32 rows',
             'filter': r'a row has an invalid PNG filter type'}
    for case, data in cases.items():
        lbl.write_bytes(data)
        assert data.endswith(good[-12:]) and data[:33] == good[:33]  # header and end marker intact
        with pytest.raises(ValueError, match=re.escape(str(lbl)) + r' is corrupt: ' + match[case]
                           + r'.*Regenerate it with `.*--overwrite`'):
            _dataset(root, 'val')  # every split's files are checked, whichever split is built
    # what training would have met: the decoder fails, the loader does not say which file
    lbl.write_bytes(cases['flipped'])
    assert cv2.imread(str(lbl), cv2.IMREAD_UNCHANGED) is None
    lbl.write_bytes(good)
    assert len(_dataset(root)) == 2


@pytest.mark.parametrize('key,value,match', [
    ('num_train', 1_000_000_000, r'num_train=1000000000, out of range: the number of train images '
     r'is 1 to 100000 \(MAX_SCENES in mmseg_ext/datasets/synthcity_files\.py\)'),
    ('num_val', 100_001, r'num_val=100001, out of range: the number of val images is 1 to 100000'),
    ('num_train', 0, r'num_train=0, out of range'),
    ('height', 10 ** 6, r'height=1000000, out of range: the image height in pixels is 32 to 4096'),
    ('width', 8, r'width=8, out of range'),
    ('seed', -1, r'seed=-1, out of range: the seed is >= 0'),
    ('detail_scale', 7.5, r'detail_scale=7\.5, out of range: the --detail-scale is 1 to 6'),
    ('detail_scale', math.nan, r'detail_scale=nan, out of range'),
    ('extra_pedestrians', 9, r'extra_pedestrians=9, out of range'),
])
def test_synthcity_json_fields_out_of_bounds_are_named_up_front(tmp_path, key, value, match):
    from mmseg_ext.datasets.synthcity import read_meta
    root = tmp_path / 'data'
    generate(SynthCityConfig(root=str(root), **TINY))
    meta = json.loads((root / 'synthcity.json').read_text())
    meta[key] = value
    (root / 'synthcity.json').write_text(json.dumps(meta))
    start = time.perf_counter()
    for load in (lambda: read_meta(str(root)), lambda: _dataset(root)):
        with pytest.raises(ValueError, match=re.escape(str(root / 'synthcity.json')) + ' has '
                           + match):
            load()
    assert time.perf_counter() - start < 10  # was a MemoryError after 48 s for num_train 1e9


def test_generator_refuses_what_synthcity_json_would_be_refused_for(tmp_path, monkeypatch, capsys):
    code, err = _converter(monkeypatch, capsys)(str(tmp_path / 'a'), '--num-train', '1000000000')
    assert code == 2 and 'num_train and num_val must be in [1, 100000] (MAX_SCENES)' in err, err
    with pytest.raises(ValueError, match=r'height/width must be in \[32, 4096\]'):
        SynthCityConfig(height=4097)
    assert not (tmp_path / 'a').exists()
