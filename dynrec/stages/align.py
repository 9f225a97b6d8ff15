"""align: monocular depth made consistent with the cameras, for ``lift`` and ``recon``.

Per frame, a robust scale/shift (:func:`dynrec.geometry.depthfit.fit_scale_shift`) maps the
depth stage's maps onto the depths of the sparse background points of the cameras stage
(SfM / bundle adjustment; with cameras that come without points, e.g. ``gt``, the background
tracks are triangulated with the cameras). Depth-like maps are fitted in depth
(``z ≈ s m + b``), disparity-like ones (the depth stage's ``depth_kind``) in inverse depth
(``1/z ≈ s m + b``) and then inverted. Without depth maps (``depth_kind: none``) the
sparse points seen in each frame are interpolated into dense depth instead
(:func:`dynrec.geometry.depthfit.densify`); frames seeing fewer than ``min_points`` copy the
nearest frame that does. Frames with too few points get the scale/shift
interpolated from their neighbours. With ``static`` cameras (no parallax, no points) each
frame is fitted to a reference frame on the background pixels instead.

When both depth and cameras are ground truth the depth is copied (scale 1, shift 0):
``fast_path: gt`` in the manifest. Output: ``align/depth.npz`` (z-depth, 0 = unknown) and
per-frame ``scale`` / ``shift`` in the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dynrec.artifacts import Cameras, Depth, Masks, SparsePoints, Tracks
from dynrec.errors import ArtifactError, DynrecError
from dynrec.geometry.camera import world_to_camera
from dynrec.geometry.depthfit import densify, fill_gaps, fit_scale_shift
from dynrec.geometry.sfm import background_observations, sample_smooth, triangulate
from dynrec.stages.base import StageContext, StageSpec
from dynrec.stages.upstream import depth_kind, upstream_info


@dataclass
class AlignParams:
    """``shift``: fit a shift as well as a scale; ``min_points`` sparse points a frame needs
    for its own fit (others are interpolated); ``inlier_rel`` RANSAC inlier threshold on the
    relative residual; ``max_depth_ratio``: aligned depths beyond this many times the 95th
    percentile of the sparse depths become 0 (unknown, e.g. sky); ``gt_fast_path``: copy gt
    depth when the cameras are gt too; ``static_samples`` background pixels per frame used
    with static cameras; ``seed``."""

    shift: bool = True
    min_points: int = 10
    inlier_rel: float = 0.05
    max_depth_ratio: float = 50.0
    gt_fast_path: bool = True
    static_samples: int = 5000
    seed: int = 0


def _sparse_points(ctx: StageContext, cams: Cameras, tracks: Tracks, bg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(xyz [P, 3], track index [P]) of the cameras' points, or triangulated background tracks."""
    folder = ctx.inputs["cameras"]
    if (folder / SparsePoints.FILE).is_file():
        pts = SparsePoints.load(folder)
        if (pts.track_index >= len(tracks.xy)).any():
            raise ArtifactError(folder / SparsePoints.FILE, "track_index", f"indices beyond the {len(tracks.xy)} tracks")
        if len(pts.xyz):
            return pts.xyz.astype(np.float64), pts.track_index.astype(np.int64)
    idx = np.flatnonzero(bg.sum(1) >= 2)
    xyz, ok = triangulate(tracks.xy[idx].astype(np.float64), bg[idx], cams.K, cams.w2c)
    return xyz[ok], idx[ok]


def _fit_frames(values: list[tuple[np.ndarray, np.ndarray]], params: AlignParams, T: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame (scale, shift, own-fit flag, inlier count) from (m, y) samples."""
    scale, shift = np.ones(T), np.zeros(T)
    own, inliers = np.zeros(T, bool), np.zeros(T, np.int64)
    for t, (m, y) in enumerate(values):
        if len(m) < params.min_points:
            continue
        fit = fit_scale_shift(m, y, shift=params.shift, inlier_rel=params.inlier_rel, seed=params.seed + t)
        if fit is None or fit.inliers.sum() < max(params.min_points // 2, 2):
            continue
        scale[t], shift[t], own[t], inliers[t] = fit.scale, fit.shift, True, int(fit.inliers.sum())
    return fill_gaps(scale, own), fill_gaps(shift, own), own, inliers


def _apply(mono: np.ndarray, scale: np.ndarray, shift: np.ndarray, kind: str) -> np.ndarray:
    out = scale[:, None, None] * mono + shift[:, None, None]
    if kind == "disparity":
        out = np.where(out > 0, 1.0 / np.where(out > 0, out, 1.0), 0.0)
    return np.where((mono > 0) & (out > 0), out, 0.0)


def run(ctx: StageContext, params: AlignParams) -> dict[str, Any]:
    depth = Depth.load(ctx.inputs["depth"]).depth
    cams = Cameras.load(ctx.inputs["cameras"])
    kind = depth_kind(ctx)
    T = depth.shape[0]
    if cams.K.shape[0] != T:
        raise DynrecError(f"align: depth has {T} frames but cameras {cams.K.shape[0]}")
    info: dict[str, Any] = {"depth_kind": kind, "cameras": cams.method}
    if params.gt_fast_path and cams.method == "gt" and upstream_info(ctx, "depth").get("backend") == "gt" \
            and kind == "depth":
        Depth(depth).save(ctx.out)
        return {**info, "fast_path": "gt", "scale": [1.0] * T, "shift": [0.0] * T}

    tracks = Tracks.load(ctx.inputs["tracks"])
    masks = Masks.load(ctx.inputs["masks"]).masks
    bg = background_observations(tracks.xy, tracks.visible, masks)
    mono = depth.astype(np.float64)
    values: list[tuple[np.ndarray, np.ndarray]] = []
    still = cams.method in ("static", "still")  # no parallax (see the cameras stage)
    if still and kind == "none":  # nothing to measure depth with: a plane at distance 1
        ctx.console.print("[yellow]align: static or still cameras and no depth maps; the depth is a plane at distance 1[/]")
        Depth(np.ones_like(depth, dtype=np.float32)).save(ctx.out)
        return {**info, "fast_path": "plane"}
    if still:
        # no parallax, no points: fit every frame to a reference frame on background pixels
        ref = T // 2
        rng = np.random.default_rng(params.seed)
        for t in range(T):
            ys, xs = np.nonzero(~masks[t] & (mono[t] > 0) & (mono[ref] > 0))
            pick = rng.choice(len(ys), min(len(ys), params.static_samples), replace=False) if len(ys) else []
            values.append((mono[t][ys[pick], xs[pick]], mono[ref][ys[pick], xs[pick]]))
        info["reference_frame"] = ref
        max_depth = None
    else:
        xyz, index = _sparse_points(ctx, cams, tracks, bg)
        if len(xyz) == 0:
            raise DynrecError("align: the cameras stage left no sparse background points and none could be "
                              "triangulated; the depth cannot be aligned (check the cameras stage)")
        info["points"] = len(xyz)
        zs = []
        for t in range(T):
            seen = bg[index, t]
            cam = world_to_camera(xyz[seen], cams.w2c[t].astype(np.float64))
            z = cam[:, 2]
            if kind == "none":  # no maps to fit: keep where the points are and their depth
                good = z > 0
                zs.append(z[good])
                values.append((tracks.xy[index[seen], t][good], z[good]))
                continue
            m = sample_smooth(mono, tracks.xy[index[seen], t], np.full(int(seen.sum()), t))
            good = (z > 0) & (m > 0)
            zs.append(z[good])
            values.append((m[good], z[good] if kind == "depth" else 1.0 / z[good]))
        allz = np.concatenate(zs) if zs else np.zeros(0)
        max_depth = params.max_depth_ratio * float(np.percentile(allz, 95)) if len(allz) else None
    if kind == "none":
        return _densified(ctx, params, values, info, max_depth, depth.shape)
    scale, shift, own, inliers = _fit_frames(values, params, T)
    if not own.any():
        raise DynrecError(f"align: no frame has {params.min_points}+ sparse points with depth; "
                          "the depth cannot be aligned to the cameras (check the cameras and depth stages)")
    aligned = _apply(mono, scale, shift, kind)
    if max_depth is not None:
        aligned = np.where(aligned <= max_depth, aligned, 0.0)
    Depth(aligned.astype(np.float32)).save(ctx.out)
    return {**info, "fast_path": None, "frames_fitted": int(own.sum()), "interpolated": [int(t) for t in np.flatnonzero(~own)],
            "scale": [round(float(v), 6) for v in scale], "shift": [round(float(v), 6) for v in shift],
            "inliers": [int(v) for v in inliers], "max_depth": max_depth}


def _densified(ctx: StageContext, params: AlignParams, values: list[tuple[np.ndarray, np.ndarray]],
               info: dict[str, Any], max_depth: float | None, shape: tuple[int, ...]) -> dict[str, Any]:
    """Dense depth interpolated from each frame's sparse points ``values[t] = (xy [n, 2], z [n])``."""
    T, H, W = shape
    own = np.array([len(z) >= params.min_points for _, z in values])
    if not own.any():
        raise DynrecError(f"align: no frame sees {params.min_points}+ sparse points; without depth maps there is "
                          "nothing to make depth from (import maps with --set depth.folder=DIR)")
    out = np.zeros((T, H, W), np.float32)
    for t in np.flatnonzero(own):
        ctx.progress("interpolating sparse depth", int(t), T)
        out[t] = densify(values[t][0], values[t][1], W, H)
    done = np.flatnonzero(own)
    for t in np.flatnonzero(~own):
        out[t] = out[done[np.abs(done - t).argmin()]]
    if max_depth is not None:
        out = np.where(out <= max_depth, out, 0.0).astype(np.float32)
    Depth(out).save(ctx.out)
    return {**info, "fast_path": None, "densified": True, "frames_fitted": int(own.sum()),
            "interpolated": [int(t) for t in np.flatnonzero(~own)], "max_depth": max_depth}


STAGE = StageSpec(
    name="align", version=2, upstream=("depth", "tracks", "masks", "cameras"), params=AlignParams, run=run,
    summary="depth scaled/shifted per frame to the cameras' sparse points",
)
