# Copyright (c) mmseg_ext contributors. All rights reserved.
"""SAHead's argument checks and its mean-of-probabilities sum (kept here so
the head file stays a head)."""
import math

import torch
import torch.nn.functional as F

from ...utils.checks import is_int

INFER_MODES = ('den_sa4', 'sa4', 'mask', 'den')
MASK_FUSIONS = ('conv', 'mean', 'deep')
DEN_SA4_SUMS = ('logits', 'probs')
DEN_LOSS_ON = ('den', 'sum')


def log_mean_prob(a: torch.Tensor, b: torch.Tensor,
                  binary: bool) -> torch.Tensor:
    """Logits whose softmax (sigmoid when ``binary``) is the mean of the two
    maps' probabilities: ``log((softmax(a) + softmax(b)) / 2)``, or the
    log-odds of ``(sigmoid(a) + sigmoid(b)) / 2`` when binary.

    Computed in log space (``log_softmax`` / ``logsigmoid`` and
    ``logaddexp``), at fp32 at least, so saturated logits stay finite and
    argmax-correct: the naive formula gives ``+inf`` (binary, both maps >= 17
    in fp32) or ``log(0)`` ties and the wrong class (logit gaps >= 104).
    The result is clamped to the finite range of the input dtype (fp16 /
    bf16 under AMP), which moves only classes of probability below
    ``exp(-finfo.max)``.
    """
    dt = torch.promote_types(a.dtype, torch.float32)
    out_dtype = a.dtype
    a, b = a.to(dt), b.to(dt)
    if binary:  # log(2 p) - log(2 (1 - p))
        out = torch.logaddexp(F.logsigmoid(a), F.logsigmoid(b)) - \
            torch.logaddexp(F.logsigmoid(-a), F.logsigmoid(-b))
    else:
        out = torch.logaddexp(a.log_softmax(1), b.log_softmax(1)) - \
            math.log(2)
    big = torch.finfo(out_dtype).max
    return out.clamp(-big, big).to(out_dtype)


def check_sa_head_args(kwargs: dict, reduction, pool_ratio, den_num_convs,
                       mask_fusion, infer_mode, den_sa4_sum, den_loss_on,
                       min_channels, sa_groups, loss_den) -> None:
    """Refuse bad SAHead arguments at construction, saying what to set."""
    in_channels, in_index = kwargs.get('in_channels'), kwargs.get(
        'in_index', -1)
    if not isinstance(in_channels, (list, tuple)) or not isinstance(
            in_index, (list, tuple)):
        raise TypeError(
            'SAHead needs one input per SA block: in_channels and '
            'in_index must be lists, e.g. in_channels=[256, 512, 1024, '
            f'2048], in_index=[0, 1, 2, 3]; got in_channels='
            f'{in_channels!r}, in_index={in_index!r}')
    if len(in_channels) != len(in_index) or not in_index:
        raise ValueError(
            f'len(in_channels)={len(in_channels)} must equal '
            f'len(in_index)={len(in_index)} (one SA block per selected '
            'stage; the paper uses 4: in_index=[0, 1, 2, 3])')
    ints = [('reduction', reduction, 1), ('den_num_convs', den_num_convs, 0)]
    ints += [('pool_ratio', pool_ratio, 1)] if pool_ratio is not None else []
    ints += [('min_channels', min_channels, 1)] \
        if min_channels is not None else []
    for name, v, low in ints:
        if not is_int(v) or v < low:
            raise ValueError(f'{name} must be an int >= {low}, got {v!r}')
    if min_channels is not None and isinstance(sa_groups, int) and \
            sa_groups > 0 and min_channels % sa_groups:
        raise ValueError(
            f'min_channels={min_channels} must be divisible by sa_groups='
            f'{sa_groups} (the grouped first convs); e.g. min_channels='
            f'{sa_groups * -(-min_channels // sa_groups)}')
    if den_num_convs == 0 and kwargs.get('channels') != in_channels[-1]:
        raise ValueError(
            'den_num_convs=0 classifies stage 4 directly: set channels='
            f'{in_channels[-1]} (in_channels[-1])')
    for name, value, allowed in (('mask_fusion', mask_fusion, MASK_FUSIONS),
                                 ('infer_mode', infer_mode, INFER_MODES),
                                 ('den_sa4_sum', den_sa4_sum, DEN_SA4_SUMS),
                                 ('den_loss_on', den_loss_on,
                                  (None, ) + DEN_LOSS_ON)):
        if value not in allowed:
            raise ValueError(f'{name} must be one of {allowed}, got '
                             f'{value!r}')
    if loss_den is None and infer_mode not in ('mask', 'sa4'):
        raise ValueError(
            f"infer_mode={infer_mode!r} needs the dense branch; with "
            "loss_den=None set infer_mode='mask' or 'sa4'")
    if loss_den is None and den_loss_on == 'sum':
        raise ValueError(
            f'den_loss_on={den_loss_on!r} puts L_den on Y_den + Y_SA4, but '
            "loss_den=None removes L_den: leave den_loss_on unset or give "
            'loss_den')
