"""mmseg's ``CityscapesDataset`` for SynthCity, failing clearly when the data was not generated."""
from __future__ import annotations

import os.path as osp

from mmseg.datasets import CityscapesDataset
from mmseg.registry import DATASETS

from mmseg_ext.datasets.synthcity import read_meta

GENERATE = 'python tools/dataset_converters/synthcity.py {root}'


def _command(root: str, generator: dict) -> str:
    cmd = GENERATE.format(root=root)
    if generator['detail_scale'] != 1:
        cmd += f" --detail-scale {generator['detail_scale']:g}"
    if generator['extra_pedestrians']:
        cmd += f" --extra-pedestrians {generator['extra_pedestrians']}"
    return cmd


def _describe(generator: dict) -> str:
    return (f"--detail-scale {generator['detail_scale']:g} --extra-pedestrians "
            f"{generator['extra_pedestrians']}")


def _not_generated(root: str, problem: str, generator: dict) -> FileNotFoundError:
    return FileNotFoundError(
        f'SynthCity data not found: {problem} (data_root={root!r}). Generate it with '
        f'`{_command(root, generator)}` (about a minute for the default 320 + 80 images), or '
        'set SYNTHCITY_ROOT (SYNTHCITY_BENCH_ROOT for configs/benchmark/) to a folder that holds it.')


@DATASETS.register_module()
class SynthCityDataset(CityscapesDataset):
    """:class:`CityscapesDataset` (same layout, classes and suffixes) whose ``load_data_list``
    says how to generate the data when its folders are missing or hold no images or labels,
    instead of mmengine's "need at least one array to concatenate" or a bare FileNotFoundError.

    Args:
        detail_scale (float): the generator's ``--detail-scale`` the config was written for (1: the
            quickstart data, 3: ``configs/benchmark/``). Default: 1.0.
        extra_pedestrians (int): the generator's ``--extra-pedestrians`` (0: quickstart, 2:
            ``configs/benchmark/``). Default: 0.

    When the data folder holds the ``synthcity.json`` the generator writes, other settings there
    are an error, so a benchmark config never trains on the quickstart data by mistake (or the
    reverse). Data generated before that file existed counts as the quickstart's settings.
    """

    def __init__(self, *args, detail_scale: float = 1.0, extra_pedestrians: int = 0, **kwargs):
        # **kwargs go to CityscapesDataset / BaseSegDataset, whose signatures reject unknown keys
        self.generator = dict(detail_scale=float(detail_scale),
                              extra_pedestrians=int(extra_pedestrians))
        super().__init__(*args, **kwargs)

    def _check_generator(self, root: str):
        meta = read_meta(root) if root else None
        found = dict(detail_scale=1.0, extra_pedestrians=0)
        if meta is not None:
            found = {k: type(v)(meta.get(k, v)) for k, v in found.items()}
        if found != self.generator:
            what = ('has no synthcity.json (generated before the generator wrote one, i.e. '
                    f'{_describe(found)})' if meta is None else
                    f'was generated with {_describe(found)}')
            raise ValueError(
                f'SynthCity data at {root!r} {what}, but this config expects '
                f'{_describe(self.generator)}. Generate the right data with '
                f'`{_command(root, self.generator)}` into its own folder and point the config '
                '(data_root, or SYNTHCITY_ROOT / SYNTHCITY_BENCH_ROOT) at it.')

    def load_data_list(self) -> list:
        root = self.data_root or osp.dirname(osp.dirname(self.data_prefix.get('img_path', '')))
        gen = self.generator
        for key in ('img_path', 'seg_map_path'):
            folder = self.data_prefix.get(key)
            if folder and not osp.isdir(folder):
                raise _not_generated(root, f'{folder} does not exist', gen)
        self._check_generator(root)
        data_list = super().load_data_list()
        if not data_list:
            raise _not_generated(
                root, f"{self.data_prefix['img_path']} holds no *{self.img_suffix} images", gen)
        missing = [d['seg_map_path'] for d in data_list
                   if 'seg_map_path' in d and not osp.isfile(d['seg_map_path'])]
        if missing:
            raise _not_generated(root, f'{len(missing)} of {len(data_list)} label maps are '
                                 f'missing, e.g. {missing[0]}', gen)
        return data_list
