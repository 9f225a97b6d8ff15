"""Camera conventions of the whole project, stated once.

* Cameras are **OpenCV**: x right, y down, z forward (into the scene).
* ``w2c`` is a 4x4 world-to-camera matrix: ``x_cam = R @ x_world + t``.
* ``K`` is 3x3 with focal lengths ``fx, fy`` and principal point ``cx, cy`` in pixels.
* **Pixel centres are at +0.5**: the pixel in row ``i``, column ``j`` covers
  ``[j, j+1) x [i, i+1)`` and its centre is ``(j + 0.5, i + 0.5)``, as in gsplat.
  A camera looking straight at a point puts it at ``(cx, cy)``; ``cx = W / 2`` is the
  image centre.
* Depth is **z-depth** (the camera-frame z), in scene units; 0 means unknown.
* Files for other tools (nerfstudio ``transforms.json``) use **OpenGL** camera axes (x right,
  y up, z back): ``c2w_gl = c2w_cv @ CV_TO_GL``.
"""

from __future__ import annotations

import numpy as np

#: OpenCV camera axes to OpenGL's and back (its own inverse): flip y and z.
CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])


def pixel_centers(height: int, width: int) -> np.ndarray:
    """Pixel-centre coordinates, [H, W, 2] (x, y), with centres at +0.5."""
    ys, xs = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    return np.stack([xs, ys], axis=-1)


def intrinsics(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """Build K [3, 3]."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def world_to_camera(points: np.ndarray, w2c: np.ndarray) -> np.ndarray:
    """Transform points [..., 3] by a w2c [4, 4]; returns camera-frame points [..., 3]."""
    return points @ w2c[:3, :3].T + w2c[:3, 3]


def project(points: np.ndarray, K: np.ndarray, w2c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project world points [..., 3] to pixels. Returns ``(xy [..., 2], z [...])``.

    ``xy`` follows the +0.5 pixel-centre convention; points behind the camera get z <= 0
    and meaningless xy, so callers mask on ``z > 0``.
    """
    cam = world_to_camera(points, w2c)
    z = cam[..., 2]
    safe = np.where(np.abs(z) < 1e-12, 1e-12, z)
    uv = cam[..., :2] / safe[..., None]
    xy = uv @ K[:2, :2].T + K[:2, 2]
    return xy, z


def unproject(xy: np.ndarray, depth: np.ndarray, K: np.ndarray, w2c: np.ndarray) -> np.ndarray:
    """Lift pixels xy [..., 2] with z-depth [...] to world points [..., 3] (inverse of ``project``)."""
    uv = (xy - K[:2, 2]) @ np.linalg.inv(K[:2, :2]).T
    cam = np.concatenate([uv * depth[..., None], depth[..., None]], axis=-1)
    c2w = np.linalg.inv(w2c)
    return cam @ c2w[:3, :3].T + c2w[:3, 3]


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray | None = None) -> np.ndarray:
    """OpenCV w2c [4, 4] of a camera at ``eye`` [3] looking at ``target`` [3]; ``up`` [3] is
    world up (default +z).

    Rows of the rotation: ``z = (target - eye) / |.|`` (forward), ``x = z x up / |.|`` (right),
    ``y = z x x`` (down, i.e. against ``up`` projected on the image plane). Looking along
    ``up`` any right will do: ``x = z x e_y`` (``z x e_x`` when that vanishes too).
    """
    up = np.array([0.0, 0.0, 1.0]) if up is None else np.asarray(up, np.float64)
    z = np.asarray(target, np.float64) - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-8:
        x = np.cross(z, np.array([0.0, 1.0, 0.0]))
    if np.linalg.norm(x) < 1e-8:
        x = np.cross(z, np.array([1.0, 0.0, 0.0]))
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    w2c = np.eye(4)
    w2c[:3, :3] = R
    w2c[:3, 3] = -R @ eye
    return w2c


def w2c_in_other_world(w2c: np.ndarray, a_to_b: np.ndarray) -> np.ndarray:
    """Cameras ``w2c`` [..., 4, 4] of world A, re-expressed for world B, where ``a_to_b``
    [4, 4] is a similarity (``s R | t``) mapping A's points to B's.

    The result is rigid: a point of B projects where the matching point of A projected
    (its camera z, in B's units, is s times larger).
    """
    out = np.asarray(w2c, dtype=np.float64) @ np.linalg.inv(a_to_b)
    out[..., :3, :] /= np.cbrt(np.linalg.det(out[..., :3, :3]))[..., None, None]
    return out
