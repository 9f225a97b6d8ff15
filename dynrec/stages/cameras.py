"""cameras: per-frame K and w2c.

Backends: ``gt`` copies a synth scene's ground truth (the learned and offline backends of
DESIGN.md plug into ``BACKENDS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dynrec.artifacts import Cameras
from dynrec.stages.base import StageContext, StageSpec, pick_backend
from dynrec.stages.gt import gt_external, load_gt


@dataclass
class CamerasParams:
    """``backend``: which method produces the cameras (see ``BACKENDS``)."""

    backend: str = "learned"


def _gt(ctx: StageContext, params: CamerasParams) -> dict[str, Any]:
    load_gt(ctx, "cameras", Cameras).save(ctx.out)
    return {"backend": "gt"}


BACKENDS = {"gt": _gt}


def run(ctx: StageContext, params: CamerasParams) -> dict[str, Any]:
    return pick_backend("cameras", BACKENDS, params.backend)(ctx, params)


STAGE = StageSpec(
    name="cameras", version=1, upstream=('frames', 'tracks', 'masks', 'depth'), params=CamerasParams, run=run,
    external=gt_external("cameras"), summary="per-frame K and w2c",
)
