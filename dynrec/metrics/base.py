"""Shared pieces of the metrics: the registry entry type, the "not computable" error and
input conversion.

Conventions of every metric in :mod:`dynrec.metrics`:

* images are float in [0, 1], channels last: ``[H, W, 3]`` or ``[B, H, W, 3]``;
  numpy arrays and torch tensors are both accepted;
* masks are ``[H, W]`` or ``[B, H, W]``, bool or float in [0, 1] (1 = evaluate here);
* videos are ``[T, H, W, 3]`` (one video) in [0, 1];
* point tracks are ``[N, T, D]`` (N points, T frames, D = 2 pixels or 3 scene units) with
  a visibility / validity mask ``[N, T]``, as :class:`dynrec.artifacts.Tracks`;
* camera poses are ``[T, 4, 4]`` camera-to-world (OpenCV axes) unless a function says
  otherwise.

Functions that reduce over frames take ``reduction="mean"`` (a python ``float``) or
``reduction="none"`` (a float64 numpy array with one value per frame, for plots).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from dynrec.errors import DynrecError

Reduction = Literal["mean", "none"]
ArrayLike = np.ndarray | torch.Tensor


class MetricNotComputable(DynrecError):
    """A metric cannot be computed from what is available (empty mask, too few frames,
    degenerate trajectory, missing weights...). ``evaluate`` reports it as
    ``not computed: <reason>`` and carries on with the other metrics."""

    def __init__(self, metric: str, reason: str):
        self.metric = metric
        self.reason = reason
        super().__init__(f"{metric}: {reason}")


@dataclass(frozen=True)
class MetricInfo:
    """A registry entry: what ``evaluate`` needs to know about one metric.

    ``needs`` lists what must be available to compute it (see ``NEEDS`` in
    :mod:`dynrec.metrics`): data such as ``"gt_heldout"`` or ``"gt_cameras"`` and weights
    such as ``"weights:lpips"``.
    """

    name: str
    unit: str
    higher_is_better: bool
    needs: tuple[str, ...] = field(default_factory=tuple)
    description: str = ""


def to_tensor(
    x: ArrayLike, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> torch.Tensor:
    """Convert an array or tensor to a detached torch tensor of ``dtype`` (on ``device``)."""
    t = x.detach() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    return t.to(dtype=dtype, device=device)


def to_numpy(x: ArrayLike, dtype: type = np.float64) -> np.ndarray:
    """Convert an array or tensor to a numpy array of ``dtype``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def as_image_batch(
    images: ArrayLike,
    metric: str,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``[H, W, 3]`` or ``[B, H, W, 3]`` images in [0, 1] -> ``[B, 3, H, W]`` tensor.

    Grey images ``[..., H, W, 1]`` are repeated to three channels.
    """
    t = to_tensor(images, dtype, device)
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4 or t.shape[-1] not in (1, 3):
        raise ValueError(
            f"{metric}: images must be [H, W, 3] or [B, H, W, 3], got {tuple(t.shape)}"
        )
    if t.shape[-1] == 1:
        t = t.expand(*t.shape[:-1], 3)
    return t.permute(0, 3, 1, 2).contiguous()


def as_mask_batch(
    mask: ArrayLike | None,
    batch: int,
    height: int,
    width: int,
    metric: str,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``None``, ``[H, W]``, ``[B, H, W]`` or ``[..., 1]`` masks -> ``[B, 1, H, W]`` float."""
    if mask is None:
        return torch.ones(batch, 1, height, width, dtype=dtype, device=device)
    m = to_tensor(mask, dtype, device)
    if m.ndim >= 3 and m.shape[-1] == 1 and m.shape[-2] == width:
        m = m[..., 0]
    if m.ndim == 2:
        m = m[None].expand(batch, height, width)
    if tuple(m.shape) != (batch, height, width):
        raise ValueError(
            f"{metric}: mask must be [H, W] or [B, H, W] matching the images "
            f"({batch}, {height}, {width}), got {tuple(m.shape)}"
        )
    return m[:, None].contiguous()


def reduce_frames(values: np.ndarray, reduction: Reduction, metric: str) -> float | np.ndarray:
    """Reduce per-frame values: ``"mean"`` ignores NaN frames (undefined there), ``"none"``
    returns them. Raises :class:`MetricNotComputable` when every frame is undefined."""
    values = np.asarray(values, dtype=np.float64)
    if reduction == "none":
        return values
    if reduction != "mean":
        raise ValueError(f"{metric}: reduction must be 'mean' or 'none', got {reduction!r}")
    finite = ~np.isnan(values)
    if not finite.any():
        raise MetricNotComputable(
            metric, "undefined in every frame (empty mask or no valid points)"
        )
    return float(values[finite].mean())
