# Copyright (c) mmseg_ext contributors. All rights reserved.
"""Reading a head's intermediate tensors with forward hooks, without state in the head.

Inspection tools (``mmseg_ext.visualization.head_maps``, ``GFFHead.forward_with_gates``) read
what a head computes by registering forward hooks on its modules for the duration of one pass
(:func:`capture_outputs`), as timm's ``forward_intermediates`` or torchvision's feature
extractor do; heads and blocks keep nothing of a pass. Where no module returns the value, the
owner passes it through a tap, an ``nn.Identity`` submodule (no parameters, so no state-dict
keys): ``SqueezeAttentionModule.attn_tap`` (``X_attn``), ``SparseNonLocal2d.weights_tap``
(the softmax weights). A value that costs extra to produce is computed only while a hook is
registered on its tap (:func:`has_forward_hooks`), so ordinary passes are unchanged.
"""
import contextlib
from typing import Callable, Iterable, Iterator, List

import torch.nn as nn

__all__ = ['has_forward_hooks', 'capture_outputs']


def has_forward_hooks(module: nn.Module) -> bool:
    """Whether forward hooks are registered on ``module`` itself (not the global ones): an
    owner asks for a value that costs extra only when its tap is listened to."""
    return bool(module._forward_hooks)


@contextlib.contextmanager
def capture_outputs(modules: Iterable[nn.Module],
                    select: Callable = lambda out: out) -> Iterator[List]:
    """Within the block, ``select(output)`` of every call of each of ``modules`` is appended
    to the yielded list, in call order; the hooks are removed on exit, exceptions included."""
    store: List = []
    handles = []
    try:
        for module in modules:
            handles.append(module.register_forward_hook(
                lambda mod, args, out: store.append(select(out))))
        yield store
    finally:
        for handle in handles:
            handle.remove()
