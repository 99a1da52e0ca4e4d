"""Issue #38: the heads saved before the refactor (tests/fixtures/heads_2026-12-07.pth, written by
tests/fixtures/make_head_fixtures.py at commit 3170855) load strictly into today's heads and give
the same predictions and losses: registry names, config keys and checkpoint keys unchanged."""
import os.path as osp

import pytest
import torch
from test_heads_generic import CASES, IMG, build, feats, samples

FIXTURE = osp.join(osp.dirname(osp.abspath(__file__)), 'fixtures', 'heads_2026-12-07.pth')


@pytest.fixture(scope='module')
def saved():
    return torch.load(FIXTURE, map_location='cpu', weights_only=True)


@pytest.mark.parametrize('name', sorted(CASES))
def test_saved_head_loads_strictly_and_computes_the_same(saved, name):
    rec = saved[name]
    torch.manual_seed(123)  # other initial weights: everything must come from the file
    head = build(name, dropout_ratio=0.0)
    head.load_state_dict(rec['state_dict'], strict=True)
    meta = [dict(img_shape=IMG, pad_shape=IMG, ori_shape=IMG)] * 2
    with torch.no_grad():
        pred = head.eval().predict(feats(), meta, dict(mode='whole'))
    torch.testing.assert_close(pred, rec['predict'], rtol=1e-5, atol=1e-5)
    head.train()
    losses = head.loss(feats(), samples(), dict())
    assert sorted(losses) == sorted(rec['losses'])
    for key, value in rec['losses'].items():
        torch.testing.assert_close(losses[key].detach(), value, rtol=1e-5, atol=1e-6, msg=key)
