"""TUM RGB-D (Sturm et al. 2012) and Bonn RGB-D Dynamic (Palazzolo et al. 2019) sequences.

Both use the TUM file formats (cvg.cit.tum.de/data/datasets/rgbd-dataset/file_formats and
the benchmark's ``associate.py`` / ``evaluate_ate.py``)::

    rgb.txt, depth.txt     "timestamp filename" lines ('#' comments)
    groundtruth.txt        "timestamp tx ty tz qx qy qz qw": the colour camera's optical centre
                           and orientation in the motion-capture world (camera-to-world; the
                           optical frame is OpenCV's: x right, y down, z forward)
    rgb/*.png              640x480 colour
    depth/*.png            16-bit, registered to the colour camera, 5000 units per metre, 0 = no data

Conversions (tested in tests/test_datasets.py):

* Association as ``associate.py``: each colour frame takes the nearest ground-truth pose and
  the nearest depth image within ``max_difference`` = 0.02 s; frames without a pose are dropped
  (as MonST3R's ``prepare_tum.py``, which associates colour and ground truth only), frames
  without depth keep a depth of 0 (the import says how many of each).
* Intrinsics are the published ROS calibrations (pixel centres at integer coordinates), so
  ``cx + 0.5``, ``cy + 0.5`` give ours. TUM freiburg1 / 2 images are distorted; the
  distortion is ignored, as the pose benchmarks (MonST3R, CasualSAM) do.
* Bonn's ground truth is the marker's pose; Bonn's ``compute_global_transformation.py``
  turns it into the camera's by ``T_ros @ T @ T_ros @ T_m`` (``T_ros`` swaps to ROS axes,
  ``T_m`` the marker-to-camera calibration; values as quoted by public Bonn loaders). ``T_m``'s
  3x3 block is a rotation times a uniform scale of 1.059; its nearest rotation (SVD) is used,
  so poses stay rigid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from dynrec.artifacts import Cameras, Frames
from dynrec.datasets.io import need, read_depth_png, read_rgb
from dynrec.datasets.scene import ImportedScene
from dynrec.errors import DynrecError
from dynrec.geometry.camera import intrinsics

DEPTH_SCALE = 5000.0
MAX_DIFFERENCE = 0.02

#: fx, fy, cx, cy (ROS convention) of the published calibrations.
CALIBRATION: dict[str, tuple[float, float, float, float]] = {
    "freiburg1": (517.3, 516.5, 318.6, 255.3),
    "freiburg2": (520.9, 521.0, 325.1, 249.7),
    "freiburg3": (535.4, 539.2, 320.1, 247.6),
    "bonn": (542.822841, 542.576870, 315.593520, 237.756098),
}

BONN_T_ROS = np.array([[-1.0, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])
BONN_T_M = np.array([[1.0157, 0.1828, -0.2389, 0.0113], [0.0009, -0.8431, -0.6413, -0.0098],
                     [-0.3009, 0.6147, -0.8085, 0.0111], [0, 0, 0, 1.0]])


def read_list(path: Path) -> list[tuple[float, list[str]]]:
    """``timestamp value...`` lines of a TUM text file, sorted by time ('#' lines skipped)."""
    if not path.is_file():
        raise DynrecError(f"not a TUM RGB-D sequence: expected {path}")
    out = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        line = line.replace(",", " ").strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        try:
            out.append((float(parts[0]), parts[1:]))
        except ValueError:
            raise DynrecError(f"{path}:{i}: expected 'timestamp ...', got {line!r}") from None
    return sorted(out, key=lambda r: r[0])


def read_trajectory(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``groundtruth.txt`` -> (timestamps [N], camera-to-world [N, 4, 4]); quaternions are
    ``qx qy qz qw`` (scipy's order)."""
    rows = read_list(path)
    bad = [i for i, (_, v) in enumerate(rows) if len(v) != 7]
    if bad:
        raise DynrecError(f"{path}: {len(bad)} line(s) without 'tx ty tz qx qy qz qw' (first: entry {bad[0] + 1})")
    stamps = np.array([t for t, _ in rows])
    vals = np.array([[float(x) for x in v] for _, v in rows])
    c2w = np.tile(np.eye(4), (len(rows), 1, 1))
    c2w[:, :3, :3] = Rotation.from_quat(vals[:, 3:]).as_matrix()
    c2w[:, :3, 3] = vals[:, :3]
    return stamps, c2w


def associate(first: np.ndarray, second: np.ndarray, max_difference: float = MAX_DIFFERENCE) -> np.ndarray:
    """Index into ``second`` [M] (sorted) of the nearest stamp to each of ``first`` [N] within
    ``max_difference`` seconds, -1 where none ([N] int)."""
    if len(second) == 0:
        return np.full(len(first), -1)
    pos = np.clip(np.searchsorted(second, first), 1, len(second) - 1) if len(second) > 1 else np.zeros(len(first), int)
    lo = np.maximum(pos - 1, 0)
    best = np.where(np.abs(second[lo] - first) <= np.abs(second[pos] - first), lo, pos)
    return np.where(np.abs(second[best] - first) <= max_difference, best, -1)


def bonn_marker_to_camera(c2w: np.ndarray) -> np.ndarray:
    """Bonn's ground-truth (marker) poses [N, 4, 4] -> camera-to-world poses [N, 4, 4]."""
    u, _, vt = np.linalg.svd(BONN_T_M[:3, :3])
    tm = BONN_T_M.copy()
    tm[:3, :3] = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
    return BONN_T_ROS @ c2w @ BONN_T_ROS @ tm


def camera_of(name: str, variant: str | None) -> str:
    """The calibration name: ``variant`` if given, else read from the sequence's folder name."""
    if variant is not None:
        if variant not in CALIBRATION:
            raise DynrecError(f"unknown camera {variant!r}; known: {', '.join(CALIBRATION)}")
        return variant
    for key in ("freiburg1", "freiburg2", "freiburg3", "bonn"):
        if key in name:
            return key
    raise DynrecError(f"cannot tell the camera of {name!r} (no freiburg1/2/3 or bonn in its name); "
                      "name the folder as the dataset does (rgbd_dataset_freiburg3_walking_xyz, rgbd_bonn_balloon)")


def convert(src: Path, *, resolution: str | None = None, scene: str | None = None, bonn: bool = False,
            camera: str | None = None) -> ImportedScene:
    """Read the TUM-format RGB-D sequence ``src`` (Bonn's with ``bonn=True``)."""
    fmt = "bonn" if bonn else "tum"
    if resolution not in (None, "full"):
        raise DynrecError(f"{fmt}: only the full 640x480 resolution exists, got {resolution!r}")
    need(src / "rgb.txt", f"{fmt} RGB-D", "rgb.txt")
    rgb = read_list(src / "rgb.txt")
    depth_rows = read_list(src / "depth.txt") if (src / "depth.txt").is_file() else []
    missing: list[str] = []
    if not depth_rows:
        missing.append("depth: no depth.txt")
    stamps = np.array([t for t, _ in rgb])
    d_idx = associate(stamps, np.array([t for t, _ in depth_rows])) if depth_rows else np.full(len(rgb), -1)
    cam_name = camera_of(src.name, "bonn" if bonn else camera)
    gt_path = src / "groundtruth.txt"
    poses = None
    keep = np.ones(len(rgb), bool)
    if gt_path.is_file():
        g_stamps, c2w = read_trajectory(gt_path)
        g_idx = associate(stamps, g_stamps)
        keep &= g_idx >= 0
        poses = c2w
    else:
        missing.append("cameras: no groundtruth.txt")
    dropped = int((~keep).sum())
    if keep.sum() < 2:
        raise DynrecError(f"{src}: {int(keep.sum())} colour frame(s) have a ground-truth pose within "
                          f"{MAX_DIFFERENCE} s; nothing to import")
    if dropped:
        missing.append(f"{dropped} of {len(rgb)} colour frames have no ground-truth pose within {MAX_DIFFERENCE} s: "
                       "dropped")
    rows = np.flatnonzero(keep)
    images = np.stack([read_rgb(src / rgb[i][1][0]) for i in rows])
    T, H, W = images.shape[:3]
    depth = None
    if depth_rows:
        depth = np.zeros((T, H, W), np.float32)
        for k, i in enumerate(rows):
            if d_idx[i] >= 0:
                d = read_depth_png(src / depth_rows[d_idx[i]][1][0], DEPTH_SCALE)
                if d.shape != (H, W):
                    raise DynrecError(f"{src / depth_rows[d_idx[i]][1][0]}: depth is {d.shape[1]}x{d.shape[0]}, "
                                      f"colour {W}x{H}")
                depth[k] = d
        no_depth = int((d_idx[rows] < 0).sum())
        if no_depth:
            missing.append(f"depth: {no_depth} of {T} frames have no depth image within {MAX_DIFFERENCE} s; "
                           "they are 0 (unknown)")
    cameras = None
    if poses is not None:
        c2w = poses[g_idx[rows]]
        if bonn:
            c2w = bonn_marker_to_camera(c2w)
        fx, fy, cx, cy = CALIBRATION[cam_name]
        K = np.repeat(intrinsics(fx, fy, cx + 0.5, cy + 0.5)[None], T, 0)
        cameras = Cameras(K, np.linalg.inv(c2w), W, H, "gt")
    fps = float(np.round(1.0 / np.median(np.diff(stamps[rows])), 3)) if T > 1 else 30.0
    info = {"units": "metres", "source": str(src), "camera": cam_name, "timestamps": stamps[rows].tolist(),
            "depth_scale": DEPTH_SCALE, "max_difference_s": MAX_DIFFERENCE}
    frames = Frames(images, fps, np.arange(T), f"{fmt} {src}")
    return ImportedScene(fmt, scene or src.name, "full sequence", frames, cameras, depth, info=info, missing=missing)
