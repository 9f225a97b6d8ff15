"""tracks: 2D point tracks [N,T,2] with visibility.

Backends: ``gt`` copies a synth scene's ground truth (the learned and offline backends of
DESIGN.md plug into ``BACKENDS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dynrec.artifacts import Tracks
from dynrec.stages.base import StageContext, StageSpec, pick_backend
from dynrec.stages.gt import gt_external, load_gt


@dataclass
class TracksParams:
    """``backend``: which method produces the tracks (see ``BACKENDS``)."""

    backend: str = "learned"


def _gt(ctx: StageContext, params: TracksParams) -> dict[str, Any]:
    load_gt(ctx, "tracks", Tracks).save(ctx.out)
    return {"backend": "gt"}


BACKENDS = {"gt": _gt}


def run(ctx: StageContext, params: TracksParams) -> dict[str, Any]:
    return pick_backend("tracks", BACKENDS, params.backend)(ctx, params)


STAGE = StageSpec(
    name="tracks", version=1, upstream=('frames',), params=TracksParams, run=run,
    external=gt_external("tracks"), summary="2D point tracks [N,T,2] with visibility",
)
