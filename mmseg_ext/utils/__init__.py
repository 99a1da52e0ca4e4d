from .launcher import configure_launcher, revert_sync_bn_cfg, run_mmseg_tool

__all__ = ['configure_launcher', 'revert_sync_bn_cfg', 'run_mmseg_tool']
