"""Multi-process training and testing on machines without CUDA, for ``tools/{train,test}.py``.

mmengine 0.10.7's ``init_dist`` calls ``torch.cuda.set_device`` unconditionally, its default DDP
wrapper passes ``device_ids=[local_rank]``, and SyncBN needs CUDA, so ``dist_train.sh CFG 2`` fails
on a CPU-only machine. :func:`configure_launcher` fixes that *only when CUDA is unavailable*:

* it creates a ``gloo`` process group from the launcher's environment (torchrun's ``RANK``/
  ``WORLD_SIZE``/``MASTER_*``, or slurm's ``SLURM_*``) before the Runner is built, so mmengine
  skips ``init_dist``;
* it sets ``model_wrapper_cfg.device_ids=None`` (DDP over CPU tensors) and
  ``env_cfg.dist_cfg.backend='gloo'``;
* it turns every ``SyncBN`` in the config into ``BN``.

With CUDA available it changes nothing: the stock mmseg path (nccl, SyncBN, device_ids) is kept.
"""
from __future__ import annotations

import os
import subprocess

import torch
import torch.distributed as dist
from mmengine.config import Config, ConfigDict

from ..apis import revert_sync_bn_cfg


def _slurm_env(port: str | None) -> None:
    """Translate slurm's variables into torch.distributed's, as mmengine's ``_init_dist_slurm``."""
    proc_id = int(os.environ['SLURM_PROCID'])
    ntasks = int(os.environ['SLURM_NTASKS'])
    node_list = os.environ['SLURM_NODELIST']
    num_local = int(os.environ.get('SLURM_NTASKS_PER_NODE', '1').split('(')[0])
    addr = subprocess.getoutput(f'scontrol show hostname {node_list} | head -n1')
    os.environ.setdefault('MASTER_PORT', port or '29500')
    os.environ.setdefault('MASTER_ADDR', addr)
    os.environ['WORLD_SIZE'] = str(ntasks)
    os.environ['LOCAL_RANK'] = str(proc_id % num_local)
    os.environ['RANK'] = str(proc_id)


def configure_launcher(cfg: Config, launcher: str) -> Config:
    """Prepare ``cfg`` (and the process group) for ``launcher`` on a machine without CUDA.

    Returns ``cfg`` (modified in place). A no-op for ``launcher='none'`` or when CUDA is available.
    """
    if launcher == 'none' or torch.cuda.is_available():
        return cfg
    if launcher == 'mpi':
        raise ValueError("launcher 'mpi' is not supported without CUDA here; use --launcher "
                         'pytorch (tools/dist_train.sh) or slurm (tools/slurm_train.sh)')
    if launcher == 'slurm':
        _slurm_env(os.environ.get('PORT'))
    elif launcher != 'pytorch':
        raise ValueError(f"unknown launcher '{launcher}': use none, pytorch or slurm")
    missing = [k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')
               if k not in os.environ]
    if missing:
        raise RuntimeError(f'--launcher {launcher} needs the environment variables {missing}; '
                           'start the script through tools/dist_train.sh (torchrun) or srun')
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo', init_method='env://')
    env_cfg = cfg.setdefault('env_cfg', ConfigDict())
    env_cfg.setdefault('dist_cfg', ConfigDict())['backend'] = 'gloo'
    # the same arguments as mmengine's default wrapper, less the CUDA device ids
    wrapper = cfg.get('model_wrapper_cfg') or ConfigDict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    revert_sync_bn_cfg(cfg._cfg_dict)
    return cfg


def _amp_device_available() -> bool:
    """What mmengine 0.10.7's AmpOptimWrapper accepts: CUDA, NPU, MLU or MUSA."""
    from mmengine import device
    checks = ('is_cuda_available', 'is_npu_available', 'is_mlu_available', 'is_musa_available')
    return any(getattr(device, name, lambda: False)() for name in checks)


def check_amp(cfg: Config) -> Config:
    """Refuse AMP (``--amp``, i.e. ``optim_wrapper.type='AmpOptimWrapper'``) early and clearly
    where mmengine cannot run it: its AmpOptimWrapper scales the loss with ``torch.cuda.amp``'s
    GradScaler and asserts a CUDA/NPU/MLU device, so on a CPU-only machine it fails."""
    wrapper = cfg.get('optim_wrapper') or {}
    if wrapper.get('type') == 'AmpOptimWrapper' and not _amp_device_available():
        raise RuntimeError(
            'mixed precision (--amp, or optim_wrapper.type=AmpOptimWrapper) needs a CUDA device: '
            "mmengine's AmpOptimWrapper uses torch.cuda.amp's GradScaler and refuses CPU-only "
            'machines. Train without --amp here (fp32: the quickstart configs take minutes on a '
            "CPU), or set optim_wrapper.type='OptimWrapper' in the config.")
    return cfg


def run_mmseg_tool(name: str) -> None:
    """Run the installed mmseg's ``tools/<name>`` as ``__main__``, with :func:`configure_launcher`.

    The project's ``tools/train.py`` and ``tools/test.py`` are this call: same arguments and
    behaviour as mmseg's own scripts (they *are* mmseg's scripts), plus the CPU multi-process
    set-up applied to the config just before the Runner is built.
    """
    import runpy

    import mmseg
    from mmengine.runner import Runner

    script = os.path.join(os.path.dirname(mmseg.__file__), '.mim', 'tools', name)
    if not os.path.isfile(script):
        raise FileNotFoundError(f'{script} is missing: reinstall mmsegmentation==1.2.2 from PyPI')
    stock_from_cfg = Runner.from_cfg.__func__

    def from_cfg(cls, cfg):
        check_amp(cfg)
        configure_launcher(cfg, cfg.get('launcher', 'none'))
        return stock_from_cfg(cls, cfg)

    Runner.from_cfg = classmethod(from_cfg)
    try:
        runpy.run_path(script, run_name='__main__')
    finally:
        Runner.from_cfg = classmethod(stock_from_cfg)
    # After a successful run, tear the process group down while the interpreter is alive: a gloo
    # group left to interpreter finalization can abort the process ("terminate called without an
    # active exception", SIGABRT) after the work is done; seen once in tools/dist_test.sh under
    # load, 2026-12-07. Not after an error, where the other ranks may still be in a collective.
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
