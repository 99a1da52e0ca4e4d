# Copyright (c) mmseg_ext contributors. All rights reserved.
"""Construction-time argument checks of the project's decode heads and blocks.

Each argument is checked once, where it enters: by the head that takes it, or by the block when
the block is built on its own. Every refusal reads ``[owner: ]name must be <requirement>[ (hint)],
got <value>`` and says what to set; relations between arguments (divisibility, list lengths) are
refused where they are tested, in the same words."""
from typing import Iterable, NoReturn, Optional, Sequence, Type

import torch.nn as nn

from ...utils.checks import is_int

BINARY_FIX = ("for binary segmentation use num_classes=2, out_channels=1 and "
              "loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=True)")


def refuse(name: str, requirement: str, value, *, owner: Optional[str] = None,
           hint: Optional[str] = None, error: Type[Exception] = ValueError) -> NoReturn:
    """Raise ``error('[owner: ]name must be requirement[ (hint)], got value!r')``."""
    prefix = f'{owner}: ' if owner else ''
    hint = f' ({hint})' if hint else ''
    raise error(f'{prefix}{name} must be {requirement}{hint}, got {value!r}')


def check_int(name: str, value, minimum: int, *, owner: Optional[str] = None,
              hint: Optional[str] = None, word: str = 'integer') -> int:
    """``value`` if it is an int >= ``minimum``: a bool (an int subclass in Python), a float or a
    string is refused ("``name`` must be an ``word`` >= ``minimum``")."""
    if not is_int(value) or value < minimum:
        refuse(name, f'an {word} >= {minimum}', value, owner=owner, hint=hint)
    return value


def check_positive_int(name: str, value, *, hint: Optional[str] = None) -> int:
    """``value`` if it is an int > 0 ("``name`` must be a positive int")."""
    if not is_int(value) or value <= 0:
        refuse(name, 'a positive int', value, hint=hint)
    return value


def check_int_in(name: str, value, low: int, high: int, requirement: str, *,
                 owner: Optional[str] = None, hint: Optional[str] = None) -> int:
    """``value`` if it is an int with ``low <= value <= high``; else ``requirement`` says what
    the values mean."""
    if not is_int(value) or not low <= value <= high:
        refuse(name, requirement, value, owner=owner, hint=hint)
    return value


def check_choice(name: str, value, choices: Sequence, *, requirement: Optional[str] = None,
                 owner: Optional[str] = None):
    """``value`` if it is one of ``choices`` (by default "must be one of ``choices``")."""
    if value not in choices:
        refuse(name, requirement or f'one of {tuple(choices)}', value, owner=owner)
    return value


def check_bool(name: str, value, *, owner: Optional[str] = None,
               error: Type[Exception] = ValueError) -> bool:
    """``value`` if it is True or False (a string such as 'no' would silently count as True)."""
    if not isinstance(value, bool):
        refuse(name, 'True or False', value, owner=owner, error=error)
    return value


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
