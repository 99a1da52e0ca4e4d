"""Tests of the SSANet sparse non-local block and SNLHead (arXiv:2109.01915)."""
import math
import os.path as osp
import re
from glob import glob

import pytest
import torch
import torch.nn.functional as F
from snl_reference import reference_snl
from torch.func import functional_call

import mmseg_ext  # noqa: F401  (registers SNLHead)
from mmseg_ext.models.decode_heads.snl_head import SNLHead
from mmseg_ext.models.utils import SparseNonLocal2d

CFG_DIR = osp.join(osp.dirname(__file__), '..', 'configs', 'ssanet')
BN = dict(type='BN', requires_grad=True)


# ----------------------------------------------------------------------------------------------
# slow, obviously correct references (float64)
# ----------------------------------------------------------------------------------------------
def _conv1x1(x, conv):
    return torch.einsum('oc,bchw->bohw', conv.weight[:, :, 0, 0], x) + conv.bias.view(1, -1, 1, 1)


def _snl_unfold(q, k, v, kh, kw, dil):
    """Zero offsets: the K keys/values are the regular dilated kh x kw window (zero padded)."""
    B, C, H, W = q.shape
    pad = (dil * (kh - 1) // 2, dil * (kw - 1) // 2)
    ku = F.unfold(k, (kh, kw), dilation=dil, padding=pad).view(B, C, kh * kw, H * W)
    vu = F.unfold(v, (kh, kw), dilation=dil, padding=pad).view(B, v.shape[1], kh * kw, H * W)
    s = torch.einsum('bcn,bckn->bkn', q.flatten(2), ku).softmax(1)
    return torch.einsum('bkn,bckn->bcn', s, vu).view(B, -1, H, W)


def _randomise(module, std=0.3):
    """Give the zero-initialised convs (offsets, gamma) random values."""
    gen = torch.Generator().manual_seed(123)
    for conv in (module.offset, module.out):
        with torch.no_grad():
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * std)
            conv.bias.copy_(torch.randn(conv.bias.shape, generator=gen) * std)


# ----------------------------------------------------------------------------------------------
# block
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize('kernel_size,dilation', [(3, 1), ((3, 5), 2)])
def test_block_starts_as_identity_on_regular_grid(kernel_size, dilation):
    torch.manual_seed(0)
    block = SparseNonLocal2d(8, kernel_size=kernel_size, dilation=dilation).double()
    x = torch.randn(2, 8, 5, 7, dtype=torch.float64)
    assert torch.equal(block(x), x)
    assert torch.count_nonzero(block.offset(x)) == 0
    kh, kw = block.kernel_size
    ref = _snl_unfold(block.query(x), block.key(x), block.value(x), kh, kw, dilation)
    torch.testing.assert_close(block.attention(x), ref, rtol=1e-10, atol=1e-12)


def test_block_use_scale_divides_logits():
    torch.manual_seed(0)
    block = SparseNonLocal2d(8, kernel_size=3, use_scale=True).double()
    x = torch.randn(1, 8, 4, 6, dtype=torch.float64)
    q = block.query(x) / math.sqrt(4)  # query/key have 8 // 2 = 4 channels
    ref = _snl_unfold(q, block.key(x), block.value(x), 3, 3, 1)
    torch.testing.assert_close(block.attention(x), ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('kernel_size,dilation,value_channels', [((3, 5), 2, None), (3, 1, 3)])
def test_block_matches_explicit_loop(kernel_size, dilation, value_channels):
    torch.manual_seed(1)
    block = SparseNonLocal2d(
        6, kernel_size=kernel_size, dilation=dilation, value_channels=value_channels).double()
    _randomise(block, std=1.0)  # offsets of ~1 px, some samples fall outside the 4x5 map
    x = torch.randn(2, 6, 4, 5, dtype=torch.float64)
    kh, kw = block.kernel_size
    q, k, v = _conv1x1(x, block.query), _conv1x1(x, block.key), _conv1x1(x, block.value)
    y = reference_snl(q, k, v, _conv1x1(x, block.offset), (kh, kw), dilation)
    assert y.shape[1] == (value_channels or 6)
    ref = _conv1x1(y, block.out) + x
    torch.testing.assert_close(block(x), ref, rtol=1e-9, atol=1e-10)


def test_block_out_norm_zero_init():
    block = SparseNonLocal2d(4, kernel_size=3, out_norm_cfg=dict(type='BN')).double()
    assert torch.count_nonzero(block.out_norm.weight) == 0
    assert torch.count_nonzero(block.out.weight) > 0  # the conv itself keeps its default init
    x = torch.randn(2, 4, 3, 5, dtype=torch.float64)
    assert torch.equal(block(x), x)


def test_block_gradcheck():
    torch.manual_seed(2)
    block = SparseNonLocal2d(4, kernel_size=3, dilation=1).double()
    _randomise(block)  # fractional sampling positions: bilinear sampling is smooth there
    x = torch.randn(2, 4, 3, 4, dtype=torch.float64, requires_grad=True)
    names = [n for n, _ in block.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for _, p in block.named_parameters()]

    def f(inp, *ps):
        return functional_call(block, dict(zip(names, ps)), (inp, ))

    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-6, fast_mode=True)


def test_block_errors():
    with pytest.raises(ValueError, match='kernel_size'):
        SparseNonLocal2d(8, kernel_size=0)
    with pytest.raises(ValueError, match='kernel_size'):
        SparseNonLocal2d(8, kernel_size=(3, 3, 3))
    with pytest.raises(ValueError, match='dilation'):
        SparseNonLocal2d(8, dilation=0)
    with pytest.raises(ValueError, match='reduction'):
        SparseNonLocal2d(8, reduction=16)
    with pytest.raises(ValueError, match='in_channels'):
        SparseNonLocal2d(0)
    with pytest.raises(TypeError, match='out_norm_cfg'):
        SparseNonLocal2d(8, out_norm_cfg='BN')


@pytest.mark.parametrize('kernel_size,k', [(99, 9801), ((9, 16), 144), ((16, 3), 48)])
def test_block_refuses_grids_over_15_per_side(kernel_size, k):
    """An int kernel_size is the grid side: 99 means K=9801, not the paper's K=99."""
    with pytest.raises(ValueError, match=f'K={k} points.*kernel_size=\\(9, 11\\).*'
                       'allow_large_kernel=True'):
        SparseNonLocal2d(4, kernel_size=kernel_size)
    block = SparseNonLocal2d(4, kernel_size=kernel_size, allow_large_kernel=True)
    assert block.num_points == k
    assert SparseNonLocal2d(4, kernel_size=15).num_points == 225  # the limit itself is fine


def test_block_backend_option(monkeypatch):
    import mmseg_ext.models.utils.snl_block as snl_block
    with pytest.raises(ValueError, match="backend must be one of \\('auto', 'triton', "
                       "'sparse', 'mmcv', 'export'\\)"):
        SparseNonLocal2d(4, kernel_size=3, backend='cuda')
    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs['backend'])
        return args[2]

    monkeypatch.setattr(snl_block, 'sparse_nonlocal_attention', spy)
    for backend in ('auto', 'sparse', 'triton', 'mmcv', 'export'):
        block = SparseNonLocal2d(4, kernel_size=3, backend=backend)
        assert f"backend='{backend}'" in repr(block)
        block(torch.randn(1, 4, 3, 3))
    assert seen == ['auto', 'sparse', 'triton', 'mmcv', 'export']


def test_block_asks_for_weights_only_while_its_tap_is_hooked(monkeypatch):
    """An ordinary pass calls the op exactly as without inspection (return_weights=False); a
    forward hook on ``weights_tap`` gets the softmax weights the op returns, and the pass
    computes the same output."""
    import mmseg_ext.models.utils.snl_block as snl_block
    from mmseg_ext.models.utils.taps import capture_outputs
    from mmseg_ext.ops import sparse_nonlocal_attention
    torch.manual_seed(0)
    block = SparseNonLocal2d(6, kernel_size=(3, 5), dilation=2).double()
    _randomise(block, std=1.0)
    x = torch.randn(2, 6, 4, 5, dtype=torch.float64)
    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs['return_weights'])
        return sparse_nonlocal_attention(*args, **kwargs)

    monkeypatch.setattr(snl_block, 'sparse_nonlocal_attention', spy)
    plain = block(x)
    with capture_outputs([block.weights_tap]) as got:
        inspected = block(x)
    assert calls == [False, True]
    assert not block.weights_tap._forward_hooks
    assert torch.equal(plain, inspected)
    q, k, v, off = block.query(x), block.key(x), block.value(x), block.offset(x)
    _, ref = sparse_nonlocal_attention(q, k, v, off, (3, 5), 2, return_weights=True)
    assert len(got) == 1 and torch.equal(got[0], ref) and not got[0].requires_grad


def test_block_unrunnable_backend_says_what_to_change():
    block = SparseNonLocal2d(4, kernel_size=3, backend='mmcv')
    with pytest.raises(ValueError, match="backend='mmcv' cannot run here.*backend='auto'"):
        block(torch.randn(1, 4, 3, 3))


# ----------------------------------------------------------------------------------------------
# head
# ----------------------------------------------------------------------------------------------
def _head(**kw):
    cfg = dict(
        in_channels=(4, 16), in_index=(0, 1), channels=8, num_classes=5, norm_cfg=BN,
        kernel_size=3)
    cfg.update(kw)
    return SNLHead(**cfg)


def _feats(b=2, low=(9, 17), high=(5, 9), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, 4, *low, generator=g), torch.randn(b, 16, *high, generator=g)]


@pytest.mark.parametrize('use_gp', [True, False])
@pytest.mark.parametrize('use_decoder', [True, False])
def test_head_variants_shapes(use_gp, use_decoder):
    kw = dict(use_gp=use_gp, use_decoder=use_decoder)
    if not use_decoder:
        kw.update(in_channels=16, in_index=1)
    head = _head(**kw)
    assert hasattr(head, 'gp') == use_gp
    assert hasattr(head, 'low_reduce') == use_decoder
    out = head(_feats())
    # decoder: resolution of the low-level (stride-4) input, else of the last stage
    assert out.shape == ((2, 5, 9, 17) if use_decoder else (2, 5, 5, 9))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize('use_gp', [True, False])
def test_head_gp_branch_gives_global_context(use_gp):
    """At init the SNL block is the identity, so without GP an output pixel only sees a local
    window; with GP a change far away reaches it through the pooled branch."""
    torch.manual_seed(0)
    head = _head(in_channels=16, in_index=1, use_gp=use_gp, use_decoder=False).eval()
    feats = _feats(high=(12, 12))
    feats2 = [f.clone() for f in feats]
    feats2[1][:, :, -1, -1] += 5.0  # far corner; 3x3 reduce + 3x3 fuse see 2 px at most
    with torch.no_grad():
        delta = (head(feats) - head(feats2))[:, :, 0, 0].abs().max()
    assert (delta > 1e-6) == use_gp


def test_head_decoder_uses_low_level_input():
    head = _head().eval()
    feats = _feats()
    feats2 = [feats[0] + 1.0, feats[1]]
    with torch.no_grad():
        assert not torch.allclose(head(feats), head(feats2))


def test_head_init_weights_keeps_snl_identity():
    head = _head()
    for p in head.parameters():
        torch.nn.init.normal_(p)  # as if something clobbered everything
    head.init_weights()  # mmengine's BaseModule.init_weights -> SparseNonLocal2d.init_weights
    assert torch.count_nonzero(head.snl.offset.weight) == 0
    assert torch.count_nonzero(head.snl.out.weight) == 0
    assert torch.count_nonzero(head.snl.out.bias) == 0


def _seg_loss(head, feats, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = head(feats)
    target = torch.randint(0, 5, (logits.shape[0], 33, 65), generator=g)
    logits = F.interpolate(logits, size=(33, 65), mode='bilinear', align_corners=False)
    return F.cross_entropy(logits, target)


def test_head_every_parameter_gets_gradient_after_one_step():
    """With zero-init gamma only gamma gets a gradient at step 0 (that is the point of the
    identity init); after one SGD step every parameter must get a non-zero gradient."""
    torch.manual_seed(0)
    head = _head().train()
    feats = _feats()
    opt = torch.optim.SGD(head.parameters(), lr=0.1)
    _seg_loss(head, feats).backward()
    snl_in = [head.snl.query, head.snl.key, head.snl.value, head.snl.offset]
    assert all(torch.count_nonzero(m.weight.grad) == 0 for m in snl_in)
    assert torch.count_nonzero(head.snl.out.weight.grad) > 0
    opt.step()
    opt.zero_grad()
    _seg_loss(head, feats, seed=1).backward()
    for name, p in head.named_parameters():
        assert p.grad is not None, name
        assert torch.count_nonzero(p.grad) > 0, name


def test_head_every_parameter_gets_gradient_with_perturbed_gamma():
    torch.manual_seed(0)
    head = _head(use_gp=True, use_decoder=True).train()
    _randomise(head.snl, std=0.1)
    _seg_loss(head, _feats()).backward()
    for name, p in head.named_parameters():
        assert p.grad is not None, name
        assert torch.count_nonzero(p.grad) > 0, name


@pytest.mark.parametrize('use_decoder', [True, False])
def test_segmentor_odd_image_size(use_decoder):
    """Full EncoderDecoder on 33x65 images with a tiny dilated ResNet (output stride 8)."""
    from mmengine.config import ConfigDict
    from mmengine.registry import DefaultScope
    from mmengine.structures import PixelData
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    head = dict(
        type='SNLHead', in_channels=(8, 64), in_index=(0, 3), channels=16, num_classes=5,
        kernel_size=(3, 5), norm_cfg=BN, use_decoder=True)
    if not use_decoder:
        head.update(in_channels=64, in_index=3, input_transform=None, use_decoder=False)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(ConfigDict(
            type='EncoderDecoder',
            data_preprocessor=dict(type='SegDataPreProcessor'),
            backbone=dict(
                type='ResNetV1c', depth=18, base_channels=8, stem_channels=8,
                dilations=(1, 1, 2, 4), strides=(1, 2, 1, 1), norm_cfg=BN,
                contract_dilation=True),
            decode_head=head,
            test_cfg=dict(mode='whole')))
    x = torch.randn(2, 3, 33, 65)
    logits = model(x, mode='tensor')
    # stem conv s2 + maxpool s2: 33x65 -> 9x17 (stride 4); layer2 s2 -> 5x9 (stride 8)
    assert logits.shape == ((2, 5, 9, 17) if use_decoder else (2, 5, 5, 9))
    samples = []
    for _ in range(2):
        s = SegDataSample(metainfo=dict(img_shape=(33, 65), ori_shape=(33, 65)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, 5, (1, 33, 65)))
        samples.append(s)
    losses = model(x, samples, mode='loss')
    assert torch.isfinite(losses['decode.loss_ce'])
    model.eval()
    with torch.no_grad():
        pred = model(x, samples, mode='predict')
    assert pred[0].pred_sem_seg.data.shape == (1, 33, 65)


def test_head_errors():
    with pytest.raises(ValueError, match='in_channels'):
        _head(in_channels=16)  # decoder needs (c_low, c_high)
    with pytest.raises(ValueError, match='in_index'):
        _head(in_index=(0, 1, 2), in_channels=(4, 8, 16))
    with pytest.raises(ValueError, match='multiple_select'):
        _head(input_transform='resize_concat')
    with pytest.raises(ValueError, match='use_decoder=False'):
        _head(use_decoder=False)  # two inputs given for the single-input variant
    with pytest.raises(ValueError, match='input_transform'):
        _head(use_decoder=False, in_channels=16, in_index=1, input_transform='multiple_select')
    with pytest.raises(ValueError, match='kernel_size'):
        _head(kernel_size=0)
    with pytest.raises(ValueError, match='kernel_size'):
        _head(kernel_size=(3, -1))
    with pytest.raises(ValueError, match='dilation'):
        _head(dilation=-2)
    with pytest.raises(ValueError, match='low_channels'):
        _head(low_channels=0)
    with pytest.raises(TypeError, match='use_gp'):
        _head(use_gp='yes')
    with pytest.raises(TypeError, match='unexpected keyword'):
        _head(use_gpp=True)  # unknown option
    with pytest.raises(ValueError, match='kernel_size=\\(9, 11\\)'):
        _head(kernel_size=99)  # K=9801, refused at construction
    with pytest.raises(ValueError, match='backend must be one of'):
        _head(backend='gpu')


def test_head_passes_backend_and_large_kernel_to_the_block():
    head = _head(backend='sparse')
    assert head.snl.backend == 'sparse'
    assert _head().snl.backend == 'auto'
    head = _head(kernel_size=(3, 17), allow_large_kernel=True)
    assert head.snl.num_points == 51


# ----------------------------------------------------------------------------------------------
# configs: the K and the variant written in each name match the model (builds only the head)
# ----------------------------------------------------------------------------------------------
CONFIGS = sorted(glob(osp.join(CFG_DIR, 'ssanet*.py')))


@pytest.fixture(scope='module')
def cached_mmseg_metafiles():
    """Config.fromfile re-parses all of mmseg's ~160 metafiles (~1 s) for every ``mmseg::``
    base; cache the (read-only) yaml loads for this module."""
    import functools

    import mmengine.config.utils as cfg_utils
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cfg_utils, 'load', functools.lru_cache(maxsize=None)(cfg_utils.load))
        yield


def test_configs_exist():
    assert len(CONFIGS) >= 15


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_config_head_matches_name(path, cached_mmseg_metafiles):
    from mmengine import Config
    from mmseg.registry import MODELS
    cfg = Config.fromfile(path)
    name = osp.basename(path)
    head_cfg = cfg.model.decode_head
    ks = head_cfg.kernel_size
    kh, kw = (ks, ks) if isinstance(ks, int) else ks
    m = re.match(r'ssanet-k(\d+)', name)
    if m:  # Table 1 ablations
        assert kh * kw == int(m.group(1))
    elif 'cityscapes' in name:
        assert kh * kw == 81  # §4.2 / footnote 1
    else:
        assert kh * kw == 49  # Pascal Context / ADE20K, §4.3
    assert head_cfg.use_gp == ('nogp' not in name)
    assert head_cfg.use_decoder == ('nodec' not in name)
    assert head_cfg.channels == (256 if 'mobilenet' in name else 512)  # §3.3
    assert cfg.custom_imports['imports'] == ['mmseg_ext']
    if '-d16' in name:  # paper recipe, §4.1
        assert cfg.optim_wrapper.optimizer.lr == 0.005
        assert cfg.optim_wrapper.optimizer.weight_decay == 1e-4
        assert cfg.param_scheduler[0].power == 0.9
    head_cfg.norm_cfg = BN
    head = MODELS.build(head_cfg)
    assert head.snl.num_points == kh * kw
