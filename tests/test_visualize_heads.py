"""tools/analysis_tools/visualize_heads.py and mmseg_ext.visualization.head_maps.

The drawn arrays are checked against the heads' tensors captured independently (hooks on the
head's input / the SNL block's reduced features, then the head's own modules called directly),
the SNL weights against a brute-force float64 softmax, and the saved PNGs against the drawing of
those arrays (and the drawing against its inverse), so the pictures can be trusted.
"""
import copy
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip('mmseg')

import mmseg_ext  # noqa: E402,F401
from mmseg_ext.datasets.synthcity import render_scene  # noqa: E402
from mmseg_ext.visualization import head_maps as hm  # noqa: E402

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
QS = osp.join(REPO, 'configs', 'quickstart', '{}_r18tiny-d8_1xb8-1k_synthcity-128x256.py')
POINTS = [(64, 128), (90, 40)]  # (y, x), inside both test images


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    """A 128x256 SynthCity val-style image (network size) and a 96x200 one (resized by the
    test pipeline to 123x256), written as files like the tool reads them."""
    d = tmp_path_factory.mktemp('imgs')
    paths = []
    for i, (h, w) in enumerate([(128, 256), (96, 200)]):
        rgb, _ = render_scene(np.random.default_rng([0, 1, i]), 128, 256)
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA) if (h, w) != (128, 256) \
            else rgb
        p = str(d / f'img{i}.png')
        cv2.imwrite(p, rgb[..., ::-1])
        paths.append(p)
    return paths


@pytest.fixture(scope='module')
def models():
    torch.manual_seed(0)
    return {k: hm.init_segmentor(QS.format(k), 'none') for k in ('sanet', 'gffnet', 'ssanet')}


def _head_inputs(model, image):
    """The decode head's input features (the backbone's outputs; the quickstart models have no
    neck) of one ordinary mmseg inference, by a forward hook."""
    from mmseg.apis import inference_model
    got = []
    h = model.backbone.register_forward_hook(lambda m, a, o: got.append(o))
    try:
        result = inference_model(model, image)
    finally:
        h.remove()
    return got[0], result


def _resize_like_mmseg(t, inp_hw, ori_hw):
    t = F.interpolate(t, size=inp_hw, mode='bilinear', align_corners=False)
    return F.interpolate(t, size=ori_hw, mode='bilinear', align_corners=False)


def _invert_heatmap(png_rgb, image, alpha=hm.HEATMAP_ALPHA):
    """Heat value per pixel recovered from a drawn heat map (nearest colormap entry)."""
    lut = hm.colormap_lut().astype(np.float64)
    color = (png_rgb.astype(np.float64) - (1 - alpha) * image) / alpha
    d = ((color[..., None, :] - lut) ** 2).sum(-1)
    return d.argmin(-1) / 255.0


def test_draw_heatmap_is_invertible():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 30, 3)).astype(np.uint8)
    heat = np.tile(np.linspace(0, 1, 30), (20, 1)) * rng.uniform(0.5, 1, (20, 1))
    drawn = hm.draw_heatmap(image, heat, colorbar=False)
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    err = np.abs(_invert_heatmap(drawn, image) - heat)
    assert np.quantile(err, 0.99) < 0.02 and err.max() < 0.05
    assert hm.draw_heatmap(image, heat, scale=2).shape[:2] == (40, 60 + 16)  # bar: 2 + 6 px * 2
    # --stretch: a map drawn over its own range (lo, hi) is the (0, 1) drawing of the rescaled map
    big = np.tile(image, (3, 3, 1))  # room for the range text at the top
    bheat = np.tile(heat, (3, 3))
    st = hm.draw_heatmap(big, 0.5 + 0.25 * bheat, colorbar=False, vrange=(0.5, 0.75))
    np.testing.assert_array_equal(st[16:], hm.draw_heatmap(big, bheat, colorbar=False)[16:])
    assert not np.array_equal(st[:12], hm.draw_heatmap(big, bheat, colorbar=False)[:12])
    # the range save_head_maps uses: fixed [0, 1] inside it, widened (never clipped) outside
    assert hm.heat_range(heat) is None and hm.heat_range(heat, stretch=True) == (0.0, heat.max())
    assert hm.heat_range(np.array([0.2, 3.5])) == (0.0, 3.5)
    assert hm.heat_range(np.array([-0.5, 0.5])) == (-0.5, 1.0)


@pytest.mark.parametrize('idx', [0, 1])
def test_sa_maps_are_the_heads_attention(models, images, tmp_path, idx):
    model = models['sanet']
    head = model.decode_head
    inputs, result = _head_inputs(model, images[idx])
    maps = hm.compute_head_maps(model, images[idx], POINTS)
    ori = maps.image.shape[:2]
    inp_hw = (128, 256) if idx == 0 else (123, 256)
    assert len(maps.maps) == 4 and maps.names == ['stage1', 'stage2', 'stage3', 'stage4']
    for i, (sa, x) in enumerate(zip(head.sa_modules, [inputs[j] for j in head.in_index])):
        with torch.no_grad():  # X_attn computed by the block itself, outside the tool
            ref = sa.attention(x, sa.main(x).shape[2:]).mean(1, keepdim=True)
        np.testing.assert_allclose(maps.raw[i], ref[0, 0].numpy(), rtol=0, atol=1e-6)
        img = _resize_like_mmseg(ref, inp_hw, ori)[0, 0].numpy()
        np.testing.assert_allclose(maps.maps[i], img, rtol=0, atol=1e-5)
        assert maps.maps[i].min() >= 0  # ReLU attention (attn_act='relu', the default since #23)
        assert maps.maps[i].std() > 1e-4  # not a constant picture
        for p, (y, x_) in enumerate(POINTS):
            assert maps.values[p, i] == pytest.approx(float(img[y, x_]), abs=1e-5)
    # the capture does not change the prediction
    np.testing.assert_array_equal(maps.pred.pred_sem_seg.data.numpy(),
                                  result.pred_sem_seg.data.numpy())
    # the files are the drawings of these arrays
    files = hm.save_head_maps(model, maps, str(tmp_path), 'x')
    assert sorted(osp.basename(f) for f in files) == [
        'x_pred.png', 'x_sa_stage1.png', 'x_sa_stage2.png', 'x_sa_stage3.png',
        'x_sa_stage4.png']
    png = cv2.imread(str(tmp_path / 'x_sa_stage4.png'))[..., ::-1]
    lo, hi = hm.heat_range(maps.maps[3]) or (0.0, 1.0)  # drawn over [0, 1] or, above 1, wider
    np.testing.assert_array_equal(
        png, hm.draw_heatmap(maps.image, maps.maps[3], points=maps.points,
                             values=maps.values[:, 3], vrange=hm.heat_range(maps.maps[3])))
    # away from the point marks (and the range text), the picture decodes back to the map
    heat = lo + (hi - lo) * _invert_heatmap(png[:, :ori[1]], maps.image)
    far = np.ones(ori, bool)
    for y, x_ in POINTS:
        far[max(0, y - 12):y + 6, max(0, x_ - 6):x_ + 40] = False
    far[:16] = False
    assert np.abs(heat - maps.maps[3])[far].max() < 0.03 * (hi - lo)


def test_pred_png_uses_dataset_palette(models, images, tmp_path):
    model = models['sanet']
    maps = hm.compute_head_maps(model, images[0])
    assert model.dataset_meta['classes'][0] == 'road'  # Cityscapes meta from the config
    drawn = hm.draw_prediction(model, maps.image, maps.pred, alpha=1.0)
    pal = np.array(model.dataset_meta['palette'], np.uint8)
    np.testing.assert_array_equal(drawn, pal[maps.pred.pred_sem_seg.data[0].numpy()])


def test_gff_maps_are_the_heads_gates(models, images):
    model = models['gffnet']
    head = model.decode_head
    inputs, _ = _head_inputs(model, images[1])
    with torch.no_grad():
        _, gates = head.forward_with_gates(inputs)
    maps = hm.compute_head_maps(model, images[1], [(10, 20)])
    assert maps.names == [f'level{i + 1}' for i in range(len(gates))]
    for g, raw, img in zip(gates, maps.raw, maps.maps):
        ref = g.mean(1, keepdim=True)
        np.testing.assert_allclose(raw, ref[0, 0].numpy(), rtol=0, atol=1e-6)
        np.testing.assert_allclose(img, _resize_like_mmseg(ref, (123, 256), (96, 200))[0, 0],
                                   rtol=0, atol=1e-5)
    np.testing.assert_allclose(maps.values[0], [m[10, 20] for m in maps.maps])


def _bilinear_zero(feat, y, x):
    """feat (C, H, W) sampled at (y, x) (pixel indices), zero outside: the slow way."""
    C, H, W = feat.shape
    y0, x0 = int(np.floor(y)), int(np.floor(x))
    out = torch.zeros(C, dtype=feat.dtype)
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < H and 0 <= xx < W:
                out += wy * wx * feat[:, yy, xx]
    return out


def test_snl_points_and_weights_are_the_blocks(models, images):
    model = models['ssanet']
    snl = model.decode_head.snl
    with torch.no_grad():  # random offsets and gamma, so that learned != grid
        g = torch.Generator().manual_seed(0)
        snl.offset.weight.copy_(torch.randn(snl.offset.weight.shape, generator=g) * 0.3)
        snl.offset.bias.copy_(torch.randn(snl.offset.bias.shape, generator=g))
        snl.out.weight.normal_(0, 0.1, generator=g)
        snl.query.weight.mul_(10)  # peakier softmax than the near-uniform random init
    feats = []
    h = model.decode_head.reduce.register_forward_hook(lambda m, a, o: feats.append(o))
    pts = [(64, 128), (5, 250), (127, 0)]
    try:
        maps = hm.compute_head_maps(model, images[0], pts)
    finally:
        h.remove()
    assert not snl.offset._forward_hooks and not snl.weights_tap._forward_hooks  # removed
    x = feats[0].double()
    with torch.no_grad():
        # copies: .double() converts a module in place, and the models are shared by the tests
        q, k, off = (copy.deepcopy(m).double()(x)[0] for m in (snl.query, snl.key, snl.offset))
    fh, fw = x.shape[2:]
    assert (fh, fw) == maps.feat_shape == (16, 32)  # stride 8 of 128x256
    kh, kw = snl.kernel_size
    K = kh * kw
    for i, (y, x_) in enumerate(pts):
        fy, fx = y // 8, x_ // 8  # the feature cell containing the point
        assert tuple(maps.query_feat[i]) == (fy, fx)
        logits = []
        for j in range(K):
            a, b = divmod(j, kw)
            gy, gx = fy + a - (kh - 1) / 2, fx + b - (kw - 1) / 2
            ly, lx = gy + off[2 * j, fy, fx].item(), gx + off[2 * j + 1, fy, fx].item()
            logits.append(torch.dot(q[:, fy, fx], _bilinear_zero(k, ly, lx)))
            # feature pixel index -> image pixel index at stride 8
            np.testing.assert_allclose(maps.grid[i, j], [(gy + .5) * 8 - .5, (gx + .5) * 8 - .5],
                                       atol=1e-9)
            np.testing.assert_allclose(maps.learned[i, j],
                                       [(ly + .5) * 8 - .5, (lx + .5) * 8 - .5], atol=1e-4)
        ref = torch.softmax(torch.stack(logits), 0).numpy()
        np.testing.assert_allclose(maps.weights[i], ref, rtol=1e-4, atol=1e-6)
    assert np.abs(maps.learned - maps.grid).max() > 0.5  # the offsets are drawn
    assert maps.weights.std() > 1e-3
    drawn = hm.draw_snl(maps.image, maps, scale=2)
    assert drawn.shape == (256, 512, 3)


def _tapped_modules(head):
    """The modules compute_head_maps hooks, for each kind of head."""
    if hasattr(head, 'sa_modules'):
        return [m.attn_tap for m in head.sa_modules]
    if hasattr(head, 'snl'):
        return [head.snl.offset, head.snl.weights_tap]
    return [head.fusion]


@pytest.mark.parametrize('name', ['sanet', 'gffnet', 'ssanet'])
def test_hooks_are_removed_when_the_pass_fails(models, images, name):
    head = models[name].decode_head

    def fail(module, args, out):
        raise RuntimeError('failing pass')

    h = head.conv_seg.register_forward_hook(fail)  # after every tapped module
    try:
        with pytest.raises(RuntimeError, match='failing pass'):
            hm.compute_head_maps(models[name], images[0])
    finally:
        h.remove()
    assert all(not m._forward_hooks for m in _tapped_modules(head))
    assert hm.compute_head_maps(models[name], images[0]).pred is not None  # still usable


def test_op_return_weights_matches_default_path():
    from mmseg_ext.ops import sparse_nonlocal_attention
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(2, 2, 4, 5, 6, generator=g, dtype=torch.float64)
    v = torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64)
    off = torch.randn(2, 18, 5, 6, generator=g, dtype=torch.float64)
    out = sparse_nonlocal_attention(q, k, v, off, 3)
    out2, s = sparse_nonlocal_attention(q, k, v, off, 3, return_weights=True)
    assert torch.equal(out, out2) and s.shape == (2, 9, 5, 6) and not s.requires_grad
    torch.testing.assert_close(s.sum(1), torch.ones(2, 5, 6, dtype=torch.float64))


def test_checkpoint_is_loaded(models, images, tmp_path):
    from mmengine.runner import save_checkpoint
    model = models['sanet']
    path = str(tmp_path / 'ckpt.pth')
    save_checkpoint(dict(state_dict=model.state_dict(),
                         meta=dict(dataset_meta=dict(classes=tuple('abcdefghijklmnopqrs'),
                                                     palette=[[i, i, i] for i in range(19)]))),
                    path)
    loaded = hm.init_segmentor(QS.format('sanet'), path)
    assert loaded.dataset_meta['classes'][0] == 'a'
    for (n, p), p2 in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(p, p2), n
    a = hm.compute_head_maps(model, images[0])
    b = hm.compute_head_maps(loaded, images[0])
    for m, m2 in zip(a.maps, b.maps):
        np.testing.assert_array_equal(m, m2)


def test_tool_writes_files_and_errors(images, tmp_path, load_analysis_tool):
    tool = load_analysis_tool('visualize_heads')
    out = tmp_path / 'out'
    files = tool.main([QS.format('ssanet'), 'none', *images, '--out-dir', str(out),
                       '--points', '64,128', '10,10', '--scale', '2'])
    names = sorted(osp.basename(f) for f in files)
    assert names == ['img0_pred.png', 'img0_snl.png', 'img1_pred.png', 'img1_snl.png']
    assert cv2.imread(str(out / 'img0_snl.png')).shape == (256, 512, 3)
    assert cv2.imread(str(out / 'img1_pred.png')).shape == (192, 400, 3)  # original size x 2
    with pytest.raises(ValueError, match='outside the image'):
        tool.main([QS.format('sanet'), 'none', images[1], '--out-dir', str(out),
                   '--points', '96,10'])  # image is 96 x 200
    with pytest.raises(ValueError, match='FCNHead has nothing to show'):
        tool.main([QS.format('fcn'), 'none', images[0], '--out-dir', str(out)])
    with pytest.raises(SystemExit):
        tool.parse_args([QS.format('sanet'), 'none', images[0], '--out-dir', 'x',
                         '--points', '3'])


def test_heads_without_maps_raise():
    from mmseg.registry import MODELS
    base = dict(in_channels=[8, 8], in_index=[0, 1], channels=8, num_classes=3)
    se = MODELS.build(dict(type='SAHead', module_type='se', **base))
    with pytest.raises(ValueError, match="module_type other than 'sa'"):
        hm.head_kind(se)
    concat = MODELS.build(dict(type='GFFHead', fusion='concat', fusion_channels=8,
                               pool_scales=(1, ), **base))
    with pytest.raises(ValueError, match='no gates'):
        hm.head_kind(concat)
    fcn = MODELS.build(dict(type='FCNHead', in_channels=8, channels=8, num_classes=3))
    with pytest.raises(ValueError, match='nothing to show'):
        hm.head_kind(fcn)


def test_slide_inference_is_switched_to_whole():
    from mmengine import Config
    cfg = Config.fromfile(QS.format('gffnet'))
    cfg.model.test_cfg = dict(mode='slide', crop_size=(64, 64), stride=(32, 32))
    with pytest.warns(UserWarning, match='whole-image inference'):
        model = hm.init_segmentor(cfg, 'none')
    assert model.test_cfg.mode == 'whole'


def test_checkpoint_of_another_model_is_refused(images, tmp_path, load_analysis_tool):
    """Issue #25 item 6: an FCN checkpoint has no GFF head weights; the gates of an untrained
    head are not drawn. Item 7: a config without a model says so."""
    from mmengine.runner import save_checkpoint
    from mmseg.apis import init_model
    fcn = init_model(QS.format('fcn'), None, device='cpu')
    path = str(tmp_path / 'fcn.pth')
    save_checkpoint(dict(state_dict=fcn.state_dict(), meta=dict(dataset_meta=dict(
        classes=tuple('abcdefghijklmnopqrs'), palette=[[i, i, i] for i in range(19)]))), path)
    with pytest.raises(ValueError, match=r'not a checkpoint of the model of gffnet_r18tiny-d8_'
                       r'1xb8-1k_synthcity-128x256\.py \(GFFHead\): it lacks \d+ weights of the '
                       r'model \(in decode_head\)'):
        hm.init_segmentor(QS.format('gffnet'), path)
    tool = load_analysis_tool('visualize_heads')
    with pytest.raises(ValueError, match='lacks'):
        tool.main([QS.format('gffnet'), path, images[0], '--out-dir', str(tmp_path / 'out')])
    assert not (tmp_path / 'out').exists()
    dataset_only = osp.join(REPO, 'configs', '_base_', 'datasets', 'synthcity_128x256.py')
    with pytest.raises(ValueError, match='defines no model'):
        tool.main([dataset_only, 'none', images[0], '--out-dir', str(tmp_path / 'out')])
