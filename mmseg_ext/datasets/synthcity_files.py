"""SynthCity on disk: its file names, ``synthcity.json``, the manifest of the files the generator
writes, and the checks that a folder holds exactly one complete generation.

The generator (:func:`mmseg_ext.datasets.synthcity.generate`) refuses a non-empty output folder
unless told to overwrite it, and writes ``synthcity.json`` last and atomically: a folder with a
``synthcity.json`` holds a generation that finished. :func:`check_files` then checks that the images
and label maps are exactly those that generation wrote: the names and counts of ``synthcity.json``,
its size, no file cut short and none whose data is damaged (every chunk's CRC; the zlib stream and
PNG filter bytes of the label maps; no pixel is decoded, see :func:`_png_scan` for the cost).

What ``--overwrite`` may delete: only files the generator recorded as its own. Before it writes any
PNG, the generator writes ``synthcity-manifest.json`` (atomically) listing every file it is about to
write, so a generation killed at any point after that leaves a folder whose every PNG is listed; a
kill before it leaves no PNG. ``--overwrite`` reads that list (and, for folders generated before the
manifest existed, the files their ``synthcity.json`` counts name) and refuses a folder that holds
any other file -- a user file next to the data or inside ``leftImg8bit/`` or ``gtFine/``, or a
link -- naming the folder and a few of those files, before deleting anything; it then removes the
folders its files were in once empty (empty folders it did not make are harmless and stay). File
names alone are not trusted: SynthCity's names are real Cityscapes names
(``aachen_000000_000019_...``), so a folder of the user's Cityscapes data would match them. While it
deletes, the manifest on disk lists every file still there (it is first rewritten to cover the old
files and the new ones), so an overwrite killed half-way can itself be overwritten.
"""
from __future__ import annotations

import json
import os
import os.path as osp
import struct
import zlib
from typing import Iterable, Iterator, Optional

META_FILE = 'synthcity.json'  # generation settings, written next to leftImg8bit/ and gtFine/
MANIFEST_FILE = 'synthcity-manifest.json'  # every file the generator writes, written before them
CITIES = {'train': ('aachen', 'bochum', 'cologne'), 'val': ('frankfurt', ), 'test': ('berlin', )}
IMG_DIR, IMG_SUFFIX = 'leftImg8bit', '_leftImg8bit.png'
LBL_DIR, LBL_SUFFIX = 'gtFine', '_gtFine_labelTrainIds.png'
# files at the root the generator always owns: its records, their temporary files, and the marker
# quickstart.sh wrote before synthcity.json existed
OWN_ROOT_FILES = (META_FILE, META_FILE + '.tmp', MANIFEST_FILE, MANIFEST_FILE + '.tmp', '.complete')
# bounds of the generator's settings (SynthCityConfig) and of synthcity.json's fields (read_meta):
# at most MAX_SCENES images per split (6.3 GB at 128x256) and MAX_SIDE pixels a side
MAX_SCENES, MIN_SIDE, MAX_SIDE = 100_000, 32, 4096
DETAIL_SCALE_RANGE, EXTRA_PEDESTRIANS_RANGE = (1.0, 6.0), (0, 8)
# synthcity.json's keys and types; detail_scale and extra_pedestrians came later (defaults: before)
META_REQUIRED = dict(seed=int, num_train=int, num_val=int, height=int, width=int)
# (num_test 0: data generated before the test split existed; building its test split says to
# regenerate)
META_OPTIONAL = dict(detail_scale=(float, 1.0), extra_pedestrians=(int, 0), num_test=(int, 0))
# the range of each field, and what it is
META_RANGE = dict(seed=(0, None, 'the seed'),
                  num_train=(1, MAX_SCENES, 'the number of train images'),
                  num_val=(1, MAX_SCENES, 'the number of val images'),
                  num_test=(0, MAX_SCENES, 'the number of test images'),
                  height=(MIN_SIDE, MAX_SIDE, 'the image height in pixels'),
                  width=(MIN_SIDE, MAX_SIDE, 'the image width in pixels'),
                  detail_scale=(*DETAIL_SCALE_RANGE, 'the --detail-scale'),
                  extra_pedestrians=(*EXTRA_PEDESTRIANS_RANGE, 'the --extra-pedestrians'))

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_PNG_END = b'\x00\x00\x00\x00IEND\xaeB`\x82'  # the IEND chunk every complete PNG ends with
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel


def file_pairs(split: str, num: int) -> Iterator[tuple[str, str]]:
    """(image, label) paths relative to the root of the ``num`` scenes of ``split``, in order."""
    cities = CITIES[split]
    for i in range(num):
        city = cities[i % len(cities)]
        stem = f'{city}_{i // len(cities):06d}_000019'
        yield (osp.join(IMG_DIR, split, city, stem + IMG_SUFFIX),
               osp.join(LBL_DIR, split, city, stem + LBL_SUFFIX))


def generated_files(num_train: int, num_val: int, num_test: int = 0) -> list[str]:
    """Every PNG a generation of ``num_train`` + ``num_val`` + ``num_test`` scenes writes,
    relative to its root."""
    return [p for split, n in (('train', num_train), ('val', num_val), ('test', num_test))
            for pair in file_pairs(split, n) for p in pair]


def _write_json(path: str, obj) -> None:
    """Write ``obj`` to ``path`` atomically (a temporary file, then ``os.replace``)."""
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(obj, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_manifest(root: str, files: Iterable[str]) -> None:
    """Record ``files`` (relative paths) as the generator's own in ``root/`` + MANIFEST_FILE."""
    _write_json(osp.join(root, MANIFEST_FILE), dict(
        about='every file the SynthCity generator wrote or is writing in this folder; '
        'tools/dataset_converters/synthcity.py --overwrite deletes these and refuses to delete '
        'anything else', files=sorted({f.replace(os.sep, '/') for f in files})))


def _inside(rel) -> bool:
    """Whether a manifest entry names a file where the generator writes: under leftImg8bit/ or
    gtFine/, no '..', '.' or empty part (a damaged manifest cannot point --overwrite elsewhere)."""
    parts = rel.split('/') if isinstance(rel, str) else []
    return (len(parts) > 1 and parts[0] in (IMG_DIR, LBL_DIR)
            and all(p not in ('', '.', '..') for p in parts))


def recorded_files(root: str) -> set[str]:
    """The files (relative, '/'-separated) the generator recorded as its own in ``root``: those its
    manifest lists, and those the counts of a valid ``synthcity.json`` name (folders generated
    before the manifest existed). A damaged record counts for nothing."""
    own = set()
    try:
        with open(osp.join(root, MANIFEST_FILE)) as f:
            files = json.load(f)['files']
        if isinstance(files, list):
            own.update(f for f in files if _inside(f))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        meta = read_meta(root)
    except ValueError:
        meta = None
    if meta is not None:
        own.update(p.replace(os.sep, '/')
                   for p in generated_files(meta['num_train'], meta['num_val'],
                                            meta['num_test']))
    return own


def _folders(files: Iterable[str]) -> set[str]:
    """Every folder (relative, '/'-separated) the relative paths ``files`` are in, at any depth."""
    return {'/'.join(f.split('/')[:i]) for f in files for i in range(1, f.count('/') + 1)}


def foreign_files(root: str, own: Optional[set] = None) -> list[str]:
    """The files in ``root``, at any depth, that the generator did not record as its own
    (``recorded_files``), as sorted relative paths: files, and links to files or folders (never
    followed). Empty folders are not files; --overwrite leaves those it did not make in place."""
    own = recorded_files(root) if own is None else own
    foreign = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = osp.relpath(dirpath, root).replace(os.sep, '/')
        prefix = '' if rel == '.' else rel + '/'
        for d in list(dirnames):
            if osp.islink(osp.join(dirpath, d)):  # os.walk does not follow it; neither does this
                foreign.append(prefix + d)
                dirnames.remove(d)
        for name in filenames:
            path = prefix + name
            if path not in own and not (prefix == '' and name in OWN_ROOT_FILES):
                foreign.append(path)
    return sorted(foreign)


def prepare_root(root: str, overwrite: bool = False, files: Iterable[str] = ()) -> None:
    """Make ``root`` an empty folder to generate ``files`` (relative paths) into, and record them
    in its manifest before any is written. A folder that holds anything is refused unless
    ``overwrite``, which deletes the files the generator recorded as its own (``synthcity.json``
    first, empty folders they were in last) and refuses, before deleting anything, a folder that
    holds any other file (module docstring)."""
    files = list(files)
    if not osp.exists(root):
        os.makedirs(root)
        write_manifest(root, files)
        return
    if not osp.isdir(root):
        raise NotADirectoryError(f'SynthCity output {root!r} exists and is not a folder')
    entries = sorted(os.listdir(root))
    if entries and not overwrite:
        shown = ', '.join(entries[:6]) + (', ...' if len(entries) > 6 else '')
        raise FileExistsError(
            f'SynthCity output folder {root!r} is not empty (it holds {shown}): the new images '
            'would be mixed with the files there. Pass a new or empty folder, or --overwrite '
            '(generate(..., overwrite=True)) to delete the SynthCity data in it first.')
    if entries:
        own = recorded_files(root)
        foreign = foreign_files(root, own)
        if foreign:
            raise FileExistsError(overwrite_refusal(root, foreign, bool(own)))
        write_manifest(root, own | set(files))  # lists all that is here and all that will be
        present = [f for f in own if osp.lexists(osp.join(root, f))]
        for rel in [META_FILE, *sorted(present), *OWN_ROOT_FILES[1:]]:  # synthcity.json first
            path = osp.join(root, rel)
            if rel != MANIFEST_FILE and (osp.islink(path) or osp.isfile(path)):
                os.remove(path)
        for d in sorted(_folders(own), key=lambda d: -d.count('/')):  # deepest first
            path = osp.join(root, d)
            if osp.isdir(path) and not osp.islink(path) and not os.listdir(path):
                os.rmdir(path)
    write_manifest(root, files)


def overwrite_refusal(root: str, foreign: list, recorded: bool = True) -> str:
    """Why --overwrite refuses ``root``, naming a few of its ``foreign`` files, and what to do."""
    shown = ', '.join(foreign[:4]) + (f' and {len(foreign) - 4} more' if len(foreign) > 4 else '')
    why = ('' if recorded else f' (it has no valid {MANIFEST_FILE} or {META_FILE}: it was not '
           'written by the SynthCity generator, or by an interrupted one older than the manifest)')
    return (f'SynthCity output folder {root!r} holds files the generator did not write: {shown}'
            f'{why}. --overwrite deletes only the files its {MANIFEST_FILE} / {META_FILE} list, '
            'and deletes nothing when anything else is there. Move those files out of the folder '
            '(or delete them yourself if you do not need them) and run it again, or generate into '
            'a new or empty folder.')


def write_meta(root: str, meta: dict) -> None:
    """Write ``root/synthcity.json`` atomically (a temporary file, then ``os.replace``)."""
    _write_json(osp.join(root, META_FILE), meta)


def _bad_meta(path: str, problem: str) -> ValueError:
    return ValueError(f'{path} {problem}: the file is damaged or not written by the SynthCity '
                      'generator. Regenerate the data with tools/dataset_converters/synthcity.py '
                      '(--overwrite to replace this folder).')


def read_meta(root: str) -> Optional[dict]:
    """What the generator wrote into ``root/synthcity.json``, with the defaults of keys older
    generators did not write; None when there is no such file. A file that is not valid JSON,
    lacks a setting or holds one out of the generator's bounds (``META_RANGE``: e.g. at most
    ``MAX_SCENES`` images a split) raises a ValueError naming it and the field, before anything
    is sized from it."""
    path = osp.join(root, META_FILE)
    if not osp.isfile(path):
        return None
    try:
        with open(path) as f:
            meta = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _bad_meta(path, f'is not valid JSON ({e})') from None
    if not isinstance(meta, dict):
        raise _bad_meta(path, f'holds a {type(meta).__name__}, not an object of settings')
    for key, kind in META_REQUIRED.items():
        value = meta.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise _bad_meta(path, f'has {key}={value!r}, not an integer')
    for key, (kind, default) in META_OPTIONAL.items():
        value = meta.setdefault(key, default)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise _bad_meta(path, f'has {key}={value!r}, not a number')
        meta[key] = kind(value)
    for key, (lo, hi, what) in META_RANGE.items():
        value = meta[key]
        if not (lo <= value and (hi is None or value <= hi)):  # NaN fails too
            bound = f'>= {lo:g}' if hi is None else f'{lo:g} to {hi:g}'
            limit = ' (MAX_SCENES in mmseg_ext/datasets/synthcity_files.py)' if hi == MAX_SCENES \
                else ''
            raise _bad_meta(path, f'has {key}={value!r}, out of range: {what} is {bound}{limit}')
    return meta


def _png_scan(path: str, inflate: bool = True) -> tuple[int, int, tuple, str]:
    """(height, width, (colour type, bit depth, interlace), problem) of the PNG at ``path``;
    ``problem`` is '' for an intact file, else 'not a PNG', 'truncated', or what is corrupt.

    Intact means what libpng needs to decode it: every chunk's CRC matches and, with ``inflate``,
    the IDAT data inflates (zlib) to exactly the bytes of its height x width x channels, each row
    with a filter byte of 0-4. That finds a damaged data block without decoding pixels. The CRCs
    alone catch accidental damage (a flipped bit, an overwritten block); inflating also catches a
    damaged stream behind a CRC that was made to match. Cost for the default 320 + 80 scenes at
    128x256 (30 MB), 2-core development machine, 2026-12-07: the CRCs of all 800 files 20-30 ms,
    inflating the 400 label maps 19 ms, the 400 images 235 ms (cv2 decoding them all: 438 ms);
    :func:`check_files` inflates the label maps only (an image that fails to decode is named
    by mmcv's ``LoadImageFromFile``; a label map is not, by mmseg's ``LoadAnnotations``).
    """
    with open(path, 'rb') as f:
        data = f.read()
    if len(data) < 33 or data[:8] != _PNG_SIGNATURE or data[12:16] != b'IHDR':
        return -1, -1, (), 'not a PNG'
    width, height, depth, kind, _, _, interlace = struct.unpack('>IIBBBBB', data[16:29])
    fmt = (kind, depth, interlace)
    if not data.endswith(_PNG_END):
        return height, width, fmt, 'truncated'
    pos, idat = 8, []
    while pos < len(data):
        if pos + 12 > len(data):
            return height, width, fmt, f'a chunk header at byte {pos} is cut short'
        length, name = struct.unpack('>I4s', data[pos:pos + 8])
        end = pos + 12 + length
        if end > len(data):
            return height, width, fmt, f'its {name!r} chunk at byte {pos} runs past the end'
        if zlib.crc32(data[pos + 4:end - 4]) != struct.unpack('>I', data[end - 4:end])[0]:
            return height, width, fmt, (f'the CRC of its {name.decode("latin-1")} chunk at byte '
                                        f'{pos} does not match its data')
        if name == b'IDAT':
            idat.append(data[pos + 8:end - 4])
        elif name == b'IEND' and end != len(data):
            return height, width, fmt, f'it has data after its IEND chunk at byte {pos}'
        pos = end
    if not inflate or interlace or kind not in _PNG_CHANNELS:
        return height, width, fmt, ''  # (another format: check_files says so first)
    try:
        raw = zlib.decompress(b''.join(idat))
    except zlib.error as e:
        return height, width, fmt, f'its image data does not inflate ({e})'
    stride = 1 + (width * _PNG_CHANNELS[kind] * depth + 7) // 8
    if len(raw) != height * stride:
        return height, width, fmt, (f'its image data inflates to {len(raw)} bytes, not the '
                                    f'{height * stride} of {height} rows')
    if height and max(raw[::stride]) > 4:
        return height, width, fmt, 'a row has an invalid PNG filter type (above 4)'
    return height, width, fmt, ''


def _found(root: str, folder: str, split: str, suffix: str) -> set[str]:
    top = osp.join(root, folder, split)
    found = set()
    for dirpath, _, files in os.walk(top):
        found.update(osp.relpath(osp.join(dirpath, f), root) for f in files if f.endswith(suffix))
    return found


def check_files(root: str, meta: dict, fix: str) -> None:
    """Check that ``root`` holds exactly the images and label maps ``meta`` (its synthcity.json)
    describes, each an intact PNG of its size (8-bit RGB images, 8-bit grey labels; intact: see
    :func:`_png_scan`, which inflates the label maps' data). Raises FileNotFoundError (files
    missing) or ValueError (files from another generation, of another size, cut short or corrupt),
    naming a file and ending with ``fix``."""
    colour = {IMG_SUFFIX: (2, 'an RGB image'), LBL_SUFFIX: (0, 'a grey label map')}
    for split in CITIES:
        pairs = list(file_pairs(split, meta[f'num_{split}']))
        for i, (folder, suffix, what) in enumerate(((IMG_DIR, IMG_SUFFIX, 'images'),
                                                   (LBL_DIR, LBL_SUFFIX, 'label maps'))):
            expected = {p[i] for p in pairs}
            found = _found(root, folder, split, suffix)
            missing, extra = sorted(expected - found), sorted(found - expected)
            if missing:
                raise FileNotFoundError(
                    f'SynthCity data at {root!r} is incomplete: {len(missing)} of {len(expected)} '
                    f'{what} are missing from {folder}/{split} (its {META_FILE} lists '
                    f'{len(expected)}), e.g. {missing[0]}: files were deleted since. {fix}')
            if extra:
                raise ValueError(
                    f'SynthCity data at {root!r} holds {len(found)} {what} in {folder}/{split}, '
                    f'its {META_FILE} lists {len(expected)}: {len(extra)} are from another '
                    f'generation (e.g. {extra[0]}), mixed with this one. {fix}')
            for rel in sorted(expected):
                path = osp.join(root, rel)
                h, w, fmt, problem = _png_scan(path, inflate=suffix == LBL_SUFFIX)
                if problem == 'not a PNG':
                    raise ValueError(f'{path} is not a PNG file. {fix}')
                if problem == 'truncated':
                    raise ValueError(f'{path} is truncated (it lacks the PNG end marker): the file '
                                     f'was cut short. {fix}')
                if (h, w) != (meta['height'], meta['width']):
                    raise ValueError(
                        f'{path} is {h}x{w} (HxW), its {META_FILE} says '
                        f'{meta["height"]}x{meta["width"]}: it is from another generation. {fix}')
                if fmt != (colour[suffix][0], 8, 0):
                    raise ValueError(
                        f'{path} is not {colour[suffix][1]} of 8 bits a sample, not interlaced '
                        f'(PNG colour type {fmt[0]}, bit depth {fmt[1]}, interlace {fmt[2]}), as '
                        f'SynthCity writes it. {fix}')
                if problem:
                    raise ValueError(f'{path} is corrupt: {problem}, so it cannot be decoded (the '
                                     f'file was damaged after it was written). {fix}')
