# Copyright (c) mmseg_ext contributors. All rights reserved.
"""Image-level categorical (class-presence) loss, SANet Eq. 8."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmseg.registry import MODELS


def presence_targets(seg_label: Tensor, num_classes: int,
                     ignore_index: Optional[int] = 255) -> Tensor:
    """Multi-hot ``(B, num_classes)`` targets: 1 where a class occurs in the
    label map. Pixels equal to ``ignore_index`` or outside
    ``[0, num_classes)`` are skipped, so an all-ignore map gives an all-zero
    (all classes absent) row.

    Args:
        seg_label (Tensor): Label map ``(B, H, W)`` or ``(B, 1, H, W)``.
        num_classes (int): Number of classes.
        ignore_index (int, optional): Label value to skip.
    """
    if seg_label.dim() == 4 and seg_label.size(1) == 1:
        seg_label = seg_label[:, 0]
    if seg_label.dim() != 3:
        raise ValueError('seg_label must be (B, H, W) or (B, 1, H, W), got '
                         f'shape {tuple(seg_label.shape)}')
    label = seg_label.long().flatten(1)
    valid = (label >= 0) & (label < num_classes)
    if ignore_index is not None:
        valid &= label != ignore_index
    # invalid pixels go to an extra dummy column that is dropped afterwards;
    # scatter of a constant is deterministic whatever the duplicates.
    index = torch.where(valid, label, torch.full_like(label, num_classes))
    target = label.new_zeros((label.size(0), num_classes + 1),
                             dtype=torch.float32)
    target.scatter_(1, index, 1.0)
    return target[:, :num_classes]


@MODELS.register_module()
class CategoricalLoss(nn.Module):
    """Binary cross-entropy between per-class presence logits and the set of
    classes present in the label map (SANet Eq. 8, ``L_cat``)::

        L_cat = -1/N sum_n sum_j [y_nj log s(x_nj)
                                  + (1 - y_nj) log(1 - s(x_nj))]

    ``y_nj = 1`` iff class ``j`` occurs in image ``n`` (``ignore_index`` pixels
    excluded). An image whose map is entirely ``ignore_index`` gets the
    all-absent target (all ``y_nj = 0``), so the loss stays finite and pushes
    every presence logit down, as mmseg's ``EncHead`` SE-loss target does.

    Eq. 8 sums over classes and averages over images (``class_reduction=
    'sum'``, default); ``'mean'`` also averages over classes, which equals
    ``CrossEntropyLoss(use_sigmoid=True)`` on multi-hot targets (EncNet).

    Any head may use it: ``loss(cls_score (B, K), seg_label (B, H, W),
    ignore_index=255)``, or pass precomputed ``(B, K)`` presence targets.

    Args:
        class_reduction (str): ``'sum'`` (Eq. 8) or ``'mean'`` over classes.
        reduction (str): ``'mean'``, ``'sum'`` or ``'none'`` over images.
        loss_weight (float): Multiplier (SANet: alpha = 0.2, Fig. 4).
        loss_name (str): Key of this loss in the log. Default: 'loss_cat'.
    """

    def __init__(self,
                 class_reduction: str = 'sum',
                 reduction: str = 'mean',
                 loss_weight: float = 1.0,
                 loss_name: str = 'loss_cat'):
        super().__init__()
        if class_reduction not in ('sum', 'mean'):
            raise ValueError("class_reduction must be 'sum' (Eq. 8) or "
                             f"'mean', got {class_reduction!r}")
        if reduction not in ('none', 'mean', 'sum'):
            raise ValueError("reduction must be 'none', 'mean' or 'sum', got "
                             f'{reduction!r}')
        self.class_reduction = class_reduction
        self.reduction = reduction
        self.loss_weight = loss_weight
        self._loss_name = loss_name

    def forward(self,
                cls_score: Tensor,
                label: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None,
                ignore_index: Optional[int] = 255,
                **kwargs) -> Tensor:
        """
        Args:
            cls_score (Tensor): Presence logits ``(B, K)``.
            label (Tensor): Label map ``(B, H, W)`` / ``(B, 1, H, W)``, or
                presence targets ``(B, K)`` in ``[0, 1]``.
            weight (Tensor, optional): Per-image ``(B,)`` or per-entry
                ``(B, K)`` weight.
            avg_factor (float, optional): Divide the summed per-image losses
                by this instead of ``B`` (only with ``reduction='mean'``).
            reduction_override (str, optional): Overrides ``reduction``.
            ignore_index (int, optional): Label value to skip. Default: 255.
        """
        if cls_score.dim() != 2:
            raise ValueError('cls_score must be (B, num_classes), got shape '
                             f'{tuple(cls_score.shape)}')
        reduction = reduction_override or self.reduction
        if label.dim() == 2:
            if label.shape != cls_score.shape:
                raise ValueError(
                    f'presence targets {tuple(label.shape)} must match '
                    f'cls_score {tuple(cls_score.shape)}')
            target = label.to(cls_score.dtype)
        else:
            target = presence_targets(label, cls_score.size(1),
                                      ignore_index).to(cls_score.dtype)
        loss = F.binary_cross_entropy_with_logits(
            cls_score, target, reduction='none')
        if weight is not None:
            loss = loss * (weight.view(-1, 1) if weight.dim() == 1 else weight)
        loss = loss.sum(1) if self.class_reduction == 'sum' else loss.mean(1)
        if reduction == 'mean':
            loss = loss.sum() / avg_factor if avg_factor else loss.mean()
        elif reduction == 'sum':
            loss = loss.sum()
        return self.loss_weight * loss

    @property
    def loss_name(self) -> str:
        """Log key; must start with ``loss_`` to enter the total loss."""
        return self._loss_name
