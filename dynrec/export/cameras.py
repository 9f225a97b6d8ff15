"""Cameras as files other tools read: nerfstudio-style ``transforms.json`` and a TUM trajectory.

``transforms.json`` (nerfstudio's format, which dynrec also reads back as a camera path,
:mod:`dynrec.render.paths`): ``camera_model`` ``OPENCV``, image size ``w`` / ``h``,
intrinsics ``fl_x fl_y cx cy`` (pixels, pixel centres at +0.5 as in COLMAP) at the top
level and per frame, and per frame a ``transform_matrix``: the 4x4 **camera-to-world**
matrix with the **OpenGL / Blender camera axes** nerfstudio uses (x right, y up, z back,
i.e. dynrec's OpenCV c2w times ``diag(1, -1, -1, 1)``). dynrec adds per frame ``time``
(the frame index 0..T-1 of the kept frames) and ``source_index`` (the input video's frame),
and a top-level ``dynrec`` object stating the convention.

TUM trajectory (``trajectory.tum.txt``, one line per frame:
``timestamp tx ty tz qx qy qz qw``): the camera pose in the world (camera-to-world), camera
axes OpenCV (x right, y down, z forward, the optical frame of TUM RGB-D), ``timestamp`` in
seconds (frame index / fps of the kept frames), quaternion Hamilton xyzw, as evo reads it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from dynrec.geometry.camera import CV_TO_GL

CONVENTION = ("transform_matrix: camera-to-world, OpenGL camera axes (x right, y up, z back) as nerfstudio; "
              "intrinsics in pixels with pixel centres at +0.5; time: frame index of the kept frames")


def transforms_json(K: np.ndarray, w2c: np.ndarray, width: int, height: int, times: list[int],
                    source_index: np.ndarray | None = None, fps: float | None = None,
                    file_paths: list[str] | None = None) -> dict[str, Any]:
    """The ``transforms.json`` object of cameras ``K`` [F, 3, 3], ``w2c`` [F, 4, 4] (OpenCV)
    at frame indices ``times`` [F]."""
    frames = []
    for i, t in enumerate(times):
        c2w_gl = np.linalg.inv(np.asarray(w2c[i], np.float64)) @ CV_TO_GL
        frame: dict[str, Any] = {"transform_matrix": c2w_gl.tolist(), "time": int(t),
                                 "fl_x": float(K[i, 0, 0]), "fl_y": float(K[i, 1, 1]),
                                 "cx": float(K[i, 0, 2]), "cy": float(K[i, 1, 2])}
        if source_index is not None:
            frame["source_index"] = int(source_index[t])
        if file_paths is not None:
            frame["file_path"] = file_paths[i]
        frames.append(frame)
    out: dict[str, Any] = {"camera_model": "OPENCV", "w": int(width), "h": int(height),
                           "fl_x": float(K[0, 0, 0]), "fl_y": float(K[0, 1, 1]),
                           "cx": float(K[0, 0, 2]), "cy": float(K[0, 1, 2]),
                           "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0, "frames": frames,
                           "dynrec": {"convention": CONVENTION}}
    if fps is not None:
        out["dynrec"]["fps"] = float(fps)
    return out


def write_transforms(path: Path, obj: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(obj, indent=2) + "\n")


def tum_lines(w2c: np.ndarray, timestamps: np.ndarray) -> list[str]:
    """``timestamp tx ty tz qx qy qz qw`` lines of the camera poses (c2w, OpenCV axes)."""
    c2w = np.linalg.inv(np.asarray(w2c, np.float64))
    quats = Rotation.from_matrix(c2w[:, :3, :3]).as_quat()  # x, y, z, w
    return [" ".join(f"{v:.9g}" for v in (ts, *c[:3, 3], *q)) for ts, c, q in zip(timestamps, c2w, quats)]


def write_tum(path: Path, w2c: np.ndarray, timestamps: np.ndarray) -> None:
    header = "# dynrec camera trajectory: timestamp tx ty tz qx qy qz qw (camera-to-world, OpenCV camera axes)\n"
    Path(path).write_text(header + "\n".join(tum_lines(w2c, timestamps)) + "\n")
