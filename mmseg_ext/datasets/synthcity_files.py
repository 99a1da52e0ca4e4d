"""SynthCity on disk: its file names, ``synthcity.json``, and the checks that a folder holds exactly
one complete generation.

The generator (:func:`mmseg_ext.datasets.synthcity.generate`) refuses a non-empty output folder
unless told to overwrite it (then it deletes its own files first, ``synthcity.json`` before anything
else), and writes ``synthcity.json`` last and atomically: a folder with a ``synthcity.json`` holds a
generation that finished. :func:`check_files` then checks, from the PNG headers and end markers
alone (no decoding), that the images and label maps are exactly those that generation wrote: the
names and counts of ``synthcity.json``, its size, and no file cut short.
"""
from __future__ import annotations

import json
import os
import os.path as osp
import shutil
import struct
from typing import Iterator, Optional

META_FILE = 'synthcity.json'  # generation settings, written next to leftImg8bit/ and gtFine/
CITIES = {'train': ('aachen', 'bochum', 'cologne'), 'val': ('frankfurt', )}
IMG_DIR, IMG_SUFFIX = 'leftImg8bit', '_leftImg8bit.png'
LBL_DIR, LBL_SUFFIX = 'gtFine', '_gtFine_labelTrainIds.png'
# what --overwrite may delete: the generator's own entries (and quickstart.sh's old marker)
OWN_ENTRIES = (IMG_DIR, LBL_DIR, META_FILE, META_FILE + '.tmp', '.complete')
# synthcity.json's keys and types; detail_scale and extra_pedestrians came later (defaults: before)
META_REQUIRED = dict(seed=int, num_train=int, num_val=int, height=int, width=int)
META_OPTIONAL = dict(detail_scale=(float, 1.0), extra_pedestrians=(int, 0))

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_PNG_END = b'\x00\x00\x00\x00IEND\xaeB`\x82'  # the IEND chunk every complete PNG ends with


def file_pairs(split: str, num: int) -> Iterator[tuple[str, str]]:
    """(image, label) paths relative to the root of the ``num`` scenes of ``split``, in order."""
    cities = CITIES[split]
    for i in range(num):
        city = cities[i % len(cities)]
        stem = f'{city}_{i // len(cities):06d}_000019'
        yield (osp.join(IMG_DIR, split, city, stem + IMG_SUFFIX),
               osp.join(LBL_DIR, split, city, stem + LBL_SUFFIX))


def prepare_root(root: str, overwrite: bool = False) -> None:
    """Make ``root`` an empty folder to generate into: refuse one that holds anything unless
    ``overwrite``, which deletes the generator's own files (``synthcity.json`` first) and refuses
    a folder that holds anything else."""
    if not osp.exists(root):
        os.makedirs(root)
        return
    if not osp.isdir(root):
        raise NotADirectoryError(f'SynthCity output {root!r} exists and is not a folder')
    entries = sorted(os.listdir(root))
    if not entries:
        return
    shown = ', '.join(entries[:6]) + (', ...' if len(entries) > 6 else '')
    if not overwrite:
        raise FileExistsError(
            f'SynthCity output folder {root!r} is not empty (it holds {shown}): the new images would '
            'be mixed with the files there. Pass a new or empty folder, or --overwrite '
            '(generate(..., overwrite=True)) to delete the SynthCity data in it first.')
    foreign = [e for e in entries if e not in OWN_ENTRIES]
    if foreign:
        raise FileExistsError(
            f'SynthCity output folder {root!r} holds {", ".join(foreign[:6])} besides SynthCity\'s own '
            f'files; --overwrite deletes only {", ".join(OWN_ENTRIES[:3])} and would leave those next '
            'to the new data. Pass a new or empty folder.')
    for name in (META_FILE, *[e for e in OWN_ENTRIES if e != META_FILE]):  # the json first
        path = osp.join(root, name)
        if osp.isdir(path) and not osp.islink(path):
            shutil.rmtree(path)
        elif osp.lexists(path):  # a file, or a link (removed, not what it points to)
            os.remove(path)


def write_meta(root: str, meta: dict) -> None:
    """Write ``root/synthcity.json`` atomically (a temporary file, then ``os.replace``)."""
    path = osp.join(root, META_FILE)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(meta, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _bad_meta(path: str, problem: str) -> ValueError:
    return ValueError(f'{path} {problem}: the file is damaged or not written by the SynthCity '
                      'generator. Regenerate the data with tools/dataset_converters/synthcity.py '
                      '(--overwrite to replace this folder).')


def read_meta(root: str) -> Optional[dict]:
    """What the generator wrote into ``root/synthcity.json``, with the defaults of keys older
    generators did not write; None when there is no such file. A file that is not valid JSON or
    lacks a setting raises a ValueError naming it."""
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
    return meta


def _png_shape(path: str) -> tuple[int, int, int, bool]:
    """(height, width, PNG colour type, complete) from the header and the last 12 bytes."""
    with open(path, 'rb') as f:
        head = f.read(26)
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(size - len(_PNG_END), 0))
        tail = f.read()
    if len(head) < 26 or head[:8] != _PNG_SIGNATURE or head[12:16] != b'IHDR':
        return -1, -1, -1, False
    width, height = struct.unpack('>II', head[16:24])
    return height, width, head[25], tail == _PNG_END


def _found(root: str, folder: str, split: str, suffix: str) -> set[str]:
    top = osp.join(root, folder, split)
    found = set()
    for dirpath, _, files in os.walk(top):
        found.update(osp.relpath(osp.join(dirpath, f), root) for f in files if f.endswith(suffix))
    return found


def check_files(root: str, meta: dict, fix: str) -> None:
    """Check that ``root`` holds exactly the images and label maps ``meta`` (its synthcity.json)
    describes, each a complete PNG of its size (8-bit RGB images, 8-bit grey labels). Raises
    FileNotFoundError (files missing) or ValueError (files from another generation, of another
    size or cut short), naming a file and ending with ``fix``."""
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
                    f'SynthCity data at {root!r} holds {len(found)} {what} in {folder}/{split}, its '
                    f'{META_FILE} lists {len(expected)}: {len(extra)} are from another generation '
                    f'(e.g. {extra[0]}), mixed with this one. {fix}')
            for rel in sorted(expected):
                h, w, kind, complete = _png_shape(osp.join(root, rel))
                if h < 0:
                    raise ValueError(f'{osp.join(root, rel)} is not a PNG file. {fix}')
                if not complete:
                    raise ValueError(f'{osp.join(root, rel)} is truncated (it lacks the PNG end '
                                     f'marker): the file was cut short. {fix}')
                if (h, w) != (meta['height'], meta['width']):
                    raise ValueError(
                        f'{osp.join(root, rel)} is {h}x{w} (HxW), its {META_FILE} says '
                        f'{meta["height"]}x{meta["width"]}: it is from another generation. {fix}')
                if kind != colour[suffix][0]:
                    raise ValueError(f'{osp.join(root, rel)} is not {colour[suffix][1]} (PNG colour '
                                     f'type {kind}), as SynthCity writes it. {fix}')
