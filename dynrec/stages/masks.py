"""masks: foreground masks [T,H,W].

Backends: ``gt`` copies a synth scene's ground truth (the learned and offline backends of
DESIGN.md plug into ``BACKENDS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dynrec.artifacts import Masks
from dynrec.stages.base import StageContext, StageSpec, pick_backend
from dynrec.stages.gt import gt_external, load_gt


@dataclass
class MasksParams:
    """``backend``: which method produces the masks (see ``BACKENDS``)."""

    backend: str = "learned"


def _gt(ctx: StageContext, params: MasksParams) -> dict[str, Any]:
    load_gt(ctx, "masks", Masks).save(ctx.out)
    return {"backend": "gt"}


BACKENDS = {"gt": _gt}


def run(ctx: StageContext, params: MasksParams) -> dict[str, Any]:
    return pick_backend("masks", BACKENDS, params.backend)(ctx, params)


STAGE = StageSpec(
    name="masks", version=1, upstream=('frames', 'tracks'), params=MasksParams, run=run,
    external=gt_external("masks"), summary="foreground masks [T,H,W]",
)
