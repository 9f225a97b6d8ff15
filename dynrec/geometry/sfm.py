"""Structure-from-motion helpers on 2D tracks (numpy + OpenCV): which tracks are static
background, whether the camera moves at all, an incremental pose initialisation from
monocular depth and PnP (so every frame gets a camera), and multi-view triangulation.

Conventions are the project's (:mod:`dynrec.geometry.camera`): OpenCV cameras, ``w2c``,
pixel centres at +0.5 (OpenCV's PnP uses whatever convention ``K`` encodes, so tracks and
``K`` in the same convention need no shift), z-depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dynrec.geometry.camera import project, unproject


def sample_maps(maps: np.ndarray, xy: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Values of ``maps`` [T, H, W] at the pixels containing ``xy`` [M, 2] in ``frames`` [M]
    (nearest pixel: the one whose square contains the point)."""
    _, H, W = maps.shape
    px = np.clip(np.floor(xy).astype(np.int64), 0, [W - 1, H - 1])
    return maps[frames, px[:, 1], px[:, 0]]


def sample_smooth(maps: np.ndarray, xy: np.ndarray, frames: np.ndarray, edge: float = 0.05) -> np.ndarray:
    """Bilinear samples of ``maps`` [T, H, W] at ``xy`` [M, 2] in ``frames`` [M] (+0.5 pixel
    centres), falling back to the nearest pixel where the four neighbours differ by more than
    ``edge`` (relative: a depth edge, where blending would invent a surface) or one is 0."""
    _, H, W = maps.shape
    u = np.clip(xy[:, 0] - 0.5, 0, W - 1)
    v = np.clip(xy[:, 1] - 0.5, 0, H - 1)
    x0 = np.clip(np.floor(u).astype(np.int64), 0, max(W - 2, 0))
    y0 = np.clip(np.floor(v).astype(np.int64), 0, max(H - 2, 0))
    x1, y1 = np.minimum(x0 + 1, W - 1), np.minimum(y0 + 1, H - 1)
    fx, fy = u - x0, v - y0
    q = np.stack([maps[frames, y0, x0], maps[frames, y0, x1], maps[frames, y1, x0], maps[frames, y1, x1]]).astype(np.float64)
    out = (q[0] * (1 - fx) * (1 - fy) + q[1] * fx * (1 - fy) + q[2] * (1 - fx) * fy + q[3] * fx * fy)
    lo, hi = q.min(0), q.max(0)
    smooth = (lo > 0) & (hi - lo <= edge * np.maximum(np.abs(hi), 1e-300))
    return np.where(smooth, out, sample_maps(maps, xy, frames))


def background_observations(xy: np.ndarray, visible: np.ndarray, masks: np.ndarray,
                            max_fg_fraction: float = 0.2, dilate: int = 1) -> np.ndarray:
    """Visible samples [N, T] of tracks that belong to the static background.

    A track is background when at most ``max_fg_fraction`` of its visible samples fall on
    the foreground mask (dilated by ``dilate`` pixels, to keep off object borders); of those
    tracks, only the samples outside the dilated mask are kept.
    """
    import cv2

    T = masks.shape[0]
    fg = masks
    if dilate > 0 and masks.any():
        kernel = np.ones((2 * dilate + 1, 2 * dilate + 1), np.uint8)
        fg = np.stack([cv2.dilate(m.astype(np.uint8), kernel) > 0 for m in masks])
    N = xy.shape[0]
    if N == 0:
        return np.zeros((0, T), bool)
    on_fg = sample_maps(fg, xy.reshape(-1, 2), np.tile(np.arange(T), N)).reshape(N, T)
    share = (on_fg & visible).sum(1) / np.maximum(visible.sum(1), 1)
    return visible & ~on_fg & (share <= max_fg_fraction)[:, None]


def image_motion(xy: np.ndarray, visible: np.ndarray) -> float:
    """Median displacement (pixels) of visible track samples from each track's first
    visible position; NaN when no track is visible twice. About 0 for a static camera."""
    first = visible.argmax(1)
    ref = xy[np.arange(len(xy)), first]
    d = np.linalg.norm(xy - ref[:, None], axis=-1)
    mask = visible.copy()
    mask[np.arange(len(xy)), first] = False
    return float(np.median(d[mask])) if mask.any() else float("nan")


def _bearings(xy: np.ndarray, K: np.ndarray) -> np.ndarray:
    rays = np.concatenate([xy, np.ones((len(xy), 1))], axis=1) @ np.linalg.inv(K).T
    return rays / np.linalg.norm(rays, axis=1, keepdims=True)


def relative_rotation(x0: np.ndarray, x1: np.ndarray, K: np.ndarray, iterations: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Rotation R (camera 0 -> camera 1 frame) that best maps pixels ``x0`` [M, 2] onto ``x1``
    for a purely rotating camera (IRLS Kabsch on bearing vectors, Cauchy weights); returns
    (R [3, 3], pixel residuals [M])."""
    a, b = _bearings(x0, K), _bearings(x1, K)
    w = np.ones(len(a))
    R = np.eye(3)
    r = np.zeros(len(a))
    for _ in range(iterations):
        Hm = (w[:, None] * a).T @ b
        U, _, Vt = np.linalg.svd(Hm)
        d = np.sign(np.linalg.det(Vt.T @ U.T))
        R = Vt.T @ np.diag([1.0, 1.0, d]) @ U.T
        p = a @ R.T @ K.T
        r = np.linalg.norm(p[:, :2] / p[:, 2:3] - x1, axis=1)
        scale = max(1.4826 * float(np.median(r)), 0.3)
        w = 1.0 / (1.0 + (r / scale) ** 2)
    return R, r


def rotation_dominance(xy: np.ndarray, visible: np.ndarray, K: np.ndarray, gap: int = 10,
                       min_tracks: int = 10, every: int = 1) -> float:
    """How well a purely rotating camera explains the tracks: the median over frame pairs
    (t, t + gap) of (median rotation-only residual / median track displacement). Near 0 for a
    panning camera or a distant scene, about 0.2+ with parallax; NaN when no pair has
    ``min_tracks`` shared tracks that moved. ``every``: use every n-th pair only."""
    T = visible.shape[1]
    gap = max(1, min(gap, T // 3))
    ratios = []
    for t in range(0, T - gap, every):
        both = visible[:, t] & visible[:, t + gap]
        if both.sum() < min_tracks:
            continue
        x0, x1 = xy[both, t], xy[both, t + gap]
        flow = float(np.median(np.linalg.norm(x1 - x0, axis=1)))
        if flow < 1.0:
            continue
        _, r = relative_rotation(x0, x1, K)
        ratios.append(float(np.median(r)) / flow)
    return float(np.median(ratios)) if ratios else float("nan")


def rotation_focal(xy: np.ndarray, visible: np.ndarray, width: int, height: int, lo: float = 0.3,
                   hi: float = 10.0, samples: int = 25, slack: float = 1.1) -> tuple[float, float]:
    """Self-calibration of a rotating camera: the focal (pixels) whose rotation-only model
    explains the tracks best, searched on a log grid from ``lo`` to ``hi`` x max(W, H)
    (principal point at the centre). Beyond some focal the residual is flat (a narrow field
    of view makes rotations look like shifts), so the smallest focal within ``slack`` of the
    best residual is returned, with that residual (see :func:`rotation_dominance`)."""
    size = max(width, height)
    focals = size * np.exp(np.linspace(np.log(lo), np.log(hi), samples))
    res = []
    for f in focals:
        K = np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])
        res.append(rotation_dominance(xy, visible, K, every=2))
    res = np.asarray(res)
    if not np.isfinite(res).any():
        return float("nan"), float("nan")
    best = np.nanmin(res)
    pick = int(np.flatnonzero(res <= slack * best)[0])
    return float(focals[pick]), float(res[pick])


def rotation_chain(xy: np.ndarray, visible: np.ndarray, K: np.ndarray, min_tracks: int = 8
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(w2c [T, 4, 4], ok [T]) of a purely rotating camera (zero translation), chained frame
    to frame from the frame seeing most tracks; a frame sharing fewer than ``min_tracks``
    tracks with its neighbour keeps the neighbour's rotation and is not ok."""
    T = visible.shape[1]
    out = np.tile(np.eye(4), (T, 1, 1))
    ok = np.zeros(T, bool)
    ref = int(visible.sum(0).argmax())
    ok[ref] = True
    for order, step in ((range(ref + 1, T), -1), (range(ref - 1, -1, -1), 1)):
        for t in order:
            prev = t + step
            both = visible[:, prev] & visible[:, t]
            R = np.eye(3)
            if both.sum() >= min_tracks:
                R, _ = relative_rotation(xy[both, prev], xy[both, t], K)
                ok[t] = True
            out[t, :3, :3] = R @ out[prev, :3, :3]
    return out, ok


@dataclass
class InitResult:
    """``w2c`` [T, 4, 4]; ``points`` [N, 3] (NaN where a track got no point); ``posed`` [T]
    frames whose pose was estimated (others copy a neighbour's)."""

    w2c: np.ndarray
    points: np.ndarray
    posed: np.ndarray


def _pnp(obj: np.ndarray, img: np.ndarray, K: np.ndarray, guess: np.ndarray, px: float) -> np.ndarray | None:
    """w2c from 3D-2D correspondences (RANSAC, then LM on inliers), or None."""
    import cv2

    R0, t0 = guess[:3, :3], guess[:3, 3]
    rvec, _ = cv2.Rodrigues(R0)
    ok, rvec, tvec, inl = cv2.solvePnPRansac(
        obj.astype(np.float64), img.astype(np.float64), K.astype(np.float64), None,
        rvec.copy(), t0.reshape(3, 1).copy(), useExtrinsicGuess=True, iterationsCount=200,
        reprojectionError=px, confidence=0.999, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok or inl is None or len(inl) < 6:
        ok, rvec, tvec, inl = cv2.solvePnPRansac(
            obj.astype(np.float64), img.astype(np.float64), K.astype(np.float64), None,
            iterationsCount=500, reprojectionError=px, confidence=0.999, flags=cv2.SOLVEPNP_EPNP)
        if not ok or inl is None or len(inl) < 6:
            return None
    inl = inl[:, 0]
    rvec, tvec = cv2.solvePnPRefineLM(obj[inl].astype(np.float64), img[inl].astype(np.float64),
                                      K.astype(np.float64), None, rvec, tvec)
    out = np.eye(4)
    out[:3, :3] = cv2.Rodrigues(rvec)[0]
    out[:3, 3] = tvec[:, 0]
    return out


def two_view_start(xy: np.ndarray, visible: np.ndarray, K: np.ndarray, min_shared: float = 0.5,
                   px: float = 1.0, min_points: int = 30) -> InitResult | None:
    """Two posed frames and the points they triangulate: a start for :func:`incremental_init`
    when there are no depth maps (a fronto-parallel plane as depth lets PnP trade the camera's
    rotation for its translation when it walks forward, and the BA stays in that minimum).

    The reference is the frame seeing most tracks, at the origin; its partner, among the
    frames sharing at least ``min_shared`` of the reference's tracks, the one where those
    tracks moved most (the widest baseline that still overlaps). The essential matrix
    (OpenCV's five-point RANSAC, ``px`` pixels) gives the partner's pose with a baseline of 1,
    and its inliers in front of both cameras are triangulated. ``xy`` [N, T, 2], ``visible``
    [N, T], ``K`` [3, 3]. None when no frame overlaps enough, the camera did not move, or
    fewer than ``min_points`` points are triangulated.
    """
    import cv2

    N, T = visible.shape
    ref = int(visible.sum(0).argmax())
    shared = (visible[:, ref:ref + 1] & visible).sum(0)
    best, partner = 0.0, -1
    for t in np.flatnonzero(shared >= max(min_points, min_shared * shared[ref])):
        if t == ref:
            continue
        both = visible[:, ref] & visible[:, t]
        moved = float(np.median(np.linalg.norm(xy[both, t] - xy[both, ref], axis=1)))
        if moved > best:
            best, partner = moved, int(t)
    if partner < 0 or best < 2 * px:
        return None
    idx = np.flatnonzero(visible[:, ref] & visible[:, partner])
    x0, x1 = xy[idx, ref].astype(np.float64), xy[idx, partner].astype(np.float64)
    K = np.asarray(K, np.float64)
    E, inliers = cv2.findEssentialMat(x0, x1, K, cv2.RANSAC, 0.999, px)
    if E is None or E.shape != (3, 3):
        return None
    _, R, t, front = cv2.recoverPose(E, x0, x1, K, mask=inliers.copy())
    X = cv2.triangulatePoints(K @ np.eye(3, 4), K @ np.hstack([R, t]), x0.T, x1.T)
    X = (X[:3] / np.where(np.abs(X[3]) < 1e-12, 1e-12, X[3])).T
    ok = (front.ravel() > 0) & (X[:, 2] > 0) & ((X @ R.T + t.T)[:, 2] > 0)
    if ok.sum() < min_points:
        return None
    w2c = np.tile(np.eye(4), (T, 1, 1))
    w2c[partner, :3, :3], w2c[partner, :3, 3] = R, t[:, 0]
    points = np.full((N, 3), np.nan)
    points[idx[ok]] = X[ok]
    posed = np.zeros(T, bool)
    posed[[ref, partner]] = True
    return InitResult(w2c, points, posed)


def relative_turn_gap(w2c_a: np.ndarray, w2c_b: np.ndarray, i: int, j: int) -> float:
    """Angle (degrees) between the rotations from frame ``i`` to frame ``j`` of two sets of
    cameras ``w2c_a``, ``w2c_b`` [T, 4, 4] (0 when they agree on how the camera turned)."""
    Ra = w2c_a[j, :3, :3] @ w2c_a[i, :3, :3].T
    Rb = w2c_b[j, :3, :3] @ w2c_b[i, :3, :3].T
    cos = (np.trace(Ra.T @ Rb) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def incremental_init(xy: np.ndarray, visible: np.ndarray, depth: np.ndarray, K: np.ndarray, *,
                     w2c: np.ndarray | None = None, registered: np.ndarray | None = None,
                     points: np.ndarray | None = None, min_points: int = 8, pnp_px: float = 3.0) -> InitResult:
    """Give every frame a pose and every track a point.

    Frames in ``registered`` (e.g. by SfM) keep ``w2c``; ``points`` [N, 3] (NaN = unknown)
    are known points. Without registered frames, the frame seeing most tracks is the
    origin. Tracks seen in a posed frame but without a point are lifted with that frame's
    ``depth`` [T, H, W] (z up to a per-frame scale: the scale is matched to the known points
    the frame sees; 0 = no depth; a constant map puts new tracks at the known points' typical
    distance, for the bundle adjustment to move); unposed frames are then posed by PnP on
    the known points, nearest to a posed frame first, and lift their own new tracks. A frame
    with fewer than ``min_points`` known points copies its nearest posed neighbour and stays
    unposed.
    """
    N, T = visible.shape
    out = np.tile(np.eye(4), (T, 1, 1)) if w2c is None else np.array(w2c, dtype=np.float64)
    pts = np.full((N, 3), np.nan) if points is None else np.array(points, dtype=np.float64)
    posed = np.zeros(T, bool) if registered is None else np.array(registered, bool)
    K = np.asarray(K, dtype=np.float64)
    if not posed.any():
        ref = int(visible.sum(0).argmax())
        out[ref] = np.eye(4)
        posed[ref] = True

    def lift(t: int) -> None:
        idx = np.flatnonzero(visible[:, t])
        if len(idx) == 0:
            return
        z = sample_maps(depth, xy[idx, t], np.full(len(idx), t)).astype(np.float64)
        known = np.isfinite(pts[idx, 0])
        scale = 1.0
        ok_ref = known & (z > 0)
        if ok_ref.any():
            cam = pts[idx[ok_ref]] @ out[t][:3, :3].T + out[t][:3, 3]
            ratio = cam[:, 2] / z[ok_ref]
            ratio = ratio[ratio > 0]
            if len(ratio):
                scale = float(np.median(ratio))
        elif known.any() or np.isfinite(pts[:, 0]).any():
            # no depth under known points here: keep the scene's typical distance
            allk = pts[np.isfinite(pts[:, 0])]
            zs = (allk @ out[t][:3, :3].T + out[t][:3, 3])[:, 2]
            zs = zs[zs > 0]
            zmed = np.median(z[z > 0]) if (z > 0).any() else 1.0
            scale = float(np.median(zs) / zmed) if len(zs) else 1.0
        new = ~known & (z > 0)
        if new.any():
            pts[idx[new]] = unproject(xy[idx[new], t].astype(np.float64), scale * z[new], K, out[t])

    for t in np.flatnonzero(posed)[np.argsort(-visible[:, posed].sum(0))]:
        lift(int(t))
    remaining = set(np.flatnonzero(~posed).tolist())
    estimated = posed.copy()
    while remaining:
        done = np.flatnonzero(estimated)
        # the unposed frame nearest (in time) to an estimated one
        t = min(remaining, key=lambda f: (np.abs(done - f).min(), f))
        near = int(done[np.abs(done - t).argmin()])
        remaining.discard(t)
        idx = np.flatnonzero(visible[:, t] & np.isfinite(pts[:, 0]))
        pose = None
        if len(idx) >= min_points:
            pose = _pnp(pts[idx], xy[idx, t], K, out[near], pnp_px)
        if pose is None:
            out[t] = out[near]
        else:
            out[t] = pose
            posed[t] = True
        estimated[t] = True
        lift(t)
    return InitResult(out, pts, posed)


def triangulate(xy: np.ndarray, visible: np.ndarray, K: np.ndarray, w2c: np.ndarray,
                min_angle_deg: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Linear (DLT) multi-view triangulation of each track from its visible samples.

    ``xy`` [N, T, 2], ``visible`` [N, T], ``K`` [T, 3, 3], ``w2c`` [T, 4, 4]. Returns
    ``points`` [N, 3] and ``ok`` [N]: at least two views, the widest angle between viewing
    rays above ``min_angle_deg``, in front of every camera that sees it.
    """
    N = visible.shape[0]
    K = np.asarray(K, np.float64)
    w2c = np.asarray(w2c, np.float64)
    Pm = K @ w2c[:, :3, :]  # [T, 3, 4]
    c2w = np.linalg.inv(w2c)
    centres = c2w[:, :3, 3]
    points = np.full((N, 3), np.nan)
    ok = np.zeros(N, bool)
    for n in np.flatnonzero(visible.sum(1) >= 2):
        ts = np.flatnonzero(visible[n])
        u = xy[n, ts].astype(np.float64)
        P = Pm[ts]
        A = np.concatenate([u[:, :1] * P[:, 2] - P[:, 0], u[:, 1:] * P[:, 2] - P[:, 1]])
        A /= np.linalg.norm(A, axis=1, keepdims=True).clip(1e-12)
        _, _, vt = np.linalg.svd(A)
        h = vt[-1]
        if abs(h[3]) < 1e-12:
            continue
        X = h[:3] / h[3]
        z = np.einsum("tij,j->ti", w2c[ts, :3, :3], X) + w2c[ts, :3, 3]
        if (z[:, 2] <= 0).any():
            continue
        rays = X - centres[ts]
        rays /= np.linalg.norm(rays, axis=1, keepdims=True).clip(1e-12)
        cos = np.clip(rays @ rays.T, -1, 1)
        if np.degrees(np.arccos(cos.min())) < min_angle_deg:
            continue
        points[n], ok[n] = X, True
    return points, ok


def parallax_deg(points: np.ndarray, visible: np.ndarray, w2c: np.ndarray) -> np.ndarray:
    """Widest angle (degrees) between the rays from the camera centres that see each point.

    ``points`` [N, 3], ``visible`` [N, T], ``w2c`` [T, 4, 4]. The ray farthest from a point's
    mean ray is one end of the spread; the result is the widest angle to it (exact when the
    rays sweep one way, as a moving camera's do). 0 for points seen once or not at all (or
    NaN). A point's depth is only as good as its parallax: at 1 degree, 0.2 degrees of
    pixel noise is 20% of it; a point 'at infinity' has none.
    """
    centres = np.linalg.inv(w2c)[:, :3, 3]  # [T, 3]
    rays = points[:, None, :] - centres[None]  # [N, T, 3]
    rays = rays / np.linalg.norm(rays, axis=-1, keepdims=True).clip(1e-300)
    seen = visible & np.isfinite(rays).all(-1)
    rays = np.where(seen[..., None], rays, 0.0)
    mean = rays.sum(1)
    mean /= np.linalg.norm(mean, axis=-1, keepdims=True).clip(1e-300)
    far = np.where(seen, np.einsum("ntk,nk->nt", rays, mean), np.inf).argmin(1)
    cos = np.where(seen, np.einsum("ntk,nk->nt", rays, rays[np.arange(len(rays)), far]), 1.0)
    return np.degrees(np.arccos(np.clip(cos.min(1), -1.0, 1.0)))


def reprojection_errors(points: np.ndarray, xy: np.ndarray, visible: np.ndarray, K: np.ndarray,
                        w2c: np.ndarray) -> np.ndarray:
    """Pixel errors [N, T] of points [N, 3] against visible samples (NaN elsewhere)."""
    N, T = visible.shape
    err = np.full((N, T), np.nan)
    for t in range(T):
        uv, z = project(points, np.asarray(K[t], np.float64), np.asarray(w2c[t], np.float64))
        e = np.linalg.norm(uv - xy[:, t], axis=-1)
        e[z <= 0] = np.inf
        err[:, t] = np.where(visible[:, t], e, np.nan)
    return err
