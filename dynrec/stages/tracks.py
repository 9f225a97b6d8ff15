"""tracks: 2D point tracks [N,T,2] with visibility.

Backends: ``learned`` (default) tracks with CoTracker3 through ``torch.hub``
(:mod:`dynrec.learned.cotracker`: ``hub`` name, or a local clone ``repo_dir`` and a
``checkpoint``), on the same query points and rounds as the offline tracker; ``gt`` copies a
synth scene's ground truth; ``offline`` seeds a grid of query
points every ``query_every`` frames (denser on what moves on its own) and tracks them with
template-anchored Lucas-Kanade (:mod:`dynrec.vision.queries`, :mod:`dynrec.vision.lk`) on
the CPU. With z-depth from the depth stage the moving regions are found with the camera
motion (PnP); without, with fundamental matrices.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from dynrec.artifacts import Frames, Tracks
from dynrec.errors import DynrecError
from dynrec.stages.base import StageContext, StageSpec, check_fields, pick_backend
from dynrec.stages.gt import gt_external, load_gt
from dynrec.stages.upstream import z_depth


@dataclass
class TracksParams:
    """``backend``: which method produces the tracks (see ``BACKENDS``).

    Learned backend: CoTracker entry point ``model`` of ``hub`` (or of the clone
    ``repo_dir``), weights ``checkpoint`` (a path or a file name in the weights folders; "" =
    the hub's own), run with the long side at ``max_side`` pixels. Query points: as below.

    Offline backend (query points for both): ``grid_size`` query points along the longer image side;
    ``query_every`` frames between re-seeding rounds; ``dense_factor``: how much finer the
    grid is on moving regions (1 = uniform); ``min_texture``: smallest colour structure-tensor
    eigenvalue of a seeded point (RGB in [0, 1]); ``patch_radius``: tracked patches are
    (2r+1)^2 pixels; ``fb_px``: frame-to-frame forward-backward threshold (pixels);
    ``max_residual``: mean colour distance above which a point is occluded; ``flow_start``:
    where the constant-velocity start is in doubt, the chain step also starts from dense
    optical flow (docs/offline-preprocess.md)."""

    backend: str = "learned"
    model: str = "cotracker3_offline"
    hub: str = "facebookresearch/co-tracker"
    repo_dir: str = ""
    checkpoint: str = ""
    max_side: int = 512
    grid_size: int = 30
    query_every: int = 8
    dense_factor: int = 2
    min_texture: float = 1e-4
    patch_radius: int = 4
    fb_px: float = 0.5
    max_residual: float = 0.15
    flow_start: bool = True


def _gt(ctx: StageContext, params: TracksParams) -> dict[str, Any]:
    load_gt(ctx, "tracks", Tracks).save(ctx.out)
    return {"backend": "gt"}


def _learned(ctx: StageContext, params: TracksParams) -> dict[str, Any]:
    from dynrec.learned.cotracker import load_cotracker, track
    from dynrec.vision.lk import TrackResult

    if params.max_side < 16:
        raise DynrecError(f"tracks: max_side must be >= 16, got {params.max_side}")
    model = load_cotracker(params.hub, params.model, params.repo_dir or None, params.checkpoint or None,
                           ctx.device, ctx.weights_dir)

    def cotracker(frames: np.ndarray, rows: np.ndarray, progress: Any) -> TrackResult:
        xy, visible, confidence = track(model, frames, queries=rows, max_side=params.max_side)
        return TrackResult(xy, visible, confidence)

    return _seeded(ctx, params, "learned", cotracker) | {"model": params.model,
                                                        "code": params.repo_dir or params.hub}


def _offline(ctx: StageContext, params: TracksParams) -> dict[str, Any]:
    return _seeded(ctx, params, "offline", None)


def _seeded(ctx: StageContext, params: TracksParams, backend: str, tracker: Any) -> dict[str, Any]:
    """Seed query points in rounds and track them with ``tracker`` (None: the offline tracker)."""
    from dynrec.vision.lk import TrackParams
    from dynrec.vision.queries import SeedParams, track_video

    if params.grid_size < 2 or params.query_every < 1 or params.dense_factor < 1 or params.patch_radius < 1:
        raise DynrecError("tracks: grid_size must be >= 2, query_every, dense_factor and patch_radius >= 1")
    frames = Frames.load(ctx.inputs["frames"]).images
    depth = z_depth(ctx)
    track = TrackParams()
    track = replace(track, patch=replace(track.patch, radius=params.patch_radius), fb_chain=params.fb_px,
                    max_residual=params.max_residual, flow_start=params.flow_start)
    seeds = SeedParams(grid_size=params.grid_size, query_every=params.query_every, dense_factor=params.dense_factor,
                       min_texture=params.min_texture)
    found = track_video(frames, depth, seeds, track, progress=ctx.progress, tracker=tracker)
    result = found.result
    N = result.visible.shape[0]
    beyond = result.visible.copy()
    beyond[np.arange(N), found.query_frame] = False
    if not beyond.any():
        raise DynrecError(
            f"tracks: all {N} tracks were lost right after their query frames; the video may be too "
            f"blurred, fast or noisy for the {backend} tracker (try --set tracks.fb_px=1.0 or another backend)")
    Tracks(result.xy, result.visible, result.confidence, found.query_frame).save(ctx.out)
    return {"backend": backend, "tracks": N, "moving_tracks": int(found.moving.sum()),
            "visible_fraction": float(result.visible.mean()), "depth_used": depth is not None}


BACKENDS = {"learned": _learned, "gt": _gt, "offline": _offline}


def run(ctx: StageContext, params: TracksParams) -> dict[str, Any]:
    return pick_backend("tracks", BACKENDS, params.backend)(ctx, params)



def _weights(params: TracksParams) -> list[Any]:
    """CoTracker's code through torch.hub and its checkpoint, unless ``tracks.repo_dir`` names
    a local clone (which then brings its own weights, or ``tracks.checkpoint`` does)."""
    if params.backend != "learned" or params.repo_dir:
        return []
    from dynrec.weights import BY_NAME, COTRACKER

    code = BY_NAME["cotracker-code"]
    out = [code] if params.hub == code.repo else []
    if not params.checkpoint and params.model in COTRACKER:
        out.append(BY_NAME[COTRACKER[params.model]])
    return out


def _check(params: TracksParams) -> None:
    check_fields("tracks", params, choices={"backend": BACKENDS},
                 minimum={"max_side": 16, "grid_size": 2, "query_every": 1, "dense_factor": 1, "patch_radius": 1})


STAGE = StageSpec(
    name="tracks", version=4, upstream=("frames", "depth"), params=TracksParams, run=run,
    external=gt_external("tracks"), summary="2D point tracks [N,T,2] with visibility", weights=_weights, check=_check,
)
