"""The Triton backend of ``sparse_nonlocal_attention`` against the float64 reference.

Without a GPU, ``tests/conftest.py`` sets ``TRITON_INTERPRET=1`` before triton is imported, and
the kernels run in Triton's CPU interpreter on CPU tensors; with a GPU the same tests run the
compiled kernels on CUDA tensors. Maps are tiny (the interpreter executes every block operation
in numpy). Skipped where triton is not installed. Because the interpreter accepts code that the
compiler may reject, the last test also compiles every kernel for an sm_90 GPU (no GPU needed).

bf16 / fp16 tolerance: the kernels read the low-precision inputs exactly and compute in float32,
so against the float64 reference *on the same rounded inputs* the only sizeable error is the one
final rounding of each output / gradient element to the input dtype: at most half a unit in the
last place (ulp) with round-to-nearest (compiled Triton, torch casts), one ulp under the
interpreter, whose fp32 -> bf16 store truncates. One ulp is <= 2^-7 |x| for bf16 (8 significant
bits) and <= 2^-10 |x| for fp16 (11 bits): that is the ``rtol``, with an ``atol`` of 1e-5 of the
tensor's largest value for the float32 accumulation noise near zero.
"""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from mmseg_ext.ops import sparse_nonlocal_attention
from mmseg_ext.ops import sparse_nonlocal as snl_mod
from snl_reference import F64, MSDAPytorchShim, make_inputs, reference_snl

pytest.importorskip('triton')

TK = snl_mod._triton_module()
DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'
if TK is None or (DEVICE == 'cpu' and not TK.INTERPRETED):
    pytest.skip('the Triton kernels cannot run here (no GPU, and triton was imported without '
                'TRITON_INTERPRET=1)', allow_module_level=True)

ULP_RTOL = {torch.bfloat16: 2.0**-7, torch.float16: 2.0**-10}


def _to_device(ts, dtype=None):
    return [t.detach().to(DEVICE, dtype).requires_grad_() for t in ts]


def _check_against_reference(inputs, kernel_size, dilation=1, rtol=1e-10, atol=1e-12):
    """Triton forward and the gradients of all four inputs against the float64 reference
    (computed on the same values, on CPU)."""
    ref_in = [t.detach().cpu().double().requires_grad_() for t in inputs]
    out = sparse_nonlocal_attention(*inputs, kernel_size, dilation, backend='triton')
    ref = reference_snl(*ref_in, kernel_size, dilation)
    assert out.dtype == inputs[2].dtype and out.shape == ref.shape
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    g = g.to(out.dtype).double()  # representable in the output dtype
    got = torch.autograd.grad((out * g.to(out)).sum(), inputs)
    want = torch.autograd.grad((ref * g).sum(), ref_in)
    for name, a, b in zip(('out', 'query', 'key', 'value', 'offset'), (out, ) + got,
                          (ref, ) + want):
        torch.testing.assert_close(a.detach().cpu().double(), b.detach(), rtol=rtol,
                                   atol=atol * max(1.0, b.abs().max().item()),
                                   msg=lambda m, n=name: f'{n}: {m}')


@pytest.mark.parametrize('kernel_size,dilation,hw,off_scale', [
    (3, 1, (5, 7), 1.5),
    (2, 1, (4, 5), 1.5),  # even kernel: half-pixel grid centre
    ((2, 3), 1, (5, 7), 1.5),  # rectangular
    (3, 2, (4, 6), 1.5),  # dilation 2
    (3, 1, (4, 5), 8.0),  # most samples off the map
])
def test_forward_and_gradients_match_reference(kernel_size, dilation, hw, off_scale):
    inputs = _to_device(make_inputs(2, 5, 3, *hw, kernel_size, off_scale))
    _check_against_reference(inputs, kernel_size, dilation)


def test_several_row_blocks_and_channel_tiles(monkeypatch):
    """Rows split over programs (last block partial) and channels over masked tiles."""
    monkeypatch.setattr(TK, '_BLOCK_N', 8)
    monkeypatch.setattr(TK, '_MAX_BLOCK_C', 4)
    inputs = _to_device(make_inputs(2, 6, 9, 5, 7, (3, 2), 2.0))  # 70 rows; C=6, Cv=9
    _check_against_reference(inputs, (3, 2))


def test_non_contiguous_inputs():
    q, k, v, off = make_inputs(2, 4, 3, 5, 14, 3, 1.5)
    nc = [q[..., ::2], k.transpose(2, 3).contiguous().transpose(2, 3)[..., ::2],
          v.contiguous(memory_format=torch.channels_last)[..., ::2], off[..., ::2]]
    inputs = _to_device(nc)
    assert not any(t.is_contiguous() for t in inputs[:2] + inputs[3:])
    _check_against_reference(inputs, 3)


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_low_precision_inputs(dtype):
    inputs = _to_device(make_inputs(2, 6, 5, 5, 7, 3, 1.5), dtype)
    _check_against_reference(inputs, 3, rtol=ULP_RTOL[dtype], atol=1e-5)
    out, s = sparse_nonlocal_attention(*inputs, 3, backend='triton', return_weights=True)
    assert out.dtype == dtype and s.dtype == torch.float32


def test_large_logits_stay_finite_in_bf16():
    # logits up to ~C * 30^2 overflow fp16/bf16 arithmetic unless accumulated in fp32
    q, k, v, off = make_inputs(1, 16, 4, 4, 5, 3, dtype=torch.float32)
    q, k = q * 30, k * 30
    inputs = _to_device((q, k, v, off), torch.bfloat16)
    out = sparse_nonlocal_attention(*inputs, 3, backend='triton')
    out.float().sum().backward()
    assert torch.isfinite(out).all() and all(torch.isfinite(t.grad).all() for t in inputs)


def test_weights_and_partial_gradients_match_sparse_backend():
    """Same softmax as the sparse path; gradients w.r.t. one input at a time equal the full
    ones (every NEED_* combination of the backward kernels that autograd can ask for)."""
    base = make_inputs(2, 3, 2, 4, 5, (3, 3), 1.5)
    full = _to_device(base)
    out, s = sparse_nonlocal_attention(*full, 3, backend='triton', return_weights=True)
    _, s_ref = sparse_nonlocal_attention(*base, 3, backend='sparse', return_weights=True)
    torch.testing.assert_close(s.cpu(), s_ref, rtol=1e-12, atol=1e-14)
    grads = torch.autograd.grad(out.sum(), full)
    for i in range(4):
        part = [t.detach().clone().requires_grad_(j == i) for j, t in enumerate(full)]
        out_i = sparse_nonlocal_attention(*part, 3, backend='triton')
        (gi, ) = torch.autograd.grad(out_i.sum(), part[i])
        torch.testing.assert_close(gi, grads[i], rtol=1e-12, atol=1e-14)


def test_msda_composition_with_triton_logits():
    """backend='mmcv' uses Triton logits: checked with mmcv's pure-PyTorch MSDA fallback."""
    pytest.importorskip('mmcv.ops.multi_scale_deform_attn')
    inputs = _to_device(make_inputs(2, 3, 2, 3, 4, (2, 3), 1.5))
    ref_in = [t.detach().cpu().requires_grad_() for t in inputs]
    out = snl_mod._attention(*inputs, 2, 3, 1, 'mmcv', msda=MSDAPytorchShim, logits='triton')
    ref = reference_snl(*ref_in, (2, 3))
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-10, atol=1e-12)
    got = torch.autograd.grad(out.sum(), inputs)
    want = torch.autograd.grad(ref.sum(), ref_in)
    for a, b in zip(got, want):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-9, atol=1e-11)


_AOT_SCRIPT = textwrap.dedent('''
    import triton, triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from mmseg_ext.ops.sparse_nonlocal import triton_kernels as tk
    assert not tk.INTERPRETED
    def build(fn, ptrs, **consts):
        sig = {a: ptrs.get(a, 'i32' if a in ('R', 'H', 'W', 'C', 'CV', 'dil') else 'constexpr')
               for a in fn.arg_names}
        k = triton.compile(ASTSource(fn, sig, constexprs=consts),
                           target=GPUTarget('cuda', 90, 32), options=dict(num_warps=8))
        assert k.asm['cubin'], fn.__name__
    b, f = '*bf16', '*fp32'
    base = dict(K=99, KH=9, KW=11, ACC=tl.float32, BLOCK_N=16, BLOCK_C=64)
    build(tk._logits_kernel, dict(q_ptr=b, k_ptr=b, off_ptr=b, out_ptr=f), SOFTMAX=True,
          BLOCK_K=128, **base)
    build(tk._values_kernel, dict(v_ptr=b, off_ptr=b, s_ptr=f, out_ptr=b), **base)
    build(tk._bwd_values_kernel, dict(g_ptr=b, v_ptr=b, off_ptr=b, s_ptr=f, ds_ptr=f, gv_ptr=f,
          goff_ptr=f), NEED_V=True, NEED_S=True, NEED_OFF=True, **base)
    build(tk._bwd_keys_kernel, dict(q_ptr=b, k_ptr=b, off_ptr=b, dl_ptr=f, gq_ptr=f, gk_ptr=f,
          goff_ptr=f), NEED_Q=True, NEED_K=True, NEED_OFF=True, dil=1, **base)
    print('compiled')
''')


@pytest.mark.skipif(torch.cuda.is_available(), reason='with a GPU the tests above compile them')
def test_kernels_compile_for_sm90_without_a_gpu():
    """The interpreter accepts code the compiler may reject: compile all four kernels (bf16
    inputs, K=99 as 9x11, the dilation=1 specialisation) to an sm_90 cubin with the ptxas
    bundled in triton's wheel; no GPU needed."""
    try:
        from triton.backends.nvidia import compiler as _  # noqa: F401
    except ImportError:
        pytest.skip("triton's NVIDIA backend is not installed")
    env = {k: v for k, v in os.environ.items() if k != 'TRITON_INTERPRET'}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env['PYTHONPATH'] = root + os.pathsep + env.get('PYTHONPATH', '')
    proc = subprocess.run([sys.executable, '-c', _AOT_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and 'compiled' in proc.stdout, proc.stderr[-3000:]
