"""keypoints: 2D keypoints [T,J,2] and skeleton.

Backends: ``gt`` copies a synth scene's ground truth; ``offline`` clusters the foreground
tracks (lifted to 3D with the aligned depth and the cameras) into ``count`` keypoints with a
minimum-spanning-tree skeleton (:mod:`dynrec.vision.keypoints`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dynrec.artifacts import Cameras, Depth, Keypoints, Masks, Tracks
from dynrec.errors import DynrecError
from dynrec.stages.base import StageContext, StageSpec, pick_backend
from dynrec.stages.gt import gt_external, load_gt


@dataclass
class KeypointsParams:
    """``backend``: which method produces the keypoints (see ``BACKENDS``).

    Offline backend: ``count`` keypoints J; ``fg_fraction`` of a track's visible samples
    that must lie on the mask for it to count as foreground; ``min_valid`` frames with depth
    a track needs; ``seed`` of K-Means."""

    backend: str = "learned"
    count: int = 12
    fg_fraction: float = 0.6
    min_valid: int = 2
    seed: int = 0


def _gt(ctx: StageContext, params: KeypointsParams) -> dict[str, Any]:
    load_gt(ctx, "keypoints", Keypoints).save(ctx.out)
    return {"backend": "gt"}


def _offline(ctx: StageContext, params: KeypointsParams) -> dict[str, Any]:
    from dynrec.vision.keypoints import cluster_keypoints, in_mask

    if params.count < 2:
        raise DynrecError(f"keypoints: count must be >= 2, got {params.count}")
    tracks = Tracks.load(ctx.inputs["tracks"])
    masks = Masks.load(ctx.inputs["masks"]).masks
    cams = Cameras.load(ctx.inputs["cameras"])
    depth = Depth.load(ctx.inputs["align"]).depth
    on_fg = tracks.visible & in_mask(tracks.xy, masks)
    share = on_fg.sum(1) / np.maximum(tracks.visible.sum(1), 1)
    fg = np.flatnonzero((share >= params.fg_fraction) & on_fg.any(1))
    if len(fg) < 2:
        raise DynrecError(f"keypoints: only {len(fg)} tracks lie on the foreground masks; need at least 2 "
                          "(check the masks and tracks stages)")
    try:
        found = cluster_keypoints(tracks.xy[fg], on_fg[fg], depth, cams.K, cams.w2c, params.count,
                                  params.min_valid, params.seed)
    except ValueError as exc:
        raise DynrecError(f"keypoints: {exc} (check the depth / align stages)") from exc
    J = found.xy.shape[1]
    Keypoints(found.xy, found.confidence, found.skeleton, [f"k{j}" for j in range(J)]).save(ctx.out)
    return {"backend": "offline", "keypoints": J, "tracks": len(fg), "canonical": found.canonical,
            "mean_confidence": float(found.confidence.mean())}


BACKENDS = {"gt": _gt, "offline": _offline}


def run(ctx: StageContext, params: KeypointsParams) -> dict[str, Any]:
    return pick_backend("keypoints", BACKENDS, params.backend)(ctx, params)


STAGE = StageSpec(
    name="keypoints", version=1, upstream=("frames", "masks", "tracks", "cameras", "align"), params=KeypointsParams,
    run=run, external=gt_external("keypoints"), summary="2D keypoints [T,J,2] and skeleton",
)
