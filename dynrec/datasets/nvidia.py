"""The Nvidia Dynamic Scenes dataset (Yoon et al. 2020) in the layout NSFF released and DynIBaR
evaluates on (github.com/google/dynibar: ``eval_nvidia.py``; the NSFF data ``nvidia_data_full``).

Layout (``SRC`` is a scene folder, e.g. ``Balloon1-2``, or its ``dense/``)::

    dense/mv_images/<frame:05d>/cam%02d.jpg   the 12 rig cameras at every time (cam01 ... cam12)
    dense/mv_masks/<frame:05d>/cam%02d.png    the moving objects (optional; > 0 = dynamic)
    dense/poses_bounds.npy                    LLFF: one row of 17 per image of dense/images/, the
                                              first 12 rows being cam01 ... cam12 (DynIBaR renders
                                              ``cam%02d.jpg % (idx + 1)`` with pose row ``idx``)

Conventions: a row is ``[3x5 matrix, near, far]``; the 3x5 matrix is a camera-to-world pose whose
rotation columns are LLFF's (down, right, backwards) and whose last column is (H, W, focal) at the
poses' resolution. OpenCV axes (right, down, forward) are the columns (1, 0, −2). The focal length
is rescaled to the images' width; the principal point is the image centre in NeRF's ray convention
(pixel index i looks along (i − W/2) / f), i.e. ``cx = W/2 + 0.5`` in ours. The world is LLFF's
(COLMAP's, unknown scale), not recentred.

Training and test cameras: HiMoR (following Marbles) trains on "camera 4" and tests on "cameras 3, 5
and 6" without saying whether cameras are counted from 0 or 1; dynrec takes the files ``cam04.jpg``
and ``cam03``, ``cam05``, ``cam06`` (``--option train=4 --option test=3,5,6`` to change).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dynrec.artifacts import Cameras, Frames
from dynrec.artifacts.types import resize_nearest
from dynrec.datasets.io import listing, need, read_image_raw, read_rgb, resize_rgb
from dynrec.datasets.scene import HeldoutView, ImportedScene
from dynrec.errors import DynrecError

FORMAT = "nvidia"
RIG = 12
LLFF_TO_OPENCV = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])  # columns (down, right, back) -> (right, down, forward)


def llff_to_opencv(rows: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """``poses_bounds`` rows [N, 17] -> (K [N, 3, 3], w2c [N, 4, 4]) for images of ``width`` x ``height``."""
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != 17:
        raise DynrecError(f"poses_bounds must be [N, 17], got {rows.shape}")
    m = rows[:, :15].reshape(-1, 3, 5)
    c2w = np.tile(np.eye(4), (len(m), 1, 1))
    c2w[:, :3, :3] = m[:, :, :3] @ LLFF_TO_OPENCV
    c2w[:, :3, 3] = m[:, :, 3]
    h, w, f = m[:, 0, 4], m[:, 1, 4], m[:, 2, 4]
    focal = f * width / w
    K = np.zeros((len(m), 3, 3))
    K[:, 0, 0] = K[:, 1, 1] = focal
    K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = width / 2 + 0.5, height / 2 + 0.5, 1.0
    if np.any(np.abs(h / w - height / width) > 0.02):
        raise DynrecError(f"poses_bounds says {int(w[0])}x{int(h[0])} images, the images are {width}x{height}: "
                          "another aspect ratio")
    return K, np.linalg.inv(c2w)


def _cams(text: str, what: str) -> list[int]:
    try:
        cams = [int(c) for c in str(text).split(",") if c.strip()]
    except ValueError:
        raise DynrecError(f"nvidia: --option {what}= expects camera numbers 1-{RIG}, got {text!r}") from None
    bad = [c for c in cams if not 1 <= c <= RIG]
    if bad or not cams:
        raise DynrecError(f"nvidia: --option {what}= expects camera numbers 1-{RIG}, got {text!r}")
    return cams


def convert(src: Path, *, resolution: str | None = None, scene: str | None = None, train: str = "4",
            test: str = "3,5,6") -> ImportedScene:
    """Read the Nvidia scene ``src``: the video of rig camera ``train``, held-out cameras ``test``."""
    if resolution is not None:
        raise DynrecError("nvidia: the images come at one resolution; no --resolution")
    dense = src / "dense" if (src / "dense").is_dir() else src
    mv = need(dense / "mv_images", "Nvidia dynamic scenes (NSFF layout)", "dense/mv_images/<frame>/cam01.jpg ...")
    poses = np.load(need(dense / "poses_bounds.npy", "Nvidia dynamic scenes (NSFF layout)", "dense/poses_bounds.npy"))
    (train_cam,) = _cams(train, "train")[:1]
    test_cams = [c for c in _cams(test, "test") if c != train_cam]
    if len(poses) < RIG:
        raise DynrecError(f"{dense / 'poses_bounds.npy'}: {len(poses)} rows; the first {RIG} are the rig's cameras")
    times = sorted(p.name for p in mv.iterdir() if p.is_dir())
    for cam in [train_cam, *test_cams]:
        absent = [t for t in times if not (mv / t / f"cam{cam:02d}.jpg").is_file()]
        if absent:
            raise DynrecError(f"{mv}: {len(absent)} of {len(times)} times have no cam{cam:02d}.jpg ({listing(absent)})")
    if len(times) < 2:
        raise DynrecError(f"{mv}: {len(times)} time(s); expected <frame:05d>/cam01.jpg ... folders")
    images = np.stack([read_rgb(mv / t / f"cam{train_cam:02d}.jpg") for t in times])
    T, H, W = images.shape[:3]
    K, w2c = llff_to_opencv(poses[:RIG], W, H)
    missing: list[str] = []

    def masks_of(cam: int) -> np.ndarray | None:
        paths = [dense / "mv_masks" / t / f"cam{cam:02d}.png" for t in times]
        if not all(p.is_file() for p in paths):
            return None
        out = []
        for p in paths:
            m = read_image_raw(p)
            m = m[..., 0] if m.ndim == 3 else m
            out.append(m > 0 if m.shape == (H, W) else resize_nearest((m > 0)[None].astype(np.uint8), W, H)[0] > 0)
        return np.stack(out)

    masks = masks_of(train_cam)
    if masks is None:
        missing.append(f"masks: no dense/mv_masks/<frame>/cam{train_cam:02d}.png for every time")
    heldout = {}
    for cam in test_cams:
        imgs = np.stack([resize_rgb(read_rgb(mv / t / f"cam{cam:02d}.jpg"), W, H) for t in times])
        cams = Cameras(np.repeat(K[cam - 1][None], T, 0), np.repeat(w2c[cam - 1][None], T, 0), W, H, "gt")
        heldout[f"cam{cam:02d}"] = HeldoutView(Frames(imgs, 30.0, np.arange(T), f"nvidia {src} cam{cam:02d}"), cams,
                                               masks=masks_of(cam))
    cameras = Cameras(np.repeat(K[train_cam - 1][None], T, 0), np.repeat(w2c[train_cam - 1][None], T, 0), W, H, "gt")
    missing.append("fps: not in the data, 30 assumed")
    info = {"source": str(src), "train_camera": f"cam{train_cam:02d}", "test_cameras": [f"cam{c:02d}" for c in test_cams],
            "units": "LLFF (COLMAP) world units", "times": times}
    frames = Frames(images, 30.0, np.arange(T), f"nvidia {src} cam{train_cam:02d}")
    name = scene or (src.name if src.name != "dense" else src.parent.name)
    return ImportedScene(FORMAT, name, f"train cam{train_cam:02d}", frames, cameras, None, masks, heldout=heldout,
                         info=info, missing=missing)
