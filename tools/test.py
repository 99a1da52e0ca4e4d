"""Test a segmentor: mmseg's own `tools/test.py` (same arguments), plus multi-process on CPU.

    python tools/test.py CONFIG CHECKPOINT [--launcher pytorch|slurm] [mmseg's other options]

Without CUDA and with a launcher, the config is switched to gloo, DDP without device ids and BN
(see mmseg_ext/utils/launcher.py); otherwise this is exactly mmseg's script.
"""
from mmseg_ext.utils.launcher import run_mmseg_tool

if __name__ == '__main__':
    run_mmseg_tool('test.py')
