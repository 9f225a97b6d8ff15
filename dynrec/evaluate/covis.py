"""Co-visibility masks of held-out views from ground-truth geometry (DyCheck's protocol).

DyCheck evaluates held-out views only where the pixel's surface point was seen by the
training video; it finds that with optical flow. With exact depth and cameras it is a
geometric test: a held-out pixel's 3D point is *seen* by the training camera at frame s
when it projects inside the image, in front of the camera, and its z lies within ``tol``
(relative) of the training depth around the projection (the 2x2 pixel centres around it,
so surface slope within a pixel does not matter). Then

* a pixel on the moving figure (held-out mask) is co-visible when the training camera
  sees its point at the same instant (other instants would need the point's motion);
* a background pixel (static) is co-visible when at least ``min_views`` training frames
  see it.
"""

from __future__ import annotations

import numpy as np

from dynrec.geometry.camera import pixel_centers, unproject


def seen_by(points: np.ndarray, K: np.ndarray, w2c: np.ndarray, depth: np.ndarray,
            tol: float = 0.02) -> np.ndarray:
    """Whether world ``points`` [P, 3] are seen by cameras ``K`` [S, 3, 3], ``w2c`` [S, 4, 4]
    with z-depth maps ``depth`` [S, H, W] (0 = unknown) -> [S, P] bool."""
    S, H, W = depth.shape
    R, t = w2c[:, :3, :3].astype(np.float64), w2c[:, :3, 3].astype(np.float64)
    cam = np.einsum("sij,pj->spi", R, points) + t[:, None, :]
    z = cam[..., 2]
    safe = np.where(z > 1e-9, z, 1.0)
    x = K[:, None, 0, 0] * cam[..., 0] / safe + K[:, None, 0, 2]
    y = K[:, None, 1, 1] * cam[..., 1] / safe + K[:, None, 1, 2]
    inside = (z > 1e-9) & (x >= 0) & (x < W) & (y >= 0) & (y < H)
    i0 = np.clip(np.floor(x - 0.5), 0, W - 1).astype(np.int64)
    j0 = np.clip(np.floor(y - 0.5), 0, H - 1).astype(np.int64)
    i1, j1 = np.minimum(i0 + 1, W - 1), np.minimum(j0 + 1, H - 1)
    s = np.arange(S)[:, None]
    d = np.stack([depth[s, j, i] for j in (j0, j1) for i in (i0, i1)]).astype(np.float64)
    known = d > 0
    lo = np.where(known, d, np.inf).min(axis=0)
    hi = np.where(known, d, 0.0).max(axis=0)
    return inside & known.any(axis=0) & (z >= lo * (1 - tol)) & (z <= hi * (1 + tol))


def covisible_masks(depth: np.ndarray, K: np.ndarray, w2c: np.ndarray, foreground: np.ndarray,
                    train_depth: np.ndarray, train_K: np.ndarray, train_w2c: np.ndarray,
                    tol: float = 0.02, min_views: int = 1) -> np.ndarray:
    """Co-visibility of a held-out view with the training video -> [T, H, W] bool.

    Args:
        depth, K, w2c: the held-out view's ground-truth z-depth [T, H, W] and cameras
            [T, 3, 3], [T, 4, 4] at the kept frames.
        foreground: [T, H, W] the moving figure in the held-out view.
        train_depth, train_K, train_w2c: the same for the training camera, [T, ...].
        tol: relative depth tolerance of the visibility test.
        min_views: training frames that must see a background point.
    """
    T, H, W = depth.shape
    centres = pixel_centers(H, W)
    out = np.zeros((T, H, W), dtype=bool)
    # A background pixel of a static camera shows the same point whenever it shows the
    # background, so its view count is computed once and reused while camera and depth agree.
    views = np.full((H, W), -1, dtype=np.int64)
    views_depth = np.zeros((H, W))
    for t in range(T):
        Kt, Wt = K[t].astype(np.float64), w2c[t].astype(np.float64)
        if t > 0 and not (np.allclose(K[t], K[t - 1]) and np.allclose(w2c[t], w2c[t - 1])):
            views[:] = -1
        valid = depth[t] > 0
        bg = valid & ~foreground[t]
        new = bg & ~((views >= 0) & (np.abs(views_depth - depth[t]) <= 1e-6 * depth[t]))
        if new.any():
            pts = unproject(centres[new], depth[t][new].astype(np.float64), Kt, Wt)
            views[new] = seen_by(pts, train_K, train_w2c, train_depth, tol).sum(axis=0)
            views_depth[new] = depth[t][new]
        out[t][bg] = views[bg] >= min_views
        fg = valid & foreground[t]
        if fg.any():
            pts = unproject(centres[fg], depth[t][fg].astype(np.float64), Kt, Wt)
            out[t][fg] = seen_by(pts, train_K[t:t + 1], train_w2c[t:t + 1], train_depth[t:t + 1], tol)[0]
    return out
