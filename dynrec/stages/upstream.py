"""Reading what an upstream stage recorded about itself (its manifest ``info``). Not a stage.

The depth stage says in ``info["depth_kind"]`` whether its maps are z-depth (``"depth"``,
the default when absent) or relative inverse depth (``"disparity"``, e.g. Depth Anything's
relative models) or ``"none"`` (no depth maps: all 0, the offline backend without a folder),
and in ``info["backend"]`` which backend made them.
"""

from __future__ import annotations

import json
from typing import Any

from dynrec.errors import DynrecError
from dynrec.pipeline.workdir import MANIFEST
from dynrec.stages.base import StageContext

DEPTH_KINDS = ("depth", "disparity", "none")


def upstream_info(ctx: StageContext, stage: str) -> dict[str, Any]:
    """``info`` of the committed manifest of upstream ``stage`` ({} when absent)."""
    folder = ctx.inputs.get(stage)
    if folder is None or not (folder / MANIFEST).is_file():
        return {}
    try:
        return dict(json.loads((folder / MANIFEST).read_text()).get("info") or {})
    except (OSError, ValueError):
        return {}


def depth_kind(ctx: StageContext) -> str:
    """``"depth"``, ``"disparity"`` or ``"none"``: what the depth stage's maps hold."""
    kind = str(upstream_info(ctx, "depth").get("depth_kind", "depth"))
    if kind not in DEPTH_KINDS:
        raise DynrecError(f"depth: unknown depth_kind '{kind}' in its manifest (expected one of {', '.join(DEPTH_KINDS)})")
    return kind


def as_depth(maps: Any, kind: str) -> Any:
    """Depth-like maps (larger = farther, 0 = unknown) from depth or disparity maps."""
    import numpy as np

    maps = np.asarray(maps, dtype=np.float64)
    if kind in ("depth", "none"):
        return maps
    out = np.zeros_like(maps)
    ok = maps > 0
    out[ok] = 1.0 / maps[ok]
    return out


def z_depth(ctx: StageContext) -> Any:
    """The depth stage's maps [T, H, W] when there are some and they are z-depth, else None
    (relative disparity or no maps cannot lift points)."""
    from dynrec.artifacts import Depth

    if "depth" not in ctx.inputs or depth_kind(ctx) != "depth":
        return None
    return Depth.load(ctx.inputs["depth"]).depth
