"""Which tracks belong to the foreground masks (shared by masks, keypoints and lift)."""

from __future__ import annotations

import numpy as np


def in_mask(xy: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Whether each sample ``xy`` [N, T, 2] (pixels, centres at +0.5) falls on a foreground
    pixel of ``masks`` [T, H, W] -> [N, T]."""
    T, H, W = masks.shape
    px = np.clip(np.floor(xy).astype(int), 0, [W - 1, H - 1])
    return masks[np.arange(T)[None, :], px[..., 1], px[..., 0]]


def foreground_tracks(xy: np.ndarray, visible: np.ndarray, masks: np.ndarray, fraction: float) -> np.ndarray:
    """Indices [P] of the tracks (``xy`` [N, T, 2], ``visible`` [N, T]) whose visible samples
    lie on ``masks`` [T, H, W] at least ``fraction`` of the time (and at least once)."""
    on = in_mask(xy, masks) & visible
    share = on.sum(1) / np.maximum(visible.sum(1), 1)
    return np.flatnonzero((share >= fraction) & on.any(1))
