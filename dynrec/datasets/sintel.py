"""MPI Sintel (Butler et al. 2012) with its depth / camera data, as read by the dataset's SDK
``sintel_io.py`` (sintel.is.tue.mpg.de/depth; the same ``cam_read`` / ``depth_read`` are copied
into MonST3R's and CasualSAM's Sintel loaders).

Layout (``SRC`` is the ``training`` folder, ``--scene`` the sequence)::

    final/<seq>/frame_0001.png        (or clean/, --resolution clean)
    depth/<seq>/frame_0001.dpt        float32 tag 202021.25, int32 width, height, float32 depth [H, W]
    camdata_left/<seq>/frame_0001.cam float32 tag, float64 M [3, 3], float64 N [3, 4]

Conventions: ``x = M N X`` (the SDK's docstring), so ``N`` is the world-to-camera matrix of a
camera with positive depth along z and image y down, i.e. OpenCV axes: ``w2c = [N; 0 0 0 1]``.
``M``'s principal point is at ((W - 1) / 2, (H - 1) / 2) (pixel centres at integers), so
``cx + 0.5``, ``cy + 0.5`` give ours. Depth is z-depth in scene units; non-finite values
become 0 (unknown). Optical flow (``flow/``) is not imported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dynrec.artifacts import Cameras, Frames
from dynrec.datasets.io import listing, need, per_frame_files, read_sequence
from dynrec.datasets.scene import ImportedScene
from dynrec.errors import DynrecError

FORMAT = "sintel"
TAG_FLOAT = 202021.25
PASSES = ("final", "clean")


def _tag(path: Path, data: bytes) -> None:
    if len(data) < 4 or np.frombuffer(data[:4], np.float32)[0] != np.float32(TAG_FLOAT):
        raise DynrecError(f"{path}: not a Sintel file (first 4 bytes must be the float {TAG_FLOAT})")


def read_cam(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A ``.cam`` file -> (M [3, 3], N [3, 4]) as the SDK's ``cam_read``."""
    data = path.read_bytes()
    _tag(path, data)
    if len(data) < 4 + 21 * 8:
        raise DynrecError(f"{path}: truncated ({len(data)} bytes, a .cam file has {4 + 21 * 8})")
    vals = np.frombuffer(data[4:4 + 21 * 8], np.float64)
    return vals[:9].reshape(3, 3).copy(), vals[9:].reshape(3, 4).copy()


def read_dpt(path: Path) -> np.ndarray:
    """A ``.dpt`` file -> depth [H, W] float32 as the SDK's ``depth_read``."""
    data = path.read_bytes()
    _tag(path, data)
    if len(data) < 12:
        raise DynrecError(f"{path}: truncated ({len(data)} bytes, no width and height)")
    w, h = (int(v) for v in np.frombuffer(data[4:12], np.int32))
    depth = np.frombuffer(data[12:], np.float32)
    if w <= 0 or h <= 0 or depth.size != w * h:
        raise DynrecError(f"{path}: header says {w}x{h} but holds {depth.size} values")
    return depth.reshape(h, w).copy()


def write_cam(path: Path, M: np.ndarray, N: np.ndarray) -> None:
    """The inverse of :func:`read_cam` (the SDK's ``cam_write``), for tests and conversions."""
    path.write_bytes(np.float32(TAG_FLOAT).tobytes() + np.asarray(M, np.float64).tobytes()
                     + np.asarray(N, np.float64).tobytes())


def write_dpt(path: Path, depth: np.ndarray) -> None:
    """The inverse of :func:`read_dpt` (the SDK's ``depth_write``)."""
    h, w = depth.shape
    path.write_bytes(np.float32(TAG_FLOAT).tobytes() + np.array([w, h], np.int32).tobytes()
                     + np.asarray(depth, np.float32).tobytes())


def _all_or_none(folder: Path, frames: list[Path], suffix: str, frames_folder: Path, what: str,
                 missing: list[str]) -> list[Path] | None:
    """``folder/<frame><suffix>`` of every frame; None (and noted in ``missing``) when none is there.

    Raises:
        DynrecError: some frames have one and others not.
    """
    paths, absent = per_frame_files(folder, frames, suffix)
    if len(absent) == len(frames):
        missing.append(f"{what}: no {folder}")
        return None
    if absent:
        raise DynrecError(f"{folder}: {len(absent)} of {len(frames)} frames have no {suffix} file ({listing(absent)}); "
                          f"the frames ({frames_folder}) and {what} must match")
    return paths


def convert(src: Path, *, resolution: str | None = None, scene: str | None = None) -> ImportedScene:
    """Read sequence ``scene`` of the Sintel ``training`` folder ``src`` (pass ``final`` or
    ``clean`` given as ``resolution``)."""
    pass_ = resolution or "final"
    if pass_ not in PASSES:
        raise DynrecError(f"sintel: the render pass must be one of {', '.join(PASSES)}, got {pass_!r}")
    images_root = need(src / pass_, "Sintel", f"{pass_}/<sequence>/frame_0001.png")
    folder, files, images = read_sequence(images_root, scene, FORMAT, "frame_*.png", "frame_0001.png ...")
    T, H, W = images.shape[:3]
    missing: list[str] = []
    cameras: Cameras | None = None
    depth: np.ndarray | None = None
    cam_dir, d_dir = src / "camdata_left" / scene, src / "depth" / scene
    if (cams := _all_or_none(cam_dir, files, ".cam", folder, "cameras", missing)) is not None:
        Ks, w2cs = [], []
        for p in cams:
            M, N = read_cam(p)
            K = M.copy()
            K[0, 2] += 0.5
            K[1, 2] += 0.5
            Ks.append(K)
            w2cs.append(np.vstack([N, [0.0, 0.0, 0.0, 1.0]]))
        cameras = Cameras(np.stack(Ks), np.stack(w2cs), W, H, "gt")
    if (dpts := _all_or_none(d_dir, files, ".dpt", folder, "depth", missing)) is not None:
        depth = np.stack([read_dpt(p) for p in dpts])
        if depth.shape != (T, H, W):
            raise DynrecError(f"{d_dir}: depth is {depth.shape[2]}x{depth.shape[1]}, the frames {W}x{H}")
        depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)
    frames = Frames(images, 24.0, np.arange(T), f"sintel {src} {pass_}/{scene}")
    info = {"resolution": pass_, "source": str(src), "units": "scene units (Blender)"}
    return ImportedScene(FORMAT, scene, src.name, frames, cameras, depth, info=info, missing=missing)
