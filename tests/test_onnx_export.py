"""ONNX export: the sparse non-local op's export backend against the float64 reference, and every
quickstart segmentor exported (tools/deployment/pytorch2onnx.py, mmseg_ext.deployment) and run in
onnxruntime against PyTorch.

Tolerance of the segmentor checks: max abs error of the logits <= 1e-4 (float32; measured errors
are ~1e-7, see docs/deploy.md). SSANet's PyTorch side runs the sparse backend on CPU and its ONNX
graph the export backend, so that check also compares the two backends.
"""
import importlib.util
import inspect
import os.path as osp
import re

import pytest
import torch
from snl_reference import make_inputs, reference_snl

from mmseg_ext.ops import sparse_nonlocal as snl_mod
from mmseg_ext.ops import sparse_nonlocal_attention
from mmseg_ext.ops.sparse_nonlocal import export as snl_export

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
ATOL = 1e-4  # segmentor logits, onnxruntime vs PyTorch (float32)
SHAPE = (64, 128)


def quickstart(algo):
    return osp.join(REPO, 'configs', 'quickstart',
                    f'{algo}_r18tiny-d8_1xb8-1k_synthcity-128x256.py')


def export_op(module, inputs, path, dynamo, dynamic_batch=False):
    names = ['q', 'k', 'v', 'off']
    kw = dict(input_names=names, output_names=['out'])
    if dynamo:
        kw.update(dynamo=True, verbose=False)
        if dynamic_batch:
            kw['dynamic_shapes'] = tuple({0: torch.export.Dim('b')} for _ in names)
    else:
        if 'dynamo' in inspect.signature(torch.onnx.export).parameters:
            kw['dynamo'] = False
        kw['opset_version'] = 17
        if dynamic_batch:
            kw['dynamic_axes'] = {n: {0: 'b'} for n in names + ['out']}
    torch.onnx.export(module, inputs, path, **kw)


class SNL(torch.nn.Module):
    def __init__(self, kernel, backend):
        super().__init__()
        self.kernel, self.backend = kernel, backend

    def forward(self, q, k, v, off):
        return sparse_nonlocal_attention(q, k, v, off, self.kernel, backend=self.backend)


# ------------------------------------------------------------------------------------------------
# the op's export backend in PyTorch
# ------------------------------------------------------------------------------------------------
class TestExportBackend:

    @pytest.mark.parametrize('kernel_size,dilation,hw,off_scale', [
        ((3, 3), 1, (5, 7), 1.5), ((2, 3), 2, (4, 6), 2.0), (1, 1, (1, 5), 1.0),
        ((3, 2), 1, (6, 1), 3.0), ((3, 3), 1, (4, 4), 0.0)])
    def test_forward_matches_reference(self, kernel_size, dilation, hw, off_scale):
        inputs = make_inputs(2, 3, 4, *hw, kernel_size, off_scale=off_scale)
        out = sparse_nonlocal_attention(*inputs, kernel_size, dilation, backend='export')
        torch.testing.assert_close(out, reference_snl(*inputs, kernel_size, dilation),
                                   rtol=1e-10, atol=1e-12)

    def test_gradients_match_reference(self):
        inputs = [t.requires_grad_() for t in make_inputs(2, 3, 4, 4, 5, (2, 3), off_scale=2.0)]
        out = sparse_nonlocal_attention(*inputs, (2, 3), backend='export')
        ref = reference_snl(*inputs, (2, 3))
        g = torch.randn_like(out)
        got = torch.autograd.grad(out, inputs, g)
        exp = torch.autograd.grad(ref, inputs, g)
        for a, b in zip(got, exp):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)

    def test_chunks_of_points(self, monkeypatch):
        """One point per chunk (a tiny budget) gives the same result."""
        monkeypatch.setattr(snl_export, 'CHUNK_BYTES', 1)
        assert snl_export.points_per_chunk(30, 9, 4, 8) == 1
        inputs = make_inputs(2, 3, 4, 5, 6, (3, 3), off_scale=2.0)
        torch.testing.assert_close(sparse_nonlocal_attention(*inputs, (3, 3), backend='export'),
                                   reference_snl(*inputs, (3, 3)), rtol=1e-10, atol=1e-12)

    def test_float32_and_weights(self):
        inputs = make_inputs(1, 4, 3, 6, 7, (3, 3), off_scale=1.5)
        out, s = sparse_nonlocal_attention(*(t.float() for t in inputs), (3, 3),
                                           backend='export', return_weights=True)
        assert out.dtype == torch.float32 and s.shape == (1, 9, 6, 7)
        torch.testing.assert_close(out.double(), reference_snl(*inputs, (3, 3)), rtol=1e-5,
                                   atol=1e-5)
        _, s_sparse = sparse_nonlocal_attention(*inputs, (3, 3), backend='sparse',
                                                return_weights=True)
        _, s64 = sparse_nonlocal_attention(*inputs, (3, 3), backend='export',
                                           return_weights=True)
        torch.testing.assert_close(s64, s_sparse, rtol=1e-10, atol=1e-12)

    def test_non_finite_offsets_give_nan_for_their_query_only(self):
        q, k, v, off = make_inputs(2, 3, 4, 5, 6, (3, 3), off_scale=1.5)
        bad = off.clone()
        bad[0, 3, 1, 2] = float('nan')
        bad[1, 0, 2, 2] = float('inf')
        bad[1, 17, 4, 5] = -float('inf')
        bad[1, 5, 0, 0] = 1e30  # finite: far outside the map, its corners contribute zero
        out = sparse_nonlocal_attention(q, k, v, bad, (3, 3), backend='export')
        nan_at = torch.isnan(out).any(1).nonzero().tolist()
        assert nan_at == [[0, 1, 2], [1, 2, 2], [1, 4, 5]]
        assert torch.isnan(out[0, :, 1, 2]).all()
        ref_off = torch.where(torch.isfinite(bad), bad, off)
        ref_off[1, 5, 0, 0] = 1e6  # as outside as 1e30 (which the reference cannot floor)
        ref = reference_snl(q, k, v, ref_off, (3, 3))
        ok = ~torch.isnan(out)
        torch.testing.assert_close(out[ok], ref[ok], rtol=1e-10, atol=1e-12)

    def test_backend_values(self):
        assert 'export' in snl_mod.BACKENDS
        assert snl_mod.check_backend('export') == 'export'
        assert snl_mod.resolve_backend('export', torch.device('cpu'), 81) == 'export'
        assert snl_mod.resolve_backend('auto', torch.device('cpu'), 81) == 'sparse'
        from mmseg_ext.models.utils.snl_block import SparseNonLocal2d
        assert SparseNonLocal2d(8, 3, backend='export').backend == 'export'

    def test_every_backend_exports_while_tracing(self):
        """Under torch.jit.trace (as under both ONNX exporters), 'sparse' runs 'export'."""
        inputs = make_inputs(1, 3, 4, 5, 6, (3, 3), off_scale=1.5, dtype=torch.float32)
        traced = torch.jit.trace(SNL((3, 3), 'sparse'), inputs, check_trace=False)
        assert 'index_select' in str(traced.graph)
        other = make_inputs(1, 3, 4, 5, 6, (3, 3), off_scale=1.5, dtype=torch.float32, seed=1)
        torch.testing.assert_close(traced(*other), SNL((3, 3), 'sparse')(*other), rtol=1e-5,
                                   atol=1e-5)

    def test_torch_export_runs_the_export_path(self):
        """torch.export (not only ONNX) selects the export path: the graph gathers rows."""
        if not hasattr(getattr(torch, 'compiler', None), 'is_exporting'):
            pytest.skip('needs torch >= 2.5: torch.compiler.is_exporting')
        inputs = make_inputs(2, 3, 4, 5, 6, (3, 3), off_scale=1.5, dtype=torch.float32)
        ep = torch.export.export(SNL((3, 3), 'sparse'), inputs, strict=False)
        ops = {str(n.target) for m in ep.graph_module.modules() if hasattr(m, 'graph')
               for n in m.graph.nodes if n.op == 'call_function'}
        assert 'aten.index_select.default' in ops, ops
        other = make_inputs(2, 3, 4, 5, 6, (3, 3), off_scale=1.5, dtype=torch.float32, seed=1)
        torch.testing.assert_close(ep.module()(*other), SNL((3, 3), 'sparse')(*other),
                                   rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# the op in onnxruntime
# ------------------------------------------------------------------------------------------------
def test_op_exports_with_dynamic_batch(tmp_path):
    """TorchScript exporter (the dynamo one: SSANet below), backend 'sparse' requested (the
    export path runs), a dynamic batch and non-finite offsets: onnxruntime equals the float64
    export path to float32 precision."""
    ort = pytest.importorskip('onnxruntime')
    path = str(tmp_path / 'snl.onnx')
    export_op(SNL((3, 3), 'sparse'),
              make_inputs(2, 8, 6, 9, 13, (3, 3), off_scale=2.0, dtype=torch.float32), path,
              dynamo=False, dynamic_batch=True)
    sess = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    for b in (1, 3):
        q, k, v, off = make_inputs(b, 8, 6, 9, 13, (3, 3), off_scale=2.0, seed=b)
        off[0, 3, 1, 2] = float('nan')
        off[-1, 0, 2, 2] = float('inf')
        exp = sparse_nonlocal_attention(q, k, v, off, (3, 3), backend='export')
        got = sess.run(None, {n: t.float().numpy() for n, t in zip('q k v off'.split(),
                                                                  (q, k, v, off))})[0]
        got = torch.from_numpy(got).double()
        assert torch.equal(torch.isnan(got), torch.isnan(exp))
        assert torch.isnan(got).any(1).sum() == 2
        torch.testing.assert_close(got.nan_to_num(), exp.nan_to_num(), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# whole segmentors: mmseg_ext.deployment and tools/deployment/pytorch2onnx.py
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def deployment():
    pytest.importorskip('onnxruntime')
    pytest.importorskip('onnx')
    from mmseg_ext import deployment
    return deployment


def build(algo):
    """A quickstart segmentor, initialised; SSANet's SNL block gets random offset and output
    convs (its init is a regular grid and an identity block, which would not test the op)."""
    from mmseg_ext.deployment import build_segmentor
    torch.manual_seed(0)
    model = build_segmentor(quickstart(algo))
    if algo == 'ssanet':
        snl = model.decode_head.snl
        torch.nn.init.normal_(snl.offset.weight, std=0.5)
        torch.nn.init.normal_(snl.out.weight, std=0.1)
    return model


def needs_dynamo(deployment):
    reason = deployment.dynamo_unavailable()
    if reason:
        pytest.skip(f'needs torch >= 2.5 and onnxscript for torch.onnx.export(dynamo=True): '
                    f'{reason}')


@pytest.mark.parametrize('algo,shape,dynamo,dynamic_batch', [
    ('fcn', SHAPE, False, False),
    ('sanet', SHAPE, False, False),
    ('ssanet', SHAPE, False, False),
    ('gffnet', (48, 96), False, False),  # the 6x12 map divides every pyramid pooling 1, 2, 3, 6
    ('pspnet', SHAPE, True, False),  # 8x16 map: the TorchScript exporter cannot pool to 3x3, 6x6
    ('ssanet', SHAPE, True, True),  # torch.export traces the SNL op's export path
])
def test_quickstart_model_exports_and_matches_pytorch(deployment, algo, shape, dynamo,
                                                      dynamic_batch, tmp_path):
    import onnx
    if dynamo:
        needs_dynamo(deployment)
    model = build(algo)
    if not dynamo:  # what the tool picks without --dynamo/--no-dynamo
        assert deployment.choose_exporter(model, shape, None) is False
    path = deployment.export_onnx(model, shape, str(tmp_path / f'{algo}.onnx'), dynamo,
                                  dynamic_batch=dynamic_batch)
    res = deployment.verify_onnx(model, path, shape, (1, 3) if dynamic_batch else (1, ))
    assert res['max_abs_error'] <= ATOL, res
    assert res['max_abs_logit'] > 0.1 and res['argmax_mismatch'] <= 1e-3, res
    graph = onnx.load(path).graph
    assert {n.domain for n in graph.node} <= {'', 'ai.onnx'}  # standard operators only
    dims = graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims[1:]] == [model.decode_head.out_channels, *shape]
    assert bool(dims[0].dim_param) == dynamic_batch and (dynamic_batch or dims[0].dim_value == 1)
    if algo == 'ssanet':
        assert 'Gather' in {n.op_type for n in graph.node}


def test_torchscript_exporter_refuses_pspnet_up_front(deployment, tmp_path):
    model = build('pspnet')
    with pytest.raises(deployment.ExportError) as err:
        deployment.choose_exporter(model, SHAPE, False)
    msg = str(err.value)
    for part in ('TorchScript exporter', 'decode_head.psp_modules.2.0 (AdaptiveAvgPool2d): '
                 '8x16 -> 3x3', '--shape 96 144'):
        assert part in msg, msg
    if deployment.dynamo_unavailable() is None:
        assert 'Use --dynamo' in msg and deployment.choose_exporter(model, SHAPE, None) is True
    # the check is not spurious: the exporter itself fails, and the error names the other one
    with pytest.raises(deployment.ExportError, match='(?s)TorchScript exporter.*failed.*Try the '
                       'dynamo exporter'):
        deployment.export_onnx(model, SHAPE, str(tmp_path / 'p.onnx'), False, check=False)
    # the suggested shape exports with the TorchScript exporter
    assert not deployment.adaptive_pool_problems(model, (96, 144))


def test_torchscript_exporter_refuses_sanet_grid_pooling_up_front(deployment, tmp_path):
    """The quickstart SANet pools its attention to an 8x8 grid (attn_grid=8, a GridAvgPool2d
    module): at a shape whose stage maps 8 does not divide, the check names every SA block
    before the exporter runs, the exporter itself would fail there, and the suggested shape
    (and the dynamo exporter, where available) exports."""
    model = build('sanet')
    shape = (72, 136)  # stage maps 18x34 (stage 1) and 9x17
    with pytest.raises(deployment.ExportError) as err:
        deployment.choose_exporter(model, shape, False)
    msg = str(err.value)
    for part in ('decode_head.sa_modules.0.grid_pool (GridAvgPool2d): 18x34 -> 8x8',
                 'decode_head.sa_modules.3.grid_pool (GridAvgPool2d): 9x17 -> 8x8',
                 '--shape 192 192'):
        assert part in msg, msg
    with pytest.raises(deployment.ExportError, match='(?s)TorchScript exporter.*failed'):
        deployment.export_onnx(model, shape, str(tmp_path / 's.onnx'), False, check=False)
    assert not deployment.adaptive_pool_problems(model, (192, 192))
    if deployment.dynamo_unavailable() is None:
        assert deployment.choose_exporter(model, shape, None) is True
        path = deployment.export_onnx(model, shape, str(tmp_path / 'd.onnx'), True)
        res = deployment.verify_onnx(model, path, shape, (1, ))
        assert res['max_abs_error'] <= ATOL, res


def test_clear_errors(deployment, monkeypatch):
    model = build('fcn')
    monkeypatch.setattr(deployment, 'dynamo_unavailable',
                        lambda: 'the dynamo exporter needs torch >= 2.5')
    with pytest.raises(deployment.ExportError, match='needs torch >= 2.5.*use --no-dynamo'):
        deployment.check_exportable(model, SHAPE, True)
    with pytest.raises(deployment.ExportError, match='shape must be two positive ints'):
        deployment.check_exportable(model, (64, 0), False)
    model.test_cfg = dict(mode='slide', crop_size=(64, 64), stride=(32, 32))
    for dynamo in (None, False, True):
        with pytest.raises(deployment.ExportError,
                           match="test_cfg mode is 'slide'.*model.test_cfg.mode=whole"):
            deployment.choose_exporter(model, SHAPE, dynamo)


def load_tool():
    spec = importlib.util.spec_from_file_location(
        'pytorch2onnx', osp.join(REPO, 'tools', 'deployment', 'pytorch2onnx.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_tool_exports_checkpoint_with_dynamic_batch(deployment, tmp_path, capsys):
    """The tool on an SSANet checkpoint (loaded weights-only by mmengine's load_checkpoint):
    TorchScript exporter, dynamic batch, verified with batches of 1 and 3 in onnxruntime."""
    model = build('ssanet')
    ckpt = tmp_path / 'ssanet.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), ckpt)
    out = tmp_path / 'ssanet.onnx'
    load_tool().main([quickstart('ssanet'), str(ckpt), '--shape', *map(str, SHAPE),
                      '--no-dynamo', '--verify', '--dynamic-batch', '--out', str(out)])
    printed = capsys.readouterr().out
    assert 'with the TorchScript exporter' in printed
    assert 'seg_logits (batch, 19, 64, 128)' in printed
    assert 'onnxruntime vs PyTorch at 64x128 (batch 1, 3): max abs error' in printed
    err = float(printed.split('max abs error ')[1].split()[0])
    assert err <= ATOL and out.is_file()
    # the checkpoint's weights were exported: this process's model agrees with the file
    assert deployment.verify_onnx(model, str(out), SHAPE, (2, ))['max_abs_error'] <= ATOL


def test_tool_error_exit(deployment):
    tool = load_tool()
    with pytest.raises(SystemExit, match=r'pytorch2onnx: .*TorchScript exporter .* cannot '
                       r'export adaptive pooling.*decode_head.*6x6.*--shape 96 144'):
        tool.main([quickstart('gffnet'), '--shape', *map(str, SHAPE), '--no-dynamo'])
    with pytest.raises(SystemExit, match='checkpoint not found'):
        tool.main([quickstart('fcn'), 'missing.pth', '--shape', '64', '128'])


FCN_RUN = 'fcn_r18tiny-d8_1xb8-1k_synthcity-128x256'


def save_fcn_checkpoint(path, **cfg_options):
    """An FCN quickstart checkpoint as mmengine's runner saves it (its meta records the config by
    ``experiment_name``); returns the FCN's state_dict."""
    from mmseg_ext.deployment import build_segmentor
    state = build_segmentor(quickstart('fcn'), cfg_options=cfg_options).state_dict()
    torch.save(dict(state_dict=state, meta=dict(experiment_name=f'{FCN_RUN}_20261122_101500')),
               path)
    return state


def test_tool_refuses_another_models_checkpoint(tmp_path):
    """Issue #36 item 8: an FCN checkpoint given with the SANet config exported SANet's random
    decode head (exit 0, only mmengine's missing-keys warning). It is refused, with the file,
    the first keys that differ, the config the checkpoint records and what to pass."""
    ckpt = tmp_path / 'fcn.pth'
    save_fcn_checkpoint(ckpt)
    out = tmp_path / 'onnx' / 'sanet.onnx'
    with pytest.raises(SystemExit) as exit_:
        load_tool().main([quickstart('sanet'), str(ckpt), '--shape', *map(str, SHAPE),
                          '--out', str(out)])
    msg = str(exit_.value.code)
    for part in (f'pytorch2onnx: {ckpt} is not a checkpoint of the model of '
                 'sanet_r18tiny-d8_1xb8-1k_synthcity-128x256.py (SAHead): it lacks ',
                 ' weights of the model (in decode_head), e.g. decode_head.',
                 ' the model does not have (in auxiliary_head, decode_head), e.g. ',
                 "It looks like another model's checkpoint (its meta names the run "
                 f'{FCN_RUN}_20261122_101500, i.e. the config {FCN_RUN}.py)',
                 'export it with the config it was trained with',
                 '--no-strict'):
        assert part in msg, msg
    assert not out.parent.exists()  # refused before anything was written


def test_checkpoint_of_another_shape_is_refused_and_no_strict_loads_what_matches(tmp_path):
    """A checkpoint of the same model with 5 classes: its classifiers have another shape."""
    from mmseg_ext.deployment import CheckpointMismatchError, build_segmentor
    ckpt = tmp_path / 'fcn5.pth'
    state = save_fcn_checkpoint(ckpt, **{'model.decode_head.num_classes': 5,
                                         'model.auxiliary_head.num_classes': 5})
    with pytest.raises(CheckpointMismatchError, match=re.escape(
            f'{ckpt} is not a checkpoint of the model of {FCN_RUN}.py (FCNHead): it has 4 '
            'weights of another shape (in auxiliary_head, decode_head), e.g. '
            'decode_head.conv_seg.weight (5x64x1x1 in the file, 19x64x1x1 in the model), '
            'decode_head.conv_seg.bias (5 in the file, 19 in the model), ')):
        build_segmentor(quickstart('fcn'), str(ckpt))
    with pytest.warns(UserWarning, match=re.escape(f'{ckpt} loaded partially (not strict): it '
                                                   'has 4 weights of another shape')):
        model = build_segmentor(quickstart('fcn'), str(ckpt), strict=False)
    loaded = model.state_dict()
    assert loaded['decode_head.conv_seg.weight'].shape == (19, 64, 1, 1)
    same = [k for k, v in state.items() if v.shape == loaded[k].shape]
    assert len(same) == len(state) - 4
    assert all(torch.equal(state[k], loaded[k]) for k in same)


def test_tool_no_strict_exports_the_weights_that_match(deployment, tmp_path, capsys):
    """--no-strict: the FCN checkpoint's backbone goes into the SANet model, with a warning."""
    ckpt = tmp_path / 'fcn.pth'
    state = save_fcn_checkpoint(ckpt)
    out = tmp_path / 'sanet.onnx'
    with pytest.warns(UserWarning, match='loaded partially.*it lacks'):
        load_tool().main([quickstart('sanet'), str(ckpt), '--shape', *map(str, SHAPE),
                          '--no-dynamo', '--no-strict', '--out', str(out)])
    assert out.is_file() and 'with the TorchScript exporter' in capsys.readouterr().out
    with pytest.warns(UserWarning, match='loaded partially'):
        model = deployment.build_segmentor(quickstart('sanet'), str(ckpt), strict=False)
    backbone = [k for k in state if k.startswith('backbone.')]
    assert backbone and all(torch.equal(model.state_dict()[k], state[k]) for k in backbone)
    with pytest.raises(SystemExit):
        load_tool().parse_args([quickstart('sanet'), '--shape', '64', '128', '--no-strict'])
    assert '--no-strict is about loading a CHECKPOINT' in capsys.readouterr().err


@pytest.mark.parametrize('algo,extra', [('fcn', []), ('ssanet', []),
                                        ('sanet', ['model.decode_head.attn_grid=None',
                                                   'model.decode_head.pool_ratio=8'])])
def test_dynamic_shape_verified_at_three_sizes(algo, extra, tmp_path, capsys):
    """#39: --dynamic-shape exports H and W as dynamic axes; --verify runs three sizes."""
    out = tmp_path / f'{algo}.onnx'
    args = [quickstart(algo), '--shape', '64', '128', '--no-dynamo', '--dynamic-shape', '--verify',
            '--out', str(out)] + (['--cfg-options', *extra] if extra else [])
    load_tool().main(args)
    text = capsys.readouterr().out
    for size in ('64x128', '96x192', '40x168'):
        assert f'onnxruntime vs PyTorch at {size} (batch 1): max abs error' in text, text
    import onnx
    dims = onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == [1, 3, 'height', 'width']


@pytest.mark.parametrize('algo,what', [('pspnet', 'AdaptiveAvgPool2d'),
                                       ('gffnet', 'AdaptiveAvgPool2d'),
                                       ('sanet', 'GridAvgPool2d')])
def test_dynamic_shape_refused_with_the_reason(algo, what, tmp_path):
    out = tmp_path / 'x.onnx'
    with pytest.raises(SystemExit) as e:
        load_tool().main([quickstart(algo), '--shape', '64', '128', '--no-dynamo',
                          '--dynamic-shape', '--out', str(out)])
    msg = str(e.value.code)
    assert 'cannot be exported with dynamic H and W' in msg and what in msg
    assert 'one file per input size' in msg and not out.exists()
