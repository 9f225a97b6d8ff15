"""Dense optical flow (OpenCV's DIS), shared by the offline tracker and the offline masks."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np


def dense_flow(frames: np.ndarray) -> Callable[[int, int], np.ndarray]:
    """``flow(s, t)`` -> [H, W, 2] DIS optical flow from frame s to frame t of ``frames``
    [T, H, W, 3] uint8 RGB (pixels: pixel x of frame s lies at x + flow in frame t); the last
    pair asked for is cached.

    OpenCV's DIS (medium preset) is coarse to fine over the whole image, so it follows
    displacements of many pixels that a patch alignment started at the old position misses.
    """
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    cache: dict[tuple[int, int], np.ndarray] = {}

    def flow(s: int, t: int) -> np.ndarray:
        if (s, t) not in cache:
            cache.clear()  # callers ask for each pair once, in order
            cache[s, t] = dis.calc(grey[s], grey[t], None)
        return cache[s, t]

    return flow
