"""Box operations in plain torch: IoU and non-maximum suppression (no torchvision).

Boxes are ``(N, 4)`` tensors ``x0, y0, x1, y1`` in pixels, ``x1``/``y1`` exclusive.
"""

from __future__ import annotations

from typing import Any

__all__ = ["batched_nms", "box_iou", "nms"]


def box_iou(a: Any, b: Any) -> Any:
    """Pairwise intersection over union of two sets of boxes, ``(N, M)``.

    Examples
    --------
    >>> import torch
    >>> box_iou(torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[5.0, 0, 15, 10]])).item()
    0.3333333432674408
    """
    import torch

    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return inter / union.clamp(min=1e-12)


def nms(boxes: Any, scores: Any, iou_threshold: float = 0.5) -> Any:
    """Indices of the boxes kept by greedy non-maximum suppression, by decreasing score.

    A box is dropped when it overlaps a higher-scoring kept box with IoU above
    ``iou_threshold`` (same rule as ``torchvision.ops.nms``).

    Examples
    --------
    >>> import torch
    >>> b = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]])
    >>> nms(b, torch.tensor([0.9, 0.8, 0.7])).tolist()
    [0, 2]
    """
    import torch

    order = torch.argsort(scores, descending=True)
    if len(order) == 0:
        return order
    iou = box_iou(boxes[order], boxes[order])
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for i in range(len(order)):  # O(N^2) memory, fine for the few hundred boxes of an image
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return order[torch.tensor(keep, dtype=torch.long)]


def batched_nms(boxes: Any, scores: Any, classes: Any, iou_threshold: float = 0.5) -> Any:
    """:func:`nms` within each class: boxes of different classes never suppress each other.

    Examples
    --------
    >>> import torch
    >>> b = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11]])
    >>> batched_nms(b, torch.tensor([0.9, 0.8]), torch.tensor([0, 1])).tolist()
    [0, 1]
    """
    import torch

    if len(boxes) == 0:
        return torch.zeros(0, dtype=torch.long)
    # shift each class to its own region of the plane (the torchvision trick)
    offset = classes.to(boxes.dtype)[:, None] * (boxes.max() + 1)
    return nms(boxes + offset, scores, iou_threshold)
