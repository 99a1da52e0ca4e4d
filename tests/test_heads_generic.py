"""One generic tester for the three heads: shapes, gradients, eval determinism, registry, mmseg API.

Each case is the smallest head of its kind; inputs are tiny and of sizes not divisible by 8.
"""
import copy

import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

NUM_CLASSES = 5
FOUR = dict(in_channels=[8, 16, 24, 32], in_index=[0, 1, 2, 3])
# (head config, feature map sizes per backbone level (ResNet-d8-like: 1/4 then 1/8), batch)
CASES = {
    'SAHead': dict(type='SAHead', channels=32, norm_cfg=dict(type='BN'), **FOUR),
    # every SANet reading of issue #23 away from its default (configs/sanet/README.md)
    'SAHead-readings': dict(type='SAHead', channels=32, norm_cfg=dict(type='BN'), attn_grid=3,
                            pool_type='max', attn_act='relu', main_convs=2, min_channels=8,
                            den_loss_on='sum', den_sa4_sum='probs', **FOUR),
    'GFFHead': dict(type='GFFHead', channels=16, fusion_channels=8, pool_scales=(1, 2, 3),
                    norm_cfg=dict(type='BN'), **FOUR),
    'SNLHead': dict(type='SNLHead', in_channels=(8, 32), in_index=(0, 3), channels=16,
                    kernel_size=3, zero_init_snl=False, norm_cfg=dict(type='BN')),
}
IMG = (33, 65)  # odd image size; levels at ceil(1/4) and ceil(1/8)
SIZES = [(9, 17), (5, 9), (5, 9), (5, 9)]
CHANNELS = [8, 16, 24, 32]


def build(name, **over):
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS

    import mmseg_ext  # noqa: F401
    cfg = dict(copy.deepcopy(CASES[name]), num_classes=NUM_CLASSES)
    cfg.update(over)
    # in mmseg's scope whatever an earlier test (a Runner) left as the default scope
    with DefaultScope.overwrite_default_scope('mmseg'):
        return MODELS.build(cfg)


def feats(batch=2, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, c, h, w, generator=g, dtype=dtype)
            for c, (h, w) in zip(CHANNELS, SIZES)]


def samples(batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(batch):
        s = SegDataSample()
        label = torch.randint(0, NUM_CLASSES, (1, *IMG), generator=g)
        label[:, :3] = 255  # some ignored pixels
        s.gt_sem_seg = PixelData(data=label)
        s.set_metainfo(dict(img_shape=IMG, pad_shape=IMG, ori_shape=IMG))
        out.append(s)
    return out


@pytest.mark.parametrize('name', sorted(CASES))
class TestHead:

    def test_registry_round_trip(self, name):
        from mmseg.registry import MODELS
        head = build(name)
        kind = CASES[name]['type']
        assert type(head) is MODELS.get(kind)
        assert type(build(name)).__name__ == kind

    def test_predict_shapes(self, name):
        head = build(name).eval()
        meta = [dict(img_shape=IMG, pad_shape=IMG, ori_shape=IMG)] * 2
        with torch.no_grad():
            seg = head.predict(feats(), meta, dict(mode='whole'))
        assert seg.shape == (2, NUM_CLASSES, *IMG)
        assert torch.isfinite(seg).all()

    def test_loss_and_every_parameter_gets_a_gradient(self, name):
        torch.manual_seed(0)
        head = build(name).train()
        losses = head.loss(feats(), samples(), dict())
        loss_terms = {k: v for k, v in losses.items() if 'loss' in k}
        assert loss_terms, losses.keys()
        total = sum(v.sum() for v in loss_terms.values())
        assert torch.isfinite(total)
        total.backward()
        missing = [n for n, p in head.named_parameters() if p.requires_grad and
                   (p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0)]
        assert not missing, f'parameters without a (nonzero, finite) gradient: {missing}'

    def test_eval_is_deterministic(self, name):
        head = build(name).eval()
        x = feats(seed=3)
        meta = [dict(img_shape=IMG, pad_shape=IMG, ori_shape=IMG)] * 2
        with torch.no_grad():
            a = head.predict(x, meta, dict(mode='whole'))
            b = head.predict([t.clone() for t in x], meta, dict(mode='whole'))
        torch.testing.assert_close(a, b, rtol=0, atol=0)

    def test_batch_items_are_independent_in_eval(self, name):
        head = build(name).eval()
        x = feats(seed=5)
        meta = [dict(img_shape=IMG, pad_shape=IMG, ori_shape=IMG)]
        with torch.no_grad():
            both = head.predict(x, meta * 2, dict(mode='whole'))
            first = head.predict([t[:1] for t in x], meta, dict(mode='whole'))
        torch.testing.assert_close(both[:1], first, rtol=1e-4, atol=1e-5)

    def test_state_dict_round_trip(self, name):
        a, b = build(name).eval(), build(name).eval()
        b.load_state_dict(a.state_dict(), strict=True)
        with torch.no_grad():
            meta = [dict(img_shape=IMG, pad_shape=IMG, ori_shape=IMG)] * 2
            torch.testing.assert_close(a.predict(feats(), meta, dict(mode='whole')),
                                       b.predict(feats(), meta, dict(mode='whole')))

    def test_forward_keeps_no_state(self, name):
        """No module of the head gets, replaces or drops an attribute in a training or an eval
        pass (inspection reads tensors by forward hooks, nothing is kept for tools); parameters
        and buffers are updated in place only."""
        head = build(name)

        def attributes():
            return {f'{mod_name}.{key}': id(value) for mod_name, mod in head.named_modules()
                    for key, value in vars(mod).items()}

        def entries():  # parameters, buffers and submodules of every module, by identity
            return {f'{mod_name}.{d}.{key}': id(value) for mod_name, mod in head.named_modules()
                    for d in ('_parameters', '_buffers', '_modules')
                    for key, value in getattr(mod, d).items()}

        def check(forward):
            before = (attributes(), entries())
            forward()
            for old, new in zip(before, (attributes(), entries())):
                changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
                assert not changed, f'set during forward: {changed}'

        meta = [dict(img_shape=IMG, pad_shape=IMG, ori_shape=IMG)] * 2
        head.train()
        check(lambda: head.loss(feats(), samples(), dict()))
        head.eval()
        with torch.no_grad():
            check(lambda: head.predict(feats(), meta, dict(mode='whole')))

    def test_typo_in_an_argument_is_an_error(self, name):
        with pytest.raises(TypeError):
            build(name, chanels=8)

    def test_one_class_softmax_is_refused(self, name):
        with pytest.raises(ValueError, match='num_classes=2, out_channels=1'):
            build(name, num_classes=1)

    def test_binary_needs_a_sigmoid_loss(self, name):
        with pytest.raises(ValueError, match='use_sigmoid=True'):
            build(name, num_classes=2, out_channels=1)

    def test_binary_mode_trains_and_predicts(self, name):
        sig = dict(type='CrossEntropyLoss', use_sigmoid=True)
        extra = dict(loss_den=dict(sig, loss_weight=0.8, loss_name='loss_den')) \
            if CASES[name]['type'] == 'SAHead' else {}
        head = build(name, num_classes=2, out_channels=1, loss_decode=sig, **extra).train()
        ss = samples()
        for s in ss:  # binary labels (0/1) with some ignored pixels
            s.gt_sem_seg.data = torch.where(s.gt_sem_seg.data == 255, 255, s.gt_sem_seg.data % 2)
        losses = head.loss(feats(), ss, dict())
        total = sum(v.sum() for k, v in losses.items() if 'loss' in k)
        assert torch.isfinite(total) and total > 0
        total.backward()
        meta = [dict(img_shape=IMG, pad_shape=IMG, ori_shape=IMG)] * 2
        with torch.no_grad():
            seg = head.eval().predict(feats(), meta, dict(mode='whole'))
        assert seg.shape == (2, 1, *IMG)
