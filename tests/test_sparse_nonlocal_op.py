"""Tests of ``mmseg_ext.ops.sparse_nonlocal_attention`` (SSANet's sparse non-local attention).

Everything is compared with :func:`snl_reference.reference_snl`, an explicit loop over batch,
pixels and sampling points with the textbook 4-corner bilinear formula, in float64 on tiny maps.
These tests run the default backend on CPU (the chunked sparse path), the mmcv composition with
mmcv's pure-PyTorch fallback, and the dispatch; the Triton kernels are tested in
``test_snl_triton.py``.
"""
import pytest
import torch
import torch.nn.functional as F
from snl_reference import (
    F64,
    MSDAPytorchShim,
    _bilinear,
    assert_nonfinite_propagates,
    make_inputs,
    nonfinite_offset_case,
    pair,
    reference_snl,
)

from mmseg_ext.ops import sparse_nonlocal as snl_mod
from mmseg_ext.ops import sparse_nonlocal_attention
from mmseg_ext.ops.sparse_nonlocal import mmcv_msda, pixel_to_msda_locations, sample_coordinates
from mmseg_ext.ops.sparse_nonlocal import sparse as snl_sparse


def _cpu_autocast_supports_fp16() -> bool:
    try:  # torch < 2.2: "AutocastCPU only support Bfloat16"
        with torch.autocast('cpu', dtype=torch.float16):
            return True
    except RuntimeError:
        return False


def _dense_nonlocal(q, k, v):
    B, Cv, H, W = v.shape
    a = torch.softmax(torch.einsum('bcn,bcm->bnm', q.flatten(2), k.flatten(2)), -1)
    return torch.einsum('bnm,bcm->bcn', a, v.flatten(2)).view(B, Cv, H, W)


class TestSparseNonLocalAttention:

    @pytest.mark.parametrize('kernel_size,dilation,hw,off_scale', [
        (3, 1, (5, 7), 1.5),
        (2, 1, (5, 7), 1.5),  # even kernel: half-pixel grid centre
        ((3, 5), 1, (5, 7), 1.5),  # rectangular
        (3, 2, (4, 6), 1.5),  # dilation
        (3, 1, (4, 5), 8.0),  # most samples pushed off the map
        (2, 3, (1, 6), 1.0),  # single row
        (3, 1, (1, 1), 0.7),  # single pixel, more entries than pixels
    ])
    def test_forward_matches_reference(self, kernel_size, dilation, hw, off_scale):
        q, k, v, off = make_inputs(2, 3, 2, *hw, kernel_size, off_scale)
        out = sparse_nonlocal_attention(q, k, v, off, kernel_size, dilation)
        ref = reference_snl(q, k, v, off, kernel_size, dilation)
        assert out.shape == (2, 2, *hw) and out.dtype == F64
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)

    @pytest.mark.parametrize('kernel_size,dilation,off_scale,hw,chunk_rows', [
        (3, 1, 1.5, (3, 4), None),
        (2, 1, 1.5, (3, 4), None),
        ((3, 5), 1, 1.5, (3, 4), None),
        (3, 2, 1.5, (3, 4), None),
        (3, 1, 6.0, (3, 4), None),  # off the map
        (3, 1, 1.5, (2, 3), 5),  # 3 chunks of the 12 rows, one across the batch boundary
    ])
    def test_gradcheck(self, kernel_size, dilation, off_scale, hw, chunk_rows, monkeypatch):
        if chunk_rows is not None:
            monkeypatch.setattr(snl_sparse, '_chunk_rows', lambda *args: chunk_rows)
        inputs = [t.requires_grad_() for t in make_inputs(2, 3, 2, *hw, kernel_size, off_scale)]
        assert torch.autograd.gradcheck(
            lambda q, k, v, o: sparse_nonlocal_attention(q, k, v, o, kernel_size, dilation),
            inputs, eps=1e-6, atol=1e-6)

    def test_gradients_match_reference(self):
        q, k, v, off = (t.requires_grad_() for t in make_inputs(1, 3, 2, 3, 4, (2, 3), 1.5))
        g = torch.randn(1, 2, 3, 4, dtype=F64)
        got = torch.autograd.grad((sparse_nonlocal_attention(q, k, v, off, (2, 3)) * g).sum(),
                                  (q, k, v, off))
        ref = torch.autograd.grad((reference_snl(q, k, v, off, (2, 3)) * g).sum(),
                                  (q, k, v, off))
        for a, b in zip(got, ref):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)

    def test_partial_requires_grad(self):
        q, k, v, off = make_inputs(2, 3, 2, 4, 5, 3)
        full = [t.clone().requires_grad_() for t in (q, k, v, off)]
        grads = torch.autograd.grad(sparse_nonlocal_attention(*full, 3).sum(), full)
        for i in range(4):
            part = [t.clone().requires_grad_(j == i) for j, t in enumerate((q, k, v, off))]
            (gi, ) = torch.autograd.grad(sparse_nonlocal_attention(*part, 3).sum(), part[i])
            torch.testing.assert_close(gi, grads[i])

    @pytest.mark.parametrize('kernel_size,dilation', [(3, 1), (3, 2), ((3, 5), 1), (5, 1)])
    def test_zero_offsets_equal_unfold_neighbourhood(self, kernel_size, dilation):
        kh, kw = pair(kernel_size)
        q, k, v, _ = make_inputs(2, 4, 3, 5, 7, kernel_size)
        off = torch.zeros(2, 2 * kh * kw, 5, 7, dtype=F64)
        pad = (dilation * (kh - 1) // 2, dilation * (kw - 1) // 2)
        ku = F.unfold(k, (kh, kw), dilation=dilation, padding=pad).view(2, 4, kh * kw, 35)
        vu = F.unfold(v, (kh, kw), dilation=dilation, padding=pad).view(2, 3, kh * kw, 35)
        s = torch.softmax(torch.einsum('bcn,bckn->bkn', q.flatten(2), ku), 1)
        ref = torch.einsum('bkn,bckn->bcn', s, vu).view(2, 3, 5, 7)
        out = sparse_nonlocal_attention(q, k, v, off, kernel_size, dilation)
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)

    @pytest.mark.parametrize('hw', [(3, 5), (4, 6), (2, 3)])
    def test_every_pixel_once_equals_dense_nonlocal(self, hw):
        H, W = hw
        q, k, v, _ = (t.requires_grad_() for t in make_inputs(2, 4, 3, H, W, hw))
        # point j = (a, b) of query (y, x) must land on pixel (a, b):
        # y + a - (H - 1) / 2 + dy = a  ->  dy = (H - 1) / 2 - y (same for every point).
        dy = ((H - 1) / 2 - torch.arange(H, dtype=F64)).view(H, 1).expand(H, W)
        dx = ((W - 1) / 2 - torch.arange(W, dtype=F64)).view(1, W).expand(H, W)
        off = torch.stack([dy, dx]).repeat(H * W, 1, 1).unsqueeze(0).repeat(2, 1, 1, 1)
        out = sparse_nonlocal_attention(q, k, v, off, (H, W))
        ref = _dense_nonlocal(q, k, v)
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
        g = torch.randn_like(out)
        got = torch.autograd.grad((out * g).sum(), (q, k, v))
        exp = torch.autograd.grad((ref * g).sum(), (q, k, v))
        for a, b in zip(got, exp):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)

    @pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
    def test_low_precision_is_finite(self, dtype):
        if dtype == torch.float16 and not _cpu_autocast_supports_fp16():
            pytest.skip(f'torch {torch.__version__} autocasts only bfloat16 on CPU (float16 from '
                        'torch 2.2 on)')
        # logits up to ~C * 30^2 overflow fp16 (max 65504) unless computed in fp32
        q, k, v, off = make_inputs(1, 16, 4, 6, 7, 3, dtype=torch.float32)
        q, k = q * 30, k * 30
        ref = reference_snl(*(t.double() for t in (q, k, v, off)), 3).float()
        # (a) fp32 inputs under autocast: output keeps value's dtype (fp32)
        leaves = [t.clone().requires_grad_() for t in (q, k, v, off)]
        with torch.autocast('cpu', dtype=dtype):
            out = sparse_nonlocal_attention(*leaves, 3)
        assert out.dtype == torch.float32 and torch.isfinite(out).all()
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
        out.sum().backward()
        assert all(torch.isfinite(t.grad).all() for t in leaves)
        # (b) low-precision inputs: fp32 math inside, output in value's dtype
        leaves = [t.to(dtype).requires_grad_() for t in (q, k, v, off)]
        with torch.autocast('cpu', dtype=dtype):
            out = sparse_nonlocal_attention(*leaves, 3)
        assert out.dtype == dtype and torch.isfinite(out).all()
        out.float().sum().backward()
        assert all(t.grad.dtype == dtype and torch.isfinite(t.grad).all() for t in leaves)

    @pytest.mark.parametrize('budget', [None, 1000])  # 1000 bytes: 4 rows per gather step
    def test_gather_sddmm_equals_sparse_sddmm(self, budget, monkeypatch):
        if budget is not None:
            monkeypatch.setattr(snl_sparse, '_CHUNK_BYTES', budget)
        g = torch.Generator().manual_seed(1)
        a, b = torch.randn(30, 5, generator=g), torch.randn(40, 5, generator=g)
        cols = torch.randint(0, 40, (30, 12), generator=g)
        ref = (a[:, None, :] * b[cols]).sum(-1)
        torch.testing.assert_close(snl_sparse._sddmm(a, b, cols), ref)
        torch.testing.assert_close(snl_sparse._sddmm_gather(a, b, cols), ref)

    @pytest.mark.parametrize('hw', [(5, 7), (4, 4)])
    def test_msda_locations_match_bilinear(self, hw):
        """mmcv's sampling convention (normalised, align_corners=False, (x, y)), checked with the
        same grid_sample call as mmcv's ``multi_scale_deformable_attn_pytorch``."""
        H, W = hw
        _, _, v, off = make_inputs(2, 1, 3, H, W, (2, 3), 2.0)
        sy, sx = sample_coordinates(off, (2, 3), dilation=2)
        loc = pixel_to_msda_locations(sy, sx, H, W)
        assert loc.shape == (2, H * W, 1, 1, 6, 2)
        got = F.grid_sample(v, 2 * loc[:, :, 0, 0] - 1, align_corners=False)  # (B, Cv, N, K)
        for b, n, j in [(0, 0, 0), (1, H * W - 1, 5), (1, 3, 2), (0, 7, 4)]:
            exp = _bilinear(v[b], sy[b, n, j], sx[b, n, j])
            torch.testing.assert_close(got[b, :, n, j], exp, rtol=1e-12, atol=1e-12)

    def test_msda_path_with_mmcv_pytorch_fallback(self):
        """The mmcv composition (sparse logits, torch softmax, MSDA values) with mmcv's CPU
        fallback in place of its CUDA function: forward and gradcheck."""
        pytest.importorskip('mmcv.ops.multi_scale_deform_attn')
        inputs = [t.requires_grad_() for t in make_inputs(2, 3, 2, 2, 3, (2, 3), 1.5)]

        def run(q, k, v, o):
            return snl_mod._attention(q, k, v, o, 2, 3, 1, 'mmcv', msda=MSDAPytorchShim,
                                      logits='sparse')

        torch.testing.assert_close(run(*inputs), reference_snl(*inputs, (2, 3)), rtol=1e-10,
                                   atol=1e-12)
        assert torch.autograd.gradcheck(run, inputs, eps=1e-6, atol=1e-6)

    def test_removed_use_mmcv_cuda_says_what_to_use(self):
        q, k, v, off = make_inputs(1, 2, 2, 3, 3, 3, dtype=torch.float32)
        with pytest.raises(TypeError, match="use backend='mmcv' for use_mmcv_cuda=True"):
            sparse_nonlocal_attention(q, k, v, off, 3, use_mmcv_cuda=True)
        with pytest.raises(TypeError, match="backend='auto'"):
            sparse_nonlocal_attention(q, k, v, off, 3, use_mmcv_cuda=False)

    @pytest.mark.parametrize('backend', ['mmcv', 'triton'])
    def test_cuda_backend_on_cpu_tensors_raises(self, backend, monkeypatch):
        # a compiled (not interpreted) Triton module, as on a machine without TRITON_INTERPRET
        compiled = type('FakeTritonModule', (), dict(INTERPRETED=False,
                                                     unsupported=staticmethod(lambda *a: None)))
        monkeypatch.setattr(snl_mod, '_triton_module', lambda: compiled)
        q, k, v, off = make_inputs(1, 2, 2, 3, 3, 3, dtype=torch.float32)
        with pytest.raises(ValueError, match=f"backend='{backend}' cannot run here: the "
                           "tensors are on cpu.*Use backend='auto'.*or backend='sparse'"):
            sparse_nonlocal_attention(q, k, v, off, 3, backend=backend)

    def test_triton_missing_raises_and_auto_falls_back(self, monkeypatch):
        monkeypatch.setattr(snl_mod, '_triton_module', lambda: None)
        cuda = torch.device('cuda')  # resolution only looks at the device type
        with pytest.raises(ValueError, match='triton package is not installed'):
            snl_mod.resolve_backend('triton', cuda, 81)
        assert snl_mod.resolve_backend('auto', cuda, 81) == 'sparse'

    def test_auto_backend(self):
        cpu, cuda = torch.device('cpu'), torch.device('cuda')
        assert snl_mod.resolve_backend('auto', cpu, 81) == 'sparse'
        assert snl_mod.resolve_backend('sparse', cuda, 81) == 'sparse'
        tk = snl_mod._triton_module()
        if tk is not None:
            assert snl_mod.resolve_backend('auto', cuda, 121, (256, 512)) == 'triton'
            # more points / channels than the Triton register tiles take: the sparse path
            assert snl_mod.resolve_backend('auto', cuda, 99 * 99) == 'sparse'
            with pytest.raises(ValueError, match=f'at most {tk.MAX_POINTS} sampling points'):
                snl_mod.resolve_backend('triton', cuda, 99 * 99)
            wide = (64, tk.MAX_CHANNELS + 1)
            assert snl_mod.resolve_backend('auto', cuda, 81, wide) == 'sparse'
            with pytest.raises(ValueError, match=f'at most {tk.MAX_CHANNELS} query/key and'):
                snl_mod.resolve_backend('triton', cuda, 81, wide)

    @pytest.mark.parametrize('backend', ['cuda', 'Triton', None, 1])
    def test_unknown_backend_raises(self, backend):
        q, k, v, off = make_inputs(1, 2, 2, 3, 3, 3, dtype=torch.float32)
        with pytest.raises(ValueError, match="backend must be one of \\('auto', 'triton'"):
            sparse_nonlocal_attention(q, k, v, off, 3, backend=backend)

    @pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')
    @pytest.mark.parametrize('backend', ['sparse', 'mmcv', 'triton'])
    def test_cuda_paths_match_reference(self, backend):
        """Every CUDA backend against the CPU reference, float64."""
        if backend == 'mmcv' and mmcv_msda.mmcv_msda_function() is None:
            pytest.skip('needs mmcv compiled with CUDA')
        if backend == 'triton' and snl_mod._triton_module() is None:
            pytest.skip('needs triton')
        cpu = [t.requires_grad_() for t in make_inputs(2, 3, 2, 4, 5, (3, 3), 1.5)]
        dev = [t.detach().cuda().requires_grad_() for t in cpu]
        g = torch.randn(2, 2, 4, 5, dtype=F64)
        out = sparse_nonlocal_attention(*dev, (3, 3), backend=backend)
        ref = reference_snl(*cpu, (3, 3))
        torch.testing.assert_close(out.cpu(), ref, rtol=1e-9, atol=1e-11)
        got = torch.autograd.grad((out * g.cuda()).sum(), dev)
        want = torch.autograd.grad((ref * g).sum(), cpu)
        for a, b in zip(got, want):
            torch.testing.assert_close(a.cpu(), b, rtol=1e-7, atol=1e-9)

    @pytest.mark.parametrize('change,match', [
        (dict(off_channels=16), 'offset must have 2\\*kh\\*kw = 18 channels'),
        (dict(kernel_size=(3, 4)), 'offset must have 2\\*kh\\*kw = 24 channels'),
        (dict(kernel_size=0), 'kernel_size must hold positive ints'),
        (dict(kernel_size=(3, -1)), 'kernel_size must hold positive ints'),
        (dict(kernel_size=(3, 3, 3)), 'kernel_size must be an int or a pair'),
        (dict(kernel_size=2.5), 'kernel_size must be an int or a pair'),
        (dict(dilation=0), 'dilation must be a positive int'),
        (dict(dilation=-2), 'dilation must be a positive int'),
        (dict(key_shape=(1, 3, 4, 5)), 'key must have the same shape as query'),
        (dict(value_shape=(1, 2, 4, 6)), 'value must be \\(B=1, Cv, H=4, W=5\\)'),
        (dict(value_shape=(2, 2, 4, 5)), 'value must be \\(B=1, Cv, H=4, W=5\\)'),
        (dict(off_shape=(2, 18, 4, 5)), 'offset must be \\(B=1, 18, H=4, W=5\\)'),
        (dict(off_shape=(1, 18, 5, 4)), 'offset must be \\(B=1, 18, H=4, W=5\\)'),
        (dict(query_shape=(2, 4, 5)), 'query must be a 4-D tensor'),
        (dict(query_shape=(1, 0, 4, 5), key_shape=(1, 0, 4, 5)),
         'query/key must have at least one channel, got C=0.*give the conv'),
        (dict(value_shape=(1, 0, 4, 5)), 'value must have at least one channel, got Cv=0'),
    ])
    def test_bad_arguments_raise(self, change, match):
        kernel_size = change.get('kernel_size', 3)
        dilation = change.get('dilation', 1)
        q = torch.randn(*change.get('query_shape', (1, 2, 4, 5)))
        k = torch.randn(*change.get('key_shape', (1, 2, 4, 5)))
        v = torch.randn(*change.get('value_shape', (1, 2, 4, 5)))
        off = torch.randn(*change.get('off_shape', (1, change.get('off_channels', 18), 4, 5)))
        with pytest.raises(ValueError, match=match):
            sparse_nonlocal_attention(q, k, v, off, kernel_size, dilation)

    @pytest.mark.parametrize('logits', [None, 'sparse'])
    def test_non_finite_offsets_propagate(self, logits):
        """A NaN / inf offset makes its query's output (and softmax) NaN, other queries are
        exact: the sparse path, and the mmcv composition on its CPU shim (sparse logits)."""
        q, k, v, bad, hit, clean = nonfinite_offset_case()
        ref = reference_snl(q, k, v, clean, 3)
        if logits is None:
            out, s = sparse_nonlocal_attention(q, k, v, bad, 3, backend='sparse',
                                               return_weights=True)
        else:
            pytest.importorskip('mmcv.ops.multi_scale_deform_attn')
            out, s = snl_mod._attention(q, k, v, bad, 3, 3, 1, 'mmcv', msda=MSDAPytorchShim,
                                        logits=logits, return_weights=True)
        assert_nonfinite_propagates(out, s, hit, ref)

    def test_bad_dtype_or_device_raise(self):
        q = torch.randn(1, 2, 4, 5)
        off = torch.randn(1, 18, 4, 5)
        with pytest.raises(ValueError, match='offset must be a floating point tensor'):
            sparse_nonlocal_attention(q, q, q, off.long(), 3)
        with pytest.raises(ValueError, match='must be on one device'):
            sparse_nonlocal_attention(q, q, q, off.to('meta'), 3)
