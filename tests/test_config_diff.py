"""mmseg_ext.utils.config_diff: the comparisons behind reusing or reporting a finished run."""
import pytest

from mmseg_ext.utils.config_diff import config_difference, first_difference, model_record


def test_first_difference_names_the_path_and_both_values():
    assert first_difference({'a': {'b': [1, 2]}}, {'a': {'b': [1, 2]}}) is None
    assert first_difference({'a': {'b': [1, 2]}}, {'a': {'b': [1, 3]}}) == 'a.b[1] 2 vs 3'
    assert first_difference({'a': 1}, {}, 'model') == 'model.a 1 vs absent'
    assert first_difference({'a': [1]}, {'a': [1, 2]}) == 'a [1] vs [1, 2]'
    assert first_difference({'a': 'x' * 100}, {'a': 'y'}).startswith("a 'xxx")
    assert len(first_difference({'a': 'x' * 100}, {'a': 'y'})) < 80  # long values shortened


def test_config_difference_counts_syncbn_as_bn_and_tuples_as_lists():
    run = dict(model=dict(norm_cfg=dict(type='SyncBN'), dilations=(1, 2)),
               train_cfg=dict(max_iters=4))
    now = dict(model=dict(norm_cfg=dict(type='BN'), dilations=[1, 2]), train_cfg=dict(max_iters=4))
    assert config_difference(run, now) is None
    assert config_difference(run, dict(now, train_cfg=dict(max_iters=8))) == \
        'train_cfg.max_iters 4 vs 8'
    assert config_difference(dict(run, optim_wrapper=dict(lr=1)), now) is None  # not compared
    assert config_difference(dict(run, optim_wrapper=dict(lr=1)), now,
                             ('optim_wrapper', )) == 'optim_wrapper.lr 1 vs absent'


@pytest.fixture(scope='module')
def registered():
    from mmseg.utils import register_all_modules

    import mmseg_ext  # noqa: F401
    register_all_modules()


def test_model_record_fills_defaults_through_kwargs_to_the_base_class(registered):
    rec = model_record(dict(type='EncoderDecoder', decode_head=dict(
        type='SAHead', in_channels=[4, 8, 16, 32], in_index=[0, 1, 2, 3], channels=32,
        num_classes=5, norm_cfg=dict(type='SyncBN', requires_grad=True), den_loss_on='sum',
        loss_decode=dict(type='CrossEntropyLoss'))))
    head = rec['decode_head']
    assert head['den_loss_on'] == 'sum'  # as written
    assert head['infer_mode'] == 'den_sa4' and head['reduction'] == 4  # SAHead's defaults
    assert head['dropout_ratio'] == 0.1 and head['align_corners'] is False  # BaseDecodeHead's
    assert head['norm_cfg'] == {'type': 'BN', 'requires_grad': True}  # torch.nn defaults left out
    assert head['loss_decode']['loss_weight'] == 1.0  # a loss is a registered component too
    assert rec['data_preprocessor'] is None and 'train_cfg' in rec  # EncoderDecoder's own
    assert model_record(dict(type='NotRegistered', x=1)) == {'type': 'NotRegistered', 'x': 1}


def test_model_record_is_the_same_in_every_process(registered):
    """Defaults that are not JSON data (functions, objects) are named without memory addresses."""
    from mmseg_ext.utils.config_diff import _stable_repr
    assert _stable_repr(len) == 'builtins.len'
    assert 'at 0x' not in _stable_repr(object())
    assert _stable_repr(object()) == '<object object>'
