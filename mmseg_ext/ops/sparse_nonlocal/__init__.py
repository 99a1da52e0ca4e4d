"""Sparse non-local attention, the core op of SSANet's sparse non-local (SNL) block.

Paper: "Sparse Spatial Attention Network for Semantic Segmentation" (SSANet), Sec. 3.2, Eqns. 4-7:
every query pixel samples ``K = kh * kw`` key/value elements at a regular ``kh x kw`` grid around
itself shifted by learned offsets, scores them with a dot product against its query, normalises the
``K`` scores with a softmax (the sparse ``N x K`` affinity ``S``) and returns the ``S``-weighted sum
of the bilinearly sampled values.

Contract (every backend)
------------------------
* Point ``j = a * kw + b`` of query pixel ``(y, x)`` is sampled at
  ``(y + (a - (kh - 1) / 2) * dilation + offset[:, 2j], x + (b - (kw - 1) / 2) * dilation +
  offset[:, 2j + 1])`` in pixel-index coordinates (mmcv deform-conv layout dy, dx; even kernels
  give half-pixel grid centres), bilinearly from its 4 corner pixels, a corner outside the map
  contributing zero.
* ``s = softmax_j(<query(y, x), key(sample_j)>)`` with no scaling, computed in float32 (float64
  when an input is float64) whatever the input dtypes and autocast;
  ``out(y, x) = sum_j s_j value(sample_j)`` in ``value``'s dtype.
* A point whose offset is NaN or infinite makes its query's softmax and output NaN (all
  channels); other queries are unaffected.
* Differentiable w.r.t. query, key, value and offset (no double backward). Memory is linear in
  ``H * W``: nothing of size ``H*W*K*C`` is materialised (``'export'`` gathers bounded chunks of
  sampled rows, see :mod:`.export`).

Backends (argument ``backend``)
-------------------------------
* ``'sparse'`` (:mod:`.sparse`): chunked SDDMM / SpMM in torch with a hand-written backward.
  Any device; the CPU path.
* ``'triton'`` (:mod:`.triton_kernels`): fused Triton kernels, one program per block of queries,
  geometry recomputed in-kernel, only the softmax (N x K) saved; the backward has no atomics
  (bitwise deterministic). CUDA tensors; CPU tensors only in Triton's interpreter (triton >= 3.0,
  ``TRITON_INTERPRET=1`` set before the first call; slow, for tests).
  Inputs stay in their dtype (fp16 / bf16 / fp32 / fp64), accumulation in float32.
* ``'mmcv'`` (:mod:`.mmcv_msda`): logits from the Triton kernel (the sparse path's where Triton
  cannot run) and values from mmcv's CUDA ``MultiScaleDeformableAttnFunction``. CUDA tensors
  and mmcv compiled with CUDA.
* ``'export'`` (:mod:`.export`): standard ONNX-exportable operators (gathers, batched matmuls,
  softmax); any device. It materialises the gathered rows of a chunk of points (memory in its
  docstring); used for ``torch.onnx.export`` / ``torch.export``.
* ``'auto'`` (default): ``'triton'`` on CUDA tensors when triton imports (and ``K`` and the
  channels fit its register tiles, :data:`.triton_kernels.MAX_POINTS`, ``MAX_CHANNELS``), else
  ``'sparse'``.

While a model is being exported or traced (:func:`.export.is_exporting`), every ``backend``
value runs ``'export'``: no other backend can be traced.

``torch.compile`` (:mod:`.custom_op`): on torch >= 2.4, while TorchDynamo traces a call (and it
is not exporting), the ``'sparse'`` and ``'triton'`` backends run through the custom op
``mmseg_ext::sparse_nonlocal`` (same forward and backward code, bitwise the same results, a fake
implementation for tracing), so a compiled SNL block has no graph break; eager calls do not use
it. ``'export'`` is plain torch and traces as is; ``'mmcv'`` is not covered (mmcv's CUDA
function is opaque to TorchDynamo; not tested, no GPU). On older torch
(e.g. 2.1) there is no custom op: TorchDynamo is kept out of the op (``torch.compiler.disable``)
and a compiled model breaks its graph at every SNL block, running the op eagerly there.

Files: this one (contract, argument checks, dispatch), :mod:`.common` (checks, geometry, row
layout), :mod:`.sparse`, :mod:`.triton_kernels` (launches, autograd) with :mod:`.triton_jit`
(the kernels) and :mod:`.triton_static` (compiling them without a GPU), :mod:`.mmcv_msda`,
:mod:`.export`, :mod:`.custom_op` (``torch.compile``).
"""
import importlib
from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from . import custom_op as _custom_op
from . import export as _export
from . import sparse as _sparse
from .common import check_inputs, compute_dtype, from_rows, offset_rows, sample_coordinates, to_rows
from .mmcv_msda import describe_unavailable as _mmcv_unavailable
from .mmcv_msda import msda_attention, pixel_to_msda_locations

__all__ = ['sparse_nonlocal_attention', 'sample_coordinates', 'pixel_to_msda_locations',
           'BACKENDS', 'check_backend', 'resolve_backend']

#: Accepted values of ``backend``.
BACKENDS = ('auto', 'triton', 'sparse', 'mmcv', 'export')


def check_backend(backend) -> str:
    """``backend`` if it is one of :data:`BACKENDS`, else a ValueError naming the choices."""
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f'backend must be one of {BACKENDS}, got {backend!r}: \'auto\' = '
                         "Triton on CUDA, the sparse path on CPU; 'export' = exportable "
                         "operators (ONNX)")
    return backend


#: ``[the .triton_kernels module, or None]`` once :func:`_import_triton` has run.
_TRITON_KERNELS: list = []


def _import_triton() -> bool:
    """Import :mod:`.triton_kernels` (once, on first use: whether its kernels are compiled or
    interpreted is fixed then, by ``TRITON_INTERPRET``); whether triton imported.

    Marked for TorchDynamo as ``torch.compiler.assume_constant_result`` would mark it (by the
    attribute that function sets: calling it imports ``torch._dynamo``, about a second, at every
    import of this package): Dynamo runs it while tracing and keeps its result as a constant,
    instead of tracing the import, which would break the graph (resolving ``'auto'`` on CUDA
    imports the kernels; in a compiled model that is the first call)."""
    if not _TRITON_KERNELS:
        try:
            _TRITON_KERNELS.append(importlib.import_module(f'{__name__}.triton_kernels'))
        except ImportError:
            _TRITON_KERNELS.append(None)
    return _TRITON_KERNELS[0] is not None


_import_triton._dynamo_marked_constant = True


def _triton_module():
    """The :mod:`.triton_kernels` module, or None when triton cannot be imported."""
    _import_triton()
    return _TRITON_KERNELS[0]


def triton_unavailable(device: torch.device, num_points: int,
                       channels: Tuple[int, ...] = ()) -> Optional[str]:
    """Why ``backend='triton'`` cannot run on ``device`` with ``num_points`` per query and
    ``channels`` (query/key, value), or None."""
    mod = _triton_module()
    if mod is None:
        return 'the triton package is not installed (pip install triton)'
    reason = mod.unsupported(num_points, channels)
    if reason is not None:
        return reason
    if device.type == 'cuda':
        return None
    if device.type == 'cpu' and mod.INTERPRETED:
        return None
    return (f'the tensors are on {device.type}: the Triton kernels run on CUDA tensors (on CPU '
            'only in Triton\'s slow interpreter, triton >= 3.0 with TRITON_INTERPRET=1 set '
            'before the first call)')


def resolve_backend(backend: str, device: torch.device, num_points: int,
                    channels: Tuple[int, ...] = ()) -> str:
    """The concrete backend (``'triton'``, ``'sparse'``, ``'mmcv'`` or ``'export'``) for
    ``backend`` on ``device``; ValueError saying what to change when the requested one cannot
    run there. ``'export'`` whatever ``backend`` while exporting."""
    check_backend(backend)
    if backend == 'export' or _export.is_exporting():
        return 'export'
    if backend == 'auto':
        if device.type == 'cuda' and triton_unavailable(device, num_points, channels) is None:
            return 'triton'
        return 'sparse'
    reason = None
    if backend == 'triton':
        reason = triton_unavailable(device, num_points, channels)
    elif backend == 'mmcv':
        reason = (f'the tensors are on {device.type}, and mmcv\'s op runs on CUDA tensors'
                  if device.type != 'cuda' else _mmcv_unavailable())
    if reason is not None:
        raise ValueError(f"backend='{backend}' cannot run here: {reason}. Use backend='auto' "
                         "(Triton on CUDA, the sparse path elsewhere) or backend='sparse' (any "
                         "device); in a config, e.g. decode_head=dict(type='SNLHead', ..., "
                         "backend='auto')")
    return backend


def sparse_nonlocal_attention(query: Tensor,
                              key: Tensor,
                              value: Tensor,
                              offset: Tensor,
                              kernel_size: Union[int, Tuple[int, int]],
                              dilation: int = 1,
                              backend: str = 'auto',
                              return_weights: bool = False,
                              *,
                              use_mmcv_cuda: Optional[bool] = None
                              ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    """Sparse non-local attention (SSANet, Eqns. 4-7); the contract is the module docstring.

    Args:
        query (Tensor): (B, C, H, W).
        key (Tensor): (B, C, H, W).
        value (Tensor): (B, Cv, H, W).
        offset (Tensor): (B, 2K, H, W) with ``K = kh * kw``, channel ``2j`` = dy, ``2j+1`` = dx.
        kernel_size (int | tuple[int, int]): sampling grid ``(kh, kw)``; the paper uses
            K = 9, 49, 81, 99 (9x11) and 121.
        dilation (int): spacing of the initial grid. Default: 1.
        backend (str): ``'auto'`` (default), ``'triton'``, ``'sparse'``, ``'mmcv'`` or
            ``'export'`` (see the module docstring). A backend that cannot run on the inputs'
            device raises; while exporting, every value runs ``'export'``.
        return_weights (bool): also return the softmax weights ``s`` the output was computed
            with (detached; for inspection/visualisation). Default: False.
        use_mmcv_cuda: removed; raises a TypeError saying which ``backend`` to use instead.

    Returns:
        Tensor: (B, Cv, H, W); with ``return_weights``, ``(out, s)`` where ``s`` (B, K, H, W)
        is the softmax over the K points (float32, or float64 for float64 inputs), channel ``j``
        for point ``j`` as in the offset layout.
    """
    if use_mmcv_cuda is not None:
        raise TypeError("use_mmcv_cuda was replaced by backend: use backend='mmcv' for "
                        "use_mmcv_cuda=True, backend='auto' (the default) otherwise")
    kh, kw = check_inputs(query, key, value, offset, kernel_size, dilation)
    resolved = resolve_backend(backend, query.device, kh * kw,
                               (query.shape[1], value.shape[1]))
    return _attention(query, key, value, offset, kh, kw, dilation, resolved,
                      return_weights=bool(return_weights))


def _compiling() -> bool:
    """Whether TorchDynamo is tracing the call (``torch.compile``) and the custom op exists
    (torch >= 2.4): the sparse and Triton backends then run through the custom op
    ``mmseg_ext::sparse_nonlocal`` (:mod:`.custom_op`), which does not break the graph."""
    return _custom_op.UNAVAILABLE is None and torch.compiler.is_compiling()


def _sparse_rows(*args):
    """:func:`.sparse.sparse_attention_rows` (the ``autograd.Function``), the eager path."""
    return _sparse.sparse_attention_rows(*args)


def _triton_rows(*args):
    """:func:`.triton_kernels.triton_attention_rows` (the ``autograd.Function``), the eager
    path."""
    return _triton_module().triton_attention_rows(*args)


if _custom_op.UNAVAILABLE is not None and hasattr(getattr(torch, 'compiler', None), 'disable'):
    # torch < 2.4 (no custom op): TorchDynamo must not trace the autograd.Functions (torch 2.1
    # fails on the sparse path's torch.sparse_csr_tensor with fake tensors, TorchRuntimeError):
    # a compiled model breaks its graph at each SNL block and runs the op eagerly. Eager calls
    # are unaffected. (torch.compiler.disable imports torch._dynamo; only on these versions.)
    _sparse_rows = torch.compiler.disable(_sparse_rows)
    _triton_rows = torch.compiler.disable(_triton_rows)


def _attention(query: Tensor, key: Tensor, value: Tensor, offset: Tensor, kh: int, kw: int,
               dilation: int, backend: str, msda=None, logits: Optional[str] = None,
               return_weights: bool = False):
    """:func:`sparse_nonlocal_attention` on checked inputs and a concrete ``backend``.

    ``msda`` (mmcv backend only): None = mmcv's CUDA function, or an object with its ``apply``
    signature (tests pass a CPU shim around mmcv's ``multi_scale_deformable_attn_pytorch``).
    ``logits`` (mmcv backend only): ``'triton'`` or ``'sparse'``; None = Triton where it can run.
    """
    B, C, H, W = query.shape
    K = kh * kw
    cdt = compute_dtype(query, key, value, offset)
    geom = ((H, W), (kh, kw), dilation)
    with torch.autocast(device_type=query.device.type, enabled=False):
        if backend == 'triton':
            # rows keep their dtype (fp16/bf16 are read as such); float64 makes all float64
            dt = torch.float64 if cdt == torch.float64 else None
            q, k, v = to_rows(query, dt), to_rows(key, dt), to_rows(value, dt)
            off = offset_rows(offset, K, dt)
            if _compiling():
                out, s = _custom_op.attention_rows(q, k, v, off, *geom, backend='triton')
            else:
                out, s = _triton_rows(q, k, v, off, *geom)
        else:
            q, k, v = to_rows(query, cdt), to_rows(key, cdt), to_rows(value, cdt)
            off = offset_rows(offset, K, cdt)
            if backend == 'sparse' and _compiling():
                out, s = _custom_op.attention_rows(q, k, v, off, *geom, backend='sparse')
            elif backend == 'sparse':
                out, s = _sparse_rows(q, k, v, off, *geom)
            elif backend == 'export':
                out, s = _export.export_attention_rows(q, k, v, off, *geom)
            elif backend == 'mmcv':
                if logits is None:
                    logits = 'sparse' if triton_unavailable(query.device, K, (C, )) else 'triton'
                fn = (_triton_module().triton_logits_rows if logits == 'triton' else
                      _sparse.sparse_logits_rows)
                out, s = msda_attention(q, k, v, off, offset, *geom, logits_fn=fn, msda=msda)
            else:
                raise ValueError(f'unknown concrete backend {backend!r}')
    out = from_rows(out, B, H, W, value.dtype)
    if not return_weights:
        return out
    return out, from_rows(s.detach(), B, H, W, s.dtype)

