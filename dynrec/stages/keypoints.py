"""keypoints: 2D keypoints [T,J,2] and skeleton.

Backends: ``learned`` (default) runs ViTPose++ (:mod:`dynrec.learned.vitpose`) in boxes
around the foreground masks (``dataset`` picks its expert: ``coco`` for humans, ``ap10k`` for
animals...); frames with an empty mask get confidence 0. ``xpose`` runs X-Pose from a clone
the user points at (``xpose_code``, ``xpose_checkpoint``; :mod:`dynrec.learned.xpose`) with a
text prompt ``xpose_instance`` and keypoint set ``xpose_set``, in the same boxes. ``gt`` copies a synth scene's
ground truth; ``offline`` clusters the foreground
tracks (lifted to 3D with the aligned depth and the cameras) into ``count`` keypoints with a
minimum-spanning-tree skeleton (:mod:`dynrec.vision.keypoints`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dynrec.artifacts import Cameras, Depth, Frames, Keypoints, Masks, Tracks
from dynrec.errors import DynrecError
from dynrec.stages.base import StageContext, StageSpec, check_fields, pick_backend
from dynrec.stages.gt import gt_external, load_gt


@dataclass
class KeypointsParams:
    """``backend``: which method produces the keypoints (see ``BACKENDS``).

    Learned backend: ViTPose ``model`` (hub id or folder), ``dataset`` expert of ViTPose++
    (coco, aic, mpii, ap10k, apt36k, wholebody), boxes grown by ``box_margin`` x their size,
    ``batch`` frames per pass. X-Pose backend: ``xpose_code`` (a clone of IDEA-Research/X-Pose),
    ``xpose_checkpoint`` (its weights), ``xpose_instance`` text prompt, ``xpose_set`` keypoint
    set of its ``predefined_keypoints.py`` (person, animal, face...).

    Offline backend: ``count`` keypoints J; ``fg_fraction`` of a track's visible samples
    that must lie on the mask for it to count as foreground; ``min_valid`` frames with depth
    a track needs; ``seed`` of K-Means."""

    backend: str = "learned"
    model: str = "usyd-community/vitpose-plus-base"
    dataset: str = "coco"
    box_margin: float = 0.1
    batch: int = 8
    xpose_code: str = ""
    xpose_checkpoint: str = ""
    xpose_instance: str = "person"
    xpose_set: str = "person"
    count: int = 12
    fg_fraction: float = 0.6
    min_valid: int = 2
    seed: int = 0


def _gt(ctx: StageContext, params: KeypointsParams) -> dict[str, Any]:
    load_gt(ctx, "keypoints", Keypoints).save(ctx.out)
    return {"backend": "gt"}


def _learned(ctx: StageContext, params: KeypointsParams) -> dict[str, Any]:
    from dynrec.learned.vitpose import (
        DATASET_INDEX,
        detect_keypoints,
        load_vitpose,
    )

    if params.dataset.lower() not in DATASET_INDEX:
        raise DynrecError(f"keypoints: unknown dataset '{params.dataset}' (known: {', '.join(DATASET_INDEX)})")
    if params.batch < 1:
        raise DynrecError("keypoints: batch must be >= 1")
    frames, boxes, valid = _boxes(ctx, params)
    bundle = load_vitpose(params.model, ctx.weights_dir, ctx.device)
    T = len(frames)
    xy = np.zeros((T, len(bundle.names), 2), np.float32)
    conf = np.zeros((T, len(bundle.names)), np.float32)
    for s in range(0, T, params.batch):
        ctx.progress("ViTPose", s, T)
        sl = slice(s, s + params.batch)
        xy[sl], conf[sl] = detect_keypoints(bundle, frames[sl], boxes[sl], params.dataset, params.batch, valid[sl])
    Keypoints(xy, conf, bundle.skeleton, list(bundle.names)).save(ctx.out)
    return {"backend": "learned", "model": params.model, "weights": str(bundle.source), "dataset": params.dataset,
            "keypoints": len(bundle.names), "frames_without_subject": int((~valid).sum()),
            "mean_confidence": float(conf.mean())}


def _boxes(ctx: StageContext, params: KeypointsParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frames, boxes [T, 4] around the masks, valid [T]) for the detectors."""
    from dynrec.learned.vitpose import boxes_from_masks

    if params.box_margin < 0:
        raise DynrecError("keypoints: box_margin must be >= 0")
    frames = Frames.load(ctx.inputs["frames"]).images
    masks = Masks.load(ctx.inputs["masks"]).masks
    if not masks.any():
        raise DynrecError("keypoints: every foreground mask is empty; there is no subject to find keypoints on")
    boxes, valid = boxes_from_masks(masks, params.box_margin)
    return frames, boxes, valid


def _xpose(ctx: StageContext, params: KeypointsParams) -> dict[str, Any]:
    from dynrec.learned.xpose import detect_keypoints_xpose, load_xpose, xpose_keypoint_set

    frames, boxes, valid = _boxes(ctx, params)
    model = load_xpose(params.xpose_code or None, params.xpose_checkpoint or None, device=ctx.device)
    names, skeleton = xpose_keypoint_set(params.xpose_set)
    ctx.progress("X-Pose", 0, len(frames))
    xy, conf = detect_keypoints_xpose(model, frames, boxes, params.xpose_instance, params.xpose_set,
                                      device=ctx.device, valid=valid)
    Keypoints(xy, conf, skeleton, list(names)).save(ctx.out)
    return {"backend": "xpose", "instance": params.xpose_instance, "set": params.xpose_set, "keypoints": len(names),
            "frames_without_subject": int((~valid).sum()), "mean_confidence": float(conf.mean())}


def _offline(ctx: StageContext, params: KeypointsParams) -> dict[str, Any]:
    from dynrec.vision.foreground import foreground_tracks, in_mask
    from dynrec.vision.keypoints import cluster_keypoints

    if params.count < 2:
        raise DynrecError(f"keypoints: count must be >= 2, got {params.count}")
    tracks = Tracks.load(ctx.inputs["tracks"])
    masks = Masks.load(ctx.inputs["masks"]).masks
    cams = Cameras.load(ctx.inputs["cameras"])
    depth = Depth.load(ctx.inputs["align"]).depth
    on_fg = tracks.visible & in_mask(tracks.xy, masks)
    fg = foreground_tracks(tracks.xy, tracks.visible, masks, params.fg_fraction)
    if len(fg) < 2:  # nothing moves (a static scene): no keypoints, and SirenPose has nothing to use
        ctx.console.print(f"[yellow]keypoints: only {len(fg)} tracks lie on the foreground masks; no keypoints "
                          "(name a subject with --prompt x,y if something should move)[/]")
        T = len(masks)
        Keypoints(np.zeros((T, 0, 2), np.float32), np.zeros((T, 0), np.float32), np.zeros((0, 2), np.int64),
                  []).save(ctx.out)
        return {"backend": "offline", "keypoints": 0, "tracks": len(fg), "reason": "too few foreground tracks"}
    try:
        found = cluster_keypoints(tracks.xy[fg], on_fg[fg], depth, cams.K, cams.w2c, params.count,
                                  params.min_valid, params.seed)
    except ValueError as exc:
        raise DynrecError(f"keypoints: {exc} (check the depth / align stages)") from exc
    J = found.xy.shape[1]
    Keypoints(found.xy, found.confidence, found.skeleton, [f"k{j}" for j in range(J)]).save(ctx.out)
    return {"backend": "offline", "keypoints": J, "tracks": len(fg), "canonical": found.canonical,
            "mean_confidence": float(found.confidence.mean())}


BACKENDS = {"learned": _learned, "xpose": _xpose, "gt": _gt, "offline": _offline}


def run(ctx: StageContext, params: KeypointsParams) -> dict[str, Any]:
    return pick_backend("keypoints", BACKENDS, params.backend)(ctx, params)



def _weights(params: KeypointsParams) -> list[Any]:
    from dynrec.weights import for_hf_model

    w = for_hf_model(params.model, "keypoints (learned)") if params.backend == "learned" else None
    return [w] if w else []


def _check(params: KeypointsParams) -> None:
    check_fields("keypoints", params, choices={"backend": BACKENDS}, minimum={"batch": 1, "box_margin": 0, "count": 2})


STAGE = StageSpec(
    name="keypoints", version=2, upstream=("frames", "masks", "tracks", "cameras", "align"), params=KeypointsParams,
    run=run, external=gt_external("keypoints"), summary="2D keypoints [T,J,2] and skeleton", weights=_weights, check=_check,
)
