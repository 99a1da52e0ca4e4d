"""SANet: SA block (Eq. 4-5) vs explicit float64 computation, SAHead outputs,
losses, inference rule (Y_den + Y_SA4), argument checks, config size."""
import math
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmseg.utils import register_all_modules

import mmseg_ext  # noqa: F401  (registers SAHead / CategoricalLoss)
from mmseg_ext.models.decode_heads.sa_head import SAHead
from mmseg_ext.models.utils.sa_module import SAOptions, SqueezeAttentionModule, head_module_factory

register_all_modules()  # default scope 'mmseg' for the full-model tests
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
IN_CHANNELS = [8, 16, 24, 32]
# feature-map sizes a dilated ResNet-d8 gives for 97x97 and 33x65 images
# (stage 1 at stride 4, stages 2-4 at stride 8, ceil rounding)
SIZES = {(97, 97): [(25, 25)] + [(13, 13)] * 3,
         (33, 65): [(9, 17)] + [(5, 9)] * 3}


def _head(**kwargs):
    cfg = dict(in_channels=IN_CHANNELS, in_index=[0, 1, 2, 3], channels=32,
               num_classes=5, norm_cfg=dict(type='BN'))
    cfg.update(kwargs)
    return SAHead(**cfg)


def _feats(img_size, batch=2, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, c, *s, generator=g, dtype=dtype)
            for c, s in zip(IN_CHANNELS, SIZES[img_size])]


def _samples(img_size, batch=2, num_classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(batch):
        label = torch.randint(0, num_classes, (1, *img_size), generator=g)
        label[:, :3] = 255
        s = SegDataSample(metainfo=dict(img_shape=img_size,
                                        ori_shape=img_size))
        s.gt_sem_seg = PixelData(data=label)
        samples.append(s)
    return samples


def _randomize_bn(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            for t in (m.weight.data, m.bias.data, m.running_mean):
                t.copy_(torch.randn(t.shape, generator=g, dtype=t.dtype))
            m.running_var.copy_(
                torch.rand(m.running_var.shape, generator=g,
                           dtype=m.running_var.dtype) + 0.5)


# ---------------------------------------------------------------- SA block
def _conv_bn(x, cm, act):
    """ConvModule (conv -> eval BN -> ReLU) written with F.conv2d."""
    conv, bn = cm.conv, getattr(cm, cm.norm_name)
    y = F.conv2d(x, conv.weight, conv.bias, padding=conv.padding,
                 groups=conv.groups)
    shape = (1, -1, 1, 1)
    y = (y - bn.running_mean.view(shape)) / torch.sqrt(
        bn.running_var.view(shape) + bn.eps)
    y = y * bn.weight.view(shape) + bn.bias.view(shape)
    return y.clamp_min(0) if act else y


def _pool_by_hand(x, r, kind):
    """Window r, stride r; border windows kept (ceil(H/r) x ceil(W/r))."""
    H, W = x.shape[2:]
    rows = []
    for i in range(math.ceil(H / r)):
        cols = []
        for j in range(math.ceil(W / r)):
            win = x[:, :, i * r:min((i + 1) * r, H), j * r:min((j + 1) * r, W)]
            cols.append(
                win.mean((2, 3)) if kind == 'avg' else win.amax((2, 3)))
        rows.append(torch.stack(cols, -1))
    return torch.stack(rows, -2)


@pytest.mark.parametrize('pool_type', ['avg', 'max'])
@pytest.mark.parametrize('attn_channels', [None, 4])
@pytest.mark.parametrize('hw', [(13, 11), (16, 16), (3, 5)])
def test_sa_formula_matches_explicit_float64(pool_type, attn_channels, hw):
    torch.manual_seed(0)
    m = SqueezeAttentionModule(12, 6, SAOptions(attn_channels=attn_channels,
                                                pool_ratio=4, pool_type=pool_type)).double()
    _randomize_bn(m)
    m.eval()
    x = torch.randn(2, 12, *hw, dtype=torch.float64)
    x_res = _conv_bn(x, m.main, act=True)
    assert m.main.conv.groups == 2 and m.attn[0].conv.groups == 2
    a_hat = _conv_bn(_conv_bn(_pool_by_hand(x, 4, pool_type), m.attn[0], True),
                     m.attn[1], False)  # Eq. 5
    assert m.attn_act == 'relu'  # the default since #23 (sigma of Eq. 3-4)
    x_attn = F.interpolate(a_hat.clamp_min(0), size=hw, mode='bilinear',
                           align_corners=False)  # Up(sigma(.))
    expected = x_attn * x_res + x_attn  # Eq. 4
    out = m(x)
    assert out.shape == (2, 6, *hw)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_se_and_conv_variants_match_their_formulas():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 7, 9, dtype=torch.float64)
    se = head_module_factory('se', SAOptions(attn_channels=4, pool_ratio=8))(8, 4)
    se = se.double().eval()
    _randomize_bn(se)
    w = torch.sigmoid(se.fc2(F.relu(se.fc1(x.mean((2, 3), keepdim=True)))))
    torch.testing.assert_close(se(x), w * _conv_bn(x, se.main, True))
    conv = head_module_factory('conv', SAOptions(attn_channels=4))(8, 4).double().eval()
    _randomize_bn(conv)
    torch.testing.assert_close(conv(x), _conv_bn(x, conv.main, True))


# ----------------------------------------------------------------- SAHead
@pytest.mark.parametrize('img_size', list(SIZES))
def test_head_output_shapes(img_size):
    head = _head(mask_fusion='conv')
    pred, mask, den, cat, sa_maps, sa4 = head(_feats(img_size))
    assert sa_maps is None  # only with mask_fusion='deep'
    s1, s4 = SIZES[img_size][0], SIZES[img_size][-1]
    assert pred.shape == (2, 5, *s4)
    assert sa4.shape == (2, 5, *s4)  # Y_SA4, for L_den on the sum (default)
    assert mask.shape == (2, 5, *s1)  # concat at the first selected stage
    assert den.shape == (2, 5, *s4)
    assert cat.shape == (2, 5)
    # SA blocks keep the spatial size and reduce channels to a fourth
    for sa, x in zip(head.sa_modules, _feats(img_size)):
        assert sa(x).shape == (2, x.shape[1] // 4, *x.shape[2:])


def test_inference_is_den_plus_sa4():
    head = _head(den_num_convs=1, channels=16).eval()
    _randomize_bn(head)
    feats = _feats((33, 65))
    with torch.no_grad():
        pred = head(feats)[0]
        den = head.conv_seg(head.den_convs(feats[-1]))
        sa4 = head.sa_cls[-1](head.sa_modules[-1](feats[-1]))
        torch.testing.assert_close(pred, den + sa4, rtol=0, atol=0)
        # ... and the head's own sub-outputs: forward's Y_den
        torch.testing.assert_close(head(feats)[2], den, rtol=0, atol=0)
        metas = [dict(img_shape=(33, 65), ori_shape=(33, 65))]
        seg = head.predict(feats, metas, test_cfg=dict())
        ref = F.interpolate(den + sa4, size=(33, 65), mode='bilinear',
                            align_corners=False)
        torch.testing.assert_close(seg, ref)
    mask_head = _head(infer_mode='mask').eval()
    with torch.no_grad():
        out = mask_head(feats)
    torch.testing.assert_close(out[0], out[1], rtol=0, atol=0)


def test_losses_are_separate_and_weighted():
    head = _head(dropout_ratio=0.0, mask_fusion='conv', den_loss_on='den')
    head.train()
    feats, samples = _feats((33, 65)), _samples((33, 65))
    outs = head(feats)
    losses = head.loss_by_feat(outs, samples)
    assert set(losses) == {'loss_ce', 'loss_den', 'loss_cat', 'acc_seg'}
    label = torch.stack([s.gt_sem_seg.data[0] for s in samples])
    up = lambda t: F.interpolate(t, size=(33, 65), mode='bilinear',  # noqa
                                 align_corners=False)
    # Eq. 7/9: 1/(N*M) sum over all pixels (mmseg's avg_non_ignore=False)
    ce = lambda t: F.cross_entropy(  # noqa
        up(t), label, ignore_index=255, reduction='sum') / label.numel()
    torch.testing.assert_close(losses['loss_ce'], ce(outs.mask))
    torch.testing.assert_close(losses['loss_den'], 0.8 * ce(outs.den))
    freq = torch.zeros(2, 5)  # default target: class frequencies (§3.3)
    for n in range(2):
        valid = label[n][label[n] != 255]
        for j in range(5):
            freq[n, j] = (valid == j).sum() / valid.numel()
    bce = F.binary_cross_entropy_with_logits(outs.cat, freq,
                                             reduction='none').sum(1).mean()
    torch.testing.assert_close(losses['loss_cat'], 0.2 * bce)


def _up_maps(head, feats):
    return [F.interpolate(cls(sa(x)), size=feats[0].shape[2:], mode='bilinear',
                          align_corners=False)
            for sa, cls, x in zip(head.sa_modules, head.sa_cls, feats)]


@pytest.mark.parametrize('fusion', ['mean', 'deep'])
def test_fixed_mask_fusions(fusion):
    """'mean' and 'deep': Y_mask is the plain mean of the resized Y_SA_i
    (no conv_mask); 'deep' puts L_mask on every Y_SA_i (mean of the losses)
    and returns the maps as the last output."""
    head = _head(mask_fusion=fusion, dropout_ratio=0.0)
    head.init_weights()
    assert head.conv_mask is None
    feats, ss = _feats((33, 65)), _samples((33, 65))
    outs = head(feats)
    maps = _up_maps(head, feats)
    torch.testing.assert_close(outs.mask, torch.stack(maps).mean(0))
    assert (outs.sa_maps is None) == (fusion != 'deep') and outs.sa4 is not None
    losses = head.loss_by_feat(outs, ss)
    label = torch.stack([s.gt_sem_seg.data[0] for s in ss])

    def ce(t):
        up = F.interpolate(t, size=(33, 65), mode='bilinear', align_corners=False)
        return F.cross_entropy(up, label, ignore_index=255, reduction='sum') / label.numel()
    if fusion == 'deep':
        torch.testing.assert_close(outs.sa_maps, torch.stack(maps))
        ref = sum(ce(m) for m in maps) / len(maps)
    else:
        ref = ce(outs.mask)
    torch.testing.assert_close(losses['loss_ce'], ref)
    assert set(losses) == {'loss_ce', 'loss_den', 'loss_cat', 'acc_seg'}


@pytest.mark.parametrize('fusion', ['conv', 'mean', 'deep'])
def test_mask_fusions_give_every_parameter_a_gradient(fusion):
    head = _head(mask_fusion=fusion)
    head.train()
    losses = head.loss(_feats((33, 65)), _samples((33, 65)), train_cfg=dict())
    sum(v for k, v in losses.items() if k.startswith('loss')).backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # L_mask alone reaches the last SA block's classifier (Y_SA4) in every fusion
    head.zero_grad()
    outs = head(_feats((33, 65)))
    loss = head.loss_by_feat(outs, _samples((33, 65)))['loss_ce']
    loss.backward()
    assert head.sa_cls[-1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize('binary', [False, True])
def test_den_sa4_sum_of_probabilities(binary):
    """den_sa4_sum='probs': the head returns log of the mean of the two
    probability maps (log-odds when binary), so softmax/sigmoid of its output
    is that mean; argmax equals that of the plain sum of probabilities."""
    extra = dict(num_classes=2, out_channels=1,
                 loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=True),
                 loss_den=dict(type='CrossEntropyLoss', use_sigmoid=True,
                               loss_weight=0.8, loss_name='loss_den')) \
        if binary else {}
    head = _head(den_sa4_sum='probs', **extra).double().eval()
    _randomize_bn(head)
    feats = _feats((33, 65), dtype=torch.float64)
    with torch.no_grad():
        pred = head(feats)[0]
        den = head.conv_seg(feats[-1])
        sa4 = head.sa_cls[-1](head.sa_modules[-1](feats[-1]))
    if binary:
        mean = (torch.sigmoid(den) + torch.sigmoid(sa4)) / 2
        torch.testing.assert_close(torch.sigmoid(pred), mean)
    else:
        mean = (den.softmax(1) + sa4.softmax(1)) / 2
        torch.testing.assert_close(pred.softmax(1), mean)
        torch.testing.assert_close(pred.exp(), mean)
        assert torch.equal(pred.argmax(1), (den.softmax(1) + sa4.softmax(1)).argmax(1))


@pytest.mark.parametrize('infer_mode', ['den_sa4', 'sa4', 'mask', 'den'])
def test_deep_fusion_prediction_rules(infer_mode):
    head = _head(mask_fusion='deep', infer_mode=infer_mode).eval()
    feats = _feats((33, 65))
    with torch.no_grad():
        out = head(feats)
        den = head.conv_seg(feats[-1])
        sa4 = head.sa_cls[-1](head.sa_modules[-1](feats[-1]))
    ref = {'den_sa4': den + sa4, 'den': den, 'sa4': sa4,
           'mask': out[1]}[infer_mode]
    torch.testing.assert_close(out[0], ref)


def test_init_weights_mask_starts_as_mean_of_sa_maps():
    head = _head(loss_den=None, infer_mode='mask', mask_fusion='conv')
    head.init_weights()
    head.eval()
    feats = _feats((33, 65))
    with torch.no_grad():
        mask = head(feats)[1]
        maps = [F.interpolate(cls(sa(x)), size=(9, 17), mode='bilinear',
                              align_corners=False)
                for sa, cls, x in zip(head.sa_modules, head.sa_cls, feats)]
    torch.testing.assert_close(mask, torch.stack(maps).mean(0))


@pytest.mark.parametrize('kwargs', [
    dict(),
    dict(module_type='se', attn_channels=4),
    dict(module_type='conv'),
    dict(den_num_convs=1, channels=16, pool_type='max'),
])
def test_every_parameter_gets_a_gradient(kwargs):
    head = _head(**kwargs)
    head.train()
    losses = head.loss(_feats((97, 97)), _samples((97, 97)), train_cfg=dict())
    sum(v for k, v in losses.items() if k.startswith('loss')).backward()
    for name, p in head.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


def test_ablation_switches():
    no_cat = _head(loss_cat=None)
    assert no_cat.fc_cat is None
    losses = no_cat.loss(_feats((33, 65)), _samples((33, 65)), dict())
    assert 'loss_cat' not in losses and 'loss_den' in losses
    sa_only = _head(loss_cat=None, loss_den=None, infer_mode='mask')
    assert not hasattr(sa_only, 'conv_seg') and sa_only.den_convs is None
    losses = sa_only.loss(_feats((33, 65)), _samples((33, 65)), dict())
    assert set(losses) == {'loss_ce', 'acc_seg'}
    sum(v for k, v in losses.items() if k.startswith('loss')).backward()
    assert all(p.grad is not None for p in sa_only.parameters())
    se = _head(module_type='se', attn_channels=4)
    assert se.sa_modules[3].fc1.out_channels == 4
    assert MODELS.build(dict(type='SAHead', in_channels=IN_CHANNELS,
                             in_index=[0, 1, 2, 3], channels=32,
                             num_classes=3)).__class__ is SAHead


@pytest.mark.parametrize('kwargs,exc,words', [
    (dict(in_channels=[8, 16, 24]), ValueError, 'in_index'),
    (dict(in_index=[0, 1, 2]), ValueError, 'len(in_channels)'),
    (dict(in_channels=32, in_index=3), TypeError, 'in_index must be lists'),
    (dict(pool_ratio=0), ValueError, 'pool_ratio'),
    (dict(pool_ratio=-8), ValueError, 'pool_ratio'),
    (dict(reduction=0), ValueError, 'reduction'),
    (dict(reduction=3), ValueError, 'reduction=3'),
    (dict(attn_channels=-4), ValueError, 'attn_channels'),
    (dict(attn_channels=3), ValueError, 'attn_channels'),
    (dict(pool_type='min'), ValueError, 'pool_type'),
    (dict(module_type='cbam'), ValueError, 'module_type'),
    (dict(infer_mode='Y_SA4'), ValueError, 'infer_mode'),
    (dict(loss_den=None), ValueError, "infer_mode='mask'"),
    (dict(channels=16), ValueError, 'channels=32'),
    (dict(den_num_convs=-1), ValueError, 'den_num_convs'),
    (dict(mask_fusion='sum'), ValueError, 'mask_fusion'),
    (dict(den_sa4_sum='mean'), ValueError, 'den_sa4_sum'),
    (dict(num_classes=1), ValueError, 'num_classes=2, out_channels=1'),
    (dict(num_classes=2, out_channels=1,
          loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=True)),
     ValueError, "loss_den=dict(type='CrossEntropyLoss', use_sigmoid=True"),
])
def test_bad_arguments_fail_at_construction(kwargs, exc, words):
    with pytest.raises(exc) as info:
        _head(**kwargs)
    assert words in str(info.value)


# ------------------------------------------------------- end-to-end model
def _tiny_model():
    cfg = dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor'),
        backbone=dict(type='ResNetV1c', depth=18, base_channels=8,
                      stem_channels=8, dilations=(1, 1, 2, 4),
                      strides=(1, 2, 1, 1), contract_dilation=True,
                      norm_cfg=dict(type='BN')),
        decode_head=dict(type='SAHead', in_channels=[8, 16, 32, 64],
                         in_index=[0, 1, 2, 3], channels=64, num_classes=5,
                         norm_cfg=dict(type='BN')),
        test_cfg=dict(mode='whole'))
    return MODELS.build(cfg)


@pytest.mark.parametrize('img_size', list(SIZES))
def test_model_feature_sizes_and_prediction(img_size):
    model = _tiny_model().eval()
    x = torch.randn(1, 3, *img_size)
    feats = model.extract_feat(x)
    assert [tuple(f.shape[2:]) for f in feats] == SIZES[img_size]
    with torch.no_grad():
        seg = model.encode_decode(x, [dict(img_shape=img_size,
                                           ori_shape=img_size)])
    assert seg.shape == (1, 5, *img_size)


def test_voc_r101_config_has_paper_param_count():
    """Table 6: SANet ResNet-101, 55.5M parameters (no stage-3 aux head)."""
    from mmengine.config import Config
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs/sanet/sanet_r101-d8_4xb4-40k_voc12aug-'
                 '512x512.py'))
    assert cfg.model.get('auxiliary_head') is None
    cfg.model.backbone.norm_cfg = dict(type='BN', requires_grad=True)
    cfg.model.decode_head.norm_cfg = dict(type='BN', requires_grad=True)
    model = MODELS.build(cfg.model)
    assert not model.with_auxiliary_head
    n = sum(p.numel() for p in model.parameters())
    assert abs(n / 55.5e6 - 1) <= 0.05, n


def test_forward_names_its_outputs():
    """Issue #38: one named protocol between forward and loss_by_feat, whatever the options;
    the first element stays the prediction (predict, ONNX, mode='tensor')."""
    from mmseg_ext.models.decode_heads.sa_head import SAHeadOutputs
    feats = _feats((33, 65))
    for kw, absent in ((dict(), set()), (dict(loss_cat=None), {'cat'}),
                       (dict(mask_fusion='conv', den_loss_on='den'), {'sa_maps', 'sa4'}),
                       (dict(loss_den=None, infer_mode='sa4'), {'den', 'sa4'})):
        head = _head(dropout_ratio=0.0, **kw).eval()
        outs = head(feats)
        assert isinstance(outs, SAHeadOutputs) and len(outs) == 6
        assert {k for k, v in outs._asdict().items() if v is None} == absent, kw
        meta = [dict(img_shape=(33, 65), pad_shape=(33, 65), ori_shape=(33, 65))] * 2
        torch.testing.assert_close(head.predict(feats, meta, {}),
                                   head.predict_by_feat(outs[0], meta))
        head.loss_by_feat(tuple(outs), _samples((33, 65)))  # a plain tuple is read alike
