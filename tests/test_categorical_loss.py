"""CategoricalLoss (SANet Eq. 8): hand BCE for both targets, ignore_index, gradcheck, bad input."""
import math

import pytest
import torch
from mmseg.registry import MODELS

import mmseg_ext  # noqa: F401  (registers the loss)
from mmseg_ext.models.losses.categorical_loss import (
    CategoricalLoss,
    frequency_targets,
    presence_targets,
)


def _bce_by_hand(logits, present, class_reduction='sum'):
    """-1/N sum_n sum_j [y log s + (1-y) log(1-s)], written out in Python.
    ``present[n]`` is a set of present classes (y = 1) or a dict class -> y."""
    per_image = []
    for n in range(logits.shape[0]):
        terms = []
        for j in range(logits.shape[1]):
            s = 1.0 / (1.0 + math.exp(-float(logits[n, j])))
            y = (present[n].get(j, 0.0) if isinstance(present[n], dict) else
                 1.0 if j in present[n] else 0.0)
            terms.append(-(y * math.log(s) + (1 - y) * math.log(1 - s)))
        per_image.append(
            sum(terms) if class_reduction == 'sum' else
            sum(terms) / len(terms))
    return sum(per_image) / len(per_image)


def _label():
    # image 0: classes {0, 2} + ignored pixels; image 1: only class 3
    label = torch.full((2, 3, 4), 255, dtype=torch.long)
    label[0, 0, :2] = 0
    label[0, 1, 1] = 2
    label[1] = 3
    return label


def test_presence_targets_by_hand():
    t = presence_targets(_label(), num_classes=5, ignore_index=255)
    assert t.tolist() == [[1, 0, 1, 0, 0], [0, 0, 0, 1, 0]]
    # (B, 1, H, W) maps and out-of-range labels (not counted) also work
    lab = _label()[:, None].clone()
    lab[1, 0, 0, 0] = 7
    t4 = presence_targets(lab, num_classes=5, ignore_index=255)
    assert t4.tolist() == t.tolist()


@pytest.mark.parametrize('class_reduction', ['sum', 'mean'])
def test_loss_matches_hand_bce(class_reduction):
    torch.manual_seed(0)
    logits = torch.randn(2, 5, dtype=torch.float64)
    loss = CategoricalLoss(target='presence', class_reduction=class_reduction,
                           loss_weight=0.2)
    out = loss(logits, _label(), ignore_index=255)
    ref = 0.2 * _bce_by_hand(logits, [{0, 2}, {3}], class_reduction)
    assert out.dtype == torch.float64
    assert abs(out.item() - ref) < 1e-12


def test_ignore_index_is_excluded():
    logits = torch.randn(2, 5, dtype=torch.float64)
    lab = _label()
    # pixels labelled 4 become ignored when ignore_index=4: class 4 absent
    lab[1, 0, 0] = 4
    loss = CategoricalLoss(target='presence')
    with_4 = loss(logits, lab, ignore_index=255)
    without_4 = loss(logits, lab, ignore_index=4)
    assert abs(with_4.item() - _bce_by_hand(logits, [{0, 2}, {3, 4}])) < 1e-12
    assert abs(without_4.item() - _bce_by_hand(logits, [{0, 2}, {3}])) < 1e-12


def test_all_ignore_map_is_finite_all_absent_target():
    logits = torch.randn(3, 4, dtype=torch.float64) * 5
    label = torch.full((3, 6, 7), 255, dtype=torch.long)
    out = CategoricalLoss()(logits, label, ignore_index=255)
    assert torch.isfinite(out)
    # defined as the all-absent target: mean_n sum_j softplus(x_nj)
    ref = torch.nn.functional.softplus(logits).sum(1).mean()
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)


def test_precomputed_targets_and_weight_and_reductions():
    logits = torch.randn(2, 5, dtype=torch.float64)
    target = frequency_targets(_label(), 5).double()
    loss = CategoricalLoss()
    torch.testing.assert_close(loss(logits, target), loss(logits, _label()))
    per_img = CategoricalLoss(reduction='none')(logits, target)
    assert per_img.shape == (2, )
    w = torch.tensor([1.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(
        loss(logits, target, weight=w), per_img[0] / 2, rtol=0, atol=1e-12)
    torch.testing.assert_close(
        loss(logits, target, reduction_override='sum'), per_img.sum())


def test_mean_over_classes_equals_mmseg_sigmoid_ce():
    """class_reduction='mean' == mmseg CrossEntropyLoss(use_sigmoid=True) on
    EncHead's one-hot presence labels (independent implementation)."""
    from mmseg.models.decode_heads.enc_head import EncHead
    logits = torch.randn(2, 5)
    label = _label()
    label[label == 255] = 0  # EncHead's histc would count 255 otherwise
    onehot = EncHead._convert_to_onehot_labels(label, 5)
    ref = MODELS.build(dict(type='CrossEntropyLoss', use_sigmoid=True))(
        logits, onehot)
    out = CategoricalLoss(target='presence', class_reduction='mean')(logits, label)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)


def test_gradcheck_float64():
    logits = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    label = torch.randint(0, 6, (3, 5, 5))
    label[0] = 255
    label[1, :2] = 255
    loss = CategoricalLoss(loss_weight=0.2)
    assert torch.autograd.gradcheck(
        lambda x: loss(x, label, ignore_index=255), (logits, ))


def test_registry_and_name():
    loss = MODELS.build(dict(type='CategoricalLoss', loss_weight=0.2))
    assert isinstance(loss, CategoricalLoss)
    assert loss.loss_name == 'loss_cat'


@pytest.mark.parametrize('kwargs', [
    dict(class_reduction='max'),
    dict(reduction='avg'),
])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        CategoricalLoss(**kwargs)


def test_unknown_keyword_is_not_swallowed():
    with pytest.raises(TypeError, match='ignore_idx'):
        MODELS.build(dict(type='CategoricalLoss', ignore_idx=0))
    with pytest.raises(TypeError, match='ignore_idx'):
        CategoricalLoss()(torch.randn(2, 5), _label(), ignore_idx=0)
    with pytest.raises(ValueError, match='target'):
        CategoricalLoss(target='soft')


def test_bad_reduction_override():
    with pytest.raises(ValueError, match='reduction_override'):
        CategoricalLoss()(torch.randn(2, 5), _label(), reduction_override='bogus')


@pytest.mark.parametrize('bad', [255.0, -1.0, 1.5])
def test_precomputed_targets_outside_unit_interval(bad):
    target = torch.zeros(2, 5)
    target[1, 2] = bad
    with pytest.raises(ValueError, match=r'\[0, 1\]'):
        CategoricalLoss()(torch.randn(2, 5), target)


def test_bad_shapes():
    loss = CategoricalLoss()
    with pytest.raises(ValueError, match='cls_score'):
        loss(torch.randn(2, 5, 1), _label())
    with pytest.raises(ValueError, match='precomputed targets'):
        loss(torch.randn(2, 5), torch.zeros(2, 4))


def test_frequency_targets_by_hand():
    """Each class's share of the non-ignored pixels; ignored and out-of-range
    pixels counted nowhere; an all-ignore image gives an all-zero row."""
    lab = _label()
    # image 0: 12 pixels, 2 of class 0, 1 of class 2, 9 ignored -> 2/3, 1/3
    # image 1: 12 pixels of class 3, one turned into 7 (out of range)
    lab[1, 0, 0] = 7
    t = frequency_targets(lab, num_classes=5, ignore_index=255)
    assert t.dtype == torch.float32
    torch.testing.assert_close(t, torch.tensor([[2 / 3, 0, 1 / 3, 0, 0],
                                                [0, 0, 0, 1, 0]]))
    # ignore_index=3 leaves image 1 with no valid pixel: all-zero row
    t3 = frequency_targets(lab, num_classes=5, ignore_index=3)
    assert t3[1].tolist() == [0, 0, 0, 0, 0]
    # (B, 1, H, W) maps give the same rows
    torch.testing.assert_close(frequency_targets(lab[:, None], 5), t)


@pytest.mark.parametrize('class_reduction', ['sum', 'mean'])
def test_frequency_loss_matches_hand_bce(class_reduction):
    torch.manual_seed(1)
    logits = torch.randn(2, 5, dtype=torch.float64)
    out = CategoricalLoss(class_reduction=class_reduction, loss_weight=0.2)(
        logits, _label(), ignore_index=255)
    ref = 0.2 * _bce_by_hand(logits, [{0: 2 / 3, 2: 1 / 3}, {3: 1.0}],
                             class_reduction)
    assert abs(out.item() - ref) < 1e-12


def test_frequency_all_ignore_is_finite():
    logits = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    label = torch.full((2, 3, 3), 255, dtype=torch.long)
    out = CategoricalLoss()(logits, label)
    assert torch.isfinite(out)
    torch.testing.assert_close(
        out, torch.nn.functional.softplus(logits).sum(1).mean())
    out.backward()
    assert torch.isfinite(logits.grad).all()


def test_frequency_gradcheck_float64():
    logits = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    label = torch.randint(0, 6, (3, 5, 5))
    label[0] = 255
    label[1, :2] = 255
    loss = CategoricalLoss(target='frequency', loss_weight=0.2)
    assert torch.autograd.gradcheck(
        lambda x: loss(x, label, ignore_index=255), (logits, ))


@pytest.mark.parametrize('fn', [lambda lab: CategoricalLoss()(torch.randn(2, 5), lab),
                                lambda lab: presence_targets(lab, 5),
                                lambda lab: frequency_targets(lab, 5)])
def test_float_label_map_is_refused_not_truncated(fn):
    """A float map such as 1.7 used to become class 1 silently (issue #25)."""
    lab = _label().float()
    lab[0, 2, 0] = 1.7
    with pytest.raises(ValueError, match=r'integer class ids .*torch\.float32.*label\.long\(\)'):
        fn(lab)
    assert fn(_label()) is not None  # the same map as int64 is fine


def test_avg_factor_must_be_positive_and_only_with_mean():
    logits = torch.randn(2, 5, dtype=torch.float64)
    loss = CategoricalLoss()
    per_img = CategoricalLoss(reduction='none')(logits, _label())
    # defined: the summed per-image losses divided by avg_factor
    torch.testing.assert_close(loss(logits, _label(), avg_factor=4), per_img.sum() / 4)
    torch.testing.assert_close(loss(logits, _label(), avg_factor=torch.tensor(0.5)),
                               per_img.sum() / 0.5)
    for bad in (0, 0.0, -1, float('nan'), float('inf')):
        with pytest.raises(ValueError, match=r'avg_factor must be > 0 .*pass None'):
            loss(logits, _label(), avg_factor=bad)
    with pytest.raises(ValueError, match=r"avg_factor divides the loss of reduction='mean' only"):
        loss(logits, _label(), avg_factor=2, reduction_override='sum')
