"""Importing depth maps from a folder (the ``offline`` depth backend).

A folder holds one map per frame of the input video, in name order: ``.npy`` arrays [H, W]
(float or integer) or 16-bit ``.png`` images (e.g. millimetres, as RGB-D cameras and many
datasets write them). Values are multiplied by ``scale``; 0, negative and non-finite values
become 0 (unknown). When the folder has a map for every input frame, the frames the
``frames`` stage kept are picked by their source index; a folder with exactly one map per
kept frame is taken as is. Maps are resized to the kept frame size by nearest neighbour.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dynrec.artifacts.types import resize_nearest
from dynrec.errors import DynrecError

SUFFIXES = (".npy", ".png")


def depth_files(folder: Path) -> list[Path]:
    """The depth maps of ``folder`` in name order (``.npy`` or ``.png``, not mixed)."""
    if not folder.is_dir():
        raise DynrecError(f"depth: folder {folder} does not exist (--set depth.folder=DIR)")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)
    if not files:
        raise DynrecError(f"depth: {folder} has no depth maps (one .npy or 16-bit .png per frame)")
    kinds = {p.suffix.lower() for p in files}
    if len(kinds) > 1:
        raise DynrecError(f"depth: {folder} mixes .npy and .png maps; keep one kind")
    return files


def read_map(path: Path) -> np.ndarray:
    """One depth map [H, W] float64 as stored (before ``scale``)."""
    try:
        if path.suffix.lower() == ".npy":
            data = np.load(path, allow_pickle=False)
        else:
            with Image.open(path) as im:
                if im.mode not in ("I;16", "I;16B", "I;16L", "I", "L"):
                    raise DynrecError(f"depth: {path} is a {im.mode} image; expected a 16-bit grey PNG")
                data = np.asarray(im)
    except (OSError, ValueError) as exc:
        raise DynrecError(f"depth: {path} is not a readable depth map ({exc})") from exc
    data = np.squeeze(np.asarray(data))
    if data.ndim != 2 or data.dtype.kind not in "fiu":
        raise DynrecError(f"depth: {path} holds a {data.dtype} array of shape {data.shape}; expected [H, W] numbers")
    return data.astype(np.float64)


def import_depth(folder: Path, source_index: np.ndarray, width: int, height: int, scale: float = 1.0) -> np.ndarray:
    """Depth [T, H, W] float32 for the kept frames (``source_index`` [T]) at ``width`` x ``height``."""
    files = depth_files(folder)
    T = len(source_index)
    if len(files) > int(source_index.max(initial=0)):
        chosen = [files[int(i)] for i in source_index]
    elif len(files) == T:
        chosen = files
    else:
        raise DynrecError(
            f"depth: {folder} has {len(files)} maps but the video has at least {int(source_index.max()) + 1} "
            f"frames and {T} were kept; give one map per input frame (or per kept frame)")
    maps = [read_map(p) for p in chosen]
    first = maps[0].shape
    for p, m in zip(chosen, maps):
        if m.shape != first:
            raise DynrecError(f"depth: {p} is {m.shape[1]}x{m.shape[0]} but {chosen[0].name} is {first[1]}x{first[0]}")
    if abs(first[1] / first[0] - width / height) > 0.02:
        raise DynrecError(f"depth: maps are {first[1]}x{first[0]} but the frames are {width}x{height} (another aspect ratio)")
    depth = np.stack(maps) * scale
    depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)
    if not (depth > 0).any():
        raise DynrecError(f"depth: every map in {folder} is 0 / unknown")
    return resize_nearest(depth, width, height)
