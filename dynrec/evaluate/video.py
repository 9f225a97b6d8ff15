"""The side-by-side video: input | render | depth (colour-mapped) | held-out render.

Small frames are enlarged by an integer factor (nearest neighbour, so pixels stay visible)
until a panel is at least ``MIN_PANEL_HEIGHT`` pixels high; each panel is labelled. H.264
(libx264, yuv420p) when PyAV has it, MPEG-4 Part 2 otherwise.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

MIN_PANEL_HEIGHT = 240


def colorize_depth(depth: np.ndarray) -> np.ndarray:
    """Z-depth [T, H, W] (0 = unknown) -> RGB uint8 [T, H, W, 3] (turbo, near = red);
    one range (2nd-98th percentile of known depth) for the whole video, unknown = black."""
    known = depth > 0
    if not known.any():
        return np.zeros((*depth.shape, 3), dtype=np.uint8)
    lo, hi = np.percentile(depth[known], [2, 98])
    scaled = 1.0 - np.clip((depth - lo) / max(hi - lo, 1e-9), 0, 1)
    levels = (scaled * 255).round().astype(np.uint8)
    rgb = np.stack([cv2.cvtColor(cv2.applyColorMap(m, cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB) for m in levels])
    rgb[~known] = 0
    return rgb


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[T, H, W, 3] float in [0, 1] (or uint8) -> uint8."""
    if images.dtype == np.uint8:
        return images
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8)


def _label(img: np.ndarray, text: str) -> np.ndarray:
    scale = max(img.shape[0] / 480, 0.35)
    thick = max(round(scale * 2), 1)
    org = (int(6 * scale) + 3, int(30 * scale) + 6)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return img


def pad_even(frames: np.ndarray) -> np.ndarray:
    """Pad [T, H, W, 3] with black at the bottom / right to even H and W (yuv420p needs them)."""
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0))) if pad_h or pad_w else frames


def compose(panels: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """Labelled panels ``(label, [T, H, W, 3] uint8)`` side by side -> [T, H', W', 3] uint8,
    enlarged by an integer factor and padded to even sizes (yuv420p)."""
    T, H, W, _ = panels[0][1].shape
    for label, p in panels:
        if p.shape != (T, H, W, 3):
            raise ValueError(f"panel '{label}' has shape {p.shape}, expected {(T, H, W, 3)}")
    s = max(1, math.ceil(MIN_PANEL_HEIGHT / H))
    frames = []
    for t in range(T):
        row = [_label(cv2.resize(p[t], (W * s, H * s), interpolation=cv2.INTER_NEAREST), label)
               for label, p in panels]
        frames.append(np.concatenate(row, axis=1))
    return pad_even(np.stack(frames))


def write_video(path: Path, frames: np.ndarray, fps: float) -> str:
    """Encode [T, H, W, 3] uint8 (even H, W) to ``path``; returns the codec used."""
    rate = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(10)
    last: Exception | None = None
    for codec, options in (("libx264", {"crf": "18"}), ("mpeg4", {"qscale": "3"})):
        try:
            with av.open(str(path), "w") as container:
                stream = container.add_stream(codec, rate=rate)
                stream.width, stream.height = frames.shape[2], frames.shape[1]
                stream.pix_fmt = "yuv420p"
                stream.options = options
                for img in frames:
                    for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                        container.mux(packet)
                for packet in stream.encode():
                    container.mux(packet)
            return codec
        except (av.error.FFmpegError, ValueError) as exc:  # encoder not built into this PyAV
            path.unlink(missing_ok=True)
            last = exc
    raise RuntimeError(f"cannot encode {path}: {last}")


def side_by_side(path: Path, inputs: np.ndarray, render: np.ndarray, depth: np.ndarray | None,
                 heldout: tuple[str, np.ndarray] | None, fps: float) -> str:
    """Write the comparison video: input frames, renders at the training cameras, rendered
    depth and a held-out render (each [T, H, W, ...]; depth / held-out may be None)."""
    panels = [("input", to_uint8(inputs)), ("render", to_uint8(render))]
    if depth is not None:
        panels.append(("depth", colorize_depth(depth)))
    if heldout is not None:
        panels.append((f"held-out {heldout[0]}", to_uint8(heldout[1])))
    return write_video(path, compose(panels), fps)
