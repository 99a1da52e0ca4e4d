"""``torch.compile`` support: the sparse and Triton backends as a torch custom op.

Contract: see :mod:`mmseg_ext.ops.sparse_nonlocal`. Both backends are Python
``autograd.Function`` s (:class:`.sparse._SparseNonLocal`, :class:`.triton_kernels._TritonSNL`)
over torch sparse tensors or Triton launches, which TorchDynamo cannot trace: every SNL block
would break the graph. Here the same forward and backward run inside two custom ops (registered
with ``torch.library.custom_op`` on the first import, torch >= 2.4), which Dynamo and AOTAutograd
keep as single nodes of the graph:

* ``mmseg_ext::sparse_nonlocal(q, k, v, off, H, W, kh, kw, dilation, backend) -> (out, s,
  saved)`` on the rows of the other backends (``q, k`` (R, C), ``v`` (R, Cv), ``off`` (R, K, 2),
  ``R = B * H * W``; ``backend`` ``'sparse'`` or ``'triton'``): the output rows, the softmax
  (R, K) and what the backward needs besides the inputs (the sparse path's per-corner dot
  products (R, 4K); an empty tensor for Triton). Its fake (meta) implementation gives those
  shapes and dtypes (:func:`_fake`); the softmax and ``saved`` are non-differentiable.
* ``mmseg_ext::sparse_nonlocal_backward(grad_out, q, k, v, off, s, saved, H, W, kh, kw,
  dilation, backend, need_q, need_k, need_v, need_off) -> (dq, dk, dv, doff)``: the backward,
  registered as the first op's autograd formula (``torch.library.register_autograd``); an input
  whose gradient is not needed gets an empty tensor (``None`` to autograd).

Both run the ``autograd.Function`` s' own ``forward`` / ``backward`` (called with a stand-in for
autograd's ``ctx``, :class:`_Ctx`), so results are bitwise those of eager mode. On CUDA the
Triton kernels are launched inside the op as in eager mode (opaque to Inductor; not
``torch.library.triton_op``, which would need the launches rewritten around ``wrap_triton`` and
could not be tested without a GPU).

The dispatcher (:func:`mmseg_ext.ops.sparse_nonlocal._attention`) calls :func:`attention_rows`
only while ``torch.compiler.is_compiling()`` (and not exporting, where the export backend runs);
eager calls still use the ``autograd.Function`` s directly. The ``'mmcv'`` backend is not
covered (mmcv's CUDA function is opaque to TorchDynamo; not tested, no GPU); ``'export'`` is
plain torch and traces as is.

:data:`UNAVAILABLE` is None where the ops are registered, else why not (torch < 2.4, e.g. the
classic torch 2.1 stack): there each SNL block breaks the graph of a compiled model (the model
still compiles and runs, in several graphs).

The package can be loaded twice in one process (as ``mmseg_ext.ops.sparse_nonlocal`` and by path,
e.g. by ``benchmark_snl_op.py``): the ops are registered once, by the first copy, and later
copies use them.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

from . import sparse as _sparse

__all__ = ['UNAVAILABLE', 'OP', 'BACKWARD_OP', 'BACKENDS', 'attention_rows', 'MIN_TORCH']

#: Qualified names of the forward and backward ops.
OP = 'mmseg_ext::sparse_nonlocal'
BACKWARD_OP = 'mmseg_ext::sparse_nonlocal_backward'
#: Concrete backends run through the ops.
BACKENDS = ('sparse', 'triton')
#: Oldest torch with everything used here (``torch.library.custom_op``, ``register_fake``,
#: ``register_autograd``, ``torch.compiler.is_compiling``).
MIN_TORCH = (2, 4)


def _unavailable() -> Optional[str]:
    missing = [name for name in ('custom_op', 'register_fake', 'register_autograd')
               if not hasattr(torch.library, name)]
    if not missing and not hasattr(getattr(torch, 'compiler', None), 'is_compiling'):
        missing = ['compiler.is_compiling']
    if not missing:
        return None
    return (f'torch {torch.__version__} has no torch.library.{missing[0]} (torch >= '
            f'{".".join(map(str, MIN_TORCH))} needed): the sparse non-local op is not a custom '
            'op there, and torch.compile breaks the graph at every SNL block')


#: None where the custom ops are registered, else the reason (old torch).
UNAVAILABLE: Optional[str] = _unavailable()


class _Ctx:
    """Stand-in for autograd's ``ctx`` when calling an ``autograd.Function`` 's static
    ``forward`` / ``backward`` directly: records what ``forward`` saves and sets."""

    needs_input_grad = ()
    saved_tensors = ()

    def save_for_backward(self, *tensors):
        self.saved_tensors = tensors

    def mark_non_differentiable(self, *tensors):
        pass

    def set_materialize_grads(self, value):
        pass


def _triton():
    from . import triton_kernels
    return triton_kernels


def _sparse_chunk_rows(q: Tensor, v: Tensor, K: int) -> int:
    """The chunk size :meth:`.sparse._SparseNonLocal.forward` chose (its ``ctx.geom[-1]``)."""
    return _sparse._chunk_rows(4 * K, max(q.shape[1], v.shape[1]), q.element_size(), q.device)


def _forward(q: Tensor, k: Tensor, v: Tensor, off: Tensor, H: int, W: int, kh: int, kw: int,
             dilation: int, backend: str) -> Tuple[Tensor, Tensor, Tensor]:
    ctx = _Ctx()
    if backend == 'sparse':
        out, s = _sparse._SparseNonLocal.forward(ctx, q, k, v, off, (H, W), (kh, kw), dilation)
        return out, s, ctx.saved_tensors[5]  # the per-corner dots
    if backend == 'triton':
        out, s = _triton()._TritonSNL.forward(ctx, q, k, v, off, (H, W), (kh, kw), dilation)
        return out, s, s.new_empty(0)
    raise ValueError(f'{OP} runs backend {BACKENDS}, got {backend!r}')


def _fake(q: Tensor, k: Tensor, v: Tensor, off: Tensor, H: int, W: int, kh: int, kw: int,
          dilation: int, backend: str) -> Tuple[Tensor, Tensor, Tensor]:
    """Shapes and dtypes of :func:`_forward`: sparse: ``out`` (R, Cv) like ``v``, ``s`` (R, K)
    and the dots (R, 4K) like ``q`` (the dispatcher gives it rows of one dtype); Triton:
    ``out`` like ``v``, ``s`` (R, K) in float32 (float64 if a row is float64), an empty
    ``saved``."""
    R, K = q.shape[0], kh * kw
    if backend == 'sparse':
        return v.new_empty(R, v.shape[1]), q.new_empty(R, K), q.new_empty(R, 4 * K)
    if backend == 'triton':
        acc = torch.float64 if any(t.dtype == torch.float64 for t in (q, k, v, off)) \
            else torch.float32
        s = q.new_empty(R, K, dtype=acc)
        return torch.empty_like(v), s, s.new_empty(0)
    raise ValueError(f'{OP} runs backend {BACKENDS}, got {backend!r}')


def _backward(grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, off: Tensor, s: Tensor,
              saved: Tensor, H: int, W: int, kh: int, kw: int, dilation: int, backend: str,
              need_q: bool, need_k: bool, need_v: bool, need_off: bool
              ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    ctx = _Ctx()
    ctx.needs_input_grad = (need_q, need_k, need_v, need_off, False, False, False)
    if backend == 'sparse':
        ctx.saved_tensors = (q, k, v, off, s, saved)
        ctx.geom = (H, W, kh, kw, dilation, _sparse_chunk_rows(q, v, kh * kw))
        fn = _sparse._SparseNonLocal.backward
    elif backend == 'triton':
        mod = _triton()
        ctx.saved_tensors = (q, k, v, off, s)
        ctx.geo = mod._geom((q, k, v, off), (H, W), (kh, kw), dilation)
        fn = mod._TritonSNL.backward
    else:
        raise ValueError(f'{BACKWARD_OP} runs backend {BACKENDS}, got {backend!r}')
    with torch.no_grad():  # as autograd runs a once_differentiable backward
        grads = fn(ctx, grad_out.contiguous())
    return tuple(t.new_empty(0) if g is None else g for g, t in zip(grads[:4], (q, k, v, off)))


def _backward_fake(grad_out, q, k, v, off, s, saved, H, W, kh, kw, dilation, backend, need_q,
                   need_k, need_v, need_off):
    return tuple(torch.empty_like(t) if need else t.new_empty(0)
                 for t, need in zip((q, k, v, off), (need_q, need_k, need_v, need_off)))


def _setup_context(ctx, inputs, output):
    q, k, v, off, H, W, kh, kw, dilation, backend = inputs
    _, s, saved = output
    ctx.mark_non_differentiable(s, saved)
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(q, k, v, off, s, saved)
    ctx.args = (H, W, kh, kw, dilation, backend)


def _autograd_backward(ctx, grad_out, _grad_s=None, _grad_saved=None):
    if grad_out is None:
        return (None, ) * 10
    need = tuple(bool(n) for n in ctx.needs_input_grad[:4])
    grads = _backward_op(grad_out, *ctx.saved_tensors, *ctx.args, *need)
    return tuple(g if n else None for g, n in zip(grads, need)) + (None, ) * 6


def _registered(qualname: str):
    """The op ``qualname`` if this process has it already (another copy of this package)."""
    namespace, name = qualname.split('::')
    try:
        return getattr(getattr(torch.ops, namespace), name).default
    except (AttributeError, RuntimeError):
        return None


def _register():
    fwd, bwd = _registered(OP), _registered(BACKWARD_OP)
    if fwd is not None and bwd is not None:
        return fwd, bwd
    lib = torch.library
    bwd_def = lib.custom_op(BACKWARD_OP, mutates_args=())(_backward)
    bwd_def.register_fake(_backward_fake)
    fwd_def = lib.custom_op(OP, mutates_args=())(_forward)
    fwd_def.register_fake(_fake)
    fwd_def.register_autograd(_autograd_backward, setup_context=_setup_context)
    return _registered(OP), _registered(BACKWARD_OP)


_op, _backward_op = _register() if UNAVAILABLE is None else (None, None)


def attention_rows(q: Tensor, k: Tensor, v: Tensor, off: Tensor, hw: Tuple[int, int],
                   kernel: Tuple[int, int], dilation: int, backend: str) -> Tuple[Tensor, Tensor]:
    """``sparse_attention_rows`` / ``triton_attention_rows`` (same arguments and results) through
    the custom op ``mmseg_ext::sparse_nonlocal``: ``(out (R, Cv), softmax (R, K))``, the
    softmax non-differentiable. Needs :data:`UNAVAILABLE` is None."""
    if _op is None:
        raise RuntimeError(UNAVAILABLE)
    out, s, _ = _op(q, k, v, off, hw[0], hw[1], kernel[0], kernel[1], dilation, backend)
    return out, s
