"""cameras: per-frame K and w2c (one shared pinhole camera), plus the sparse background points.

Backends (``cameras.backend``):

* ``learned`` / ``offline`` (the same: cameras has no learned model): pycolmap SfM on the
  background tracks; when it registers every frame its cameras are kept (method
  ``colmap``); when it registers some, they seed a torch bundle adjustment over all frames
  (``colmap+ba``); when it registers too few (casual videos, small baselines) or pycolmap
  is not installed, the bundle adjustment starts from depth + PnP (``ba``). A camera whose
  background barely moves in the image is detected first and gets ``static`` cameras.
* ``colmap``: pycolmap only; fails when it cannot register every frame.
* ``ba``: the torch bundle adjustment only.
* ``static``: identity w2c for every frame, focal prior.
* ``gt``: a synth scene's ground truth.

Background = tracks that stay outside the (dilated) foreground masks. The manifest records
the method taken, frames registered by SfM, reprojection error and focal.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from dynrec.artifacts import Cameras, Depth, Frames, Masks, SparsePoints, Tracks
from dynrec.errors import DynrecError
from dynrec.geometry import colmap as colmap_sfm
from dynrec.geometry.ba import bundle_adjust
from dynrec.geometry.sfm import (
    InitResult,
    background_observations,
    image_motion,
    incremental_init,
    parallax_deg,
    relative_turn_gap,
    reprojection_errors,
    rotation_chain,
    rotation_dominance,
    rotation_focal,
    triangulate,
    two_view_start,
)
from dynrec.stages.base import StageContext, StageSpec, check_fields, pick_backend
from dynrec.stages.gt import gt_external, load_gt
from dynrec.stages.upstream import as_depth, depth_kind


@dataclass
class CamerasParams:
    """``backend``: see the module doc. ``focal_prior`` initial focal in units of
    max(width, height); ``refine_focal`` whether SfM / BA estimate it; ``focal_min`` /
    ``focal_max``: the plausible focal range (same units; an estimate outside it means the
    focal was not observable, e.g. a distant scene, and it is fixed at the prior instead);
    ``static_px``: a median background displacement (pixels) below this means a static
    camera (0 = never); ``still_px``: below this, and with no two frames 10 apart whose
    background moved by 1 px, a camera held still that only shakes, when the bundle
    adjustment leaves more than ``still_undetermined`` of its points without a determined
    depth (rotations, no translation, no points: method ``still``); ``min_confidence`` of a track sample to be
    used; ``max_tracks`` background tracks used (longest first), ``colmap_tracks`` of them
    given to pycolmap; ``robust_px`` Cauchy scale of the BA; ``ba_iterations``;
    ``ba_tolerance`` relative cost decrease that ends the BA; ``min_colmap_frames``
    registered frames needed to seed the BA from SfM; ``min_parallax_deg`` / ``far_ratio``:
    points seen under less parallax have no determined depth, and those beyond ``far_ratio``
    x the determined points' median distance are pulled in to it (see :func:`_far_plane`);
    ``max_turn_gap``: SfM cameras whose rotation between the two-view pair (see
    :func:`dynrec.geometry.sfm.two_view_start`) differs from the pair's essential matrix by
    more than this many degrees are a wrong minimum and are not used; ``seed``."""

    backend: str = "learned"
    focal_prior: float = 0.9
    refine_focal: bool = True
    focal_min: float = 0.35
    focal_max: float = 2.0
    static_px: float = 0.5
    still_px: float = 3.0
    min_confidence: float = 0.5
    max_tracks: int = 2000
    colmap_tracks: int = 1000
    robust_px: float = 2.0
    ba_iterations: int = 50
    ba_tolerance: float = 1e-5
    rotation_ratio: float = 0.1
    smooth: float = 1.0
    min_colmap_frames: int = 3
    still_undetermined: float = 0.5
    max_turn_gap: float = 3.0
    min_parallax_deg: float = 1.0
    far_ratio: float = 100.0
    seed: int = 0


def _gt(ctx: StageContext, params: CamerasParams) -> dict[str, Any]:
    load_gt(ctx, "cameras", Cameras).save(ctx.out)
    return {"backend": "gt", "method": "gt"}


def _intrinsics(focal: float, width: int, height: int, T: int) -> np.ndarray:
    K = np.array([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])
    return np.tile(K, (T, 1, 1))


def _static(ctx: StageContext, params: CamerasParams, info: dict[str, Any]) -> dict[str, Any]:
    meta = Frames.load_meta(ctx.inputs["frames"])
    T, W, H = int(meta["count"]), int(meta["width"]), int(meta["height"])
    focal = params.focal_prior * max(W, H)
    Cameras(_intrinsics(focal, W, H, T), np.tile(np.eye(4), (T, 1, 1)), W, H, "static").save(ctx.out)
    SparsePoints(np.zeros((0, 3)), np.zeros(0, np.int64), np.zeros(0)).save(ctx.out)
    return {**info, "backend": params.backend, "method": "static", "frames": T, "registered_sfm": 0,
            "focal": focal, "reproj_error_px": None}


def _still(ctx: StageContext, params: CamerasParams, info: dict[str, Any], xy: np.ndarray, vis: np.ndarray,
           W: int, H: int, T: int) -> dict[str, Any]:
    """A camera held still that shakes a little: its rotations chained frame to frame
    (:func:`rotation_chain`), no translation, the focal prior, no points. Depth from the
    sub-pixel parallax of such a camera is noise; `align` treats it like a static camera."""
    focal = params.focal_prior * max(W, H)
    w2c, ok = rotation_chain(xy, vis, _intrinsics(focal, W, H, 1)[0])
    Cameras(_intrinsics(focal, W, H, T), w2c, W, H, "still").save(ctx.out)
    SparsePoints(np.zeros((0, 3)), np.zeros(0, np.int64), np.zeros(0)).save(ctx.out)
    turn = relative_turn_gap(w2c, np.tile(np.eye(4), (T, 1, 1)), 0, T - 1)  # first to last frame
    return {**info, "backend": params.backend, "method": "still", "frames": T, "focal": focal,
            "unposed_frames": [int(t) for t in np.flatnonzero(~ok)], "turn_deg": round(turn, 4),
            "reproj_error_px": None}


def _background(ctx: StageContext, params: CamerasParams) -> tuple[Tracks, np.ndarray, dict[str, Any]]:
    """Tracks, their background samples [N, T], and what was found (for the manifest)."""
    tracks = Tracks.load(ctx.inputs["tracks"])
    masks = Masks.load(ctx.inputs["masks"]).masks
    if masks.shape[0] != tracks.xy.shape[1]:
        raise DynrecError(f"cameras: masks have {masks.shape[0]} frames but tracks {tracks.xy.shape[1]}")
    visible = tracks.visible & (tracks.confidence >= params.min_confidence)
    bg = background_observations(tracks.xy, visible, masks)
    usable = bg.sum(1) >= 2
    info = {"tracks": len(tracks.xy), "bg_tracks": int(usable.sum())}
    if usable.sum() < 8:
        raise DynrecError(
            f"cameras: no background tracks to estimate cameras from ({len(tracks.xy)} tracks, "
            f"{int(visible.any(1).sum())} ever visible, {int(usable.sum())} seen outside the foreground masks "
            "in 2+ frames; a textureless or black video, or all tracks lost); "
            "use --set cameras.backend=static")
    bg[~usable] = False
    return tracks, bg, info


def _select(bg: np.ndarray, max_tracks: int) -> np.ndarray:
    """Indices of the tracks to use: the longest background tracks, at most ``max_tracks``."""
    length = bg.sum(1)
    idx = np.flatnonzero(length >= 2)
    order = idx[np.argsort(-length[idx], kind="stable")]
    return np.sort(order[:max_tracks])


def _expand(col: colmap_sfm.ColmapResult, sub: np.ndarray, N: int) -> colmap_sfm.ColmapResult:
    """A pycolmap result on tracks ``sub`` as one on all N tracks (no point for the others)."""
    points = np.full((N, 3), np.nan)
    points[sub] = col.points
    observed = np.zeros((N, col.observed.shape[1]), bool)
    observed[sub] = col.observed
    return dataclasses.replace(col, points=points, observed=observed)


def _plausible(focal: float, bounds: tuple[float, float], W: int, H: int) -> bool:
    return bounds[0] <= focal / max(W, H) <= bounds[1]


def _bundle(xy: np.ndarray, vis: np.ndarray, conf: np.ndarray, init_w2c: np.ndarray, points: np.ndarray,
            posed: np.ndarray, focal: float, W: int, H: int, params: CamerasParams, refine_focal: bool,
            bounds: tuple[float, float], smooth: float = 0.0
            ) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, dict[str, Any]] | None:
    """Two BA passes (the second without the gross outliers of the first).

    Returns (w2c, points [N, 3] NaN where none, focal, used samples [N, T], info), or None
    when the focal is refined and leaves the plausible range in the first pass."""
    T = len(init_w2c)
    has = np.isfinite(points[:, 0])
    n_idx, t_idx = np.nonzero(vis & has[:, None])
    weight = conf[n_idx, t_idx].astype(np.float64)
    # no frame is held fixed for the gauge (the damping holds it): a fixed frame whose
    # initial pose is slightly off becomes a seam the BA pulls every other frame away from
    fixed = ~posed
    keep = np.ones(len(n_idx), bool)
    w2c, pts, f = init_w2c, np.where(has[:, None], points, 0.0), focal
    for _ in range(2):
        res = bundle_adjust(w2c, pts, f, (W / 2, H / 2), t_idx[keep], n_idx[keep], xy[n_idx[keep], t_idx[keep]],
                            weight=weight[keep], fixed=fixed, refine_focal=refine_focal,
                            robust_px=params.robust_px, iterations=params.ba_iterations,
                            tol=params.ba_tolerance,
                            focal_bounds=(bounds[0] * max(W, H), bounds[1] * max(W, H)),
                            smooth=smooth)
        w2c, pts, f = res.w2c, res.points, res.focal
        if refine_focal and not _plausible(f, bounds, W, H):
            return None
        err = reprojection_errors(pts, xy, vis, _intrinsics(f, W, H, T), w2c)[n_idx, t_idx]
        new_keep = err < max(4.0 * params.robust_px, 3.0 * float(np.median(err)))
        if (new_keep == keep).all():
            break
        keep = new_keep
    used = np.zeros_like(vis)
    used[n_idx[keep], t_idx[keep]] = True
    info = {"iterations": res.iterations, "cost_per_obs": [round(c, 5) for c in res.cost],
            "observations": int(keep.sum()), "outliers": int((~keep).sum()), "refine_focal": refine_focal}
    return w2c, np.where(has[:, None], pts, np.nan), f, used, info


def _agrees_with_two_views(col: colmap_sfm.ColmapResult, xy: np.ndarray, vis: np.ndarray, W: int, H: int,
                           params: CamerasParams, record: dict[str, Any]) -> bool:
    """Whether SfM's cameras turn between the two-view pair as the pair's essential matrix
    says. COLMAP's incremental mapper can settle in a minimum that trades rotation for
    translation (a camera walking down a street turned 21-28 degrees where it turned 0.2);
    the check costs one essential matrix. When the two-view pair is not among SfM's registered
    frames (it registered 3 of HokQQ1U4PI0's 100), the pair is chosen among them. Writes the
    gap (or the rejection) into ``record``."""
    K = _intrinsics(col.focal, W, H, 1)[0]
    start = two_view_start(xy, vis, K)
    if start is not None and not col.registered[start.posed].all():
        # the pair is not among SfM's frames: check SfM on a pair of its own frames instead
        start = two_view_start(xy, vis & col.registered[None], K)
        record["two_view_pair"] = "among the registered frames"
    if start is None:
        return True
    i, j = (int(t) for t in np.flatnonzero(start.posed))
    gap = relative_turn_gap(col.w2c, start.w2c, i, j)
    record["two_view_gap_deg"] = round(gap, 3)
    if gap <= params.max_turn_gap:
        return True
    record["rejected"] = (f"between frames {i} and {j} its cameras turn {gap:.1f} degrees away from what the "
                          f"essential matrix of their tracks says (more than max_turn_gap {params.max_turn_gap}): "
                          "a wrong minimum")
    return False


def _far_plane(points: np.ndarray, used: np.ndarray, w2c: np.ndarray, parallax: np.ndarray, params: CamerasParams
               ) -> tuple[np.ndarray, dict[str, Any] | None]:
    """Points [N, 3] with those too far to place pulled in to a far distance, and what was done.

    A point whose rays meet at under ``min_parallax_deg`` has no determined depth (the far
    end of a street: 3e5 x the camera's path on HokQQ1U4PI0), and as depth it would
    swamp the aligned depth maps and the reconstruction's losses. Such points beyond
    ``far_ratio`` x the median distance of the determined points (from the mean centre of the
    cameras that see them) are moved along their ray to that distance; reprojections barely
    change (that is what too little parallax means). ``parallax`` [N]: :func:`_parallax`.
    Nothing changes with fewer than 8 determined points (a rotating camera)."""
    ok = np.isfinite(points[:, 0])
    determined = ok & (parallax >= params.min_parallax_deg)
    if determined.sum() < 8:
        return points, None
    centres = np.linalg.inv(w2c)[:, :3, 3]
    seen = used & ok[:, None]
    mean_centre = (seen[..., None] * centres[None]).sum(1) / np.maximum(seen.sum(1), 1)[:, None]
    dist = np.linalg.norm(np.where(ok[:, None], points, 0.0) - mean_centre, axis=1)
    far = params.far_ratio * float(np.median(dist[determined]))
    pull = ok & ~determined & (dist > far)
    out = points.copy()
    out[pull] = mean_centre[pull] + (points[pull] - mean_centre[pull]) * (far / dist[pull])[:, None]
    return out, {"undetermined": int((ok & ~determined).sum()), "pulled_in": int(pull.sum()),
                 "far_distance": round(far, 6)}


def _parallax(points: np.ndarray, used: np.ndarray, w2c: np.ndarray) -> np.ndarray:
    """Parallax (degrees, :func:`dynrec.geometry.sfm.parallax_deg`) of the placed points [N, 3]
    (NaN rows: unplaced, 0) over the samples ``used`` [N, T]."""
    ok = np.isfinite(points[:, 0])
    return parallax_deg(np.where(ok[:, None], points, 0.0), used & ok[:, None], w2c)


def _estimate(ctx: StageContext, params: CamerasParams, use_colmap: bool, use_ba: bool) -> dict[str, Any]:
    meta = Frames.load_meta(ctx.inputs["frames"])
    T, W, H = int(meta["count"]), int(meta["width"]), int(meta["height"])
    tracks, bg, info = _background(ctx, params)
    motion = image_motion(tracks.xy, bg)
    info["image_motion_px"] = round(motion, 4)
    if params.static_px > 0 and motion < params.static_px:
        info["static_reason"] = (f"median background displacement {motion:.3f} px < static_px "
                                 f"{params.static_px}")
        return _static(ctx, params, info)

    sel = _select(bg, params.max_tracks)
    xy = tracks.xy[sel].astype(np.float64)
    vis = bg[sel]
    conf = tracks.confidence[sel]
    focal0 = params.focal_prior * max(W, H)
    bounds = (params.focal_min, params.focal_max)
    info.update(backend=params.backend, frames=T, focal_prior=focal0, used_tracks=len(sel))
    timings: dict[str, float] = {}
    dominance = rotation_dominance(xy, vis, _intrinsics(focal0, W, H, 1)[0])
    info["rotation_dominance"] = round(dominance, 4)

    col = None
    seed_ok = False
    if use_colmap:
        if not colmap_sfm.available():
            if not use_ba:
                raise DynrecError("cameras: backend 'colmap' needs pycolmap (pip install pycolmap); "
                                  "or use --set cameras.backend=ba")
            info["colmap"] = "pycolmap is not installed"
        else:
            ctx.progress("colmap", 0, 3)
            t0 = time.perf_counter()
            sub = np.sort(np.argsort(-vis.sum(1), kind="stable")[:params.colmap_tracks])
            col = colmap_sfm.run_colmap(xy[sub], vis[sub], W, H, focal0, refine_focal=params.refine_focal,
                                        seed=params.seed, workdir=ctx.checkpoints)
            col = _expand(col, sub, len(sel))
            timings["colmap_s"] = round(time.perf_counter() - t0, 3)
            n_reg = int(col.registered.sum())
            info["colmap"] = {"registered": n_reg, "reproj_error_px": round(col.reproj_error, 4),
                              "pairs": col.pairs, "focal": round(col.focal, 4)}
            seed_ok = n_reg >= params.min_colmap_frames and _plausible(col.focal, bounds, W, H)
            if n_reg and not _plausible(col.focal, bounds, W, H):
                info["colmap"]["rejected"] = (f"focal {col.focal:.1f} px is outside the plausible range "
                                              f"{params.focal_min}-{params.focal_max} x max(W, H)")
            elif seed_ok and use_ba:
                seed_ok = _agrees_with_two_views(col, xy, vis, W, H, params, info["colmap"])
    info["registered_sfm"] = int(col.registered.sum()) if col is not None else 0

    if seed_ok and col.registered.all():
        method = "colmap"
        w2c, points, focal, used = col.w2c, col.points, col.focal, col.observed & vis
    else:
        if not use_ba:
            raise DynrecError(f"cameras: pycolmap registered only {info['registered_sfm']} of {T} frames "
                              f"({info['colmap']}); use --set cameras.backend=learned "
                              "(SfM with a bundle-adjustment fallback)")
        method = "colmap+ba" if seed_ok else "ba"
        ctx.progress("initialisation", 1, 3)
        t0 = time.perf_counter()
        depth: np.ndarray | None = as_depth(Depth.load(ctx.inputs["depth"]).depth, depth_kind(ctx))
        if not (depth > 0).any():  # no depth maps: two views start the BA (a plane if they cannot)
            depth = None
            info["depth_init"] = "none"
        focal = col.focal if seed_ok else focal0
        rotating = False
        if not seed_ok:
            if dominance < 2 * params.rotation_ratio and params.refine_focal:
                # maybe a panning camera whose focal differs from the prior: self-calibrate
                f_rot, d_rot = rotation_focal(xy, vis, W, H)
                if d_rot < params.rotation_ratio:
                    focal = focal0 = f_rot
                    dominance = d_rot
                    bounds = (params.focal_min, max(params.focal_max, 2 * f_rot / max(W, H)))
                    info["focal_self_calibrated"] = round(f_rot, 3)
                    info["rotation_dominance"] = round(dominance, 4)
            rotating = dominance < params.rotation_ratio

        def initialise(focal: float) -> tuple[InitResult, str]:
            """The BA's start and its name (for the manifest)."""
            K = _intrinsics(focal, W, H, T)[0]
            plane = np.ones((T, H, W)) if depth is None else depth
            if seed_ok:
                return incremental_init(xy, vis, plane, K, w2c=col.w2c, registered=col.registered,
                                        points=col.points), "colmap"
            if rotating:  # a panning camera / distant scene
                rot, ok = rotation_chain(xy, vis, K)
                return incremental_init(xy, vis, plane, K, w2c=rot, registered=ok), "rotation"
            if depth is None:
                start = two_view_start(xy, vis, K)
                if start is not None:
                    return incremental_init(xy, vis, plane, K, w2c=start.w2c, registered=start.posed,
                                            points=start.points), "two-view"
                return incremental_init(xy, vis, plane, K), "plane+pnp"
            return incremental_init(xy, vis, depth, K), "depth+pnp"

        init, info["init"] = initialise(focal)
        K = _intrinsics(focal, W, H, T)[0]
        timings["init_s"] = round(time.perf_counter() - t0, 3)
        info["unposed_frames"] = [int(t) for t in np.flatnonzero(~init.posed)]
        if init.posed.sum() < 2:
            raise DynrecError(
                f"cameras: only {int(init.posed.sum())} of {T} frames see enough background tracks "
                "(all tracks lost?); use --set cameras.backend=static")
        pts = init.points
        missing = ~np.isfinite(pts[:, 0])
        if missing.any():  # tracks never lifted (no depth under them): triangulate
            tri, ok = triangulate(xy[missing], vis[missing], np.tile(K, (T, 1, 1)), init.w2c)
            pts[np.flatnonzero(missing)[ok]] = tri[ok]
        ctx.progress("bundle adjustment", 2, 3)
        t0 = time.perf_counter()
        smooth = params.smooth if rotating else 0.0
        result = _bundle(xy, vis, conf, init.w2c, pts, init.posed, focal, W, H, params, params.refine_focal, bounds,
                         smooth)
        if result is None:
            info["focal_fixed"] = (f"the focal left the plausible range {bounds[0]:.2f}-{bounds[1]:.2f} x max(W, H) "
                                   "in the bundle adjustment (not observable from this motion); fixed at "
                                   + ("the self-calibrated one" if "focal_self_calibrated" in info else "the prior"))
            focal = focal0
            init, info["init"] = initialise(focal)
            result = _bundle(xy, vis, conf, init.w2c, init.points, init.posed, focal, W, H, params, False, bounds,
                             smooth)
        w2c, points, focal, used, info["ba"] = result
        timings["ba_s"] = round(time.perf_counter() - t0, 3)

    placed = np.isfinite(points[:, 0])
    parallax = _parallax(points, used, w2c)
    unplaced = float((placed & (parallax < params.min_parallax_deg)).sum() / max(placed.sum(), 1))
    info["undetermined_share"] = round(unplaced, 4)
    points, info["far_points"] = _far_plane(points, used, w2c, parallax, params)
    held = not np.isfinite(dominance) and motion < params.still_px
    if method == "ba" and held and unplaced > params.still_undetermined:
        # the BA is asked first: a boat's camera on w4bYMjQH1s4 moves its far shore as little
        # (1.3 px) while travelling 2.4 m, and the BA places it (ATE 0.5%; held still: 29%)
        info["still_reason"] = (f"median background displacement {motion:.2f} px < still_px {params.still_px}, "
                                "no two frames 10 apart see it move by 1 px, and the bundle adjustment left "
                                f"{100 * unplaced:.0f}% of its points under {params.min_parallax_deg} degree(s) of "
                                "parallax: no parallax to place points with")
        return _still(ctx, params, info, xy, vis, W, H, T)
    err = reprojection_errors(np.nan_to_num(points), xy, used, _intrinsics(focal, W, H, T), w2c)
    count = used.sum(1)
    ok = count > 0
    point_err = np.where(used, err, 0.0).sum(1) / np.maximum(count, 1)
    obs_err = err[used]
    Cameras(_intrinsics(focal, W, H, T), w2c, W, H, method).save(ctx.out)
    SparsePoints(points[ok], sel[ok], point_err[ok]).save(ctx.out)
    info.update(method=method, focal=round(float(focal), 4), points=int(ok.sum()),
                reproj_error_px={"mean": round(float(obs_err.mean()), 4) if len(obs_err) else None,
                                 "median": round(float(np.median(obs_err)), 4) if len(obs_err) else None},
                timings=timings)
    return info


def _auto(ctx: StageContext, params: CamerasParams) -> dict[str, Any]:
    return _estimate(ctx, params, use_colmap=True, use_ba=True)


def _colmap(ctx: StageContext, params: CamerasParams) -> dict[str, Any]:
    return _estimate(ctx, params, use_colmap=True, use_ba=False)


def _ba(ctx: StageContext, params: CamerasParams) -> dict[str, Any]:
    return _estimate(ctx, params, use_colmap=False, use_ba=True)


def _static_backend(ctx: StageContext, params: CamerasParams) -> dict[str, Any]:
    return _static(ctx, params, {"static_reason": "backend 'static' asked for"})


BACKENDS = {"learned": _auto, "offline": _auto, "colmap": _colmap, "ba": _ba, "static": _static_backend, "gt": _gt}


def run(ctx: StageContext, params: CamerasParams) -> dict[str, Any]:
    from dynrec.geometry.colmap import logs_in

    with logs_in(ctx.logs):  # COLMAP's own log lines: to the work dir's logs, not the terminal
        return pick_backend("cameras", BACKENDS, params.backend)(ctx, params)


def _check(params: CamerasParams) -> None:
    check_fields("cameras", params, choices={"backend": BACKENDS},
                 positive=("focal_prior", "focal_min", "focal_max", "far_ratio"),
                 minimum={"max_tracks": 8, "colmap_tracks": 8, "ba_iterations": 1, "min_colmap_frames": 2})


STAGE = StageSpec(
    name="cameras", version=5, upstream=('frames', 'tracks', 'masks', 'depth'), params=CamerasParams, run=run,
    external=gt_external("cameras"), summary="per-frame K and w2c, sparse background points", check=_check,
)
