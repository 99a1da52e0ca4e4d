"""Export a whole mmseg segmentor to ONNX and check it in onnxruntime.

Used by ``tools/deployment/pytorch2onnx.py`` (see docs/deploy.md).

What the graph computes: ``seg_logits = segmentor.encode_decode(img)``, the logits of mmseg's
whole-image inference (``test_cfg`` mode ``'whole'``) before the argmax: backbone, neck and the
decode head's ``predict`` (so SAHead's ``infer_mode``, e.g. ``Y_den + Y_SA4``) resized bilinearly
to the input size, ``(B, num_classes, H, W)`` float32. The input ``img`` is ``(B, 3, H, W)``
float32 as the data preprocessor outputs it (channel order converted, mean/std normalised):
preprocessing, the argmax and the resize back to the original image size are not in the graph;
the auxiliary head is not run. H and W are fixed at export unless ``dynamic_shape`` (TorchScript
exporter; refused for models with adaptive pooling, :func:`check_dynamic_shape`); the batch can
be dynamic.

Exporters (``dynamo``): ``False`` is torch's TorchScript exporter (``torch.onnx.export(...,
dynamo=False)``, every torch version, fast); ``True`` is ``torch.onnx.export(..., dynamo=True)``
(``torch.export`` + onnxscript; torch >= 2.5). The TorchScript exporter cannot export an
adaptive pooling whose output size does not divide its input size (PSPNet's and GFFNet's pyramid
pooling on most maps); :func:`check_exportable` finds that before exporting and says what to use
instead. The sparse non-local op of SSANet runs its exportable path while exporting
(:mod:`mmseg_ext.ops.sparse_nonlocal.export`), with either exporter.
"""
import inspect
import math
import warnings
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .apis import CheckpointMismatchError, build_segmentor, load_weights, mismatch_summary  # noqa: F401
from .utils.checks import is_int

__all__ = ['ExportError', 'CheckpointMismatchError', 'SegLogits', 'build_segmentor',
           'load_weights', 'mismatch_summary', 'dynamo_unavailable',
           'adaptive_pool_problems', 'check_exportable', 'choose_exporter', 'export_onnx',
           'verify_onnx', 'exporter_name']

#: ONNX opset of the TorchScript exporter (the dynamo exporter uses its own default).
TORCHSCRIPT_OPSET = 17


class ExportError(RuntimeError):
    """A model/option combination that cannot be exported; the message says what to change."""


def exporter_name(dynamo: bool) -> str:
    return ('the dynamo exporter (torch.onnx.export(dynamo=True), --dynamo)' if dynamo else
            'the TorchScript exporter (torch.onnx.export(dynamo=False), --no-dynamo)')


def dynamo_unavailable() -> Optional[str]:
    """Why ``torch.onnx.export(dynamo=True)`` cannot run here, or None."""
    # a capability test, not a version fact (mmseg_ext.utils.versions): does export take dynamo=
    if 'dynamo' not in inspect.signature(torch.onnx.export).parameters:
        return (f'the dynamo exporter needs torch >= 2.5 (torch.onnx.export(dynamo=True)); this '
                f'is torch {torch.__version__}')
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        return 'the dynamo exporter needs onnxscript (pip install onnxscript)'
    return None


class SegLogits(nn.Module):
    """``img (B, 3, H, W) -> seg_logits (B, num_classes, H, W)`` of ``segmentor`` (see the
    module docstring) for the fixed input size ``shape = (H, W)``."""

    def __init__(self, segmentor: nn.Module, shape: Tuple[int, int]) -> None:
        super().__init__()
        self.segmentor = segmentor
        self.shape = tuple(shape)

    def forward(self, img: Tensor) -> Tensor:
        # the input's own size (traced as a size, not a constant: a dynamic H, W follows it)
        shape = tuple(img.shape[-2:]) if torch.onnx.is_in_onnx_export() else self.shape
        meta = dict(img_shape=shape, pad_shape=shape, ori_shape=shape)
        return self.segmentor.encode_decode(img, [meta])


#: How many keys of each kind (missing, unexpected, of another shape) a mismatch message lists.
def _check_model(model: nn.Module, shape: Sequence[int]) -> Tuple[int, int]:
    if not hasattr(model, 'encode_decode'):
        raise ExportError(f'{type(model).__name__} has no encode_decode: the exporter takes '
                          'mmseg segmentors (EncoderDecoder, CascadeEncoderDecoder)')
    test_cfg = getattr(model, 'test_cfg', None) or {}
    mode = test_cfg.get('mode', 'whole')
    if mode != 'whole':
        raise ExportError(
            f"the config's test_cfg mode is {mode!r}: the exported graph runs whole-image "
            'inference on the --shape input; export with --cfg-options model.test_cfg.mode=whole '
            "(and run sliding windows outside the graph if you need them)")
    if len(shape) != 2 or any(not is_int(s) or s <= 0
                              for s in shape):
        raise ExportError(f'shape must be two positive ints (H, W), e.g. 128 256, got {shape!r}')
    return int(shape[0]), int(shape[1])


def adaptive_pool_problems(model: nn.Module, shape: Sequence[int]) -> List[str]:
    """Adaptive poolings of ``model`` whose output size does not divide their input size at
    input ``shape`` (which the TorchScript exporter refuses), as ``'name: HxW -> hxw'``."""
    H, W = _check_model(model, shape)
    problems, handles = [], []
    for name, mod in model.named_modules():
        if isinstance(mod, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            def hook(m, args, out, _name=name):
                out = out[0] if isinstance(out, tuple) else out  # return_indices=True
                (h, w), (oh, ow) = args[0].shape[-2:], out.shape[-2:]
                if h % oh or w % ow:
                    problems.append(f'{_name} ({type(m).__name__}): {h}x{w} -> {oh}x{ow}')
            handles.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            SegLogits(model, (H, W))(torch.zeros(1, 3, H, W))
    finally:
        for h in handles:
            h.remove()
    return problems


def _divisible_shape(model: nn.Module, shape: Tuple[int, int]) -> Optional[Tuple[int, int]]:
    """The smallest multiple of 48, 96, 192 or 384 (a stride-8/16/32 map divisible by PSPNet's
    pool scales 1, 2, 3, 6) not below ``shape`` at which no adaptive pooling has a problem,
    checked by running the model; None if none is."""
    for m in (48, 96, 192, 384):
        cand = (math.ceil(shape[0] / m) * m, math.ceil(shape[1] / m) * m)
        if not adaptive_pool_problems(model, cand):
            return cand
    return None


def check_exportable(model: nn.Module, shape: Sequence[int], dynamo: bool) -> None:
    """ExportError saying what to use instead when ``model`` at input ``shape`` cannot be
    exported by the chosen exporter (``dynamo``)."""
    H, W = _check_model(model, shape)
    if dynamo:
        reason = dynamo_unavailable()
        if reason is not None:
            raise ExportError(f'{reason}: use --no-dynamo (the TorchScript exporter)')
        return
    problems = adaptive_pool_problems(model, (H, W))
    if problems:
        reason = dynamo_unavailable()
        alt = ('Use --dynamo (torch.onnx.export(dynamo=True) exports these poolings)'
               if reason is None else f'--dynamo is not available here ({reason})')
        better = _divisible_shape(model, (H, W))
        if better is not None:
            alt += (f'{", or" if reason is None else "; instead"} export at --shape {better[0]} '
                    f'{better[1]} (every pooled map divides its input there)')
        raise ExportError(
            f'{exporter_name(False)} cannot export adaptive pooling whose output size does not '
            f'divide its input size; at --shape {H} {W}: ' + '; '.join(problems) + '. ' + alt)


def choose_exporter(model: nn.Module, shape: Sequence[int], dynamo: Optional[bool]) -> bool:
    """``dynamo`` if given (checked by :func:`check_exportable`); for None the TorchScript
    exporter where it can export the model (faster, any torch version), else the dynamo one."""
    if dynamo is not None:
        check_exportable(model, shape, dynamo)
        return dynamo
    _check_model(model, shape)
    if not adaptive_pool_problems(model, shape):
        return False
    if dynamo_unavailable() is None:
        return True
    check_exportable(model, shape, False)  # raises, saying what to do instead
    return False


def export_onnx(model: nn.Module, shape: Sequence[int], out: str, dynamo: bool,
                dynamic_batch: bool = False, opset: Optional[int] = None,
                check: bool = True, dynamic_shape: bool = False) -> str:
    """Export ``SegLogits(model, shape)`` to ``out`` (input ``img``, output ``seg_logits``) with
    the chosen exporter; a dynamic batch axis with ``dynamic_batch``, dynamic H and W axes with
    ``dynamic_shape`` (TorchScript exporter; :func:`check_dynamic_shape` says which models keep
    sizes in their graph); ``opset`` None = 17 for the TorchScript exporter, the dynamo
    exporter's default otherwise. :func:`check_exportable` first unless ``check=False``
    (already done, e.g. by :func:`choose_exporter`). Returns ``out``.
    """
    if dynamic_shape:
        check_dynamic_shape(model, dynamo)
    if check:
        check_exportable(model, shape, dynamo)
    H, W = int(shape[0]), int(shape[1])
    wrapper = SegLogits(model.eval(), (H, W)).eval()
    # torch.export specialises a batch of 1, so a dynamic batch is traced with 2
    gen = torch.Generator().manual_seed(0)
    img = torch.randn(2 if dynamic_batch else 1, 3, H, W, generator=gen)
    kwargs = dict(input_names=['img'], output_names=['seg_logits'])
    if dynamo:
        kwargs.update(dynamo=True, verbose=False)
        if opset is not None:
            kwargs['opset_version'] = opset
        if dynamic_batch:
            kwargs['dynamic_shapes'] = ({0: torch.export.Dim('batch')}, )
    else:
        # a capability test (as in dynamo_unavailable): an export that takes dynamo= may default
        # to it, so the TorchScript exporter is asked for by name
        if 'dynamo' in inspect.signature(torch.onnx.export).parameters:
            kwargs['dynamo'] = False
        kwargs['opset_version'] = opset or TORCHSCRIPT_OPSET
        axes = ({0: 'batch'} if dynamic_batch else {})
        axes.update({2: 'height', 3: 'width'} if dynamic_shape else {})
        if axes:
            kwargs['dynamic_axes'] = {'img': dict(axes), 'seg_logits': dict(axes)}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')  # tracer and deprecation warnings
        try:
            torch.onnx.export(wrapper, (img, ), out, **kwargs)
        except Exception as e:  # say which exporter failed and what else to try
            what = str(e) if len(str(e)) <= 800 else str(e)[:800] + ' [...]'  # graph dumps
            raise ExportError(f'{exporter_name(dynamo)} failed on {type(model).__name__} at '
                              f'--shape {H} {W}: {type(e).__name__}: {what}\nTry '
                              f'{exporter_name(not dynamo)}.') from e
    return out


#: Modules whose output window depends on their input's size, which the TorchScript exporter
#: cannot export with dynamic H and W (it stops with "SymbolicValueError: Unsupported: ONNX
#: export of operator adaptive pooling, input size not accessible"; measured 2026-12-07 on the
#: quickstart PSPNet, GFFNet and SANet). The sparse non-local op is not among them: its export
#: path computes its geometry from the traced sizes, so SSANet exports with dynamic H and W.
SIZE_BAKING = {
    'AdaptiveAvgPool2d': 'adaptive pooling (its windows follow the input size)',
    'AdaptiveMaxPool2d': 'adaptive pooling (its windows follow the input size)',
    'GridAvgPool2d': "SAHead's attn_grid pooling (adaptive: its cells follow the map size; "
                     'pool_ratio pooling exports)',
    'GridMaxPool2d': "SAHead's attn_grid pooling (adaptive: its cells follow the map size; "
                     'pool_ratio pooling exports)',
}


def _global_pool(m: nn.Module) -> bool:
    """An adaptive pooling to 1x1 (exported as a global pooling, any input size)."""
    size = getattr(m, 'output_size', None)
    return size in (1, (1, 1), [1, 1])


def dynamic_shape_problems(model: nn.Module) -> List[str]:
    """The modules of ``model`` the TorchScript exporter cannot export with dynamic H and W, as
    ``'name (type): why'``."""
    return [f'{name} ({type(m).__name__}): {SIZE_BAKING[type(m).__name__]}'
            for name, m in model.named_modules()
            if type(m).__name__ in SIZE_BAKING and not _global_pool(m)]


def check_dynamic_shape(model: nn.Module, dynamo: bool) -> None:
    """ExportError saying why ``model`` cannot be exported with dynamic H and W (the
    TorchScript exporter; models whose graph keeps sizes are named with the module that
    does)."""
    if dynamo:
        raise ExportError('--dynamic-shape uses the TorchScript exporter: add --no-dynamo')
    problems = dynamic_shape_problems(model)
    if problems:
        raise ExportError(
            'this model cannot be exported with dynamic H and W: ' + '; '.join(problems[:4])
            + (f' and {len(problems) - 4} more' if len(problems) > 4 else '')
            + '. Export one file per input size (--shape H W) instead.')


def verify_onnx(model: nn.Module, path: str, shape: Sequence[int],
                batch_sizes: Sequence[int] = (1, ), seed: int = 0) -> dict:
    """Run the ONNX file in onnxruntime (CPU) and PyTorch on the same random inputs.

    Returns ``dict(max_abs_error=..., max_abs_logit=..., argmax_mismatch=...)`` over all
    ``batch_sizes`` (the fraction of pixels whose argmax differs). Shapes must match.
    """
    import onnxruntime as ort
    H, W = int(shape[0]), int(shape[1])
    wrapper = SegLogits(model.eval(), (H, W)).eval()
    sess = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    gen = torch.Generator().manual_seed(seed)
    err, scale, mismatch, pixels = 0.0, 0.0, 0, 0
    for b in batch_sizes:
        img = torch.randn(b, 3, H, W, generator=gen)
        with torch.no_grad():
            ref = wrapper(img)
        got = torch.from_numpy(sess.run(None, {'img': img.numpy()})[0])
        if got.shape != ref.shape:
            raise ExportError(f'onnxruntime returned {tuple(got.shape)} for a batch of {b}, '
                              f'PyTorch {tuple(ref.shape)}')
        err = max(err, (got - ref).abs().max().item())
        scale = max(scale, ref.abs().max().item())
        mismatch += (got.argmax(1) != ref.argmax(1)).sum().item()
        pixels += ref[:, 0].numel()
    return dict(max_abs_error=err, max_abs_logit=scale, argmax_mismatch=mismatch / pixels)
