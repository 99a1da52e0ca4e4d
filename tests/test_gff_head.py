# Copyright (c) mmseg_ext contributors. All rights reserved.
"""Tests for GFF (Li et al., AAAI 2020): Eq. 5 fusion, baselines, GFFHead."""
import copy
import functools
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

from mmseg_ext.models.utils.gated_fusion import (
    FUSION_TYPES,
    GatedFullyFusion,
    TopDownFusion,
    build_fusion,
    gated_fully_fuse,
)
from mmseg_ext.utils import revert_sync_bn_cfg

C = 3
# levels of different sizes, finest first (two levels share a size, as the
# 1/8 stages of a ResNet-d8 do)
SIZES = [(9, 13), (5, 7), (5, 7), (3, 4)]


def _feats(gen, sizes=SIZES, c=C, n=2):
    return [torch.randn(n, c, h, w, generator=gen, dtype=torch.float64)
            for h, w in sizes]


def _gates(gen, gate_channels, sizes=SIZES, n=2):
    return [torch.rand(n, gate_channels, h, w, generator=gen,
                       dtype=torch.float64) * 0.98 + 0.01 for h, w in sizes]


def _up(x, size):
    return F.interpolate(x, size=size, mode='bilinear', align_corners=False)


def reference_eq5(feats, gates, order):
    """Eq. 5 written out pixel by pixel over an explicit loop of levels."""
    L = len(feats)
    outs = [None] * L
    for lvl in range(L):
        n, c, h, w = feats[lvl].shape
        # senders G_i * X_i (sequential: already updated X~_i for i < l),
        # each bilinearly resized to level l
        senders = []
        for i in range(L):
            if i == lvl:
                continue
            src = outs[i] if (order == 'sequential' and i < lvl) else feats[i]
            senders.append(_up(gates[i] * src, (h, w)))
        # plain Python floats (float64), one pixel at a time
        g = gates[lvl].expand(n, c, h, w).tolist()
        x_l = feats[lvl].tolist()
        snd = [s.tolist() for s in senders]
        out = [[[[(1 + g[b][k][y][x]) * x_l[b][k][y][x] +
                  (1 - g[b][k][y][x]) * sum(s[b][k][y][x] for s in snd)
                  for x in range(w)] for y in range(h)] for k in range(c)]
               for b in range(n)]
        out = torch.tensor(out, dtype=torch.float64)
        outs[lvl] = out
    return outs


@pytest.mark.parametrize('gate_channels', [1, C])
@pytest.mark.parametrize('order', ['simultaneous', 'sequential'])
def test_eq5_matches_explicit_loop(gate_channels, order):
    gen = torch.Generator().manual_seed(0)
    feats, gates = _feats(gen), _gates(gen, gate_channels)
    outs = gated_fully_fuse(feats, gates, order)
    ref = reference_eq5(feats, gates, order)
    for o, r, x in zip(outs, ref, feats):
        assert o.shape == x.shape
        torch.testing.assert_close(o, r, rtol=1e-12, atol=1e-12)


def test_eq5_constant_maps_closed_form():
    # constant maps stay constant under bilinear resizing, so Eq. 5 reduces
    # to scalars: x~_l = (1 + g_l) c_l + (1 - g_l) sum_{i != l} g_i c_i
    c = [1.5, -2.0, 0.25, 3.0]
    g = [0.1, 0.7, 0.4, 0.9]
    feats = [torch.full((1, 2, h, w), v, dtype=torch.float64)
             for (h, w), v in zip(SIZES, c)]
    gates = [torch.full((1, 1, h, w), v, dtype=torch.float64)
             for (h, w), v in zip(SIZES, g)]
    outs = gated_fully_fuse(feats, gates, 'simultaneous')
    seq = gated_fully_fuse(feats, gates, 'sequential')
    done = []
    for lvl in range(4):
        others = sum(g[i] * c[i] for i in range(4) if i != lvl)
        expect = (1 + g[lvl]) * c[lvl] + (1 - g[lvl]) * others
        assert torch.allclose(outs[lvl], torch.tensor(expect, dtype=torch.float64))
        # sequential: levels < l contribute their updated value
        others_seq = sum(g[i] * (done[i] if i < lvl else c[i])
                         for i in range(4) if i != lvl)
        done.append((1 + g[lvl]) * c[lvl] + (1 - g[lvl]) * others_seq)
        assert torch.allclose(seq[lvl], torch.tensor(done[-1], dtype=torch.float64))


@pytest.mark.parametrize('gate_channels', [1, C])
def test_update_orders_differ(gate_channels):
    gen = torch.Generator().manual_seed(1)
    feats, gates = _feats(gen), _gates(gen, gate_channels)
    sim = gated_fully_fuse(feats, gates, 'simultaneous')
    seq = gated_fully_fuse(feats, gates, 'sequential')
    # level 1 reads only inputs in both orders; every later level differs
    torch.testing.assert_close(sim[0], seq[0])
    for lvl in range(1, 4):
        assert (sim[lvl] - seq[lvl]).abs().max() > 1e-3


@pytest.mark.parametrize('gate_channels', [1, 2])
@pytest.mark.parametrize('order', ['simultaneous', 'sequential'])
def test_gff_module_gradcheck(gate_channels, order):
    gen = torch.Generator().manual_seed(2)
    sizes = [(3, 4), (2, 3), (2, 2)]
    raw_ch = [2, 3, 4]
    mod = GatedFullyFusion(raw_ch, gate_channels, order).double()
    feats = [t.requires_grad_() for t in _feats(gen, sizes, c=2, n=1)]
    raws = [torch.randn(1, c, h, w, generator=gen, dtype=torch.float64,
                        requires_grad=True) for c, (h, w) in zip(raw_ch, sizes)]

    def fn(*args):
        outs, gates = mod(list(args[:3]), list(args[3:]))
        return tuple(outs) + tuple(gates)

    assert torch.autograd.gradcheck(fn, tuple(feats + raws))
    outs, gates = mod(feats, raws)
    for g, (h, w) in zip(gates, sizes):
        assert g.shape == (1, gate_channels, h, w)
        assert bool(((g > 0) & (g < 1)).all())


def test_fpn_and_gated_fpn_formulas():
    gen = torch.Generator().manual_seed(3)
    feats = _feats(gen)
    outs, gates = TopDownFusion()(feats)
    assert gates == []
    expect = feats[-1]
    torch.testing.assert_close(outs[-1], expect)
    for lvl in range(2, -1, -1):  # Eq. 4
        expect = feats[lvl] + _up(expect, feats[lvl].shape[-2:])
        torch.testing.assert_close(outs[lvl], expect)
    gfpn = TopDownFusion([C] * 4, gate_channels=1).double()
    outs, gates = gfpn(feats)
    expect = feats[-1]
    for lvl in range(2, -1, -1):
        g = gates[lvl]
        expect = ((1 + g) * feats[lvl] + (1 - g) *
                  _up(gates[lvl + 1] * expect, feats[lvl].shape[-2:]))
        torch.testing.assert_close(outs[lvl], expect)


def test_concat_add_and_unknown_fusion():
    gen = torch.Generator().manual_seed(4)
    feats = _feats(gen)
    (cat, ), _ = build_fusion('concat', [C] * 4)(feats)
    (add, ), _ = build_fusion('add', [C] * 4)(feats)
    size = SIZES[0]
    torch.testing.assert_close(
        cat, torch.cat([_up(x, size) for x in feats], 1))
    torch.testing.assert_close(add, sum(_up(x, size) for x in feats))
    with pytest.raises(ValueError, match='fusion must be one of'):
        build_fusion('sum', [C] * 4)
    with pytest.raises(ValueError, match='update_order'):
        GatedFullyFusion([C] * 4, update_order='parallel')
    with pytest.raises(ValueError, match='update_order'):
        gated_fully_fuse(feats, _gates(gen, 1), 'random')


@pytest.mark.parametrize('bad', [True, 1.0, '1', 0])
def test_level_gates_refuse_a_non_integer_gate_width(bad):
    with pytest.raises(ValueError, match=r'LevelGates: gate_channels must be an integer >= 1'):
        GatedFullyFusion([C] * 4, gate_channels=bad)


# ---------------------------------------------------------------- GFFHead --
mmseg = pytest.importorskip('mmseg')

# 33x65 image -> 1/4: 9x17, 1/8: 5x9 (ResNet-d8 strides 4, 8, 8, 8)
IN_CH = [4, 8, 16, 32]
IN_SIZES = [(9, 17), (5, 9), (5, 9), (5, 9)]


def _head(**kw):
    from mmseg.registry import MODELS

    import mmseg_ext  # noqa: F401  (registers GFFHead)
    cfg = dict(type='GFFHead', in_channels=IN_CH, in_index=[0, 1, 2, 3],
               channels=8, fusion_channels=4, pool_scales=(1, 2, 3),
               num_classes=3, dropout_ratio=0.0,
               norm_cfg=dict(type='BN', requires_grad=True),
               align_corners=False)
    cfg.update(kw)
    return MODELS.build(cfg)


def _inputs(seed=0, n=2):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(n, c, h, w, generator=gen)
            for c, (h, w) in zip(IN_CH, IN_SIZES)]


@pytest.mark.parametrize('gate_channels', [1, 4])
@pytest.mark.parametrize('order', ['simultaneous', 'sequential'])
def test_head_gates_exposed_odd_size(gate_channels, order):
    head = _head(gate_channels=gate_channels, update_order=order)
    x = _inputs()
    fusion_args = []  # the fusion block's inputs of the pass, to call it again directly
    pre = head.fusion.register_forward_pre_hook(lambda m, args: fusion_args.append(args))
    try:
        logits, gates = head.forward_with_gates(x)
    finally:
        pre.remove()
    assert logits.shape == (2, 3, 9, 17)
    _, ref = head.fusion(*fusion_args[0])  # the gates the fusion computes
    assert len(gates) == 4
    for g, r, (h, w) in zip(gates, ref, IN_SIZES):
        assert g.shape == (2, gate_channels, h, w)
        assert bool(((g > 0) & (g < 1)).all())
        assert g.requires_grad  # not detached: forward_with_gates can be differentiated
        assert torch.equal(g, r)
    assert not head.fusion._forward_hooks  # the reading hook is gone
    torch.testing.assert_close(head(x), logits)


def test_forward_with_gates_removes_its_hook_on_errors():
    head = _head()
    with pytest.raises(RuntimeError):
        head.forward_with_gates([t[:, :1] for t in _inputs()])  # wrong channel counts
    assert not head.fusion._forward_hooks


@pytest.mark.parametrize('fusion,use_dfp', [(f, d) for f in FUSION_TYPES
                                            for d in (False, True)])
def test_every_parameter_gets_gradient(fusion, use_dfp):
    head = _head(fusion=fusion, use_dfp=use_dfp, dfp_mode='literal'
                 if fusion == 'add' else 'dense', update_order='sequential'
                 if fusion == 'concat' else 'simultaneous')
    head.train()
    out = head(_inputs())
    assert out.shape == (2, 3, 9, 17)
    out.square().mean().backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_align_level_resizes_all_levels_to_1_8():
    head = _head(align_level=1)
    logits, gates = head.forward_with_gates(_inputs())
    assert logits.shape == (2, 3, 5, 9)
    assert all(g.shape[-2:] == (5, 9) for g in gates)


@pytest.mark.parametrize('kw,err,msg', [
    (dict(in_index=[0, 1, 2]), ValueError, 'in_index'),
    (dict(in_index=3), ValueError, 'in_index'),
    (dict(in_channels=32), TypeError, 'in_channels'),
    (dict(in_channels=[4, 8, 16]), ValueError, 'in_index'),
    (dict(fusion='hypercolumn'), ValueError, 'fusion must be one of'),
    (dict(update_order='parallel'), ValueError, 'update_order'),
    (dict(dfp_mode='sparse'), ValueError, 'dfp_mode'),
    (dict(gate_channels=2), ValueError, 'gate_channels'),
    (dict(dfp_kernel_size=2), ValueError, 'dfp_kernel_size'),
    (dict(align_level=4), ValueError, 'align_level'),
    (dict(input_transform='resize_concat'), ValueError, 'input_transform'),
    (dict(fusion_channels=8.5), ValueError, r'fusion_channels must be an integer >= 1 .*8\.5'),
    (dict(fusion_channels=0), ValueError, 'fusion_channels must be an integer >= 1'),
    (dict(num_fuse_convs=-1), ValueError, 'num_fuse_convs must be an integer >= 0'),
    (dict(pool_scales=(0, )), ValueError,
     r'pool_scales must be a non-empty sequence of integers >= 1'),
    (dict(pool_scales=()), ValueError, 'pool_scales must be a non-empty'),
    (dict(pool_scales=(1, 2.5)), ValueError, 'pool_scales'),
    (dict(pool_scales=6), ValueError, 'pool_scales'),
    # issue #25: bools and floats where an int is meant, strings where a bool or int is meant
    (dict(gate_channels=True), ValueError,
     r'gate_channels must be an integer >= 1 \(1 \(paper\) or fusion_channels=4 .*got True'),
    (dict(gate_channels=1.0), ValueError, r'gate_channels must be an integer .*got 1\.0'),
    (dict(dfp_kernel_size='3'), ValueError, r"dfp_kernel_size must be an integer >= 1 .*got '3'"),
    (dict(dfp_kernel_size=True), ValueError, 'dfp_kernel_size must be an integer'),
    (dict(align_level=1.5), ValueError,
     r'align_level must be None .* integer index .*-4\.\.3.*1\.5'),
    (dict(align_level=True), ValueError, r'align_level must be None .*got True'),
    (dict(use_dfp='no'), ValueError, r"use_dfp must be True or False, got 'no'"),
    (dict(use_dfp=0), ValueError, 'use_dfp must be True or False'),
])
def test_construction_errors(kw, err, msg):
    with pytest.raises(err, match=msg):
        _head(**kw)


# ---------------------------------------------- parameter budget, Table 3 --
CFG_DIR = osp.join(osp.dirname(__file__), '..', 'configs', 'gffnet')
CITY_R101 = osp.join(CFG_DIR, 'gffnet_r101-d8_4xb2-80k_cityscapes-512x1024.py')


@functools.lru_cache(maxsize=None)
def _parsed(cfg_path):
    from mmengine.config import Config
    cfg = revert_sync_bn_cfg(Config.fromfile(cfg_path).model.to_dict())
    cfg.update(pretrained=None, auxiliary_head=None)  # Table 3: no aux head
    return cfg


def _model_cfg(cfg_path):
    return copy.deepcopy(_parsed(cfg_path))


def _build(cfg):
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS

    import mmseg_ext  # noqa: F401
    with DefaultScope.overwrite_default_scope('mmseg'):
        return MODELS.build(cfg)


def _n(module):
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope='module')
def psp_r101():
    """(whole PSPNet R101-d8 params, its backbone params, backbone cfg)."""
    cfg = _model_cfg(osp.join(osp.dirname(mmseg.__file__), '.mim', 'configs',
                              'pspnet',
                              'pspnet_r101-d8_4xb2-80k_cityscapes-512x1024.py'))
    model = _build(cfg)
    return _n(model), _n(model.backbone), cfg['backbone']


def _count(psp_r101, cfg_path, **head_kw):
    """Params of a GFFNet config without aux head: the backbone is the same
    module as PSPNet's (checked), so only the decode head is built."""
    cfg = _model_cfg(cfg_path)
    assert cfg['backbone'] == psp_r101[2]
    cfg['decode_head'].update(head_kw)
    return psp_r101[1] + _n(_build(cfg['decode_head']))


def _gff_delta(num_fuse_convs=2, use_dfp=True, C=256, P=512, K=19,
               in_ch=(256, 512, 1024, 2048)):
    """GFFHead minus PSPHead parameters, written out (BN: weight + bias)."""
    lateral = sum(c * C + 2 * C for c in in_ch)
    gates = sum(c * 1 + 1 for c in in_ch)  # 1x1 conv to one gate map
    fuse = len(in_ch) * num_fuse_convs * (C * C * 9 + 2 * C)
    dfp = sum((P + k * C + C) * C + 2 * C for k in range(len(in_ch)))
    cls = (P + len(in_ch) * C) * K + K - (P * K + K)
    return lateral + gates + fuse + (dfp if use_dfp else 0) + cls


def test_pspnet_r101_is_paper_baseline(psp_r101):
    assert round(psp_r101[0] / 1e6, 1) == 65.6  # Table 3 baseline


@pytest.mark.parametrize('reading,kw,meets_paper', [
    # the text: "two 3x3 convolutional layers in each level" -> +2.3% / +2.9%
    ('two 3x3 convs per level (configs)', dict(), False),
    ('one 3x3 conv per level', dict(num_fuse_convs=1), True),
])
def test_table3_param_budget(psp_r101, reading, kw, meets_paper):
    gff = _count(psp_r101, CITY_R101, use_dfp=False, **kw)
    gff_dfp = _count(psp_r101, CITY_R101, **kw)
    assert gff - psp_r101[0] == _gff_delta(use_dfp=False, **kw)
    assert gff_dfp - psp_r101[0] == _gff_delta(use_dfp=True, **kw)
    within = (abs(gff / 69.7e6 - 1) <= 0.02 and
              abs(gff_dfp / 70.5e6 - 1) <= 0.02)  # Table 3 +-2%
    assert within == meets_paper, (reading, gff / 1e6, gff_dfp / 1e6)


def test_batch_of_one_with_bn_in_the_ppm_says_what_to_change():
    """PPM's 1x1 pooled branch cannot be batch-normalised from one sample in training."""
    head = _head()
    head.train()
    with pytest.raises(ValueError, match=r'GFFHead.*batch.*>= 2.*GN.*SyncBN'):
        head(_inputs(n=1))
    head.eval()
    assert head(_inputs(n=1)).shape == (1, 3, 9, 17)  # inference is fine
    head = _head(norm_cfg=dict(type='GN', num_groups=2, requires_grad=True))
    head.train()
    assert head(_inputs(n=1)).shape == (1, 3, 9, 17)  # and so is GN
