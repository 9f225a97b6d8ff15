"""depth: z-depth maps [T,H,W].

Backends: ``gt`` copies a synth scene's ground truth; ``offline`` imports depth maps from
``folder`` (one ``.npy`` or 16-bit ``.png`` per frame, values times ``scale``; see
:mod:`dynrec.vision.depth_io`). Monocular depth cannot be had offline without a model or
maps made elsewhere, so without a folder the offline backend stops and says what to pass
(a constant or guessed depth would silently mislead the cameras, masks and lifting).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dynrec.artifacts import Depth, Frames
from dynrec.errors import DynrecError
from dynrec.stages.base import StageContext, StageSpec, pick_backend
from dynrec.stages.gt import gt_external, load_gt


@dataclass
class DepthParams:
    """``backend``: which method produces the depth (see ``BACKENDS``).

    Offline backend: ``folder`` of depth maps, one per input frame in name order (``.npy``
    [H, W] or 16-bit ``.png``); ``scale`` multiplies the stored values (e.g. 0.001 for
    millimetre PNGs); ``kind``: ``depth`` (z-depth) or ``disparity`` (inverse depth, e.g. a
    relative monocular model's output)."""

    backend: str = "learned"
    folder: str = ""
    scale: float = 1.0
    kind: str = "depth"


def _gt(ctx: StageContext, params: DepthParams) -> dict[str, Any]:
    load_gt(ctx, "depth", Depth).save(ctx.out)
    return {"backend": "gt"}


def _offline(ctx: StageContext, params: DepthParams) -> dict[str, Any]:
    from dynrec.vision.depth_io import import_depth

    if not params.folder:
        raise DynrecError("depth: the offline backend imports depth maps; pass --set depth.folder=DIR "
                          "(one .npy or 16-bit .png per input frame), or use --set depth.backend=learned")
    if params.kind not in ("depth", "disparity"):
        raise DynrecError(f"depth: kind must be 'depth' or 'disparity', got '{params.kind}'")
    if not params.scale > 0:
        raise DynrecError(f"depth: scale must be > 0, got {params.scale}")
    meta = Frames.load_meta(ctx.inputs["frames"])
    index = np.asarray(meta["source_index"], dtype=np.int64)
    depth = import_depth(Path(params.folder).expanduser(), index, int(meta["width"]), int(meta["height"]), params.scale)
    Depth(depth).save(ctx.out)
    known = depth > 0
    return {"backend": "offline", "depth_kind": params.kind, "folder": str(params.folder),
            "known_fraction": float(known.mean()), "range": [float(depth[known].min()), float(depth[known].max())]}


def _external(params: DepthParams, source: Path | None, gt: Path | None) -> list[Path]:
    """The gt files, or the imported folder: their content is part of the key."""
    if params.backend == "offline" and params.folder:
        folder = Path(params.folder).expanduser()
        return [folder] if folder.exists() else []  # the stage itself says what is missing
    return gt_external("depth")(params, source, gt)


BACKENDS = {"gt": _gt, "offline": _offline}


def run(ctx: StageContext, params: DepthParams) -> dict[str, Any]:
    return pick_backend("depth", BACKENDS, params.backend)(ctx, params)


STAGE = StageSpec(
    name="depth", version=1, upstream=('frames',), params=DepthParams, run=run,
    external=_external, summary="z-depth maps [T,H,W]",
)
