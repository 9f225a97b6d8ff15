"""Camera paths for novel views, and the times they are rendered at.

A path is a list of OpenCV cameras (``K`` [F, 3, 3], ``w2c`` [F, 4, 4], conventions in
:mod:`dynrec.geometry.camera`) in the reconstruction's world. Generated paths (orbit,
spiral, dolly) look at a ``centre`` (the foreground) from the training cameras' distance,
with the training cameras' mean up direction and focal length.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dynrec.errors import DynrecError
from dynrec.geometry.camera import CV_TO_GL, intrinsics, look_at


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

    def resized(self, width: int, height: int) -> CameraPath:
        """The same cameras for images of ``width`` x ``height`` (intrinsics scaled per axis)."""
        K = self.K.copy()
        K[:, 0] *= width / self.width
        K[:, 1] *= height / self.height
        return CameraPath(K, self.w2c, width, height, self.times)


GENERATED = ("orbit", "spiral", "dolly")


def camera_up(w2c: np.ndarray) -> np.ndarray:
    """[3] world up estimated from cameras ``w2c`` [T, 4, 4] (OpenCV: image up is -y).

    Cameras rarely roll, so their x axes are horizontal: when the x axes turn enough to span
    a plane (the camera pans or circles), up is the normal of that plane, on the side of the
    cameras' mean -y; otherwise (one view direction) it is the mean -y, which tilts with the
    cameras' pitch.
    """
    R = np.asarray(w2c, np.float64)[:, :3, :3]
    mean_up = -R[:, 1].sum(0)
    mean_up = mean_up / max(np.linalg.norm(mean_up), 1e-12)
    xs = R[:, 0]
    values, vectors = np.linalg.eigh(xs.T @ xs / len(xs))
    if values[1] > 0.01:
        up = vectors[:, 0]
        return up if up @ mean_up >= 0 else -up
    return mean_up if np.linalg.norm(mean_up) > 0.5 else np.array([0.0, 0.0, 1.0])


def _centres(w2c: np.ndarray) -> np.ndarray:
    return np.linalg.inv(np.asarray(w2c, np.float64))[:, :3, 3]


def generated_path(kind: str, K: np.ndarray, w2c: np.ndarray, centre: np.ndarray, frames: int,
                   width: int, height: int, start: int = 0) -> CameraPath:
    """``frames`` cameras of an orbit, spiral or dolly around ``centre`` [3], sized from the
    training cameras ``K`` [T, 3, 3], ``w2c`` [T, 4, 4] (their median distance to the centre,
    mean up, median focal length; the path starts at training camera ``start``).

    * orbit: a full turn about the up axis through ``centre`` at the height and horizontal
      distance of the training cameras (median), starting from camera ``start``'s side;
    * spiral: two turns of an ellipse (radius 20% of the distance) around camera ``start``'s
      position, in the plane facing the centre, with a slow push in and out;
    * dolly: from camera ``start``'s position towards the centre to 60% of the distance and back.
    Every camera looks at ``centre``.
    """
    if kind not in GENERATED:
        raise ValueError(f"generated_path: unknown kind {kind!r}")
    centres = _centres(w2c)
    up = camera_up(w2c)
    eye0 = centres[start]
    offsets = centres - centre
    heights = offsets @ up
    horizontal = np.linalg.norm(offsets - heights[:, None] * up, axis=1)
    distance = float(np.median(np.linalg.norm(offsets, axis=1)))
    if distance < 1e-6:
        raise DynrecError("the training cameras sit at the foreground centre; no orbit can be sized from them")
    s = np.linspace(0.0, 1.0, frames, endpoint=False) if kind == "orbit" else np.linspace(0.0, 1.0, frames)
    eyes = []
    if kind == "orbit":
        side = offsets[start] - heights[start] * up
        if np.linalg.norm(side) < 1e-9:  # camera straight above: pick any horizontal direction
            side = np.cross(up, [1.0, 0.0, 0.0] if abs(up[0]) < 0.9 else [0.0, 1.0, 0.0])
        a = side / np.linalg.norm(side)
        b = np.cross(up, a)
        r, h = float(np.median(horizontal)), float(np.median(heights))
        if r < 0.05 * distance:
            r = distance
        for angle in 2 * np.pi * s:
            eyes.append(centre + h * up + r * (np.cos(angle) * a + np.sin(angle) * b))
    elif kind == "spiral":
        forward = (centre - eye0) / np.linalg.norm(centre - eye0)
        right = np.cross(forward, up)
        right = right / max(np.linalg.norm(right), 1e-9)
        vertical = np.cross(right, forward)
        rad = 0.2 * distance
        for u in s:
            angle = 4 * np.pi * u
            push = 0.1 * distance * np.sin(2 * np.pi * u)
            eyes.append(eye0 + rad * (np.cos(angle) - 1) * right + 0.6 * rad * np.sin(angle) * vertical
                        + push * forward)
    else:
        for u in s:
            eyes.append(centre + (eye0 - centre) * (1 - 0.4 * np.sin(np.pi * u)))
    focal = float(np.median(K[:, 0, 0])), float(np.median(K[:, 1, 1]))
    Ks = np.repeat(intrinsics(focal[0], focal[1], width / 2, height / 2)[None], frames, 0)
    return CameraPath(Ks, np.stack([look_at(e, centre, up) for e in eyes]), width, height)


# ----- camera files (nerfstudio transforms.json style, dynrec.export.cameras) ----------------

def _number(obj: dict, key: str, where: str, path: object) -> float:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise DynrecError(f"{path}: {where}{key} must be a number, got {value!r}")
    return float(value)


def _intrinsic(frame: dict, top: dict, key: str, where: str, path: object, default: float | None = None) -> float:
    """``key`` of the frame, else of the file's top level, else ``default``."""
    if key in frame:
        return _number(frame, key, where, path)
    if key in top or default is None:
        return _number(top, key, "", path)
    return default


def load_camera_file(path: Path) -> CameraPath:
    """Cameras of a ``transforms.json``-style file (the format ``dynrec export --format
    cameras`` writes, :mod:`dynrec.export.cameras`): top-level ``w``, ``h``; intrinsics
    ``fl_x``, ``fl_y`` (or ``camera_angle_x``), ``cx``, ``cy`` (default: the image centre)
    at the top level or per frame; per frame a 4x4 camera-to-world ``transform_matrix`` with
    OpenGL camera axes, and optionally ``time`` (a frame index; all frames or none).

    Raises:
        DynrecError: unreadable file or a missing / malformed field (named, e.g.
            ``frames[3].transform_matrix``).
    """
    try:
        obj = json.loads(Path(path).read_text())
    except OSError as exc:
        raise DynrecError(f"cannot read camera file {path}: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DynrecError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise DynrecError(f"{path}: must hold a JSON object with 'frames'")
    frames = obj.get("frames")
    if not isinstance(frames, list) or not frames:
        raise DynrecError(f"{path}: frames must be a non-empty list of cameras")
    width, height = (int(_number(obj, k, "", path)) for k in ("w", "h"))
    if width < 1 or height < 1:
        raise DynrecError(f"{path}: w and h must be positive, got {width} x {height}")
    Ks, w2cs, times = [], [], []
    for i, frame in enumerate(frames):
        where = f"frames[{i}]."
        if not isinstance(frame, dict):
            raise DynrecError(f"{path}: frames[{i}] must be an object")
        matrix = np.asarray(frame.get("transform_matrix"), dtype=object)
        try:
            c2w = np.array(matrix.tolist(), dtype=np.float64)
        except (TypeError, ValueError):
            c2w = np.zeros(0)
        if c2w.shape != (4, 4) or not np.isfinite(c2w).all():
            raise DynrecError(f"{path}: {where}transform_matrix must be a 4x4 matrix of numbers")
        R = c2w[:3, :3]
        if np.abs(R @ R.T - np.eye(3)).max() > 1e-3 or np.linalg.det(R) < 0:
            raise DynrecError(f"{path}: {where}transform_matrix: its rotation block is not a rotation")
        w2cs.append(np.linalg.inv(c2w @ CV_TO_GL))
        if "fl_x" in frame or "fl_x" in obj:
            fx = _intrinsic(frame, obj, "fl_x", where, path)
            fy = _intrinsic(frame, obj, "fl_y", where, path, fx)
        elif "camera_angle_x" in obj:
            fx = fy = 0.5 * width / np.tan(0.5 * _number(obj, "camera_angle_x", "", path))
        else:
            raise DynrecError(f"{path}: {where}fl_x missing (give fl_x / fl_y, per frame or at the top level)")
        cx = _intrinsic(frame, obj, "cx", where, path, width / 2)
        cy = _intrinsic(frame, obj, "cy", where, path, height / 2)
        if fx <= 0 or fy <= 0:
            raise DynrecError(f"{path}: {where}fl_x / fl_y must be positive")
        Ks.append(intrinsics(fx, fy, cx, cy))
        if "time" in frame:
            t = frame["time"]
            if isinstance(t, bool) or not isinstance(t, int):
                raise DynrecError(f"{path}: {where}time must be a frame index (an integer), got {t!r}")
            times.append(t)
    if times and len(times) != len(frames):
        missing = next(i for i, f in enumerate(frames) if "time" not in f)
        raise DynrecError(f"{path}: frames[{missing}].time missing: give time for every frame or for none")
    return CameraPath(np.stack(Ks), np.stack(w2cs), width, height, times or None)
