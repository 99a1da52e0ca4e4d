# Copyright (c) mmseg_ext contributors. All rights reserved.
"""Image-level categorical loss, SANet Eq. 8."""
import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS
from torch import Tensor

TARGETS = ('frequency', 'presence')
REDUCTIONS = ('none', 'mean', 'sum')


def _flat_labels(seg_label: Tensor, num_classes: int,
                 ignore_index: Optional[int]) -> Tensor:
    """``(B, H*W)`` labels with every pixel that is ``ignore_index`` or
    outside ``[0, num_classes)`` moved to the dummy class ``num_classes``."""
    if seg_label.dim() == 4 and seg_label.size(1) == 1:
        seg_label = seg_label[:, 0]
    if seg_label.dim() != 3:
        raise ValueError('seg_label must be (B, H, W) or (B, 1, H, W), got '
                         f'shape {tuple(seg_label.shape)}')
    if seg_label.is_floating_point() or seg_label.is_complex():
        raise ValueError(
            'seg_label must hold integer class ids (torch.long, as mmseg\'s '
            f'gt_sem_seg), got a {seg_label.dtype} map: converting it would '
            'truncate a value such as 1.7 to class 1. Pass label.long() if '
            'its values are class ids, or precomputed (B, num_classes) '
            'targets in [0, 1]')
    label = seg_label.long().flatten(1)
    valid = (label >= 0) & (label < num_classes)
    if ignore_index is not None:
        valid &= label != ignore_index
    return torch.where(valid, label, torch.full_like(label, num_classes))


def class_histogram(seg_label: Tensor, num_classes: int,
                    ignore_index: Optional[int] = 255) -> Tensor:
    """Per-image pixel counts ``(B, num_classes)`` (int64) of each class;
    ``ignore_index`` and out-of-range pixels are not counted. Deterministic
    on every device (integer ``bincount``, no float atomics)."""
    label = _flat_labels(seg_label, num_classes, ignore_index)
    b = label.size(0)
    offset = torch.arange(b, device=label.device).view(-1, 1) * (
        num_classes + 1)
    counts = torch.bincount((label + offset).flatten(),
                            minlength=b * (num_classes + 1))
    return counts.view(b, num_classes + 1)[:, :num_classes]


def presence_targets(seg_label: Tensor, num_classes: int,
                     ignore_index: Optional[int] = 255,
                     dtype: torch.dtype = torch.float32) -> Tensor:
    """Multi-hot ``(B, num_classes)`` targets: 1 where a class occurs in the
    label map (EncNet's SE-loss target). Pixels equal to ``ignore_index`` or
    outside ``[0, num_classes)`` are skipped, so an all-ignore map gives an
    all-zero (all classes absent) row.

    Args:
        seg_label (Tensor): Label map ``(B, H, W)`` or ``(B, 1, H, W)``.
        num_classes (int): Number of classes.
        ignore_index (int, optional): Label value to skip.
        dtype (torch.dtype): Of the result. Default: float32.
    """
    hist = class_histogram(seg_label, num_classes, ignore_index)
    return (hist > 0).to(dtype)


def frequency_targets(seg_label: Tensor, num_classes: int,
                      ignore_index: Optional[int] = 255,
                      dtype: torch.dtype = torch.float32) -> Tensor:
    """Soft ``(B, num_classes)`` targets: each class's share of the image's
    non-ignored pixels, i.e. the global average pool of the one-hot ground
    truth (SANet §3.3: "y_nj is the average pooled results of Y^den"). Rows
    sum to 1; an all-ignore map gives an all-zero row. Arguments as
    :func:`presence_targets`."""
    hist = class_histogram(seg_label, num_classes, ignore_index)
    return hist.to(dtype) / hist.sum(1, keepdim=True).clamp(min=1).to(dtype)


@MODELS.register_module()
class CategoricalLoss(nn.Module):
    """Binary cross-entropy between per-class image-level logits and
    per-class targets computed from the label map (SANet Eq. 8, ``L_cat``)::

        L_cat = -1/N sum_n sum_j [y_nj log s(x_nj)
                                  + (1 - y_nj) log(1 - s(x_nj))]

    What ``y_nj`` is, is a reading of the paper (``target``):

    * ``'frequency'`` (default; §3.3: "y_nj is the average pooled results of
      Y^den"): the average-pooled one-hot ground truth, i.e. the fraction of
      the image's non-ignored pixels that belong to class ``j``, a soft target
      in ``[0, 1]``;
    * ``'presence'``: ``y_nj = 1`` iff class ``j`` occurs in image ``n``
      (EncNet's SE-loss target).

    ``ignore_index`` pixels are excluded from both. An image whose map is
    entirely ``ignore_index`` gets the all-zero target, so the loss stays
    finite and pushes every logit down, as mmseg's ``EncHead`` SE loss does.

    Eq. 8 sums over classes and averages over images (``class_reduction=
    'sum'``, default); ``'mean'`` also averages over classes, which with
    ``target='presence'`` equals ``CrossEntropyLoss(use_sigmoid=True)`` on
    multi-hot targets (EncNet).

    Any head may use it: ``loss(cls_score (B, K), seg_label (B, H, W),
    ignore_index=255)``, or pass precomputed ``(B, K)`` targets in [0, 1].

    Args:
        target (str): ``'frequency'`` (paper text) or ``'presence'``.
        class_reduction (str): ``'sum'`` (Eq. 8) or ``'mean'`` over classes.
        reduction (str): ``'mean'``, ``'sum'`` or ``'none'`` over images.
        loss_weight (float): Multiplier (SANet: alpha = 0.2, Fig. 4).
        loss_name (str): Key of this loss in the log. Default: 'loss_cat'.
    """

    def __init__(self,
                 target: str = 'frequency',
                 class_reduction: str = 'sum',
                 reduction: str = 'mean',
                 loss_weight: float = 1.0,
                 loss_name: str = 'loss_cat'):
        super().__init__()
        if target not in TARGETS:
            raise ValueError(f"target must be 'frequency' (SANet §3.3) or "
                             f"'presence' (EncNet), got {target!r}")
        if class_reduction not in ('sum', 'mean'):
            raise ValueError("class_reduction must be 'sum' (Eq. 8) or "
                             f"'mean', got {class_reduction!r}")
        self._check_reduction('reduction', reduction)
        if not loss_name.startswith('loss_'):
            raise ValueError('loss_name must start with "loss_" to be added '
                             f'to the total loss, got {loss_name!r}')
        self.target = target
        self.class_reduction = class_reduction
        self.reduction = reduction
        self.loss_weight = loss_weight
        self._loss_name = loss_name

    @staticmethod
    def _check_reduction(name: str, value) -> None:
        if value not in REDUCTIONS:
            raise ValueError(f"{name} must be 'none', 'mean' or 'sum', got "
                             f'{value!r}')

    def targets(self, label: Tensor, num_classes: int,
                ignore_index: Optional[int] = 255,
                dtype: torch.dtype = torch.float32) -> Tensor:
        """``(B, num_classes)`` targets of ``self.target``."""
        fn = frequency_targets if self.target == 'frequency' else \
            presence_targets
        return fn(label, num_classes, ignore_index, dtype)

    def forward(self,
                cls_score: Tensor,
                label: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None,
                ignore_index: Optional[int] = 255) -> Tensor:
        """
        Args:
            cls_score (Tensor): Image-level logits ``(B, K)``.
            label (Tensor): Label map ``(B, H, W)`` / ``(B, 1, H, W)``, or
                precomputed targets ``(B, K)`` in ``[0, 1]``.
            weight (Tensor, optional): Per-image ``(B,)`` or per-entry
                ``(B, K)`` weight.
            avg_factor (float, optional): Divide the summed per-image losses
                by this (> 0) instead of ``B``. Only with ``reduction='mean'``
                (as mmseg's losses); 0, a negative or a non-finite value, or
                another reduction, is a ValueError.
            reduction_override (str, optional): Overrides ``reduction``.
            ignore_index (int, optional): Label value to skip. Default: 255.
        """
        if cls_score.dim() != 2:
            raise ValueError('cls_score must be (B, num_classes), got shape '
                             f'{tuple(cls_score.shape)}')
        if reduction_override is not None:
            self._check_reduction('reduction_override', reduction_override)
        reduction = reduction_override or self.reduction
        if avg_factor is not None:
            if reduction != 'mean':
                raise ValueError(
                    f"avg_factor divides the loss of reduction='mean' only, "
                    f"got reduction={reduction!r}; drop avg_factor or use 'mean'")
            if not math.isfinite(float(avg_factor)) or float(avg_factor) <= 0:
                raise ValueError(
                    'avg_factor must be > 0 (the count the summed per-image '
                    f'losses are divided by), got {avg_factor}; pass None to '
                    'average over the images')
        if label.dim() == 2:
            if label.shape != cls_score.shape:
                raise ValueError(
                    f'precomputed targets {tuple(label.shape)} must match '
                    f'cls_score {tuple(cls_score.shape)}')
            if label.numel() and not bool(((label >= 0) & (label <= 1)).all()):
                raise ValueError(
                    'precomputed targets must lie in [0, 1], got values in '
                    f'[{label.min().item()}, {label.max().item()}]; pass the '
                    '(B, H, W) label map instead to have ignore_index pixels '
                    'excluded')
            target = label.to(cls_score.dtype)
        else:
            target = self.targets(label, cls_score.size(1), ignore_index,
                                  cls_score.dtype)
        loss = F.binary_cross_entropy_with_logits(
            cls_score, target, reduction='none')
        if weight is not None:
            loss = loss * (weight.view(-1, 1) if weight.dim() == 1 else weight)
        loss = loss.sum(1) if self.class_reduction == 'sum' else loss.mean(1)
        if reduction == 'mean':
            loss = loss.sum() / avg_factor if avg_factor is not None else loss.mean()
        elif reduction == 'sum':
            loss = loss.sum()
        return self.loss_weight * loss

    @property
    def loss_name(self) -> str:
        """Log key; must start with ``loss_`` to enter the total loss."""
        return self._loss_name
