"""The Triton backend of ``sparse_nonlocal_attention`` against the float64 reference.

Without a GPU, ``tests/conftest.py`` sets ``TRITON_INTERPRET=1`` before triton is imported, and
the kernels run in Triton's CPU interpreter on CPU tensors; with a GPU the same tests run the
compiled kernels on CUDA tensors. Maps are tiny (the interpreter executes every block operation
in numpy). Skipped where triton is not installed, and without a GPU on triton 2.x, which has no
CPU interpreter. The kernels are also compiled for sm_80 / sm_90 without a GPU, on every triton
(``tests/test_snl_triton_compile.py``).

bf16 / fp16 tolerance: the kernels read the low-precision inputs exactly and compute in float32,
so against the float64 reference *on the same rounded inputs* the only sizeable error is the one
final rounding of each output / gradient element to the input dtype: at most half a unit in the
last place (ulp) with round-to-nearest (compiled Triton, torch casts), one ulp under the
interpreter, whose fp32 -> bf16 store truncates. One ulp is <= 2^-7 |x| for bf16 (8 significant
bits) and <= 2^-10 |x| for fp16 (11 bits): that is the ``rtol``, with an ``atol`` of 1e-5 of the
tensor's largest value for the float32 accumulation noise near zero.
"""
import pytest
import torch
from snl_reference import (
    F64,
    MSDAPytorchShim,
    assert_nonfinite_propagates,
    make_inputs,
    nonfinite_offset_case,
    reference_snl,
)

from mmseg_ext.ops import sparse_nonlocal as snl_mod
from mmseg_ext.ops import sparse_nonlocal_attention

pytest.importorskip('triton')

TK = snl_mod._triton_module()
DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'
if TK is None or (DEVICE == 'cpu' and not TK.INTERPRETED):
    import triton
    pytest.skip('the Triton kernels cannot run here: no GPU, and ' + (
        f'triton {triton.__version__} has no CPU interpreter (needs triton >= 3.0)'
        if int(triton.__version__.split('.')[0]) < 3 else
        'triton was imported without TRITON_INTERPRET=1'), allow_module_level=True)

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
    """Rows split over programs (last block partial), padded channel tiles (C=6, Cv=9), the
    pulls over several channel tiles and several entry steps per key/value row."""
    monkeypatch.setattr(TK, '_ROW_TILE', 128)  # 8 rows per forward program
    monkeypatch.setattr(TK, '_ROW_TILE_BWD', 48)  # 3 -> 2 rows per backward program
    monkeypatch.setattr(TK, '_PULL_MAX_CH', 4)
    monkeypatch.setattr(TK, '_PULL_BLOCK_E', 4)
    inputs = _to_device(make_inputs(1, 6, 9, 5, 7, (3, 2), 2.0))  # 35 rows: 4 x 8 + 3
    _check_against_reference(inputs, (3, 2))


def test_int64_indexing_path(monkeypatch):
    """The int64 offsets used when R * channels reaches 2^31 (forced at a tiny size)."""
    monkeypatch.setattr(TK, '_INT32_LIMIT', 0)
    inputs = _to_device(make_inputs(1, 3, 2, 4, 5, 3, 1.5))
    _check_against_reference(inputs, 3)


@pytest.mark.parametrize('shape', [(0, 4, 5), (2, 0, 5)])
def test_empty_maps(shape):
    B, H, W = shape
    q, k, v, off = _to_device((torch.randn(B, 3, H, W), torch.randn(B, 3, H, W),
                               torch.randn(B, 2, H, W), torch.randn(B, 18, H, W)))
    out = sparse_nonlocal_attention(q, k, v, off, 3, backend='triton')
    assert out.shape == (B, 2, H, W)
    grads = torch.autograd.grad(out.sum(), (q, k, v, off))
    assert [g.shape for g in grads] == [t.shape for t in (q, k, v, off)]


def test_two_pass_forward_matches_reference(monkeypatch):
    """The forward without the online softmax (what triton 2.x compiles)."""
    monkeypatch.setattr(TK, 'ONLINE_SOFTMAX', False)
    inputs = _to_device(make_inputs(2, 5, 3, 4, 5, (2, 3), 1.5))
    _check_against_reference(inputs, (2, 3))


@pytest.mark.parametrize('online', [True, False])
def test_very_negative_logits(online, monkeypatch):
    """All logits of the inner queries about -1000 (K=9 < its 16-wide tile): the softmax must
    not be shifted by the tile's padding."""
    monkeypatch.setattr(TK, 'ONLINE_SOFTMAX', online)
    q, k, v, off = make_inputs(1, 1, 2, 4, 5, 3, 0.0)
    q, k = torch.ones_like(q), torch.full_like(k, -1000.0)
    out = sparse_nonlocal_attention(*_to_device((q, k, v, off)), 3, backend='triton')
    torch.testing.assert_close(out.detach().cpu(), reference_snl(q, k, v, off, 3), rtol=1e-10,
                               atol=1e-12)


def test_backward_is_bitwise_deterministic():
    """Two backward passes give bitwise-equal gradients (no atomics: each gradient element is
    written by one program, sums in a fixed order)."""
    inputs = _to_device(make_inputs(1, 4, 3, 4, 6, 3, 2.0), torch.float32)
    grads = []
    for deterministic in (False, True):  # the second run as mmseg's deterministic=True sets
        torch.use_deterministic_algorithms(deterministic)
        try:
            out = sparse_nonlocal_attention(*inputs, 3, backend='triton')
            grads.append(torch.autograd.grad(out.square().sum(), inputs))
        finally:
            torch.use_deterministic_algorithms(False)
    for a, b in zip(*grads):
        assert torch.equal(a, b)


@pytest.mark.parametrize('online', [True, False])
def test_non_finite_offsets_propagate(online, monkeypatch):
    """A NaN / inf offset makes its query's softmax and output NaN; other queries are exact."""
    monkeypatch.setattr(TK, 'ONLINE_SOFTMAX', online)
    q, k, v, bad, hit, clean = nonfinite_offset_case()
    out, s = sparse_nonlocal_attention(*_to_device((q, k, v, bad)), 3, backend='triton',
                                       return_weights=True)
    assert_nonfinite_propagates(out, s, hit, reference_snl(q, k, v, clean, 3))


def test_non_finite_offsets_propagate_in_msda_composition():
    pytest.importorskip('mmcv.ops.multi_scale_deform_attn')
    q, k, v, bad, hit, clean = nonfinite_offset_case()
    out = snl_mod._attention(*_to_device((q, k, v, bad)), 3, 3, 1, 'mmcv',
                             msda=MSDAPytorchShim, logits='triton')
    assert_nonfinite_propagates(out, None, hit, reference_snl(q, k, v, clean, 3))


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


@pytest.mark.parametrize('chunks,min_entries', [(3, 1), (7, 1), (70, 1)])
def test_inverse_map_in_chunks_is_bitwise_neutral(chunks, min_entries, monkeypatch):
    """The inverse map sorted chunk by chunk (3, 7, and one row per chunk for this map) gives
    gradients bitwise equal to one sort of all entries: the pulls visit each row's samples in
    the same order and add sample i into the same accumulator lane."""
    inputs = _to_device(make_inputs(2, 4, 6, 5, 7, 3, 2.0), torch.float32)
    g = torch.randn(2, 6, 5, 7, generator=torch.Generator().manual_seed(3)).to(DEVICE)

    def grads():
        out = sparse_nonlocal_attention(*inputs, 3, backend='triton')
        return torch.autograd.grad((out * g).sum(), inputs)

    one = grads()
    assert TK.sort_chunk_rows(TK._Geom((5, 7), (3, 3), 1, 70, (4, 6), torch.float32)) == 70
    monkeypatch.setattr(TK, '_SORT_CHUNKS', chunks)
    monkeypatch.setattr(TK, '_SORT_MIN_ENTRIES', min_entries)
    geo = TK._Geom((5, 7), (3, 3), 1, 70, (4, 6), torch.float32)
    assert -(-70 // TK.sort_chunk_rows(geo)) == min(chunks, 70)
    for a, b in zip(one, grads()):
        assert torch.equal(a, b)


@pytest.mark.parametrize('R,K,chunks', [(70, 9, 1), (70, 9, 8), (33, 25, 5)])
def test_backward_memory_follows_the_inverse_map(R, K, chunks, monkeypatch):
    """``backward_memory`` adds up what ``_inverse_map`` really allocates: the tensors it
    returns (held through the pulls) and one sort per chunk of the planned size."""
    sorted_sizes = []
    real_sort = torch.sort

    def recording_sort(x, *args, **kwargs):
        sorted_sizes.append(x.numel())
        return real_sort(x, *args, **kwargs)

    monkeypatch.setattr(TK, '_SORT_CHUNKS', chunks)
    monkeypatch.setattr(TK, '_SORT_MIN_ENTRIES', 1)
    monkeypatch.setattr(torch, 'sort', recording_sort)
    geo = TK._Geom((1, R), (1, K), 1, R, (4, ), torch.float32)
    off = torch.randn(R, K, 2, generator=torch.Generator().manual_seed(0)).to(DEVICE)
    w, perm, start, first = TK._inverse_map(off, geo)
    plan = TK.backward_memory(R, K)
    dl_bytes = R * K * 4
    held = sum(t.numel() * t.element_size() for t in (w, perm, start, first)) + dl_bytes
    assert held == plan['held'] and plan['samples'] == w.numel() == perm.numel() == R * K * 4
    assert sorted_sizes and max(sorted_sizes) == plan['chunk_entries']
    assert len(sorted_sizes) == plan['chunks'] == start.shape[0]
    assert sum(sorted_sizes) == plan['samples']
    # every sample appears once in the map, each key row's samples in increasing order
    assert torch.equal(perm.sort().values.cpu(), torch.arange(perm.numel(), dtype=perm.dtype))
