"""torch.compile of the five quickstart models' train step and of mmengine's ``compile=True``
(the slow half of tests/test_snl_compile.py, a file of its own so that pytest-xdist runs it
beside the rest; helpers and the tolerances' reasons are there)."""
import copy
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
from test_snl_compile import (  # noqa: F401
    HEADS,
    QUICKSTART,
    REPO,
    _assert_grads_close,
    _fresh_dynamo,
    needs_custom_op,
    needs_inductor,
)


def _synthetic_batch(seed=1):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randn(2, 3, 64, 64, generator=g)
    samples = []
    for _ in range(2):
        meta = dict(img_shape=(64, 64), pad_shape=(64, 64), ori_shape=(64, 64))
        sample = SegDataSample(metainfo=meta)
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 19, (1, 64, 64), generator=g))
        samples.append(sample)
    return inputs, samples


@needs_custom_op
@needs_inductor
@pytest.mark.parametrize('head', HEADS)
def test_quickstart_train_step_compiled_matches_eager(head):
    """Loss and backward of each quickstart model (2x3x64x64, random labels), eager vs
    ``torch.compile`` (Inductor), same weights; dropout draws the same masks in both
    (``fallback_random``: Inductor uses torch's RNG)."""
    import torch._inductor.config as inductor_config

    from mmseg_ext.apis import build_segmentor
    torch.manual_seed(0)
    model = build_segmentor(QUICKSTART.format(head), weights='offline').train()
    twin = copy.deepcopy(model)
    inputs, samples = _synthetic_batch()

    def step(module, fn):
        torch.manual_seed(123)
        loss, log = module.parse_losses(fn(inputs, samples, mode='loss'))
        loss.backward()
        return ({k: v.detach() for k, v in log.items()},
                {n: p.grad for n, p in module.named_parameters() if p.grad is not None})

    log_eager, g_eager = step(twin, twin)
    with inductor_config.patch(fallback_random=True):
        log_compiled, g_compiled = step(model, torch.compile(model))
    assert set(log_compiled) == set(log_eager)
    for key, value in log_eager.items():
        torch.testing.assert_close(log_compiled[key], value, rtol=1e-4, atol=1e-5,
                                   msg=lambda m, k=key: f'{head} {k}: {m}')
    assert len(g_eager) > 10
    _assert_grads_close(g_compiled, g_eager, head)


@needs_custom_op
@needs_inductor
def test_mmengine_compile_true_trains_ssanet(tmp_path, tool_env):
    """``compile=True`` in the config: mmengine compiles ``train_step``; two iterations on the
    tiny SynthCity; TorchDynamo reports graph breaks (in mmseg's accuracy and mmengine's
    optimizer wrapper) but none in the SNL block or the op."""
    env = dict(tool_env, TORCH_LOGS='graph_breaks')
    cmd = [sys.executable, osp.join(REPO, 'tools', 'train.py'), QUICKSTART.format('ssanet'),
           '--work-dir', str(tmp_path / 'work'), '--cfg-options', 'compile=True',
           'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
           'default_hooks.checkpoint.interval=2', 'default_hooks.logger.interval=1',
           'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
           'train_dataloader.persistent_workers=False', 'val_dataloader.num_workers=0',
           'val_dataloader.persistent_workers=False']
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=1200)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert 'Model has been "compiled"' in out, out[-3000:]
    assert re.search(r'Iter\(train\) \[2/2\]', out), out[-3000:]
    breaks = [line for line in out.splitlines() if 'Graph break' in line]
    snl = [line for line in breaks if re.search(r'snl_block|snl_head|sparse_nonlocal', line)]
    assert not snl, '\n'.join(snl)
