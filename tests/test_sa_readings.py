"""SANet readings (issues #23, #25 item 1): the log-space mean of
probabilities on saturated logits, infer_mode='sa4', L_den on Y_den + Y_SA4,
the attention grid, the SA width floor, attn_act and main_convs; each against
an explicit float64 formula, with gradients and construction-time errors."""
import math

import pytest
import torch
import torch.nn.functional as F
from test_sa_head import IN_CHANNELS, SIZES, _conv_bn, _feats, _head, _randomize_bn, _samples

from mmseg_ext.models.decode_heads.sa_head import log_mean_prob
from mmseg_ext.models.utils.sa_module import SAOptions, SqueezeAttentionModule, head_module_factory

BINARY = dict(num_classes=2, out_channels=1,
              loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=True),
              loss_den=dict(type='CrossEntropyLoss', use_sigmoid=True,
                            loss_weight=0.8, loss_name='loss_den'))
META = [dict(img_shape=(33, 65), ori_shape=(33, 65))] * 2


def _naive(a, b, binary):
    """The textbook formula (exact in float64 while exp does not underflow)."""
    if binary:
        p = (torch.sigmoid(a) + torch.sigmoid(b)) / 2
        return torch.log(p) - torch.log1p(-p)
    return torch.log((a.softmax(1) + b.softmax(1)) / 2)


# ------------------------------------------- den_sa4_sum='probs' (#25 item 1)
@pytest.mark.parametrize('binary', [False, True])
def test_log_mean_prob_matches_naive_formula_float64(binary):
    g = torch.Generator().manual_seed(0)
    k = 1 if binary else 5
    a, b = (6 * torch.randn(2, k, 5, 9, generator=g, dtype=torch.float64,
                            requires_grad=True) for _ in range(2))
    out = log_mean_prob(a, b, binary)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, _naive(a, b, binary), rtol=1e-12,
                               atol=1e-12)
    w = torch.randn(out.shape, generator=g, dtype=torch.float64)
    ga = torch.autograd.grad((out * w).sum(), (a, b))
    gn = torch.autograd.grad((_naive(a, b, binary) * w).sum(), (a, b))
    for x, y in zip(ga, gn):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


def test_binary_saturated_logits_stay_finite_and_foreground():
    """Issue #25: both maps >= 17 gave +inf, then NaN after mmseg's resize.
    Rows 0-2: logits 17..30 (float64 exact there); rows 3-4: up to 150."""
    head = _head(den_sa4_sum='probs', **BINARY).eval()
    g = torch.Generator().manual_seed(1)
    den, sa4 = (17 + 13 * torch.rand(2, 1, 5, 9, generator=g)
                for _ in range(2))
    den[:, :, 3:] *= 5
    sa4[:, :, 3:] *= 5
    den[:, :, :, :3] *= -1  # a background block: both maps <= -17
    sa4[:, :, :, :3] *= -1
    assert not torch.isfinite(_naive(den, sa4, True)).all()  # the old bug
    pred = head._den_plus_sa4(den, sa4)
    assert torch.isfinite(pred).all()
    torch.testing.assert_close(pred.sign(), den.sign(), rtol=0, atol=0)
    seg = head.predict_by_feat(pred, META)  # bilinear to 33x65
    assert torch.isfinite(seg).all()
    ref = _naive(den[:, :, :3].double(), sa4[:, :, :3].double(), True)
    assert torch.isfinite(ref).all()
    torch.testing.assert_close(pred[:, :, :3].double(), ref, rtol=1e-5,
                               atol=1e-5)


def test_multiclass_saturated_logits_stay_finite_and_argmax_correct():
    """Issue #25: a logit gap >= 104 underflows softmax to 0 in float32; a
    class that neither map gives any probability gets log(0) = -inf, the
    resize NaN, and argmax picks NaN's class. Per pixel: den saturated (gaps
    104-300) and sa4 moderate, or the reverse, or both saturated on one
    class, or both saturated on two classes (an exact near-tie: the two
    means differ by ~exp(-104), below any float precision; only finiteness
    is checked there). Reference: the textbook formula in float64 (no
    underflow at these gaps), resized."""
    k = 6
    g = torch.Generator().manual_seed(2)
    shape, px = (2, k, 5, 9), (2, 1, 5, 9)

    def saturated(win):
        gap = 104 + 196 * torch.rand(shape, generator=g)
        return -gap.scatter(1, win, 0.0)  # winner 0, the rest 104-300 below

    win = torch.randint(0, k, px, generator=g)
    other = (win + torch.randint(1, k, px, generator=g)) % k
    mild = 3 * torch.randn(shape, generator=g)
    kind = torch.randint(0, 4, px, generator=g)
    den = torch.where(kind == 1, mild, saturated(win))
    sa4 = torch.where(kind == 0, mild, saturated(win))
    sa4 = torch.where(kind == 3, saturated(other), sa4)
    head = _head(den_sa4_sum='probs', num_classes=k).eval()
    naive = head.predict_by_feat(_naive(den, sa4, False), META)
    assert not torch.isfinite(naive).all()  # the old bug
    pred = head._den_plus_sa4(den, sa4)
    assert torch.isfinite(pred).all()
    seg = head.predict_by_feat(pred, META)
    assert torch.isfinite(seg).all()
    ref = head.predict_by_feat(_naive(den.double(), sa4.double(), False),
                               META)
    assert torch.isfinite(ref).all()
    top2 = ref.softmax(1).topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 1e-4
    assert clear.float().mean() > 0.5
    assert torch.equal(seg.argmax(1)[clear], ref.argmax(1)[clear])
    # before the resize: the log-probabilities themselves, where float32
    # represents them (above ~exp(-80))
    ref0 = _naive(den.double(), sa4.double(), False)
    big = ref0 > -80
    torch.testing.assert_close(pred.double()[big], ref0[big], rtol=1e-5,
                               atol=1e-5)


def test_log_mean_prob_in_half_precision_stays_finite():
    """fp16 logits (AMP): computed in fp32, clamped to fp16's range on the
    way back (here log p = -1.2e5 for the losing class, below fp16's min)."""
    a = torch.tensor([[[[6e4]], [[-6e4]]]], dtype=torch.float16)
    out = log_mean_prob(a, a, False)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    assert abs(out[0, 0].item()) < 1e-3 and out[0, 1].item() < -6e4
    out = log_mean_prob(a[:, :1], a[:, :1], True)
    assert torch.isfinite(out).all() and out.item() > 0


# --------------------------------------------------------- infer_mode='sa4'
@pytest.mark.parametrize('loss_den', ['default', None])
def test_sa4_mode_predicts_the_last_sa_map_alone(loss_den):
    kw = {} if loss_den == 'default' else dict(loss_den=None)
    head = _head(infer_mode='sa4', **kw).eval()
    _randomize_bn(head)
    feats = _feats((33, 65))
    with torch.no_grad():
        pred = head(feats)[0]
        sa4 = head.sa_cls[-1](head.sa_modules[-1](feats[-1]))
        seg = head.predict(feats, META, dict())
    torch.testing.assert_close(pred, sa4, rtol=0, atol=0)
    assert pred.shape == (2, 5, *SIZES[(33, 65)][-1])
    assert seg.shape == (2, 5, 33, 65)


# ------------------------------------------------------ den_loss_on='sum'
@pytest.mark.parametrize('den_sa4_sum', ['logits', 'probs'])
def test_den_loss_on_the_predicted_sum(den_sa4_sum):
    head = _head(den_loss_on='sum', den_sa4_sum=den_sa4_sum,
                 dropout_ratio=0.0).double().train()
    feats = _feats((33, 65), dtype=torch.float64)
    ss = _samples((33, 65))
    outs = head(feats)
    den, sa4 = outs.den, outs.sa4
    assert sa4.shape == den.shape == (2, 5, *SIZES[(33, 65)][-1])
    torch.testing.assert_close(
        sa4, head.sa_cls[-1](head.sa_modules[-1](feats[-1])))
    losses = head.loss_by_feat(outs, ss)
    label = torch.stack([s.gt_sem_seg.data[0] for s in ss])
    summed = den + sa4 if den_sa4_sum == 'logits' else _naive(den, sa4, False)
    up = F.interpolate(summed, size=(33, 65), mode='bilinear',
                       align_corners=False)
    ref = F.cross_entropy(up, label, ignore_index=255,
                          reduction='sum') / label.numel()  # Eq. 9
    torch.testing.assert_close(losses['loss_den'], 0.8 * ref)
    # L_den alone now trains the last SA block (and only the last)
    losses['loss_den'].backward()
    assert head.sa_cls[-1].weight.grad.abs().sum() > 0
    assert all(p.grad.abs().sum() > 0
               for p in head.sa_modules[-1].parameters())
    assert head.sa_cls[0].weight.grad is None
    assert head.conv_seg.weight.grad.abs().sum() > 0


def test_den_loss_on_defaults_to_the_sum_with_a_dense_branch():
    """#23: L_den on the predicted Y_den + Y_SA4 unless asked otherwise;
    without L_den (loss_den=None) there is nothing to place."""
    assert _head().den_loss_on == 'sum'
    assert _head(loss_den=None, infer_mode='sa4').den_loss_on == 'den'
    assert _head(den_loss_on='den').den_loss_on == 'den'


def test_den_loss_on_den_does_not_reach_the_sa_blocks():
    head = _head(dropout_ratio=0.0, den_loss_on='den').train()
    outs = head(_feats((33, 65)))
    assert outs.sa4 is None and outs.den is not None  # no Y_SA4 output
    head.loss_by_feat(outs, _samples((33, 65)))['loss_den'].backward()
    assert head.sa_cls[-1].weight.grad is None


def test_den_loss_on_sum_binary_is_finite_and_trains():
    head = _head(den_loss_on='sum', den_sa4_sum='probs', **BINARY).train()
    ss = _samples((33, 65), num_classes=2)
    losses = head.loss(_feats((33, 65)), ss, dict())
    assert torch.isfinite(losses['loss_den']) and losses['loss_den'] > 0
    losses['loss_den'].backward()
    assert head.sa_cls[-1].weight.grad.abs().sum() > 0


# --------------------------------------------- SA block: grid, act, convs
def _adaptive_by_hand(x, grid, kind):
    """Cell i of a side n in g cells: rows floor(i n / g) .. ceil((i+1) n / g)."""
    H, W = x.shape[2:]
    gh, gw = min(grid[0], H), min(grid[1], W)
    rows = []
    for i in range(gh):
        r0, r1 = (i * H) // gh, math.ceil((i + 1) * H / gh)
        cols = []
        for j in range(gw):
            c0, c1 = (j * W) // gw, math.ceil((j + 1) * W / gw)
            win = x[:, :, r0:r1, c0:c1]
            cols.append(win.mean((2, 3)) if kind == 'avg' else win.amax((2, 3)))
        rows.append(torch.stack(cols, -1))
    return torch.stack(rows, -2)


def _ratio_by_hand(x, r, kind):
    H, W = x.shape[2:]
    return _adaptive_by_hand(x, (math.ceil(H / r), math.ceil(W / r)), kind) \
        if H % r == 0 and W % r == 0 else None


@pytest.mark.parametrize('attn_act', ['sigmoid', 'relu'])
@pytest.mark.parametrize('main_convs', [1, 2])
@pytest.mark.parametrize('grid,pool_type,hw', [
    (3, 'avg', (13, 11)), ((2, 5), 'max', (13, 11)), (8, 'avg', (5, 9)),
    (None, 'max', (12, 16))])
def test_sa_block_readings_match_explicit_float64(attn_act, main_convs, grid,
                                                  pool_type, hw):
    torch.manual_seed(0)
    m = SqueezeAttentionModule(12, 6, SAOptions(
        pool_ratio=None if grid else 4, attn_grid=grid,
        pool_type=pool_type, attn_act=attn_act,
        main_convs=main_convs)).double()
    _randomize_bn(m)
    m.eval()
    x = torch.randn(2, 12, *hw, dtype=torch.float64, requires_grad=True)
    x_res = _conv_bn(x, m.main, act=True)
    if main_convs == 2:
        assert m.main2.conv.groups == 1 and m.main2.conv.kernel_size == (1, 1)
        x_res = _conv_bn(x_res, m.main2, act=True)
    else:
        assert m.main2 is None
    g2 = (grid, grid) if isinstance(grid, int) else grid
    pooled = _adaptive_by_hand(x, g2, pool_type) if grid else \
        _ratio_by_hand(x, 4, pool_type)
    if grid:  # a g x g grid, never more cells than pixels
        assert pooled.shape[2:] == (min(g2[0], hw[0]), min(g2[1], hw[1]))
    a_hat = _conv_bn(_conv_bn(pooled, m.attn[0], True), m.attn[1], False)
    a = torch.sigmoid(a_hat) if attn_act == 'sigmoid' else a_hat.clamp_min(0)
    x_attn = F.interpolate(a, size=hw, mode='bilinear', align_corners=False)
    out, ref = m(x), x_attn * x_res + x_attn
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    # gradients through the pooling (grid or ratio), the activation and both
    # channels: to the input and to the first conv of each channel
    w = torch.randn_like(ref)
    wrt = (x, m.main.conv.weight, m.attn[0].conv.weight)
    for g, g_ref in zip(torch.autograd.grad((out * w).sum(), wrt),
                        torch.autograd.grad((ref * w).sum(), wrt)):
        torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)


def test_paper_grid_on_the_benchmark_stage4_map():
    """On a 16x32 map (128x256 input, stride 8) pool_ratio=8 leaves 2x4
    cells; attn_grid=8 the paper's 8x8 (its 64x64 maps pooled by 8)."""
    x = torch.randn(1, 8, 16, 32)
    by_ratio = SqueezeAttentionModule(8, 4, SAOptions(pool_ratio=8))
    by_grid = SqueezeAttentionModule(8, 4, SAOptions(attn_grid=8))
    assert by_ratio.pool(x).shape[2:] == (2, 4)
    assert by_grid.pool(x).shape[2:] == (8, 8)
    assert SqueezeAttentionModule(8, 4).pool_ratio == 8  # the default


@pytest.mark.parametrize('module_type', ['se', 'conv'])
def test_main_convs_in_the_ablation_variants(module_type):
    torch.manual_seed(0)
    options = SAOptions(attn_channels=4, pool_ratio=None, attn_grid=3,
                        attn_act='relu', main_convs=2)
    m = head_module_factory(module_type, options)(8, 4).double().eval()
    _randomize_bn(m)
    x = torch.randn(2, 8, 7, 9, dtype=torch.float64)
    res = _conv_bn(_conv_bn(x, m.main, True), m.main2, True)
    if module_type == 'se':
        res = torch.sigmoid(
            m.fc2(F.relu(m.fc1(x.mean((2, 3), keepdim=True))))) * res
    torch.testing.assert_close(m(x), res)


def test_default_block_keeps_its_state_dict_keys():
    """Checkpoints of the one-conv block load unchanged (no main2 keys)."""
    keys = set(SqueezeAttentionModule(8, 4).state_dict())
    assert {k.split('.')[0] for k in keys} == {'main', 'attn'}
    assert 'main.conv.weight' in keys


# ---------------------------------------------------------- min_channels
def test_min_channels_floors_the_block_widths():
    head = _head(min_channels=6)
    widths = [m.main.conv.out_channels for m in head.sa_modules]
    assert widths == [6, 6, 6, 8]  # max(c // 4, 6) for c in 8, 16, 24, 32
    assert [c.in_channels for c in head.sa_cls] == widths
    assert [m.attn[0].conv.out_channels for m in head.sa_modules] == widths
    assert [m.main.conv.out_channels for m in _head().sa_modules] == \
        [c // 4 for c in IN_CHANNELS]


# ------------------------------------------------ all readings in one head
def test_all_readings_together_train_every_parameter():
    torch.manual_seed(0)
    head = _head(attn_grid=3, pool_type='max', attn_act='relu', main_convs=2,
                 min_channels=8, den_loss_on='sum', den_sa4_sum='probs')
    head.train()
    losses = head.loss(_feats((97, 97)), _samples((97, 97)), train_cfg=dict())
    sum(v for k, v in losses.items() if k.startswith('loss')).backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize('kwargs,words', [
    (dict(attn_grid=8, pool_ratio=8), 'not both'),
    (dict(attn_grid=0), 'attn_grid'),
    (dict(attn_grid='8'), 'attn_grid'),
    (dict(attn_grid=(8, )), 'attn_grid'),
    (dict(attn_grid=True), 'attn_grid'),
    (dict(attn_grid=(8, 2.0)), 'attn_grid'),
    (dict(attn_act='tanh'), 'attn_act'),
    (dict(attn_act='relu', module_type='se', attn_grid=-1), 'attn_grid'),
    (dict(main_convs=3), 'main_convs'),
    (dict(main_convs=2.0), 'main_convs'),
    (dict(main_convs=0, module_type='conv'), 'main_convs'),
    (dict(min_channels=0), 'min_channels'),
    (dict(min_channels=6.5), 'min_channels'),
    (dict(min_channels=7), 'min_channels=7'),
    (dict(den_loss_on='both'), 'den_loss_on'),
    (dict(den_loss_on='sum', loss_den=None, infer_mode='mask'),
     'leave den_loss_on unset'),
    (dict(infer_mode='sa_4'), 'infer_mode'),
])
def test_bad_reading_values_fail_at_construction(kwargs, words):
    with pytest.raises(ValueError) as info:
        _head(**kwargs)
    assert words in str(info.value)


# ------------------------------------------------- benchmark reading configs
READING_CONFIGS = {  # the benchmark SANet is (a)+(b)+(c)+(d1) since #23
    'sanet-densum': dict(den_loss_on='sum', pool_ratio=None, attn_grid=None,
                         min_channels=None, attn_act='sigmoid'),
    'sanet-densum-grid8-w64': dict(den_loss_on='sum', pool_ratio=None,
                                   attn_grid=8, min_channels=64,
                                   attn_act='sigmoid'),
    'sanet-densum-grid8-w64-relu': dict(den_loss_on='sum', pool_ratio=None,
                                        attn_grid=8, min_channels=64,
                                        attn_act='relu'),
    'sanet-densum-grid8-w64-2conv': dict(den_loss_on='sum', pool_ratio=None,
                                         attn_grid=8, min_channels=64,
                                         attn_act='sigmoid', main_convs=2),
}


@pytest.mark.parametrize('name', sorted(READING_CONFIGS))
def test_reading_configs_are_the_benchmark_sanet_plus_their_switches(name):
    """Each configs/benchmark/sanet-densum* config differs from the benchmark
    SANet in exactly the decode-head switches its name says."""
    import os.path as osp

    from mmengine.config import Config
    from test_sa_head import ROOT
    tail = '_r18tiny-d8_1xb8-4k_synthcity-bench-128x256.py'
    bench = osp.join(ROOT, 'configs', 'benchmark', 'sanet' + tail)
    base = Config.fromfile(bench).to_dict()
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'benchmark',
                                   name + tail)).to_dict()
    base['model']['decode_head'].update(READING_CONFIGS[name])
    assert cfg == base


def test_benchmark_sanet_trains_the_chosen_readings_by_default():
    """Since #23 SAHead's defaults are readings (a) and (d1) and the base model
    of the r18tiny body sets (b) and (c): the benchmark SANet (no reading
    switch of its own) and sanet-densum-grid8-w64-relu (all four pinned)
    build the same head and give the same losses, so the latter's runs are
    runs of the benchmark SANet."""
    import os.path as osp

    from mmengine.config import Config
    from mmseg.registry import MODELS
    from test_sa_head import ROOT, _samples
    tail = '_r18tiny-d8_1xb8-4k_synthcity-bench-128x256.py'
    heads, losses = [], []
    for name in ('sanet', 'sanet-densum-grid8-w64-relu'):
        cfg = Config.fromfile(osp.join(ROOT, 'configs', 'benchmark', name + tail))
        head_cfg = cfg.model.decode_head
        head_cfg.norm_cfg = dict(type='BN', requires_grad=True)  # no SyncBN on CPU
        torch.manual_seed(0)
        head = MODELS.build(head_cfg).train()
        head.init_weights()
        g = torch.Generator().manual_seed(0)
        # r18tiny-d8 stage maps of a 64x128 image: stage 1 at stride 4, stages 2-4 at stride 8
        feats = [torch.randn(2, c, *((16, 32) if i == 0 else (8, 16)), generator=g)
                 for i, c in enumerate(head.in_channels)]
        torch.manual_seed(1)  # dropout
        losses.append(head.loss_by_feat(head(feats), _samples((33, 65), num_classes=19)))
        heads.append(head)
    assert heads[0].den_loss_on == heads[1].den_loss_on == 'sum'
    for head in heads:
        assert {m.attn_act for m in head.sa_modules} == {'relu'}
        assert {m.attn_grid for m in head.sa_modules} == {(8, 8)}
        assert [m.main.conv.out_channels for m in head.sa_modules] == [64] * 4
    sd = [h.state_dict() for h in heads]
    assert sd[0].keys() == sd[1].keys()
    for k in sd[0]:
        torch.testing.assert_close(sd[0][k], sd[1][k], rtol=0, atol=0)
    assert losses[0].keys() == losses[1].keys()
    for k in losses[0]:
        torch.testing.assert_close(losses[0][k], losses[1][k], rtol=0, atol=0)
