from .launcher import check_amp, configure_launcher, revert_sync_bn_cfg, run_mmseg_tool

__all__ = ['check_amp', 'configure_launcher', 'revert_sync_bn_cfg', 'run_mmseg_tool']
