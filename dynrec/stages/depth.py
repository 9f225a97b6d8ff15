"""depth: z-depth maps [T,H,W].

Backends: ``learned`` (default) runs Depth Anything V2 through transformers
(:mod:`dynrec.learned.depth_anything`; ``model`` is a short name such as ``small``, ``base``,
``large``, ``metric-indoor-base`` or a hub id); relative models give disparity, recorded as
``depth_kind`` in the manifest for ``align`` to fit in inverse depth. ``gt`` copies a synth
scene's ground truth; ``offline`` imports depth maps from
``folder`` (one ``.npy`` or 16-bit ``.png`` per frame, values times ``scale``; see
:mod:`dynrec.vision.depth_io`). Monocular depth cannot be had offline without a model, so
without a folder the offline backend writes no depth (all 0, ``depth_kind: none``): the
cameras stage then starts its bundle adjustment from a plane, and ``align`` makes dense depth
by interpolating the sparse background points it triangulates (a coarse stand-in: the
foreground gets the depth of the background around it). A warning says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dynrec.artifacts import Depth, Frames
from dynrec.errors import DynrecError
from dynrec.stages.base import StageContext, StageSpec, check_fields, pick_backend
from dynrec.stages.gt import gt_external, load_gt


@dataclass
class DepthParams:
    """``backend``: which method produces the depth (see ``BACKENDS``).

    Learned backend: ``model`` (Depth Anything V2 short name or hub id), ``batch`` frames per
    forward pass.

    Offline backend: ``folder`` of depth maps, one per input frame in name order (``.npy``
    [H, W] or 16-bit ``.png``); ``scale`` multiplies the stored values (e.g. 0.001 for
    millimetre PNGs); ``kind``: ``depth`` (z-depth) or ``disparity`` (inverse depth, e.g. a
    relative monocular model's output)."""

    backend: str = "learned"
    model: str = "small"
    batch: int = 4
    folder: str = ""
    scale: float = 1.0
    kind: str = "depth"


def _gt(ctx: StageContext, params: DepthParams) -> dict[str, Any]:
    load_gt(ctx, "depth", Depth).save(ctx.out)
    return {"backend": "gt"}


def _learned(ctx: StageContext, params: DepthParams) -> dict[str, Any]:
    from dynrec.learned.depth_anything import load_depth_model, predict_depth

    if params.batch < 1:
        raise DynrecError(f"depth: batch must be >= 1, got {params.batch}")
    bundle = load_depth_model(params.model, ctx.weights_dir, ctx.device)
    frames = Frames.load(ctx.inputs["frames"]).images
    maps = np.zeros(frames.shape[:3], np.float32)
    for s in range(0, len(frames), params.batch):
        ctx.progress(f"Depth Anything ({params.model})", s, len(frames))
        maps[s : s + params.batch] = predict_depth(bundle, frames[s : s + params.batch], params.batch)[0]
    maps = np.where(np.isfinite(maps) & (maps > 0), maps, 0.0).astype(np.float32)
    if not (maps > 0).any():
        raise DynrecError(f"depth: {params.model} predicted no positive depth in any frame (is the video black?)")
    Depth(maps).save(ctx.out)
    return {"backend": "learned", "depth_kind": bundle.kind, "model": params.model, "weights": str(bundle.source),
            "known_fraction": float((maps > 0).mean())}


def _offline(ctx: StageContext, params: DepthParams) -> dict[str, Any]:
    from dynrec.vision.depth_io import import_depth

    meta = Frames.load_meta(ctx.inputs["frames"])
    if not params.folder:
        ctx.console.print("[yellow]depth: no depth maps to import (--set depth.folder=DIR); the aligned depth will be "
                          "interpolated from sparse structure-from-motion points only (coarse on moving subjects)[/]")
        T, H, W = len(meta["source_index"]), int(meta["height"]), int(meta["width"])
        Depth(np.zeros((T, H, W), np.float32)).save(ctx.out)
        return {"backend": "offline", "depth_kind": "none", "folder": None, "known_fraction": 0.0}
    if params.kind not in ("depth", "disparity"):
        raise DynrecError(f"depth: kind must be 'depth' or 'disparity', got '{params.kind}'")
    if not params.scale > 0:
        raise DynrecError(f"depth: scale must be > 0, got {params.scale}")
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


BACKENDS = {"learned": _learned, "gt": _gt, "offline": _offline}


def run(ctx: StageContext, params: DepthParams) -> dict[str, Any]:
    return pick_backend("depth", BACKENDS, params.backend)(ctx, params)



def _weights(params: DepthParams) -> list[Any]:
    if params.backend != "learned":
        return []
    from dynrec.learned.depth_anything import model_id_for
    from dynrec.weights import for_hf_model

    w = for_hf_model(model_id_for(params.model), f"depth (learned, depth.model={params.model})")
    return [w] if w else []


def _check(params: DepthParams) -> None:
    check_fields("depth", params, minimum={"batch": 1}, positive=("scale",),
                 choices={"backend": BACKENDS, "kind": ("depth", "disparity")})


STAGE = StageSpec(
    name="depth", version=2, upstream=('frames',), params=DepthParams, run=run,
    external=_external, summary="z-depth maps [T,H,W]", weights=_weights, check=_check,
)
