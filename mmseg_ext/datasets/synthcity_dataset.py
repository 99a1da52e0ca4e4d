"""mmseg's ``CityscapesDataset`` for SynthCity, failing clearly when the data was not generated."""
from __future__ import annotations

import os.path as osp

from mmseg.datasets import CityscapesDataset
from mmseg.registry import DATASETS

GENERATE = 'python tools/dataset_converters/synthcity.py {root}'


def _not_generated(root: str, problem: str) -> FileNotFoundError:
    return FileNotFoundError(
        f'SynthCity data not found: {problem} (data_root={root!r}). Generate it with '
        f'`{GENERATE.format(root=root)}` (about a minute for the default 320 + 80 images), or set '
        'SYNTHCITY_ROOT to a folder that holds it.')


@DATASETS.register_module()
class SynthCityDataset(CityscapesDataset):
    """:class:`CityscapesDataset` (same layout, classes and suffixes) whose ``load_data_list``
    says how to generate the data when its folders are missing or hold no images or labels,
    instead of mmengine's "need at least one array to concatenate" or a bare FileNotFoundError."""

    def load_data_list(self) -> list:
        root = self.data_root or osp.dirname(osp.dirname(self.data_prefix.get('img_path', '')))
        for key in ('img_path', 'seg_map_path'):
            folder = self.data_prefix.get(key)
            if folder and not osp.isdir(folder):
                raise _not_generated(root, f'{folder} does not exist')
        data_list = super().load_data_list()
        if not data_list:
            raise _not_generated(
                root, f"{self.data_prefix['img_path']} holds no *{self.img_suffix} images")
        missing = [d['seg_map_path'] for d in data_list
                   if 'seg_map_path' in d and not osp.isfile(d['seg_map_path'])]
        if missing:
            raise _not_generated(root, f'{len(missing)} of {len(data_list)} label maps are '
                                 f'missing, e.g. {missing[0]}')
        return data_list
