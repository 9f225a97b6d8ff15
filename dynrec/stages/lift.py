"""lift: 3D foreground tracks, canonical frame, motion bases and level-1 nodes (HiMoR §3.2.3),
and coloured point clouds that seed the Gaussians."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from dynrec.artifacts import Cameras, Depth, Frames, Lift, Masks, Tracks
from dynrec.errors import DynrecError
from dynrec.geometry.camera import pixel_centers, unproject
from dynrec.geometry.lift import (
    canonical_frame,
    complete_tracks,
    fill_gaps,
    fit_coefficients,
    init_nodes,
    lift_tracks,
    motion_bases,
    to_canonical,
)
from dynrec.stages.base import StageContext, StageSpec, check_fields
from dynrec.vision.foreground import foreground_tracks, in_mask


@dataclass
class LiftParams:
    """``n_bases`` M1 motion bases; ``n_nodes`` level-1 nodes; ``min_valid`` frames a track
    needs with lifted depth; ``fg_fraction`` of its visible samples inside the mask for a
    track to count as foreground; ``fg_frames`` frames (the canonical one and others spread
    over the video) whose foreground pixels seed the foreground cloud, carried to the
    canonical frame by the motion basis of their nearest track; ``max_fg_points`` / ``max_bg_points`` sizes of the seed
    point clouds; ``bg_frames`` frames sampled for the background cloud; ``seed``."""

    n_bases: int = 10
    n_nodes: int = 50
    min_valid: int = 2
    fg_fraction: float = 0.6
    fg_frames: int = 4
    max_fg_points: int = 20000
    max_bg_points: int = 40000
    bg_frames: int = 8
    complete: int = 2
    coefficients: str = "fit"
    seed: int = 0

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"n_bases": 6, "n_nodes": 24, "max_fg_points": 1500, "max_bg_points": 2500, "bg_frames": 4},
    }


def point_cloud(frames: np.ndarray, depth: np.ndarray, select: np.ndarray, cams: Cameras, ts: list[int],
                limit: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Unproject pixels where ``select`` [T, H, W] and depth > 0 at frames ``ts``; at most ``limit`` points."""
    _, H, W = depth.shape
    centres = pixel_centers(H, W)
    points, colors = [], []
    for t in ts:
        keep = select[t] & (depth[t] > 0)
        pts = unproject(centres[keep], depth[t][keep].astype(np.float64), cams.K[t].astype(np.float64),
                        cams.w2c[t].astype(np.float64))
        points.append(pts)
        colors.append(frames[t][keep] / 255.0)
    pts, cols = np.concatenate(points), np.concatenate(colors)
    if len(pts) > limit:
        idx = rng.choice(len(pts), limit, replace=False)
        pts, cols = pts[idx], cols[idx]
    return pts.astype(np.float32), cols.astype(np.float32)


def foreground_cloud(frames: np.ndarray, depth: np.ndarray, masks: np.ndarray, cams: Cameras, canonical: int,
                     xyz: torch.Tensor, valid: torch.Tensor, labels: torch.Tensor, bases: torch.Tensor,
                     params: LiftParams, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Foreground pixels of ``fg_frames`` frames, in the canonical frame: parts hidden at the
    canonical frame still get Gaussians. Returns (points [P, 3], colours [P, 3])."""
    T = depth.shape[0]
    others = [round(x) for x in np.linspace(0, T - 1, max(params.fg_frames - 1, 0))]
    ts = [canonical] + [t for t in dict.fromkeys(others) if t != canonical]
    points, colors = [], []
    for t in ts:
        pts, cols = point_cloud(frames, depth, masks, cams, [t], params.max_fg_points, rng)
        pts_c = to_canonical(torch.from_numpy(pts).double(), t, xyz, valid, labels, bases)
        points.append(pts_c.float().numpy())
        colors.append(cols)
    pts, cols = np.concatenate(points), np.concatenate(colors)
    if len(pts) > params.max_fg_points:
        idx = rng.choice(len(pts), params.max_fg_points, replace=False)
        pts, cols = pts[idx], cols[idx]
    return pts, cols


def run(ctx: StageContext, params: LiftParams) -> dict[str, Any]:
    tracks = Tracks.load(ctx.inputs["tracks"])
    depth = Depth.load(ctx.inputs["align"]).depth  # depth aligned to the cameras
    masks = Masks.load(ctx.inputs["masks"]).masks
    cams = Cameras.load(ctx.inputs["cameras"])
    frames = Frames.load(ctx.inputs["frames"]).images
    fg = foreground_tracks(tracks.xy, tracks.visible, masks, params.fg_fraction)
    if len(fg) < 3:
        share = float(masks.mean())
        raise DynrecError(f"lift: only {len(fg)} tracks lie on the foreground masks ({100 * share:.2f}% of the "
                          "pixels); dynrec reconstructs a subject that moves: if nothing in the video moves on its "
                          "own, name the subject with `dynrec preprocess -o WORK --prompt x,y` (pixels of the input "
                          "video), otherwise check the masks and tracks stages")
    on_fg = tracks.visible[fg] & in_mask(tracks.xy[fg], masks)  # never lift a sample onto the background
    xyz, valid = lift_tracks(torch.from_numpy(tracks.xy[fg]).double(), torch.from_numpy(on_fg),
                             torch.from_numpy(depth).double(), torch.from_numpy(cams.K).double(),
                             torch.from_numpy(cams.w2c).double())
    keep = valid.sum(1) >= params.min_valid
    if int(keep.sum()) < 3:
        raise DynrecError(f"lift: only {int(keep.sum())} foreground tracks have depth in {params.min_valid}+ frames "
                          f"(the masks cover {100 * float(masks.mean()):.2f}% of the pixels, {len(fg)} tracks lie on "
                          "them); look at WORK/inspect/masks.png: if the subject is missed, name it with `dynrec "
                          "preprocess -o WORK --prompt x,y` or `--prompt-box x0,y0,x1,y1`")
    if params.coefficients not in ("fit", "idw"):
        raise DynrecError(f"lift.coefficients must be 'fit' or 'idw', got '{params.coefficients}'")
    xyz, valid, fg = fill_gaps(xyz[keep], valid[keep]), valid[keep], fg[keep.numpy()]
    canonical = canonical_frame(valid)
    M = min(params.n_bases, len(fg))
    bases, labels, centres = motion_bases(xyz, valid, M, canonical, seed=params.seed)
    everyone = torch.ones(len(fg), dtype=torch.bool)
    for _ in range(params.complete):
        xyz = complete_tracks(xyz, valid, labels, bases)
        bases, labels, centres = motion_bases(xyz, valid, M, canonical, seed=params.seed, known=everyone)
    if params.complete:
        xyz = complete_tracks(xyz, valid, labels, bases)
    ctx.progress("nodes", 1, 2)
    positions, coefficients, radii = init_nodes(xyz[:, canonical], centres, params.n_nodes, seed=params.seed)
    if params.coefficients == "fit":
        coefficients = fit_coefficients(positions, xyz, valid, bases, canonical)
    rng = np.random.default_rng(params.seed)
    T = depth.shape[0]
    bg_ts = sorted({round(x) for x in np.linspace(0, T - 1, min(params.bg_frames, T))})
    fg_pts, fg_cols = foreground_cloud(frames, depth, masks, cams, canonical, xyz, valid, labels, bases, params, rng)
    bg_pts, bg_cols = point_cloud(frames, depth, ~masks, cams, bg_ts, params.max_bg_points, rng)
    if len(fg_pts) == 0:
        raise DynrecError(f"lift: the canonical frame {canonical} has no foreground pixels with depth")
    Lift(xyz.numpy(), valid.numpy(), fg, canonical, bases.numpy(), labels.numpy(), centres.numpy(),
         positions.numpy(), coefficients.numpy(), radii.numpy(), fg_pts, fg_cols, bg_pts, bg_cols).save(ctx.out)
    return {"tracks": len(fg), "canonical": canonical, "bases": M, "nodes": int(positions.shape[0]),
            "fg_points": len(fg_pts), "bg_points": len(bg_pts)}


def _check(params: LiftParams) -> None:
    check_fields("lift", params, choices={"coefficients": ("fit", "idw")},
                 minimum={"n_bases": 1, "n_nodes": 1, "min_valid": 1})


STAGE = StageSpec(
    name="lift", version=3, upstream=("frames", "align", "tracks", "masks", "cameras"), params=LiftParams,
    run=run, summary="3D tracks, motion bases and nodes (HiMoR init)", check=_check,
)
