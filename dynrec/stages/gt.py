"""Shared helper of the ``gt`` backends: read a ground-truth artifact of a synth scene (or an
imported dataset in the same layout, see docs/synth-format.md) and bring it to the frames the
``frames`` stage kept, at the size it kept them. Not a stage itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dynrec.artifacts import Cameras, Frames, Keypoints, Tracks
from dynrec.errors import DynrecError
from dynrec.metrics import MetricNotComputable, umeyama
from dynrec.stages.base import StageContext


def gt_folder(gt: Path | None, name: str) -> Path:
    """``SCENE/gt/<name>``; errors say how to point at a scene."""
    if gt is None:
        raise DynrecError("the gt backend needs a ground-truth scene: pass --gt SCENE (made by `dynrec synth`)")
    folder = gt / "gt" / name
    if not folder.is_dir():
        raise DynrecError(f"ground-truth scene {gt} has no {name}/ (expected {folder}); is it a `dynrec synth` scene?")
    return folder


def frame_selection(ctx: StageContext, gt_count: int, gt_width: int, gt_height: int) -> tuple[np.ndarray, int, int]:
    """(source indices [T], width, height) of the kept frames, checked against the scene."""
    meta = Frames.load_meta(ctx.inputs["frames"])
    index = np.asarray(meta["source_index"], dtype=np.int64)
    if index.max(initial=0) >= gt_count:
        raise DynrecError(
            f"the video has more frames ({index.max() + 1}) than the ground truth ({gt_count}); "
            "is --gt the scene this video came from?"
        )
    width, height = int(meta["width"]), int(meta["height"])
    if abs(width / height - gt_width / gt_height) > 0.02:
        raise DynrecError(f"frames are {width}x{height} but the ground truth is {gt_width}x{gt_height}")
    return index, width, height


def load_gt(ctx: StageContext, name: str, cls: type) -> Any:
    """Load ``SCENE/gt/<name>`` as artifact ``cls`` at the kept frames and size."""
    meta = Frames.load_meta(gt_folder(ctx.gt, "frames"))
    gw, gh = int(meta["width"]), int(meta["height"])
    index, width, height = frame_selection(ctx, int(meta["count"]), gw, gh)
    artifact = cls.load(gt_folder(ctx.gt, name))
    if isinstance(artifact, (Tracks, Keypoints)):
        return artifact.select(index, width / gw, height / gh)
    return artifact.select(index, width, height)


def gt_external(name: str) -> Callable[[Any, Path | None, Path | None], list[Path]]:
    """``StageSpec.external`` of a stage with a gt backend: the gt files are part of its key."""

    def external(params: Any, source: Path | None, gt: Path | None) -> list[Path]:
        if params.backend != "gt" or gt is None:
            return []
        return [gt / "gt" / name, gt / "gt" / "frames" / Frames.FILE]

    return external


def heldout_cameras(ctx: StageContext) -> dict[str, Cameras]:
    """Held-out cameras of the ground-truth scene (``SCENE/heldout/<cam>/cameras``) at the kept
    frames and size, by camera name; empty without ``--gt`` or held-out views."""
    if ctx.gt is None or not (ctx.gt / "heldout").is_dir():
        return {}
    out = {}
    for folder in sorted(p for p in (ctx.gt / "heldout").iterdir() if (p / "cameras").is_dir()):
        cams = Cameras.load(folder / "cameras")
        index, width, height = frame_selection(ctx, len(cams.K), cams.width, cams.height)
        out[folder.name] = cams.select(index, width, height)
    return out


def gt_world_to_model(ctx: StageContext) -> np.ndarray | None:
    """[4, 4] similarity taking ground-truth world points into the model's world: identity
    when the cameras are the ground truth's, else the inverse of the Sim(3) that aligns the
    training camera centres to the ground truth's (Umeyama); None when they cannot be aligned."""
    cams = Cameras.load(ctx.inputs["cameras"])
    if cams.method == "gt":
        return np.eye(4)
    gt = load_gt(ctx, "cameras", Cameras)
    try:
        sim = umeyama(cams.c2w[:, :3, 3], gt.c2w[:, :3, 3])
    except MetricNotComputable:
        return None
    S = np.eye(4)
    S[:3, :3], S[:3, 3] = sim.scale * sim.R, sim.t
    return np.linalg.inv(S)
