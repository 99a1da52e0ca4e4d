# Copyright (c) mmseg_ext contributors. All rights reserved.
"""Construction-time checks shared by the project's decode heads."""
from typing import Iterable, Optional

import torch.nn as nn

from ...utils.checks import is_int

BINARY_FIX = ("for binary segmentation use num_classes=2, out_channels=1 and "
              "loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=True)")


def check_int(owner: str, name: str, value, minimum: int, example: str) -> None:
    """``value`` must be an int >= ``minimum``: a bool (an int subclass in Python), a float or a
    string is refused with a ValueError that says what ``name`` of ``owner`` takes."""
    if not is_int(value) or value < minimum:
        raise ValueError(f'{owner}: {name} must be an integer >= {minimum} ({example}), got '
                         f'{value!r}')


def check_bool(owner: str, name: str, value) -> None:
    """``value`` must be True or False (a string such as 'no' would silently count as True)."""
    if not isinstance(value, bool):
        raise ValueError(f'{owner}: {name} must be True or False, got {value!r}')


def _losses(loss: Optional[nn.Module]) -> Iterable[nn.Module]:
    if loss is None:
        return []
    return list(loss) if isinstance(loss, nn.ModuleList) else [loss]


def check_output_mode(head: nn.Module, extra_losses=()) -> None:
    """Refuse output/loss combinations that train silently to nothing.

    * ``num_classes < 2``: one softmax channel gives loss 0 and accuracy 100
      whatever the input; mmseg's binary mode is ``num_classes=2,
      out_channels=1`` with a sigmoid loss.
    * ``out_channels=1`` with a softmax loss (``use_sigmoid=False``) among
      ``head.loss_decode`` and ``extra_losses`` (a head's own extra pixel
      losses, e.g. SANet's ``loss_den``): the same silent zero.

    Args:
        head: A ``BaseDecodeHead`` after ``super().__init__``.
        extra_losses: ``(arg_name, loss module or None)`` pairs.
    """
    name = type(head).__name__
    if head.num_classes < 2:
        raise ValueError(f'{name}: num_classes={head.num_classes} cannot '
                         f'learn (softmax over one class is constant); '
                         f'{BINARY_FIX}')
    if head.out_channels != 1:
        return
    pairs = [('loss_decode', m) for m in _losses(head.loss_decode)]
    pairs += [(arg, m) for arg, loss in extra_losses for m in _losses(loss)]
    for arg, loss in pairs:
        if getattr(loss, 'use_sigmoid', True) is False:
            raise ValueError(
                f'{name}: out_channels=1 needs sigmoid losses, but {arg} '
                f'({type(loss).__name__}) has use_sigmoid=False; set '
                f'{arg}=dict(type=\'CrossEntropyLoss\', use_sigmoid=True, '
                '...) (mmseg binary mode: num_classes=2, out_channels=1)')
