"""keypoints: 2D keypoints [T,J,2] and skeleton.

Backends: ``gt`` copies a synth scene's ground truth (the learned and offline backends of
DESIGN.md plug into ``BACKENDS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dynrec.artifacts import Keypoints
from dynrec.stages.base import StageContext, StageSpec, pick_backend
from dynrec.stages.gt import gt_external, load_gt


@dataclass
class KeypointsParams:
    """``backend``: which method produces the keypoints (see ``BACKENDS``)."""

    backend: str = "learned"


def _gt(ctx: StageContext, params: KeypointsParams) -> dict[str, Any]:
    load_gt(ctx, "keypoints", Keypoints).save(ctx.out)
    return {"backend": "gt"}


BACKENDS = {"gt": _gt}


def run(ctx: StageContext, params: KeypointsParams) -> dict[str, Any]:
    return pick_backend("keypoints", BACKENDS, params.backend)(ctx, params)


STAGE = StageSpec(
    name="keypoints", version=1, upstream=('frames', 'masks', 'tracks'), params=KeypointsParams, run=run,
    external=gt_external("keypoints"), summary="2D keypoints [T,J,2] and skeleton",
)
