from .rng_state_hook import (
                             RNGStateError,
                             RNGStateHook,
                             dataloader_settings,
                             get_rng_state,
                             set_rng_state,
                             validate_rng_state,
)

__all__ = ['RNGStateError', 'RNGStateHook', 'dataloader_settings', 'get_rng_state', 'set_rng_state',
           'validate_rng_state']
