# Copyright (c) mmseg_ext contributors. All rights reserved.
from .head_maps import (
                        HeadMaps,
                        compute_head_maps,
                        draw_heatmap,
                        draw_prediction,
                        draw_snl,
                        head_kind,
                        init_segmentor,
                        save_head_maps,
)

__all__ = [
    'HeadMaps', 'compute_head_maps', 'draw_heatmap', 'draw_prediction', 'draw_snl', 'head_kind',
    'init_segmentor', 'save_head_maps'
]
