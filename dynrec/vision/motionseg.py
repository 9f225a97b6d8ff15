"""Motion segmentation from point tracks (the ``offline`` masks), numpy + OpenCV.

1. **Which tracks move on their own** (:func:`motion_scores`): for frame pairs
   ``(t, t + g)`` over several gaps ``g``, the camera motion is fitted to the tracks robustly
   (RANSAC on a spatially uniform subset, so a densely tracked subject cannot outvote the
   background) and each track's residual is measured:

   * with z-depth: the tracks are lifted at ``t`` with the depth and a pinhole prior
     (focal ``0.9 max(W, H)``, principal point at the centre) and a PnP pose maps them into
     ``t + g``; the reprojection residual sees any independent motion, also motion along
     the epipolar lines, which a fundamental matrix cannot see (a subject that sways while
     the camera orbits it moves mostly along them);
   * without depth: a homography when it explains the subset as well as a fundamental
     matrix does (a panning or shaking camera, a distant scene: it also sees motion along
     the epipolar lines), else the fundamental matrix and the Sampson distance;
   * a camera that does not move (median displacement under ``static_px``): the
     displacement itself.

   A track's score is the fraction of its pairs whose residual exceeds
   ``max(threshold_px, 3 x the inliers' median residual)``; a frame's score uses the pairs
   that include it.

   Without depth and with a camera that translates, pairs cannot see a subject that moves
   along the epipolar lines (one the camera orbits), so :func:`multiview_scores` asks instead
   whether a static 3D point explains the whole track: COLMAP's incremental mapper
   (pycolmap) poses the cameras from all tracks (its RANSAC and bundle adjustment reject the
   moving ones), each track is triangulated from all its samples, and its reprojection
   residual, in units of the robust noise of all residuals, is the evidence. Its false alarms
   (background tracks whose anchor drifted by a few pixels) are dropped when the track moves
   as the still tracks around it do (:func:`local_motion`).
2. **Dense masks** (:func:`segment`), per frame: tracks that move (enough pairs, and in that
   frame) are foreground seeds, kept when they form a cluster (isolated mistracked points
   are dropped); still tracks are background seeds; beyond ``reach`` of every foreground
   seed is background, and so is, with depth, every pixel the static-scene prediction of
   neighbouring frames explains (:func:`change_map`). Without a prompt, the pixels whose
   colour the still tracks' interpolated motion cannot explain in any of the nearest frames
   are foreground seeds too (:func:`unexplained_change`: parts too thin or fast to track).
   ``cv2.grabCut`` on a chroma-weighted Lab image labels the rest; a 3-frame majority
   (carried along the optical flow) smooths the masks in time, except near those pixels,
   where the flow fails; a second,
   boundary-only GrabCut on plain Lab settles the one-pixel rim (video chroma is
   subsampled, so chroma alone smears the subject outwards).
3. A **prompt** names the subject (:func:`prompt_tracks`): its tracks are foreground seeds
   wherever visible (a subject that happens to be still is kept) and, in every frame, only
   the mask components that hold one of them are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import uniform_filter1d
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from dynrec.errors import DynrecError
from dynrec.vision.flow import dense_flow


@dataclass(frozen=True)
class MotionParams:
    """``gaps``: frame gaps of the pairs compared; ``threshold_px``: smallest residual that
    counts as independent motion; ``cell``: grid cell (pixels) of the spatially uniform
    RANSAC subset; ``static_px``: below this median displacement a pair has a still camera;
    ``focal``: pinhole prior in units of max(W, H); ``max_depth_step``: relative depth range across a bilinear sample
    above which the depth is not used (silhouettes); ``prior_pairs``: a frame's own score is
    shrunk towards the track's as if it had this many more pairs with the track's score;
    ``homography_share``: without depth, a homography is used when its RANSAC inlier share
    is at least this times the fundamental matrix's. Multi-view scores
    (:func:`multiview_scores`): used when the median image motion exceeds
    ``static_image_px`` and a rotation-only camera leaves more than ``rotation_only`` of it
    unexplained (:func:`dynrec.geometry.sfm.rotation_dominance`); a track's residual (rms,
    in units of the robust noise) maps linearly from score 0 at ``still_sigmas`` to 1 at
    ``moving_sigmas``; a frame's score uses the ``window`` frames around it; COLMAP poses at
    most ``sfm_frames`` frames. A track only the multi-view model calls moving keeps that
    call when it moved against its ``local_k`` nearest still tracks (combined score under
    ``local_still``) in at least ``local_moving`` of the pairs over ``local_gaps``
    (:func:`local_motion`)."""

    gaps: tuple[int, ...] = (2, 4, 8, 16)
    threshold_px: float = 1.0
    cell: float = 8.0
    static_px: float = 0.5
    focal: float = 0.9
    max_depth_step: float = 0.05
    prior_pairs: float = 4.0
    homography_share: float = 0.95
    static_image_px: float = 2.0
    rotation_only: float = 0.05
    still_sigmas: float = 2.0
    moving_sigmas: float = 6.0
    window: int = 5
    sfm_frames: int = 60
    local_k: int = 6
    local_gaps: tuple[int, ...] = (2, 4, 8)
    local_still: float = 0.2
    local_moving: float = 0.5


def _pinhole(width: int, height: int, focal: float) -> np.ndarray:
    """OpenCV camera matrix (pixel centres at integers) of the pinhole prior."""
    f = focal * max(width, height)
    return np.array([[f, 0.0, width / 2 - 0.5], [0.0, f, height / 2 - 0.5], [0.0, 0.0, 1.0]])


def sample_depth(depth: np.ndarray, xy: np.ndarray, max_step: float) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear z-depth of ``depth`` [H, W] at ``xy`` [P, 2] (+0.5 centres) -> (z [P], ok [P]).

    ``ok`` is False where a neighbour is unknown (0) or the neighbours span more than
    ``max_step`` of the nearest depth (a depth edge)."""
    H, W = depth.shape
    u = np.clip(xy[:, 0] - 0.5, 0, W - 1.001)
    v = np.clip(xy[:, 1] - 0.5, 0, H - 1.001)
    u0, v0 = np.floor(u).astype(int), np.floor(v).astype(int)
    u1, v1 = np.minimum(u0 + 1, W - 1), np.minimum(v0 + 1, H - 1)
    fu, fv = u - u0, v - v0
    corners = np.stack([depth[v0, u0], depth[v0, u1], depth[v1, u0], depth[v1, u1]])
    z = (1 - fv) * ((1 - fu) * corners[0] + fu * corners[1]) + fv * ((1 - fu) * corners[2] + fu * corners[3])
    lo, hi = corners.min(0), corners.max(0)
    ok = (lo > 0) & (hi - lo <= max_step * np.maximum(lo, 1e-12)) & np.isfinite(z)
    return z, ok


def uniform_subset(xy: np.ndarray, cell: float) -> np.ndarray:
    """Indices of one point per ``cell`` x ``cell`` grid cell of ``xy`` [P, 2] (the first)."""
    key = np.floor(xy / cell).astype(np.int64)
    _, first = np.unique(key[:, 0] * 1_000_003 + key[:, 1], return_index=True)
    return np.sort(first)


def _sampson(F: np.ndarray, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """Sampson distance (pixels) of correspondences x1 -> x2 [P, 2] under F."""
    h1 = np.c_[x1, np.ones(len(x1))]
    h2 = np.c_[x2, np.ones(len(x2))]
    Fx1, Ftx2 = h1 @ F.T, h2 @ F
    num = np.sum(h2 * Fx1, axis=1) ** 2
    den = Fx1[:, 0] ** 2 + Fx1[:, 1] ** 2 + Ftx2[:, 0] ** 2 + Ftx2[:, 1] ** 2
    return np.sqrt(num / np.maximum(den, 1e-12))


def pair_residuals(x1: np.ndarray, x2: np.ndarray, z1: np.ndarray | None, K: np.ndarray,
                   params: MotionParams) -> tuple[np.ndarray, float] | None:
    """Residuals [P] (pixels) of correspondences ``x1`` -> ``x2`` [P, 2] against the camera
    motion, and the inliers' median residual; None when no model could be fitted.

    ``z1`` [P]: depth at ``x1`` (use PnP) or None (fundamental matrix)."""
    disp = np.linalg.norm(x2 - x1, axis=1)
    if np.median(disp) < params.static_px:
        return disp, float(np.median(disp))
    sub = uniform_subset(x1, params.cell)
    if len(sub) < 8:
        return None
    a, b = x1 - 0.5, x2 - 0.5  # OpenCV pixel centres are at integers
    thr = 2 * params.threshold_px
    if z1 is not None:
        X = np.c_[(a - K[:2, 2]) / np.diag(K)[:2], np.ones(len(a))] * z1[:, None]
        found, rvec, tvec, inl = cv2.solvePnPRansac(X[sub], b[sub], K, None, reprojectionError=thr,
                                                    iterationsCount=300, confidence=0.999, flags=cv2.SOLVEPNP_EPNP)
        if not found or inl is None or len(inl) < 6:
            return None
        inl = sub[inl[:, 0]]
        rvec, tvec = cv2.solvePnPRefineLM(X[inl], b[inl], K, None, rvec, tvec)
        proj, _ = cv2.projectPoints(X, rvec, tvec, K, None)
        res = np.linalg.norm(proj[:, 0] - b, axis=1)
    else:
        Hm, h_mask = cv2.findHomography(a[sub], b[sub], cv2.RANSAC, thr, maxIters=500, confidence=0.999)
        F, f_mask = cv2.findFundamentalMat(a[sub], b[sub], cv2.FM_RANSAC, thr, 0.999)
        h_share = float(h_mask.mean()) if Hm is not None and h_mask is not None else 0.0
        f_ok = F is not None and F.shape == (3, 3) and f_mask is not None
        f_share = float(f_mask.mean()) if f_ok else 0.0
        if h_share > 0 and h_share >= params.homography_share * f_share:
            p = np.c_[a, np.ones(len(a))] @ Hm.T
            res = np.linalg.norm(p[:, :2] / p[:, 2:3] - b, axis=1)
            inl = sub[h_mask[:, 0] > 0]
        elif f_ok:
            inl = sub[f_mask[:, 0] > 0]
            res = _sampson(F, a, b)
        else:
            return None
    return res, float(np.median(res[inl])) if len(inl) else float(np.median(res))


@dataclass
class MotionScores:
    """``track`` [N]: evidence in [0, 1] that a track moves against the camera motion (pairs:
    the fraction of the compared frame pairs in which it moved; multi-view: see
    :func:`multiview_scores`); ``pairs`` [N]: in how many pairs (samples) it was compared;
    ``sample`` [N, T]: the same at frame t (NaN where none); ``weak`` [N] bool or None: the
    track's combined score comes from the multi-view model (it scores the track higher than the
    pairs do; :func:`camera_motion_scores`). That model's false alarms are background tracks
    that drift by a few pixels over the video, so :func:`segment` lets weak tracks join the
    foreground only next to the others. (Demoting only the tracks the pairs score below the
    threshold, i.e. the multi-view model's finds alone, lost more of the subject: mean IoU of
    the development scenes 0.659 -> 0.644, docs/offline-preprocess.md.)"""

    track: np.ndarray
    pairs: np.ndarray
    sample: np.ndarray
    weak: np.ndarray | None = None

    def moving(self, threshold: float, min_pairs: float, min_strong: int = 8) -> np.ndarray:
        """[N] bool: tracks with a score of at least ``threshold`` over at least ``min_pairs``
        compared pairs, without the ``weak`` ones unless fewer than ``min_strong`` remain."""
        moving = (self.track >= threshold) & (self.pairs >= min_pairs)
        if self.weak is not None and (moving & ~self.weak).sum() >= min_strong:
            moving &= ~self.weak
        return moving


def motion_scores(xy: np.ndarray, visible: np.ndarray, depth: np.ndarray | None, size: tuple[int, int],
                  params: MotionParams | None = None) -> MotionScores:
    """Independent-motion scores of tracks (see :class:`MotionScores`).

    Args:
        xy: [N, T, 2] tracks (pixels, +0.5 centres); visible: [N, T] bool, the samples to use.
        depth: [T, H, W] z-depth (any scale, 0 = unknown) or None (fundamental matrices).
        size: (width, height) of the frames.
    """
    params = params or MotionParams()
    N, T, _ = xy.shape
    K = _pinhole(size[0], size[1], params.focal)
    hits = np.zeros((N, T))
    pairs = np.zeros((N, T))
    for gap in params.gaps:
        for t in range(T - gap):
            idx = np.flatnonzero(visible[:, t] & visible[:, t + gap])
            z = None
            if depth is not None:
                z, ok = sample_depth(depth[t], xy[idx, t].astype(np.float64), params.max_depth_step)
                idx, z = idx[ok], z[ok]
            if len(idx) < 12:
                continue
            fit = pair_residuals(xy[idx, t].astype(np.float64), xy[idx, t + gap].astype(np.float64), z, K, params)
            if fit is None:
                continue
            res, scale = fit
            moved = res > max(params.threshold_px, 3 * scale)
            for u in (t, t + gap):
                hits[idx, u] += moved
                pairs[idx, u] += 1
    total = pairs.sum(1) / 2  # every pair was counted at both of its frames
    track = hits.sum(1) / 2 / np.maximum(total, 1)
    # a frame with few pairs (e.g. at the ends of the video) leans on the whole track
    sample = (hits + params.prior_pairs * track[:, None]) / (pairs + params.prior_pairs)
    return MotionScores(track, total, np.where(pairs > 0, sample, np.nan))


def multiview_residuals(xy: np.ndarray, visible: np.ndarray, size: tuple[int, int],
                        params: MotionParams | None = None, seed: int = 0) -> np.ndarray | None:
    """Residuals [N, T] (pixels; NaN where unknown) of each track against the best static 3D
    point, or None when the cameras cannot be posed (fewer than 80% of the frames).

    COLMAP's incremental mapper (pycolmap, via :func:`dynrec.geometry.colmap.run_colmap`)
    poses the cameras from the ``visible`` samples of ``xy`` [N, T, 2] in at most
    ``sfm_frames`` evenly spaced frames (NaN in the others); its two-view
    RANSAC and bundle adjustment leave out the tracks no static point explains. It is tried
    with COLMAP's initial triangulation angle (8 degrees) and, when that registers too few
    frames (a camera that moves forward), with 2 degrees. Every track is then triangulated
    (DLT) from all its samples in the posed frames and reprojected.
    """
    from dynrec.geometry.colmap import run_colmap
    from dynrec.geometry.sfm import reprojection_errors, triangulate

    params = params or MotionParams()
    W, H = size
    N, T = visible.shape
    keep = np.arange(0, T, -(-T // params.sfm_frames))  # every k-th frame: COLMAP's time grows fast with frames
    sub_xy, sub_vis = xy[:, keep], visible[:, keep]
    best = None
    for angle in (8.0, 2.0):
        result = run_colmap(sub_xy, sub_vis, W, H, params.focal * max(W, H), init_min_tri_angle=angle, seed=seed)
        if best is None or result.registered.sum() > best.registered.sum():
            best = result
        if best.registered.sum() >= 0.8 * len(keep):
            break
    if best is None or best.registered.sum() < 0.8 * len(keep):
        return None
    K = np.tile(np.array([[best.focal, 0.0, W / 2], [0.0, best.focal, H / 2], [0.0, 0.0, 1.0]]), (len(keep), 1, 1))
    seen = sub_vis & best.registered[None]
    points, ok = triangulate(sub_xy, seen, K, best.w2c, min_angle_deg=0.0)
    sub_err = reprojection_errors(points, sub_xy, seen, K, best.w2c)
    sub_err[~ok] = np.nan  # no static point in front of the cameras: unknown, not moving
    err = np.full((N, T), np.nan)
    err[:, keep] = sub_err
    return err


def multiview_scores(err: np.ndarray, params: MotionParams | None = None) -> MotionScores:
    """Motion scores from static-point residuals ``err`` [N, T] (:func:`multiview_residuals`).

    The noise ``sigma`` is 1.4826 x the median residual (most samples are static). A track's
    score ramps linearly from 0 at ``still_sigmas`` to 1 at ``moving_sigmas`` of its rms
    residual / sigma; a frame's score from the rms over the ``window`` frames around it.
    ``pairs`` counts the samples with a residual; tracks with fewer than 3 get NaN (neither
    moving nor still).
    """
    params = params or MotionParams()
    known = np.isfinite(err)
    if not known.any():
        N, T = err.shape
        return MotionScores(np.full(N, np.nan), np.zeros(N), np.full((N, T), np.nan))
    sigma = max(1.4826 * float(np.median(err[known])), 1e-3)
    sq = np.where(known, err, 0.0) ** 2
    local_sq = uniform_filter1d(sq, params.window, axis=1, mode="constant") * params.window  # sums over the window
    local_n = uniform_filter1d(known.astype(float), params.window, axis=1, mode="constant") * params.window
    count = known.sum(1)
    rms = np.sqrt(sq.sum(1) / np.maximum(count, 1)) / sigma
    local = np.sqrt(np.maximum(local_sq, 0) / np.maximum(local_n, 1)) / sigma  # the filter leaves -1e-16
    span = params.moving_sigmas - params.still_sigmas
    track = np.where(count >= 3, np.clip((rms - params.still_sigmas) / span, 0, 1), np.nan)
    sample = np.where((local_n > 0) & (count >= 3)[:, None], np.clip((local - params.still_sigmas) / span, 0, 1), np.nan)
    return MotionScores(track, count.astype(float), sample)


def local_motion(xy: np.ndarray, visible: np.ndarray, still: np.ndarray,
                 params: MotionParams | None = None) -> np.ndarray:
    """Fraction of its frame pairs in which each track moved against the still tracks around it
    [N] (NaN where never compared).

    For pairs ``(t, t + g)``, g in ``local_gaps``, a track's displacement is compared with the
    median displacement of its ``local_k`` nearest ``still`` [N] tracks (itself left out); it
    moved when they differ by more than 1 px + 10% of that displacement. No camera model: a
    background point moves as the background around it whatever the camera does, while a
    moving subject (or a point in front of a farther background) does not. ``xy`` [N, T, 2],
    ``visible`` [N, T] as :func:`motion_scores`."""
    params = params or MotionParams()
    N, T = visible.shape
    k = params.local_k
    hits, count = np.zeros(N), np.zeros(N)
    for gap in params.local_gaps:
        for t in range(T - gap):
            both = visible[:, t] & visible[:, t + gap]
            ref, query = np.flatnonzero(both & still), np.flatnonzero(both)
            if len(ref) <= k:
                continue
            d = xy[:, t + gap].astype(np.float64) - xy[:, t]
            _, nn = cKDTree(xy[ref, t]).query(xy[query, t], k=k + 1)
            near = ref[nn]
            order = np.argsort(near == query[:, None], axis=1, kind="stable")[:, :k]  # itself last, then dropped
            pred = np.median(d[np.take_along_axis(near, order, 1)], axis=1)
            hits[query] += np.linalg.norm(d[query] - pred, axis=1) > 1.0 + 0.1 * np.linalg.norm(pred, axis=1)
            count[query] += 1
    return np.where(count > 0, hits / np.maximum(count, 1), np.nan)


def camera_motion_scores(xy: np.ndarray, visible: np.ndarray, depth: np.ndarray | None, size: tuple[int, int],
                         params: MotionParams | None = None) -> tuple[MotionScores, str]:
    """Motion scores and the method used: ``"multiview+pairs"`` for a camera that translates
    when there is no z-depth and pycolmap poses it (the larger of :func:`multiview_scores`
    and :func:`motion_scores` per track and sample), else ``"pairs"`` (:func:`motion_scores`).
    Shapes as :func:`motion_scores`."""
    from dynrec.geometry.colmap import available
    from dynrec.geometry.sfm import image_motion, rotation_dominance

    params = params or MotionParams()
    if depth is None and available():
        K = _pinhole(size[0], size[1], params.focal)
        moves = image_motion(xy, visible) > params.static_image_px
        if moves and not rotation_dominance(xy, visible, K) <= params.rotation_only:  # NaN: unknown, try
            err = multiview_residuals(xy, visible, size, params)
            if err is not None:
                # either model's evidence counts: the pairs see what a static point can also
                # explain over the whole video (e.g. a walker the camera passes)
                multi, pairs = multiview_scores(err, params), motion_scores(xy, visible, depth, size, params)
                # the multi-view model's false alarms move as the still tracks around them do
                still = np.nan_to_num(np.fmax(multi.track, pairs.track), nan=1.0) < params.local_still
                demoted = ~(local_motion(xy, visible, still, params) >= params.local_moving)
                multi.track[demoted & (np.nan_to_num(multi.track) > np.nan_to_num(pairs.track))] = np.nan
                multi.sample[np.isnan(multi.track)] = np.nan
                return MotionScores(np.fmax(multi.track, pairs.track), np.maximum(multi.pairs, pairs.pairs),
                                    np.fmax(multi.sample, pairs.sample),
                                    weak=np.nan_to_num(multi.track) > np.nan_to_num(pairs.track)), "multiview+pairs"
    return motion_scores(xy, visible, depth, size, params), "pairs"


def fixated_tracks(xy: np.ndarray, visible: np.ndarray, size: tuple[int, int], centre: float = 0.2,
                   radius: float = 0.08, min_visible: float = 0.5) -> np.ndarray:
    """Tracks of what the camera keeps in view near the image centre -> indices [P].

    A casual video of a still (or barely moving) subject orbits or follows it, so the subject
    stays near the centre while the background sweeps across the image. Of the tracks visible
    in ``min_visible`` of the frames, the one whose median position lies within ``centre`` x
    max(W, H) of the centre and moves least in the image (median distance to its median
    position, plus its distance to the centre) anchors the subject; every such track within
    ``radius`` x max(W, H) of it (median positions) that moves as little (image spread at most
    3x the anchor's, or 3% of max(W, H)) joins it. Empty when no track qualifies.
    """
    W, H = size
    L = float(max(W, H))
    T = visible.shape[1]
    seen = visible.sum(1) >= max(2, min_visible * T)
    idx = np.flatnonzero(seen)
    if len(idx) == 0:
        return idx
    pts = np.where(visible[idx, :, None], xy[idx], np.nan)
    med = np.nanmedian(pts, axis=1)  # [n, 2]
    spread = np.nanmedian(np.linalg.norm(pts - med[:, None], axis=-1), axis=1) / L
    off = np.linalg.norm(med - [W / 2, H / 2], axis=1) / L
    ok = off <= centre
    if not ok.any():
        return np.zeros(0, np.int64)
    anchor = np.flatnonzero(ok)[np.argmin((spread + off)[ok])]
    calm = spread <= max(3 * spread[anchor], 0.03)  # moves with the anchor, not across the image
    near = ok & calm & (np.linalg.norm(med - med[anchor], axis=1) <= radius * L)
    return idx[near]


def prompt_tracks(xy: np.ndarray, visible: np.ndarray, prompt: tuple[int, float, float], radius: float) -> np.ndarray:
    """Tracks visible at the prompt frame within ``radius`` px of the prompt (the nearest
    one when none is that close) -> indices [P]."""
    t, x, y = prompt
    idx = np.flatnonzero(visible[:, t])
    if len(idx) == 0:
        return idx
    d = np.linalg.norm(xy[idx, t] - np.array([x, y]), axis=1)
    near = idx[d <= radius]
    return near if len(near) else idx[[int(np.argmin(d))]]


def relative_pose(x1: np.ndarray, x2: np.ndarray, z1: np.ndarray, K: np.ndarray, threshold: float
                  ) -> tuple[np.ndarray, np.ndarray] | None:
    """Camera motion (R [3, 3], t [3]) mapping frame-1 camera points to frame 2, by PnP on
    correspondences ``x1`` -> ``x2`` [P, 2] (+0.5 centres) with depth ``z1`` [P]; None if it fails."""
    if len(x1) < 6:
        return None
    a, b = x1 - 0.5, x2 - 0.5
    X = np.c_[(a - K[:2, 2]) / np.diag(K)[:2], np.ones(len(a))] * z1[:, None]
    found, rvec, tvec, inl = cv2.solvePnPRansac(X, b, K, None, reprojectionError=threshold, iterationsCount=300,
                                                confidence=0.999, flags=cv2.SOLVEPNP_EPNP)
    if not found or inl is None or len(inl) < 6:
        return None
    rvec, tvec = cv2.solvePnPRefineLM(X[inl[:, 0]], b[inl[:, 0]], K, None, rvec, tvec)
    return cv2.Rodrigues(rvec)[0], tvec[:, 0]


def change_map(frames: np.ndarray, depth: np.ndarray, t: int, poses: dict[int, tuple[np.ndarray, np.ndarray]],
               K: np.ndarray, blur: float = 1.0) -> np.ndarray:
    """How much frame ``t`` differs from the static-scene prediction [H, W] (NaN where unknown).

    Every pixel of frame ``t`` is moved with its depth and the camera motion ``poses[u]``
    (frame t -> frame u, see :func:`relative_pose`) into frame ``u``; the colour difference
    (RGB in [0, 1], after a Gaussian blur of ``blur`` px against aliasing) is taken where
    frame ``u`` sees the same surface (not occluded: its depth there is not nearer), and the
    median over the frames ``u`` is returned. Static surfaces give ~0, moving ones do not.
    """
    H, W = depth.shape[1:]
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    rays = np.stack([(xs - K[0, 2]) / K[0, 0], (ys - K[1, 2]) / K[1, 1], np.ones_like(xs)], axis=-1)
    ref = cv2.GaussianBlur(frames[t].astype(np.float32) / 255.0, (0, 0), blur)
    X = rays * depth[t][..., None]
    diffs = []
    for u, (R, tv) in poses.items():
        Y = X @ R.T + tv
        z = np.where(Y[..., 2] > 1e-9, Y[..., 2], np.nan)
        mx = (Y[..., 0] / z * K[0, 0] + K[0, 2]).astype(np.float32)
        my = (Y[..., 1] / z * K[1, 1] + K[1, 2]).astype(np.float32)
        other = cv2.GaussianBlur(frames[u].astype(np.float32) / 255.0, (0, 0), blur)
        seen = cv2.remap(other, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(np.nan,) * 3)
        zu = cv2.remap(depth[u].astype(np.float32), mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                       borderValue=0.0)
        d = np.linalg.norm(seen - ref, axis=-1)
        d[~(zu >= 0.9 * z) | (depth[t] <= 0)] = np.nan  # hidden in u, unknown depth or outside
        diffs.append(d)
    if not diffs:
        return np.full((H, W), np.nan, np.float32)
    stack = np.stack(diffs)
    out = np.full((H, W), np.nan, np.float32)
    known = np.isfinite(stack).any(0)
    out[known] = np.nanmedian(stack[:, known], axis=0)
    return out


@dataclass(frozen=True)
class MaskParams:
    """``moving`` / ``static``: track scores at / above which a track is a foreground seed and
    below which it is a background seed; ``sample_moving``: the score a foreground seed's
    track needs in the frame itself; ``min_pairs`` compared pairs a foreground seed's
    track needs; ``link``: seeds closer than this (fraction of max(W, H)) belong to one
    cluster, and clusters with under ``min_cluster`` of the largest one's seeds are dropped
    (isolated mistracked points); ``reach``: beyond this (fraction of max(W, H)) from every
    foreground seed is background; ``conflict_px``: seeds with a seed of the other kind this
    close are only probable (a track's patch that straddles a motion boundary moves partly
    with each side, so seeds there are unsure); ``nearest_seed``: GrabCut starts with the
    pixels nearer to a foreground seed than to every background seed as probable foreground
    (within ``reach``), not the seeds' own pixels only, so its first colour model of the
    subject sees more than a few dozen pixels; ``flow_majority``: the 3-frame majority vote
    carries the neighbours' masks along dense optical flow first; ``static_change``: with
    depth, pixels whose change from the static prediction (:func:`change_map`) is below this
    are background; ``change_gaps``:
    frames compared for it; ``chroma`` / ``luma``: Lab scaling of the image GrabCut sees
    (the subject differs from the background more in colour than in brightness);
    ``iters``: GrabCut iterations; ``hysteresis``: tracks neither moving nor still (score
    between ``static`` and ``moving``, half of ``min_pairs``, and a score at that frame of at
    least ``static``) join the foreground seeds when a
    chain of such tracks, each step under ``weak_link`` (fraction of max(W, H)), links them to
    a moving one in that frame (a subject's slow parts move with its fast ones). Tracks only the
    multi-view model calls moving (:attr:`MotionScores.weak`) are such in-between tracks too,
    unless fewer than ``min_strong`` tracks are moving by the pairs' evidence.
    ``unexplained_gaps``: frames compared by :func:`unexplained_change` (empty: not used);
    ``unexplained``, ``unexplained_sigmas``, ``unexplained_min_px``: see
    :func:`changed_pixels`."""

    moving: float = 0.5
    sample_moving: float = 0.3
    static: float = 0.2
    min_pairs: int = 20
    link: float = 0.05
    min_cluster: float = 0.2
    reach: float = 0.15
    conflict_px: float = 4.0
    static_change: float = 0.03
    change_gaps: tuple[int, ...] = (-8, -4, 4, 8)
    chroma: float = 2.0
    luma: float = 0.5
    iters: int = 4
    hysteresis: bool = True
    weak_link: float = 0.02
    min_strong: int = 8
    nearest_seed: bool = True
    flow_majority: bool = True
    unexplained_gaps: tuple[int, ...] = (-2, -1, 1, 2)
    unexplained: float = 0.08
    unexplained_sigmas: float = 8.0
    unexplained_min_px: int = 6


def _clustered(points: np.ndarray, link: float, min_cluster: float) -> np.ndarray:
    """Mask [P] of ``points`` [P, 2] in clusters (single linkage at ``link`` px) with at least
    ``min_cluster`` times the points of the largest cluster."""
    if len(points) < 2:
        return np.ones(len(points), bool)
    pairs = cKDTree(points).query_pairs(link, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(points),) * 2)
    _, label = connected_components(graph, directed=False)
    sizes = np.bincount(label)
    return sizes[label] >= min_cluster * sizes.max()


def _joined(points: np.ndarray, strong: np.ndarray, weak: np.ndarray, link: float) -> np.ndarray:
    """Hysteresis in the image: the ``weak`` [P] of ``points`` [P, 2] joined to a ``strong``
    one by a chain of strong or weak points, each step shorter than ``link`` px -> [P] bool."""
    both = np.flatnonzero(strong | weak)
    out = np.zeros(len(points), bool)
    if not weak.any() or not strong.any():
        return out
    pairs = cKDTree(points[both]).query_pairs(link, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(both),) * 2)
    _, label = connected_components(graph, directed=False)
    seeded = np.unique(label[strong[both]])
    out[both[np.isin(label, seeded)]] = True
    return out & weak


def _grabcut_image(frame: np.ndarray, params: MaskParams) -> np.ndarray:
    """The 8-bit 3-channel image GrabCut models: Lab with scaled lightness and chroma."""
    lab = cv2.cvtColor(frame, cv2.COLOR_RGB2Lab).astype(np.float32)
    lab[..., 0] *= params.luma
    lab[..., 1:] = 128 + (lab[..., 1:] - 128) * params.chroma
    return np.clip(lab, 0, 255).astype(np.uint8)


def seed_labels(shape: tuple[int, int], fg: np.ndarray, bg: np.ndarray, static: np.ndarray | None,
                params: MaskParams, firm: np.ndarray | None = None) -> np.ndarray:
    """GrabCut's starting labels [H, W] (``cv2.GC_*``) from foreground / background seed
    points ``fg`` [P, 2] / ``bg`` [Q, 2] (pixels, +0.5 centres) and an optional map of surely
    static pixels [H, W].

    A seed is sure (``GC_FGD`` / ``GC_BGD``) unless a seed of the other kind lies within
    ``params.conflict_px``, then probable; foreground seeds flagged ``firm`` [P] (a prompted
    subject's) stay sure. Other pixels: probable foreground when nearer to a foreground seed
    than to every background seed (``params.nearest_seed``; else only within 1 px of one),
    surely background beyond ``params.reach`` x max(W, H) of every foreground seed or where
    ``static`` says so, probable background elsewhere.
    """
    H, W = shape
    f = np.clip(np.floor(fg).astype(int), 0, [W - 1, H - 1])
    b = np.clip(np.floor(bg).astype(int), 0, [W - 1, H - 1])
    seeds = np.zeros((H, W), np.uint8)
    seeds[f[:, 1], f[:, 0]] = 1
    dist = cv2.distanceTransform(1 - seeds, cv2.DIST_L2, 3)
    label = np.full((H, W), cv2.GC_PR_BGD, np.uint8)
    label[dist <= 1.0] = cv2.GC_PR_FGD
    if params.nearest_seed and len(b):  # the seeds' Voronoi cells: a first guess of the extent
        bg_seeds = np.ones((H, W), np.uint8)
        bg_seeds[b[:, 1], b[:, 0]] = 0
        label[dist < cv2.distanceTransform(bg_seeds, cv2.DIST_L2, 3)] = cv2.GC_PR_FGD
    label[dist > params.reach * max(W, H)] = cv2.GC_BGD
    if static is not None:
        label[static & (dist > 1.0)] = cv2.GC_BGD
    sure_fg = np.ones(len(f), bool)
    sure_bg = np.ones(len(b), bool)
    if len(b):  # a seed with one of the other kind right next to it may be mistracked
        sure_fg = cKDTree(bg).query(fg, k=1)[0] > params.conflict_px
        sure_bg = cKDTree(fg).query(bg, k=1)[0] > params.conflict_px
    if firm is not None:
        sure_fg |= firm
    label[b[:, 1], b[:, 0]] = np.where(sure_bg, cv2.GC_BGD, cv2.GC_PR_BGD)
    label[f[:, 1], f[:, 0]] = np.where(sure_fg, cv2.GC_FGD, cv2.GC_PR_FGD)
    return label


def _grabcut(frame: np.ndarray, fg: np.ndarray, bg: np.ndarray, static: np.ndarray | None,
             params: MaskParams, firm: np.ndarray | None = None) -> np.ndarray:
    """One frame: GrabCut from the :func:`seed_labels` of these seeds -> mask [H, W] bool."""
    H, W = frame.shape[:2]
    if len(fg) == 0:
        return np.zeros((H, W), bool)
    label = seed_labels((H, W), fg, bg, static, params, firm)
    kinds = np.isin(label, (cv2.GC_BGD, cv2.GC_PR_BGD)).any(), np.isin(label, (cv2.GC_FGD, cv2.GC_PR_FGD)).any()
    if all(kinds):
        bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
        cv2.grabCut(_grabcut_image(frame, params), label, None, bgd, fgd, params.iters, cv2.GC_INIT_WITH_MASK)
    return (label == cv2.GC_FGD) | (label == cv2.GC_PR_FGD)


def refine_boundary(frame: np.ndarray, mask: np.ndarray, iters: int = 3) -> np.ndarray:
    """A second GrabCut on the 1-pixel band around ``mask`` [H, W] only, on plain Lab.

    The first pass weights chroma up to separate the subject from the background, but video
    chroma is subsampled (4:2:0), so it smears the subject's colour one pixel outwards; here
    only the band's pixels can change, judged against colour models of the mask and of its
    surroundings with lightness at full weight.
    """
    if not mask.any():
        return mask
    kernel = np.ones((3, 3), np.uint8)
    m = mask.astype(np.uint8)
    label = np.full(mask.shape, cv2.GC_BGD, np.uint8)
    label[cv2.dilate(m, kernel) > 0] = cv2.GC_PR_BGD
    label[mask] = cv2.GC_PR_FGD
    label[cv2.erode(m, kernel) > 0] = cv2.GC_FGD
    if not (label == cv2.GC_BGD).any():
        return mask
    lab = cv2.cvtColor(frame, cv2.COLOR_RGB2Lab)
    cv2.grabCut(lab, label, None, np.zeros((1, 65)), np.zeros((1, 65)), iters, cv2.GC_INIT_WITH_MASK)
    return (label == cv2.GC_FGD) | (label == cv2.GC_PR_FGD)


def _keep_components(mask: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The connected components of ``mask`` [H, W] that contain one of ``points`` [P, 2]."""
    H, W = mask.shape
    _, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    p = np.clip(np.floor(points).astype(int), 0, [W - 1, H - 1])
    keep = np.unique(labels[p[:, 1], p[:, 0]])
    return np.isin(labels, keep[keep > 0])


def temporal_majority(masks: np.ndarray, frames: np.ndarray | None = None) -> np.ndarray:
    """Each pixel keeps the label that at least two of frames t-1, t, t+1 give it ([T, H, W]
    bool; at the video's ends frame t stands in for the missing neighbour); with ``frames``
    [T, H, W, 3] the neighbours' masks are first carried to frame t along dense optical flow
    (OpenCV's DIS, from t to each neighbour), so a moving subject keeps its edges."""
    T = len(masks)
    if T < 3:
        return masks.copy()
    votes = masks.astype(np.int8)
    if frames is not None:
        flow = dense_flow(frames)
        H, W = masks.shape[1:]
        gx, gy = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    for t in range(T):
        for u in (max(t - 1, 0), min(t + 1, T - 1)):
            if frames is None or u == t:
                votes[t] += masks[u]
                continue
            f = flow(t, u)
            votes[t] += cv2.remap(masks[u].astype(np.uint8), gx + f[..., 0], gy + f[..., 1],
                                  cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE) > 0
    return votes >= 2


def unexplained_change(blurred: list[np.ndarray], xy: np.ndarray, visible: np.ndarray, still: np.ndarray, t: int,
                       gaps: tuple[int, ...]) -> np.ndarray:
    """How much of frame ``t`` the still background's motion cannot explain [H, W] (NaN: unknown).

    For each gap ``g`` (frame ``u = t + g``) the displacement of the ``still`` [N] tracks seen
    at t and u is interpolated over the image (linearly over their Delaunay triangles), frame
    u is pulled back to t along it and the colour difference (RGB in [0, 1] of the
    ``blurred`` [T] frames [H, W, 3] float32) is taken; the minimum over the gaps is returned.
    Outside the tracks' convex hull nothing is known (an object entering at the image's edge
    has no tracks yet, and extrapolated motion is wrong on it). A static surface matches in
    some frame (before or after, whichever does not hide it); a surface that moves on its own
    matches in none, however thin or fast it is (a spinning blade no track survives on)."""
    from scipy.interpolate import LinearNDInterpolator
    from scipy.spatial import QhullError

    H, W = blurred[t].shape[:2]
    T = len(blurred)
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    pix = np.c_[xs.ravel() + 0.5, ys.ravel() + 0.5]
    best = np.full((H, W), np.nan, np.float32)
    for g in gaps:
        u = t + g
        if not 0 <= u < T:
            continue
        b = np.flatnonzero(still & visible[:, t] & visible[:, u])
        if len(b) < 8:
            continue
        at, d = xy[b, t].astype(np.float64), (xy[b, u] - xy[b, t]).astype(np.float64)
        try:
            disp = LinearNDInterpolator(at, d)(pix).reshape(H, W, 2).astype(np.float32)
        except QhullError:  # degenerate (e.g. collinear) tracks: nothing known
            continue
        pulled = cv2.remap(blurred[u], xs + disp[..., 0], ys + disp[..., 1], cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=(np.nan,) * 3)
        diff = np.linalg.norm(pulled - blurred[t], axis=-1)
        best = np.fmin(best, diff)
    return best


def changed_pixels(change: np.ndarray, params: MaskParams) -> np.ndarray:
    """Pixels of an :func:`unexplained_change` map [H, W] that moved on their own -> [H, W]
    bool: above ``params.unexplained`` and above the map's median plus
    ``params.unexplained_sigmas`` robust deviations, opened by a 3x3 square, in components of
    at least ``params.unexplained_min_px`` pixels."""
    known = np.isfinite(change)
    if not known.any():
        return np.zeros(change.shape, bool)
    values = change[known]
    med = float(np.median(values))
    thr = max(params.unexplained, med + params.unexplained_sigmas * 1.4826 * float(np.median(np.abs(values - med))))
    hit = (np.nan_to_num(change) > thr).astype(np.uint8)
    hit = cv2.morphologyEx(hit, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    _, labels, stats, _ = cv2.connectedComponentsWithStats(hit, connectivity=8)
    big = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= params.unexplained_min_px)
    return np.isin(labels, big[big > 0])


def segment(frames: np.ndarray, xy: np.ndarray, visible: np.ndarray, scores: MotionScores,
            depth: np.ndarray | None = None, subject: np.ndarray | None = None,
            params: MaskParams | None = None, motion: MotionParams | None = None,
            progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Dense foreground masks [T, H, W] bool from tracks and their motion scores.

    Args:
        frames: [T, H, W, 3] uint8 RGB; xy: [N, T, 2]; visible: [N, T] the samples to use.
        scores: :func:`motion_scores` of these tracks.
        depth: [T, H, W] z-depth (any scale) or None: with depth, the camera motion between
            frames gives a map of surely static pixels (:func:`change_map`).
        subject: [P] indices of the prompted subject's tracks (they are foreground seeds
            wherever visible, and only the mask components holding one are kept), or None.
        progress: ``progress(done, total)`` per frame.
    """
    params = params or MaskParams()
    motion = motion or MotionParams()
    cv2.setRNGSeed(0)  # GrabCut's k-means starts from OpenCV's global RNG: same input, same masks
    T, H, W = frames.shape[:3]
    L = max(W, H)
    K = _pinhole(W, H, motion.focal)
    sample = np.where(np.isnan(scores.sample), scores.track[:, None], scores.sample)
    moving = scores.moving(params.moving, params.min_pairs, params.min_strong)  # the weak join by hysteresis below
    static = scores.track < params.static
    is_subject = np.zeros(len(xy), bool)
    if subject is not None:
        is_subject[subject] = True
    out = np.zeros((T, H, W), bool)
    blurred = [cv2.GaussianBlur(f.astype(np.float32) / 255.0, (0, 0), 1.0) for f in frames]
    changed = np.zeros((T, H, W), bool)
    for t in range(T):
        vis = visible[:, t]
        fg = (vis & moving & (sample[:, t] >= params.sample_moving)) | (vis & is_subject)
        bg = vis & static & (sample[:, t] < params.moving) & ~is_subject
        if params.hysteresis:
            # in between over the video and at this frame too (a track still here says nothing)
            weak = (vis & ~fg & ~bg & (scores.pairs >= params.min_pairs / 2) & (np.nan_to_num(scores.track) >= params.static)
                    & (sample[:, t] >= params.static))
            grow = fg & is_subject if subject is not None else fg  # a prompt grows only its subject
            fg = fg | _joined(xy[:, t], grow, weak, params.weak_link * L)
        fg_xy, firm = xy[fg, t], is_subject[fg]
        kept = _clustered(fg_xy, params.link * L, params.min_cluster) | firm
        fg_xy, firm = fg_xy[kept], firm[kept]
        still = None
        if depth is not None:
            poses = {}
            for g in params.change_gaps:
                u = t + g
                if not 0 <= u < T:
                    continue
                idx = np.flatnonzero(bg & visible[:, u])
                z, ok = sample_depth(depth[t], xy[idx, t].astype(np.float64), motion.max_depth_step)
                pose = relative_pose(xy[idx[ok], t].astype(np.float64), xy[idx[ok], u].astype(np.float64), z[ok], K,
                                     2 * motion.threshold_px)
                if pose is not None:
                    poses[u] = pose
            change = change_map(frames, depth, t, poses, K)
            still = np.isfinite(change) & (change < params.static_change)
        if params.unexplained_gaps and subject is None:
            changed[t] = changed_pixels(unexplained_change(blurred, xy, visible, static, t, params.unexplained_gaps),
                                        params)
            ys, xs = np.nonzero(changed[t])
            fg_xy, firm = np.concatenate([fg_xy, np.c_[xs + 0.5, ys + 0.5]]), np.r_[firm, np.zeros(len(xs), bool)]
        out[t] = _grabcut(frames[t], fg_xy, xy[bg, t], still, params, firm)
        if progress is not None:
            progress(t + 1, T)
    voted = temporal_majority(out, frames if params.flow_majority else None)
    # what moved in a frame by its own evidence stays: the flow fails on fast thin parts
    near = np.stack([cv2.dilate(c.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0 for c in changed])
    out = voted | (out & near)
    out = np.stack([refine_boundary(frames[t], out[t], params.iters) for t in range(T)])
    if subject is not None and len(subject):
        for t in range(T):
            seen = subject[visible[subject, t]]
            if len(seen):
                out[t] = _keep_components(out[t], xy[seen, t])
    return out


def parse_prompt(text: str, frame: int, frames: int, width: int, height: int, scale: tuple[float, float]
                 ) -> tuple[int, float, float]:
    """``"x,y"`` in pixels of the input video -> (frame, x, y) in pixels of the kept frames.

    ``scale`` = (kept width / input width, kept height / input height). Raises DynrecError
    for a malformed prompt, a frame out of range or a point outside the image."""
    parts = text.replace(" ", "").split(",")
    try:
        x, y = (float(v) for v in parts)
    except ValueError:
        raise DynrecError(f"masks: --set masks.prompt expects 'x,y' in pixels, got '{text}'") from None
    if not 0 <= frame < frames:
        raise DynrecError(f"masks: prompt_frame {frame} is outside the {frames} kept frames (0..{frames - 1})")
    in_w, in_h = width / scale[0], height / scale[1]
    if not (0 <= x < in_w and 0 <= y < in_h):
        raise DynrecError(f"masks: the prompt ({x:g}, {y:g}) is outside the image, which is "
                          f"{round(in_w)}x{round(in_h)} pixels (x in [0, {round(in_w)}), y in [0, {round(in_h)}))")
    return frame, x * scale[0], y * scale[1]


def parse_points(text: str, frame: int, frames: int, width: int, height: int, scale: tuple[float, float]
                 ) -> list[tuple[int, float, float]]:
    """``"x,y"`` or several ``"x1,y1;x2,y2"`` -> a list of :func:`parse_prompt` results."""
    return [parse_prompt(part, frame, frames, width, height, scale) for part in text.split(";") if part.strip()]


def parse_box(text: str, frame: int, frames: int, width: int, height: int, scale: tuple[float, float]
              ) -> tuple[int, float, float, float, float]:
    """``"x0,y0,x1,y1"`` (two opposite corners, pixels of the input video) -> (frame, x0, y0,
    x1, y1) in pixels of the kept frames, corners ordered. Raises DynrecError for a malformed
    box, a frame out of range, a corner outside the image or an empty box."""
    parts = text.replace(" ", "").split(",")
    try:
        x0, y0, x1, y1 = (float(v) for v in parts)
    except ValueError:
        raise DynrecError(f"masks: --prompt-box expects 'x0,y0,x1,y1' in pixels, got '{text}'") from None
    _, a, b = parse_prompt(f"{min(x0, x1)},{min(y0, y1)}", frame, frames, width, height, scale)
    _, c, d = parse_prompt(f"{max(x0, x1)},{max(y0, y1)}", frame, frames, width, height, scale)
    if c - a < 2 or d - b < 2:
        raise DynrecError(f"masks: the prompt box '{text}' is under 2 pixels wide or high in the kept frames")
    return frame, a, b, c, d


def box_tracks(frame: np.ndarray, xy: np.ndarray, visible: np.ndarray, box: tuple[int, float, float, float, float],
               iters: int = 5, min_tracks: int = 8) -> np.ndarray:
    """Tracks on the object inside a box -> indices [P].

    GrabCut initialised with the rectangle (its classic use) segments the object in the
    box's frame ``frame`` [H, W, 3]; the tracks visible there (``xy`` [N, T, 2], ``visible``
    [N, T]) that lie on that segment are the object's. Falls back to every track inside the
    box when fewer than ``min_tracks`` lie on the segment (a subject too thin or too like its
    surroundings for a colour model)."""
    t, x0, y0, x1, y1 = box
    H, W = frame.shape[:2]
    rect = (int(x0), int(y0), max(1, int(np.ceil(x1)) - int(x0)), max(1, int(np.ceil(y1)) - int(y0)))
    label = np.zeros((H, W), np.uint8)
    cv2.setRNGSeed(0)  # GrabCut's k-means starts from OpenCV's global RNG: same box, same answer
    cv2.grabCut(frame, label, rect, np.zeros((1, 65)), np.zeros((1, 65)), iters, cv2.GC_INIT_WITH_RECT)
    on = (label == cv2.GC_FGD) | (label == cv2.GC_PR_FGD)
    idx = np.flatnonzero(visible[:, t])
    p = xy[idx, t]
    inside = (p[:, 0] >= x0) & (p[:, 0] < x1) & (p[:, 1] >= y0) & (p[:, 1] < y1)
    px = np.clip(np.floor(p).astype(int), 0, [W - 1, H - 1])
    chosen = idx[inside & on[px[:, 1], px[:, 0]]]
    return chosen if len(chosen) >= min(min_tracks, int(inside.sum())) else idx[inside]
