"""tracks: 2D point tracks [N,T,2] with visibility.

Backends: ``gt`` copies a synth scene's ground truth; ``offline`` seeds a grid of query
points every ``query_every`` frames (denser on what moves on its own) and tracks them with
template-anchored Lucas-Kanade (:mod:`dynrec.vision.queries`, :mod:`dynrec.vision.lk`) on
the CPU. With z-depth from the depth stage the moving regions are found with the camera
motion (PnP); without, with fundamental matrices.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from dynrec.artifacts import Depth, Frames, Tracks
from dynrec.errors import DynrecError
from dynrec.stages.base import StageContext, StageSpec, pick_backend
from dynrec.stages.gt import gt_external, load_gt
from dynrec.stages.upstream import depth_kind


@dataclass
class TracksParams:
    """``backend``: which method produces the tracks (see ``BACKENDS``).

    Offline backend: ``grid_size`` query points along the longer image side;
    ``query_every`` frames between re-seeding rounds; ``dense_factor``: how much finer the
    grid is on moving regions (1 = uniform); ``min_texture``: smallest colour structure-tensor
    eigenvalue of a seeded point (RGB in [0, 1]); ``patch_radius``: tracked patches are
    (2r+1)^2 pixels; ``fb_px``: frame-to-frame forward-backward threshold (pixels);
    ``max_residual``: mean colour distance above which a point is occluded."""

    backend: str = "learned"
    grid_size: int = 30
    query_every: int = 8
    dense_factor: int = 2
    min_texture: float = 1e-4
    patch_radius: int = 4
    fb_px: float = 0.5
    max_residual: float = 0.15


def _gt(ctx: StageContext, params: TracksParams) -> dict[str, Any]:
    load_gt(ctx, "tracks", Tracks).save(ctx.out)
    return {"backend": "gt"}


def _offline(ctx: StageContext, params: TracksParams) -> dict[str, Any]:
    from dynrec.vision.lk import TrackParams
    from dynrec.vision.queries import SeedParams, track_video

    if params.grid_size < 2 or params.query_every < 1 or params.dense_factor < 1 or params.patch_radius < 1:
        raise DynrecError("tracks: grid_size must be >= 2, query_every, dense_factor and patch_radius >= 1")
    frames = Frames.load(ctx.inputs["frames"]).images
    depth = z_depth(ctx)
    track = TrackParams()
    track = replace(track, patch=replace(track.patch, radius=params.patch_radius), fb_chain=params.fb_px,
                    max_residual=params.max_residual)
    seeds = SeedParams(grid_size=params.grid_size, query_every=params.query_every, dense_factor=params.dense_factor,
                       min_texture=params.min_texture)
    found = track_video(frames, depth, seeds, track, progress=ctx.progress)
    result = found.result
    N = result.visible.shape[0]
    beyond = result.visible.copy()
    beyond[np.arange(N), found.query_frame] = False
    if not beyond.any():
        raise DynrecError(
            f"tracks: all {N} tracks were lost right after their query frames; the video may be too "
            "blurred, fast or noisy for the offline tracker (try --set tracks.fb_px=1.0 or another backend)")
    Tracks(result.xy, result.visible, result.confidence, found.query_frame).save(ctx.out)
    return {"backend": "offline", "tracks": N, "moving_tracks": int(found.moving.sum()),
            "visible_fraction": float(result.visible.mean()), "depth_used": depth is not None}


def z_depth(ctx: StageContext) -> np.ndarray | None:
    """The depth stage's maps [T, H, W] when there are some and they are z-depth, else None
    (relative disparity cannot lift points)."""
    if "depth" not in ctx.inputs or depth_kind(ctx) != "depth":
        return None
    return Depth.load(ctx.inputs["depth"]).depth


BACKENDS = {"gt": _gt, "offline": _offline}


def run(ctx: StageContext, params: TracksParams) -> dict[str, Any]:
    return pick_backend("tracks", BACKENDS, params.backend)(ctx, params)


STAGE = StageSpec(
    name="tracks", version=1, upstream=("frames", "depth"), params=TracksParams, run=run,
    external=gt_external("tracks"), summary="2D point tracks [N,T,2] with visibility",
)
