"""Camera paths for novel views, and the times they are rendered at.

A path is a list of OpenCV cameras (``K`` [F, 3, 3], ``w2c`` [F, 4, 4], conventions in
:mod:`dynrec.geometry.camera`) in the reconstruction's world. Generated paths (orbit,
spiral, dolly) look at a ``centre`` (the foreground) from the training cameras' distance,
with the training cameras' mean up direction and focal length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dynrec.errors import DynrecError


def parse_times(spec: str, T: int) -> list[int]:
    """Frame indices of ``--time``: ``all`` (0..T-1), ``t`` (one frame, e.g. frozen time),
    ``a:b`` (a to b, both included); negative values count from the end."""
    spec = spec.strip().lower()
    if spec == "all":
        return list(range(T))

    def one(text: str) -> int:
        try:
            t = int(text)
        except ValueError:
            raise DynrecError(f"--time must be 'all', a frame T or a range A:B, got '{spec}'") from None
        t = t + T if t < 0 else t
        if not 0 <= t < T:
            raise DynrecError(f"--time {spec}: frame {text} is outside the video, which has frames 0..{T - 1}")
        return t

    if ":" in spec:
        a, _, b = spec.partition(":")
        lo, hi = one(a or "0"), one(b or str(T - 1))
        if hi < lo:
            raise DynrecError(f"--time {spec}: the range ends before it starts (frames 0..{T - 1})")
        return list(range(lo, hi + 1))
    return [one(spec)]


@dataclass
class CameraPath:
    """``K`` [F, 3, 3], ``w2c`` [F, 4, 4] OpenCV cameras, ``width`` x ``height`` pixels;
    ``times`` [F] frame indices when the path fixes them (a camera file with ``time``
    fields), else None."""

    K: np.ndarray
    w2c: np.ndarray
    width: int
    height: int
    times: list[int] | None = None

    def __len__(self) -> int:
        return len(self.w2c)
