"""depth: z-depth maps [T,H,W].

Backends: ``gt`` copies a synth scene's ground truth (the learned and offline backends of
DESIGN.md plug into ``BACKENDS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dynrec.artifacts import Depth
from dynrec.stages.base import StageContext, StageSpec, pick_backend
from dynrec.stages.gt import gt_external, load_gt


@dataclass
class DepthParams:
    """``backend``: which method produces the depth (see ``BACKENDS``)."""

    backend: str = "learned"


def _gt(ctx: StageContext, params: DepthParams) -> dict[str, Any]:
    load_gt(ctx, "depth", Depth).save(ctx.out)
    return {"backend": "gt"}


BACKENDS = {"gt": _gt}


def run(ctx: StageContext, params: DepthParams) -> dict[str, Any]:
    return pick_backend("depth", BACKENDS, params.backend)(ctx, params)


STAGE = StageSpec(
    name="depth", version=1, upstream=('frames',), params=DepthParams, run=run,
    external=gt_external("depth"), summary="z-depth maps [T,H,W]",
)
