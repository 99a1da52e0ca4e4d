from .launcher import configure_launcher, revert_sync_bn_cfg

__all__ = ['configure_launcher', 'revert_sync_bn_cfg']
