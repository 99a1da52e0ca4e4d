"""``torch.compile`` and the sparse non-local op (issue #39): the custom op
``mmseg_ext::sparse_nonlocal`` (``mmseg_ext/ops/sparse_nonlocal/custom_op.py``).

* the custom op gives bitwise the ``autograd.Function`` s' forward and gradients (sparse path,
  Triton in its CPU interpreter); ``torch.library.opcheck`` passes on both ops;
* a compiled ``SparseNonLocal2d`` has no graph break (``fullgraph=True``, Inductor on CPU) and
  matches eager mode; the op itself, compiled, is bitwise eager's (also with dynamic shapes);
* each quickstart model's train step (loss + backward), compiled, matches eager (losses and
  every gradient);
* ``compile=True`` in a config trains through mmengine (tools/train.py), with no graph break in
  the SNL block;
* eager calls never go through the custom op; on torch < 2.4 (the classic torch 2.1 stack)
  there is no custom op, the compile tests skip, and a compiled SNL block breaks the graph
  instead (still runs, same results).

Tolerances (float32): the op under compile is bitwise eager's (the permutes and casts around it
are exact); a compiled block or model differs from eager only by Inductor's reordering of float32
sums (convs, BN, the losses): outputs and losses ``rtol=1e-4`` (measured <= 3e-7), each gradient
tensor ``|compiled - eager| <= 2e-3 * max|eager| + 1e-6`` (measured on torch 2.14.1, as a
fraction of max|eager|: FCN 1.6e-5, PSPNet 5.1e-4, SANet 2.9e-5, SSANet 3.7e-4, GFFNet 3.2e-4;
BN over the tiny batch amplifies the reordering).

Runtime (2-core CPU shared with a training job, torch 2.14.1): with a cold Inductor cache
10 min 47 s for the five models (7 min 43 s) and the train.py run (3 min); with the cache of an
earlier run (``/tmp/torchinductor_$USER``) 3 min 25 s for the whole file (the models 53 s, train.py
47 s). On torch 2.1 everything but four cheap tests skips (seconds).
"""
import importlib.util
import os
import os.path as osp
import re
import shutil
import sys

import pytest
import torch
import torch._dynamo
from snl_reference import make_inputs

from mmseg_ext.ops import sparse_nonlocal as snl_mod
from mmseg_ext.ops import sparse_nonlocal_attention
from mmseg_ext.ops.sparse_nonlocal import custom_op
from mmseg_ext.ops.sparse_nonlocal import sparse as snl_sparse
from mmseg_ext.ops.sparse_nonlocal.common import offset_rows, to_rows

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
QUICKSTART = osp.join(REPO, 'configs', 'quickstart', '{}_r18tiny-d8_1xb8-1k_synthcity-128x256.py')
HEADS = ('fcn', 'pspnet', 'sanet', 'ssanet', 'gffnet')

needs_custom_op = pytest.mark.skipif(custom_op.UNAVAILABLE is not None,
                                     reason=str(custom_op.UNAVAILABLE))


def _cxx():
    return any(shutil.which(c) for c in (os.environ.get('CXX', 'g++'), 'g++', 'c++', 'clang++'))


needs_inductor = pytest.mark.skipif(not _cxx(), reason='Inductor on CPU needs a C++ compiler')


def _triton_runs_on_cpu():
    return snl_mod.triton_unavailable(torch.device('cpu'), 9, (4, 5)) is None


needs_cpu_triton = pytest.mark.skipif(
    not _triton_runs_on_cpu(), reason="the Triton backend on CPU tensors needs Triton's "
    'interpreter (triton >= 3.0, TRITON_INTERPRET=1, see tests/conftest.py)')


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    """Each test compiles from scratch (no recompile limit reached across tests)."""
    if custom_op.UNAVAILABLE is None:
        torch._dynamo.reset()
    yield


def _rows(B=1, C=4, Cv=5, H=5, W=6, kernel=(3, 3), dtype=torch.float32, seed=0,
          off_scale=2.0):
    kh, kw = kernel
    q, k, v, off = make_inputs(B, C, Cv, H, W, kernel, off_scale, dtype=dtype, seed=seed)
    return to_rows(q), to_rows(k), to_rows(v), offset_rows(off, kh * kw)


def _assert_grads_close(got, want, what):
    for name, g in want.items():
        assert name in got, f'{what}: no gradient for {name} when compiled'
        tol = 2e-3 * g.abs().max().item() + 1e-6
        err = (got[name] - g).abs().max().item()
        assert err <= tol, f'{what}: {name} gradient differs by {err:.3g} (> {tol:.3g})'
    assert set(got) == set(want), f'{what}: gradients of {set(got) ^ set(want)} differ in presence'


# ---------------------------------------------------------------------------------------------
# everywhere: what the custom op is, and that eager calls do not use it
# ---------------------------------------------------------------------------------------------
def test_custom_op_exists_exactly_from_torch_2_4():
    version = tuple(int(x) for x in re.findall(r'\d+', torch.__version__)[:2])
    if version >= custom_op.MIN_TORCH:
        assert custom_op.UNAVAILABLE is None
        assert torch.ops.mmseg_ext.sparse_nonlocal.default is not None
    else:
        assert 'graph' in custom_op.UNAVAILABLE and torch.__version__ in custom_op.UNAVAILABLE
        assert not hasattr(getattr(torch.ops, 'mmseg_ext'), 'sparse_nonlocal')
        with pytest.raises(RuntimeError, match='torch >= 2.4'):
            custom_op.attention_rows(*_rows(), (5, 6), (3, 3), 1, 'sparse')


@pytest.mark.parametrize('backend', ['sparse', pytest.param('triton', marks=needs_cpu_triton)])
def test_eager_calls_do_not_use_the_custom_op(backend, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError('eager call went through the custom op')
    monkeypatch.setattr(custom_op, 'attention_rows', boom)
    q, k, v, off = (t.float().requires_grad_() for t in make_inputs(1, 4, 5, 4, 5, 3))
    out, s = sparse_nonlocal_attention(q, k, v, off, 3, backend=backend, return_weights=True)
    out.sum().backward()
    assert s.shape == (1, 9, 4, 5) and q.grad is not None


def test_block_compiles_with_a_graph_break_per_block_only_without_the_custom_op():
    """TorchDynamo's view of an SNL block: one graph, no break, with the custom op; on older
    torch (2.1) the op runs eagerly between graphs (torch.compiler.disable) - and the results
    are the same either way."""
    from mmseg_ext.models.utils.snl_block import SparseNonLocal2d
    torch.manual_seed(0)
    block = SparseNonLocal2d(8, kernel_size=3, zero_init_out=False)
    x = torch.randn(1, 8, 9, 13)
    explained = torch._dynamo.explain(block)(x)
    if custom_op.UNAVAILABLE is None:
        assert (explained.graph_count, explained.graph_break_count) == (1, 0)
    else:
        assert explained.graph_break_count >= 1
        assert any('_sparse_rows' in str(r.reason) for r in explained.break_reasons)
    compiled = torch.compile(block, backend='eager')
    torch.testing.assert_close(compiled(x), block(x), rtol=0, atol=0)
    torch._dynamo.reset()


def test_package_loaded_twice_registers_the_op_once():
    """benchmark_snl_op.py and the GPU kit load the package by path (another module name) in a
    process that may have imported mmseg_ext already: the second copy uses the first's ops."""
    pkg = osp.join(REPO, 'mmseg_ext', 'ops', 'sparse_nonlocal')
    name = '_snl_op_compile_test'
    spec = importlib.util.spec_from_file_location(name, osp.join(pkg, '__init__.py'),
                                                  submodule_search_locations=[pkg])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
        assert mod.custom_op.UNAVAILABLE == custom_op.UNAVAILABLE
        assert mod.custom_op._op is custom_op._op
    finally:
        for key in [k for k in sys.modules if k == name or k.startswith(name + '.')]:
            del sys.modules[key]


# ---------------------------------------------------------------------------------------------
# the custom op: bitwise the autograd.Functions, opcheck
# ---------------------------------------------------------------------------------------------
@needs_custom_op
@pytest.mark.parametrize('backend', ['sparse', pytest.param('triton', marks=needs_cpu_triton)])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('need', ['qkvo', 'v', 'qo', 'k'])
def test_custom_op_is_bitwise_the_function(backend, dtype, need, monkeypatch):
    if backend == 'sparse':  # one query row per chunk (the backward recomputes the chunking)
        monkeypatch.setattr(snl_sparse, '_CHUNK_BYTES', 1)
        fn = snl_sparse.sparse_attention_rows
    else:
        fn = snl_mod._triton_module().triton_attention_rows
    kernel, hw = (3, 2), (4, 5)
    ref_in = _rows(B=2, H=hw[0], W=hw[1], kernel=kernel, dtype=dtype)
    grads = []
    for run in (fn, lambda *a: custom_op.attention_rows(*a, backend=backend)):
        leaves = [t.clone().requires_grad_(n in need) for t, n in zip(ref_in, 'qkvo')]
        out, s = run(*leaves, hw, kernel, 2)
        assert not s.requires_grad
        g = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(3))
        out.backward(g)
        grads.append([out.detach(), s] + [t.grad for t in leaves])
    for name, a, b in zip(('out', 's', 'q', 'k', 'v', 'off'), *grads):
        if b is None:
            assert a is None, name
        else:
            assert a.dtype == b.dtype and torch.equal(a, b), f'{name} differs'


@needs_custom_op
@pytest.mark.parametrize('backend', ['sparse', pytest.param('triton', marks=needs_cpu_triton)])
def test_opcheck(backend):
    op = torch.ops.mmseg_ext.sparse_nonlocal.default
    samples = [
        (_rows(), (5, 6), (3, 3), 1, True),
        (_rows(B=2, C=3, Cv=2, H=4, W=3, kernel=(2, 3), dtype=torch.float64), (4, 3), (2, 3),
         2, True),
        (_rows(H=3, W=4, kernel=(1, 1), seed=1), (3, 4), (1, 1), 1, False),
    ]
    if backend == 'triton':
        samples = samples[:2]  # the interpreter is slow
    for rows, (H, W), (kh, kw), dilation, grad in samples:
        rows = [t.requires_grad_(grad) for t in rows]
        result = torch.library.opcheck(op, (*rows, H, W, kh, kw, dilation, backend))
        assert all(v == 'SUCCESS' for v in result.values()), result
    # the backward op, as the forward's autograd formula calls it
    q, k, v, off = _rows(H=3, W=4)
    out, s, saved = op(q, k, v, off, 3, 4, 3, 3, 1, backend)
    for need in ((True, True, True, True), (False, False, True, False)):
        result = torch.library.opcheck(torch.ops.mmseg_ext.sparse_nonlocal_backward.default,
                                       (torch.randn_like(out), q, k, v, off, s, saved, 3, 4,
                                        3, 3, 1, backend, *need))
        assert all(v == 'SUCCESS' for v in result.values()), result


# ---------------------------------------------------------------------------------------------
# compiled: the op, the block, the quickstart models, mmengine's compile=True
# ---------------------------------------------------------------------------------------------
@needs_custom_op
@needs_inductor
@pytest.mark.parametrize('backend', ['sparse', pytest.param('triton', marks=needs_cpu_triton)])
@pytest.mark.parametrize('dynamic', [False, True])
def test_compiled_op_is_bitwise_eager(backend, dynamic):
    def attention(q, k, v, off):
        return sparse_nonlocal_attention(q, k, v, off, 3, backend=backend, return_weights=True)
    compiled = torch.compile(attention, fullgraph=True, dynamic=dynamic)
    for seed, (H, W) in enumerate([(5, 7), (6, 9)] if dynamic else [(5, 7)]):
        results = []
        for fn in (attention, compiled):
            inputs = [t.float().requires_grad_() for t in make_inputs(1, 4, 5, H, W, 3, 2.0,
                                                                       seed=seed)]
            out, s = fn(*inputs)
            (out * out).sum().backward()
            assert not s.requires_grad
            results.append([out.detach(), s] + [t.grad for t in inputs])
        for name, a, b in zip(('out', 's', 'q', 'k', 'v', 'off'), *results):
            assert torch.equal(a, b), f'{name} differs at {H}x{W}'


@needs_custom_op
@needs_inductor
def test_compiled_block_has_no_graph_break_and_matches_eager():
    from mmseg_ext.models.utils.snl_block import SparseNonLocal2d
    torch.manual_seed(0)
    block = SparseNonLocal2d(8, kernel_size=3, zero_init_out=False)  # K = 9
    torch.nn.init.normal_(block.offset.weight, std=0.3)  # off the regular grid
    x = torch.randn(1, 8, 9, 13)
    results = []
    for fn in (block, torch.compile(block, fullgraph=True)):  # fullgraph: no graph break
        block.zero_grad()
        xi = x.clone().requires_grad_()
        y = fn(xi)
        (y * y).sum().backward()
        grads = {n: p.grad.clone() for n, p in block.named_parameters()}
        grads['x'] = xi.grad
        results.append((y.detach(), grads))
    (y_eager, g_eager), (y_compiled, g_compiled) = results
    torch.testing.assert_close(y_compiled, y_eager, rtol=1e-4, atol=1e-5)
    _assert_grads_close(g_compiled, g_eager, 'SparseNonLocal2d')
