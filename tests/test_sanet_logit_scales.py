"""tools/analysis_tools/sanet_logit_scales.py: the statistics against direct formulas, the maps
against SAHead's own inference modes, and its mIoU against mmseg's IoUMetric."""
import os.path as osp

import numpy as np
import pytest
import torch

pytest.importorskip('mmseg')

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
QS = osp.join(REPO, 'configs', 'quickstart', '{}_r18tiny-d8_1xb8-1k_synthcity-128x256.py')


@pytest.fixture(scope='module')
def tool(load_analysis_tool):
    return load_analysis_tool('sanet_logit_scales')


def test_map_stats_against_direct_formulas(tool):
    g = torch.Generator().manual_seed(0)
    k, h, w = 5, 7, 9
    logits = [torch.randn(k, h, w, generator=g, dtype=torch.float64) * s for s in (1.0, 3.0)]
    # class 4 never labelled
    labels = [torch.randint(0, k - 1, (h, w), generator=g) for _ in range(2)]
    labels[0][0, :4] = 255
    stats = tool.MapStats(k)
    for x, y in zip(logits, labels):
        stats.update(x, y, y != 255)
    got = stats.summary()
    # the same numbers pixel by pixel, in plain Python
    stds, margins, pairs = [], [], []
    for x, y in zip(logits, labels):
        for i in range(h):
            for j in range(w):
                if y[i, j] == 255:
                    continue
                v = sorted(x[:, i, j].tolist(), reverse=True)
                mu = sum(v) / k
                stds.append((sum((a - mu) ** 2 for a in v) / k) ** 0.5)
                margins.append(v[0] - v[1])
                pairs.append((int(y[i, j]), int(x[:, i, j].argmax())))
    ious = []
    for c in range(k):
        inter = sum(1 for t, p in pairs if t == c and p == c)
        union = sum(1 for t, p in pairs if t == c or p == c)
        if union:
            ious.append(inter / union)
    assert got['pixels'] == len(pairs) == 2 * h * w - 4
    assert got['std'] == pytest.approx(np.mean(stds), rel=1e-12)
    assert got['margin'] == pytest.approx(np.mean(margins), rel=1e-12)
    assert got['acc'] == pytest.approx(100 * np.mean([t == p for t, p in pairs]), rel=1e-12)
    assert got['miou'] == pytest.approx(100 * np.mean(ious), rel=1e-12)


def test_all_ignored_is_an_error(tool):
    stats = tool.MapStats(3)
    y = torch.full((2, 2), 255)
    stats.update(torch.zeros(3, 2, 2), y, y != 255)
    with pytest.raises(ValueError, match='every label is the ignore index'):
        stats.summary()


def test_sum_decision(tool):
    # 4 pixels, 3 classes: agree / sum takes den's class / sum takes sa4's / sum takes a third
    den = torch.tensor([[5., 5, 0, 0], [0, 0, 5, 0], [0, 0, 0, 0]]).view(3, 1, 4)
    sa4 = torch.tensor([[5., 0, 5, 0], [0, 5, 0, 5], [0, 0, 0, 0]]).view(3, 1, 4)
    total = torch.tensor([[5., 5, 5, 0], [0, 0, 0, 0], [0, 0, 0, 9]]).view(3, 1, 4)
    d = tool.SumDecision()
    d.update(den, sa4, total, torch.ones(1, 4, dtype=torch.bool))
    assert d.summary(4) == dict(disagree=75.0, to_den=pytest.approx(100 / 3),
                                to_sa4=pytest.approx(100 / 3))


@pytest.fixture(scope='module')
def sanet_and_data(synthcity_root):
    from mmengine.config import Config
    from mmseg.registry import DATASETS

    from mmseg_ext.visualization import init_segmentor
    cfg = Config.fromfile(QS.format('sanet'))
    cfg.test_dataloader.dataset.data_root = synthcity_root
    torch.manual_seed(0)
    model = init_segmentor(cfg, 'none')
    # a random init predicts nearly one class everywhere: spread the two maps so that the
    # statistics see several classes and Y_den and Y_SA4 disagree
    with torch.no_grad():
        model.decode_head.conv_seg.weight.normal_(0, 1.0)
        model.decode_head.sa_cls[-1].weight.normal_(0, 0.3)
    return model, DATASETS.build(cfg.test_dataloader.dataset)


def test_maps_are_the_heads_inference_modes(tool, sanet_and_data):
    from mmengine.dataset import pseudo_collate
    model, data = sanet_and_data
    batch = pseudo_collate([data[0], data[1]])
    got = tool.branch_logits(model, batch)
    assert model.decode_head.infer_mode == 'den_sa4'  # restored
    for a, b, s in zip(got['den'], got['sa4'], got['den_sa4']):
        assert a.shape == (19, 128, 256)
        # postprocessing (bilinear resize) is linear: the sum's logits are the two maps' sum
        torch.testing.assert_close(s, a + b, rtol=1e-5, atol=1e-5)
    # and the default prediction is the den_sa4 map's argmax
    pred = model.predict(model.data_preprocessor(batch, False)['inputs'],
                         model.data_preprocessor(batch, False)['data_samples'])
    for p, s in zip(pred, got['den_sa4']):
        assert torch.equal(p.pred_sem_seg.data[0], s.argmax(0))


def test_miou_is_mmsegs(tool, sanet_and_data):
    from mmengine.dataset import pseudo_collate
    from mmseg.evaluation import IoUMetric
    model, data = sanet_and_data
    res = tool.measure(model, data)
    assert res['images'] == len(data) == 4
    assert 0 < res['den_sa4']['disagree'] <= 100
    assert res['sa4_over_den_std'] == pytest.approx(res['sa4']['std'] / res['den']['std'])
    head = model.decode_head
    for mode in ('den', 'sa4', 'den_sa4'):
        metric = IoUMetric()
        metric.dataset_meta = dict(classes=data.metainfo['classes'])
        head.infer_mode = mode
        try:
            for i in range(len(data)):
                batch = model.data_preprocessor(pseudo_collate([data[i]]), False)
                out = model.predict(batch['inputs'], batch['data_samples'])
                metric.process([], [o.to_dict() for o in out])
        finally:
            head.infer_mode = 'den_sa4'
        miou = metric.compute_metrics(metric.results)['mIoU']
        assert res[mode]['miou'] == pytest.approx(miou, abs=0.006), mode  # IoUMetric rounds to 2


def test_other_heads_are_refused(tool):
    from mmseg_ext.visualization import init_segmentor
    with pytest.raises(ValueError, match='nothing to show'):  # FCN: init_segmentor already refuses
        init_segmentor(QS.format('fcn'), 'none')
    model = init_segmentor(QS.format('gffnet'), 'none')
    with pytest.raises(SystemExit, match='this tool reads SAHead'):
        tool.check_head(model.decode_head)
