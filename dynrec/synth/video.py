"""Writing the training view as an H.264 video with PyAV."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_video(path: Path, images: np.ndarray, fps: float, crf: int = 10) -> None:
    """Encode ``images`` [T, H, W, 3] uint8 (H, W even) as libx264 yuv420p MP4 at ``fps``."""
    _, H, W, _ = images.shape
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium"}
        for img in images:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def read_video(path: Path) -> np.ndarray:
    """Decode every frame of a video to RGB, [T, H, W, 3] uint8."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
