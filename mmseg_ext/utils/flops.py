# Copyright (c) mmseg_ext contributors. All rights reserved.
"""FLOPs of a segmentor as mmseg counts them, the sparse non-local op counted by a handle.

mmengine's ``FlopAnalyzer`` (what mmseg's ``tools/analysis_tools/get_flops.py`` calls) traces the
model and counts the ops it has a handle for — convolutions, matrix products, norms,
upsampling, pooling — one multiply-add as one FLOP (the zoo's convention; elementwise ops,
``softmax`` and ``sum`` are not counted). What it counts of SSANet's sparse non-local op depends
on how the op traced: the exportable path (the one a trace takes) gathers the four bilinear
corners of every sampled point with ``index_select`` and reduces them with matrix products,
which are counted; the Triton and sparse backends are not traceable. :func:`count_flops`
therefore counts the op by a handle registered on the module that calls it
(:data:`EXTRA_HANDLES`, keyed by module class) and replaces whatever the trace counted inside
that module outside its submodules: ``4 * B * H * W * K * (C + Cv)`` multiply-adds per
:class:`~mmseg_ext.models.utils.snl_block.SparseNonLocal2d` call — per query position and
sampled point, a ``C``-channel dot product with each of the four corners of the key and a
``Cv``-channel weighted sum of the four corners of the value (a dense non-local block's two
matrix products count ``B * N * N * (C + Cv)``).
"""
from typing import Callable, Dict, Tuple

import torch
from torch import nn

__all__ = ['count_flops', 'EXTRA_HANDLES', 'snl_flops']


def snl_flops(module: nn.Module, inputs: Tuple[torch.Tensor, ...]) -> int:
    """Multiply-adds of one sparse non-local op call inside ``module`` (a SparseNonLocal2d):
    four bilinear corners per sampled point, for the key (C) and the value (Cv) channels."""
    b, _, h, w = inputs[0].shape
    return 4 * b * h * w * module.num_points * (module.inter_channels
                                                + module.value.out_channels)


#: Module class name -> handle(module, inputs) -> FLOPs of that module's own computation
#: (outside its submodules, which the trace counts), replacing what the trace counted there.
EXTRA_HANDLES: Dict[str, Callable] = {'SparseNonLocal2d': snl_flops}


def _extra_flops(model: nn.Module, inputs: Tuple[torch.Tensor, ...]) -> Dict[str, int]:
    """Run ``model`` once with forward hooks on the modules of :data:`EXTRA_HANDLES`:
    ``{module name: FLOPs}``."""
    found, hooks = {}, []
    for name, module in model.named_modules():
        handle = EXTRA_HANDLES.get(type(module).__name__)
        if handle is not None:
            def hook(mod, args, _name=name, _handle=handle):
                found[_name] = found.get(_name, 0) + int(_handle(mod, args))
            hooks.append(module.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for h in hooks:
            h.remove()
    return found


def count_flops(model: nn.Module, shape: Tuple[int, int]) -> dict:
    """FLOPs and parameters of ``model`` (a segmentor, eval mode) on one ``(3, H, W)`` image.

    Returns ``{'flops', 'params', 'traced', 'extra': {module: FLOPs}, 'replaced': {module:
    FLOPs}, 'unsupported': {op: n}}``: ``flops = traced - sum(replaced) + sum(extra)``, where
    ``replaced`` is what the trace counted inside each handled module outside its submodules.
    ``unsupported`` lists the ops the trace met and did not count.
    """
    from mmengine.analysis import FlopAnalyzer
    model.eval()
    x = torch.rand(1, 3, *shape, device=next(model.parameters()).device)
    analyzer = FlopAnalyzer(model, (x, ))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    traced = int(analyzer.total())
    extra = _extra_flops(model, (x, ))
    by_module = analyzer.by_module()
    replaced = {}
    for name in extra:
        module = model.get_submodule(name)
        replaced[name] = int(by_module.get(name, 0) - sum(
            by_module.get(f'{name}.{child}', 0) for child, _ in module.named_children()))
    return dict(flops=traced - sum(replaced.values()) + sum(extra.values()), traced=traced,
                extra=extra, replaced=replaced,
                params=sum(p.numel() for p in model.parameters()),
                unsupported=dict(analyzer.unsupported_ops()))
