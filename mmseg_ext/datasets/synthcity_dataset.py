"""mmseg's ``CityscapesDataset`` for SynthCity, failing clearly when the data was not generated."""
from __future__ import annotations

import os.path as osp

from mmseg.datasets import CityscapesDataset
from mmseg.registry import DATASETS

from mmseg_ext.datasets.synthcity import read_meta

GENERATE = 'python tools/dataset_converters/synthcity.py {root}'


def _command(root: str, detail_scale: float) -> str:
    cmd = GENERATE.format(root=root)
    return cmd if detail_scale == 1 else f'{cmd} --detail-scale {detail_scale:g}'


def _not_generated(root: str, problem: str, detail_scale: float = 1.0) -> FileNotFoundError:
    return FileNotFoundError(
        f'SynthCity data not found: {problem} (data_root={root!r}). Generate it with '
        f'`{_command(root, detail_scale)}` (about a minute for the default 320 + 80 images), or '
        'set SYNTHCITY_ROOT (SYNTHCITY_DETAIL3_ROOT for configs/benchmark/) to a folder that holds '
        'it.')


@DATASETS.register_module()
class SynthCityDataset(CityscapesDataset):
    """:class:`CityscapesDataset` (same layout, classes and suffixes) whose ``load_data_list``
    says how to generate the data when its folders are missing or hold no images or labels,
    instead of mmengine's "need at least one array to concatenate" or a bare FileNotFoundError.

    Args:
        detail_scale (float): the generator's ``--detail-scale`` the config was written for (1: the
            quickstart data, 3: ``configs/benchmark/``). When the data folder holds the
            ``synthcity.json`` the generator writes, a different value there is an error, so a
            benchmark config never trains on the quickstart data by mistake (or the reverse).
            Data generated before that file existed is accepted for ``detail_scale=1`` only.
            Default: 1.0.
    """

    def __init__(self, *args, detail_scale: float = 1.0, **kwargs):
        # **kwargs go to CityscapesDataset / BaseSegDataset, whose signatures reject unknown keys
        self.detail_scale = float(detail_scale)
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> list:
        root = self.data_root or osp.dirname(osp.dirname(self.data_prefix.get('img_path', '')))
        ds = self.detail_scale
        for key in ('img_path', 'seg_map_path'):
            folder = self.data_prefix.get(key)
            if folder and not osp.isdir(folder):
                raise _not_generated(root, f'{folder} does not exist', ds)
        meta = read_meta(root) if root else None
        found = 1.0 if meta is None else float(meta.get('detail_scale', 1.0))
        if found != ds:
            what = ('has no synthcity.json (generated before --detail-scale existed, i.e. '
                    'detail scale 1)' if meta is None else f'was generated with --detail-scale '
                    f'{found:g}')
            raise ValueError(
                f'SynthCity data at {root!r} {what}, but this config expects --detail-scale '
                f'{ds:g}. Generate the right data with `{_command(root, ds)}` into its own folder '
                'and point the config (data_root, or SYNTHCITY_ROOT / SYNTHCITY_DETAIL3_ROOT) at it.')
        data_list = super().load_data_list()
        if not data_list:
            raise _not_generated(
                root, f"{self.data_prefix['img_path']} holds no *{self.img_suffix} images", ds)
        missing = [d['seg_map_path'] for d in data_list
                   if 'seg_map_path' in d and not osp.isfile(d['seg_map_path'])]
        if missing:
            raise _not_generated(root, f'{len(missing)} of {len(data_list)} label maps are '
                                 f'missing, e.g. {missing[0]}', ds)
        return data_list
