"""A clear error when BatchNorm meets a single value per channel (batch 1, pooled to 1x1)."""
from contextlib import contextmanager

_TORCH_MESSAGE = 'Expected more than 1 value per channel when training'


@contextmanager
def explain_single_value_batch_norm(where: str):
    """Re-raise torch's "Expected more than 1 value per channel when training" from a pooled
    branch (PPM, global pooling) with what to change: the batch size or the norm layer."""
    try:
        yield
    except ValueError as err:
        if _TORCH_MESSAGE not in str(err):
            raise
        raise ValueError(
            f'{where} pools to 1x1 and normalises it with BatchNorm, which in training needs more '
            f'than one value per channel, but the batch holds 1 sample ({err}). Train with a batch '
            'of >= 2 per process (train_dataloader.batch_size), or set the head\'s norm_cfg to '
            "dict(type='GN', num_groups=..., requires_grad=True), or use SyncBN across several "
            'GPUs (their samples are normalised together).') from err
