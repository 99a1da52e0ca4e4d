"""mmseg's ``CityscapesDataset`` for SynthCity, failing clearly when the data was not generated."""
from __future__ import annotations

import os
import os.path as osp

from mmseg.datasets import CityscapesDataset
from mmseg.registry import DATASETS

from mmseg_ext.datasets.synthcity import SynthCityConfig
from mmseg_ext.datasets.synthcity_files import META_FILE, check_files, foreign_files, read_meta
from mmseg_ext.utils.checks import is_int

GENERATE = 'python tools/dataset_converters/synthcity.py {root}'
# the generator's default image size (H, W), SynthCityDataset's default image_size
_SIZE_DEFAULT = (SynthCityConfig.height, SynthCityConfig.width)


def _command(root: str, generator: dict, overwrite: bool = False) -> str:
    cmd = GENERATE.format(root=root)
    if generator['detail_scale'] != 1:
        cmd += f" --detail-scale {generator['detail_scale']:g}"
    if generator['extra_pedestrians']:
        cmd += f" --extra-pedestrians {generator['extra_pedestrians']}"
    if (generator['height'], generator['width']) != _SIZE_DEFAULT:
        cmd += f" --height {generator['height']} --width {generator['width']}"
    return cmd + (' --overwrite' if overwrite else '')


def _describe(generator: dict, keys) -> str:
    flags = dict(detail_scale=f"--detail-scale {generator['detail_scale']:g}",
                 extra_pedestrians=f"--extra-pedestrians {generator['extra_pedestrians']}",
                 height=f"--height {generator['height']}", width=f"--width {generator['width']}")
    return ' '.join(flags[k] for k in keys)


def _regenerate(root: str, generator: dict, verb: str) -> str:
    """How to (re)generate the data at ``root``, as a command that works when pasted: without
    --overwrite for a missing or empty folder, with it for one holding only files the generator
    recorded as its own (an interrupted or other generation), and for one holding anything else
    (which --overwrite refuses) what to move out first, or a new folder."""
    if not osp.isdir(root) or not os.listdir(root):
        return f'{verb} it with `{_command(root, generator)}`'
    cmd = _command(root, generator, overwrite=True)
    foreign = foreign_files(root)
    if not foreign:
        return f'{verb} it with `{cmd}` (or into a new folder, without --overwrite)'
    shown = ', '.join(foreign[:3]) + (', ...' if len(foreign) > 3 else '')
    files = f'{len(foreign)} files' if len(foreign) > 1 else 'file'
    return (f'{verb} it into a new folder with `{_command("NEW_FOLDER", generator)}` and point '
            f'data_root at it, or move the {files} the generator did not write out of {root!r} '
            f'({shown}: --overwrite refuses a folder holding any) and run `{cmd}`')


def _not_generated(root: str, problem: str, generator: dict) -> FileNotFoundError:
    return FileNotFoundError(
        f'SynthCity data not found: {problem} (data_root={root!r}). '
        f'{_regenerate(root, generator, "Generate")} (about a minute for the default 320 + 80 '
        'images), or set SYNTHCITY_ROOT (SYNTHCITY_BENCH_ROOT for configs/benchmark/) to a folder '
        'that holds it.')


@DATASETS.register_module()
class SynthCityDataset(CityscapesDataset):
    """:class:`CityscapesDataset` (same layout, classes and suffixes) whose ``load_data_list``
    says how to generate the data when its folders are missing or hold no images or labels,
    instead of mmengine's "need at least one array to concatenate" or a bare FileNotFoundError,
    and refuses data that is not the one complete generation its config expects.

    Args:
        detail_scale (float): the generator's ``--detail-scale`` the config was written for (1: the
            quickstart data, 3: ``configs/benchmark/``). Default: 1.0.
        extra_pedestrians (int): the generator's ``--extra-pedestrians`` (0: quickstart, 2:
            ``configs/benchmark/``). Default: 0.
        image_size (tuple[int, int]): the generator's ``(--height, --width)``, the size the
            config's pipeline was written for. Default: (128, 256), the generator's default.

    The data folder must hold the ``synthcity.json`` the generator writes last (a folder without it
    holds an interrupted generation, or one from before the file existed: regenerate it), with the
    settings above, and exactly the images and label maps it lists, complete, of its size and
    intact (:func:`mmseg_ext.datasets.synthcity_files.check_files`: every PNG's chunk CRCs, and
    the label maps' zlib stream and row filter bytes, without decoding pixels: a damaged file is
    named here rather than failing mid-training without its name). So a benchmark config never
    trains on the quickstart data by mistake (or the reverse), nor on a folder where two
    generations are mixed. The check reads all of both splits' files at each build: for the
    default 320 + 80 scenes (30 MB), 48 ms (18 ms with headers only, before 2026-12-07), and the
    whole build of the train split 221 ms (188 ms before) on the 2-core development machine.
    Each error ends with a command that works when pasted: ``--overwrite`` where the folder holds
    only the generator's files, and what to move out first where it holds others.
    """

    def __init__(self, *args, detail_scale: float = 1.0, extra_pedestrians: int = 0,
                 image_size: tuple = _SIZE_DEFAULT, **kwargs):
        # **kwargs go to CityscapesDataset / BaseSegDataset, whose signatures reject unknown keys
        if (not isinstance(image_size, (tuple, list)) or len(image_size) != 2 or not all(
                is_int(v) for v in image_size)):
            raise TypeError(f'SynthCityDataset: image_size must be (height, width) in pixels, as '
                            f'generated, got {image_size!r}')
        self.generator = dict(detail_scale=float(detail_scale),
                              extra_pedestrians=int(extra_pedestrians),
                              height=image_size[0], width=image_size[1])
        super().__init__(*args, **kwargs)

    def _check_generator(self, root: str, meta: dict):
        found = {k: type(v)(meta[k]) for k, v in self.generator.items()}
        differ = [k for k in self.generator if found[k] != self.generator[k]]
        if not differ:
            return
        if {'height', 'width'} & set(differ):
            differ = sorted(set(differ) | {'height', 'width'}, key=list(self.generator).index)
        raise ValueError(
            f'SynthCity data at {root!r} was generated with {_describe(found, differ)}, but this '
            f'config expects {_describe(self.generator, differ)}. Generate the right data with '
            f'`{_command("NEW_FOLDER", self.generator)}` into a new folder and point the config '
            f'(data_root, or SYNTHCITY_ROOT / SYNTHCITY_BENCH_ROOT) at it ({root!r} holds data '
            'another config may use; the command refuses a non-empty folder).')

    def load_data_list(self) -> list:
        root = self.data_root or osp.dirname(osp.dirname(self.data_prefix.get('img_path', '')))
        gen = self.generator
        for key in ('img_path', 'seg_map_path'):
            folder = self.data_prefix.get(key)
            if folder and not osp.isdir(folder):
                raise _not_generated(root, f'{folder} does not exist', gen)
        data_list = super().load_data_list()
        if not data_list:
            raise _not_generated(
                root, f"{self.data_prefix['img_path']} holds no *{self.img_suffix} images", gen)
        fix = _regenerate(root, gen, 'Regenerate') + '.'
        meta = read_meta(root)
        if meta is None:
            raise ValueError(
                f'SynthCity data at {root!r} has no {META_FILE}, which the generator writes last: '
                'its generation did not finish (or it predates that file), so what it holds is '
                f'unknown. {fix}')
        self._check_generator(root, meta)
        check_files(root, meta, fix)
        return data_list
