"""masks: foreground masks [T,H,W].

Backends: ``learned`` (default) prompts SAM (:mod:`dynrec.learned.sam`) in every frame with
up to ``sam_points`` points of the tracks that move against the camera motion (or of the
subject named by ``prompt``); ``gt`` copies a synth scene's ground truth; ``offline`` segments what moves
against the camera motion (:mod:`dynrec.vision.motionseg`): the tracks' motion scores (and
the colour the still tracks' motion cannot explain, for parts too fast to track) give
foreground and background seeds, GrabCut makes them dense, a 3-frame majority smooths them
in time. The cameras stage runs after this one, so the camera motion is estimated here from
the tracks (PnP with z-depth from the depth stage, fundamental matrices without; the latter
cannot see a subject that moves along the epipolar lines, e.g. one the camera orbits).
``prompt = "x,y"`` (pixels of the input video, in frame ``prompt_frame`` of the kept frames)
names the subject: its tracks are kept as foreground and only its connected region is kept.
When nothing moves on its own (a still life, a pet sitting still while the camera moves) and
no prompt is given, the subject is what the camera keeps near the image centre (fixation).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from dynrec.artifacts import Frames, Masks, Tracks
from dynrec.errors import DynrecError
from dynrec.stages.base import StageContext, StageSpec, check_fields, pick_backend
from dynrec.stages.gt import gt_external, load_gt
from dynrec.stages.upstream import z_depth


@dataclass
class MasksParams:
    """``backend``: which method produces the masks (see ``BACKENDS``).

    Learned backend: SAM ``model`` (hub id or folder), ``sam_points`` prompt points per
    frame, ``batch`` frames per image-encoder pass. Both backends: ``prompt`` "x,y" in pixels of the input video ("" = none) and
    ``prompt_frame`` (index among the kept frames) name the subject; ``prompt_radius``
    (pixels of the kept frames): tracks this close to the prompt belong to the subject;
    ``moving``: fraction of frame pairs in which a track moves against the camera for it to
    be foreground; ``threshold_px``: smallest residual that counts as moving; ``fixation``: when
    fewer than ``min_subject_tracks`` tracks lie mostly on the moving foreground (too few to
    lift) and no prompt is given, the subject is what the camera keeps near the image centre
    (:func:`dynrec.vision.motionseg.fixated_tracks`; ``subject`` in the manifest says which)."""

    backend: str = "learned"
    model: str = "facebook/sam-vit-base"
    sam_points: int = 8
    batch: int = 4
    prompt: str = ""
    prompt_box: str = ""
    prompt_frame: int = 0
    prompt_radius: float = 4.0
    moving: float = 0.5
    threshold_px: float = 1.0
    min_subject_tracks: int = 8
    fixation: bool = True


def _gt(ctx: StageContext, params: MasksParams) -> dict[str, Any]:
    load_gt(ctx, "masks", Masks).save(ctx.out)
    return {"backend": "gt"}


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")  # as the frames stage reads


def source_size(source: Path | None) -> tuple[int, int] | None:
    """(width, height) of the input video or of the first image of an image folder; None if unknown."""
    if source is None or not source.exists():
        return None
    try:
        if source.is_dir():
            from PIL import Image

            first = min((p for p in source.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES), default=None)
            if first is None:
                return None
            with Image.open(first) as im:
                return im.size
        import av

        with av.open(str(source)) as container:
            stream = container.streams.video[0]
            return int(stream.codec_context.width), int(stream.codec_context.height)
    except (OSError, IndexError, ValueError):
        return None


def _learned(ctx: StageContext, params: MasksParams) -> dict[str, Any]:
    from dynrec.learned.sam import load_sam, prompts_from_tracks, segment

    if params.sam_points < 1 or params.batch < 1:
        raise DynrecError("masks: sam_points and batch must be >= 1")
    ev = _motion(ctx, params)
    frames, tracks, subject, scores = ev.frames, ev.tracks, ev.subject, ev.scores
    T, H, W = frames.shape[:3]
    moving = scores.moving(params.moving, 1)  # tracks only the multi-view model calls moving prompt nothing
    chosen = moving if subject is None else np.isin(np.arange(len(moving)), subject)
    if not chosen.any():
        raise DynrecError(
            f"masks: no track moves against the camera motion ({len(moving)} tracks) to prompt SAM with; "
            "name the subject with --prompt x,y (pixels of the input video)")
    points = prompts_from_tracks(tracks.xy, tracks.visible, chosen, params.sam_points, (W, H))
    bundle = load_sam(params.model, ctx.weights_dir, ctx.device)
    masks = np.zeros((T, H, W), bool)
    for s in range(0, T, params.batch):
        ctx.progress("SAM", s, T)
        masks[s : s + params.batch] = segment(bundle, frames[s : s + params.batch], points[s : s + params.batch],
                                              batch=params.batch)
    if not masks.any():
        raise DynrecError("masks: SAM returned empty masks in every frame; name the subject with --prompt x,y")
    Masks(masks).save(ctx.out)
    return {"backend": "learned", "model": params.model, "weights": str(bundle.source),
            "moving_tracks": int(moving.sum()), "prompted_frames": int(sum(len(p) > 0 for p in points)), "motion": ev.method,
            "empty_frames": int((~masks.any(axis=(1, 2))).sum()), "foreground_fraction": float(masks.mean()),
            "prompt_tracks": None if subject is None else len(subject)}


@dataclass
class _Evidence:
    """What both backends segment from: ``frames`` [T, H, W, 3], the tracks, the prompted
    subject's track indices (or None), their motion scores and the ``method`` that made them
    (:func:`dynrec.vision.motionseg.camera_motion_scores`), z-depth [T, H, W] or None."""

    frames: np.ndarray
    tracks: Tracks
    subject: np.ndarray | None
    scores: Any
    depth: np.ndarray | None
    motion: Any
    method: str


def _motion(ctx: StageContext, params: MasksParams) -> _Evidence:
    from dynrec.vision.motionseg import (
        MotionParams,
        box_tracks,
        camera_motion_scores,
        parse_box,
        parse_points,
        prompt_tracks,
    )

    frames = Frames.load(ctx.inputs["frames"]).images
    tracks = Tracks.load(ctx.inputs["tracks"])
    T, H, W = frames.shape[:3]
    if tracks.xy.shape[1] != T:
        raise DynrecError(f"masks: tracks have {tracks.xy.shape[1]} frames but there are {T} frames")
    subject = None
    if params.prompt.strip() or params.prompt_box.strip():
        size = source_size(ctx.source) or (W, H)
        scale = (W / size[0], H / size[1])
        chosen = [prompt_tracks(tracks.xy, tracks.visible, p, params.prompt_radius)
                  for p in parse_points(params.prompt, params.prompt_frame, T, W, H, scale)]
        if params.prompt_box.strip():
            box = parse_box(params.prompt_box, params.prompt_frame, T, W, H, scale)
            chosen.append(box_tracks(frames[box[0]], tracks.xy, tracks.visible, box))
        subject = np.unique(np.concatenate(chosen)).astype(np.int64)
        if not len(subject):
            raise DynrecError(f"masks: no track is visible at the prompt in kept frame {params.prompt_frame}; "
                              "choose another frame with --set masks.prompt_frame=N")
    depth = z_depth(ctx)
    motion = replace(MotionParams(), threshold_px=params.threshold_px)
    verified = tracks.visible & (tracks.confidence >= 0.5)
    ctx.progress("motion", 0, T)
    scores, method = camera_motion_scores(tracks.xy, verified, depth, (W, H), motion)
    return _Evidence(frames, tracks, subject, scores, depth, motion, method)


def _offline(ctx: StageContext, params: MasksParams) -> dict[str, Any]:
    from dynrec.vision.foreground import foreground_tracks
    from dynrec.vision.motionseg import MaskParams, fixated_tracks, segment

    ev = _motion(ctx, params)
    frames, tracks, subject, scores, depth, motion = ev.frames, ev.tracks, ev.subject, ev.scores, ev.depth, ev.motion
    mask_params = replace(MaskParams(), moving=params.moving)
    masks = segment(frames, tracks.xy, tracks.visible, scores, depth, subject, mask_params, motion,
                    progress=lambda done, total: ctx.progress("segmenting", done, total))
    moving = int(scores.moving(params.moving, 1).sum())
    chosen = "prompt" if subject is not None else "motion"
    lifted = foreground_tracks(tracks.xy, tracks.visible, masks, 0.6)  # as lift counts them
    if subject is None and params.fixation and len(lifted) < params.min_subject_tracks:
        # nothing moves on its own: take what the camera keeps centred as the subject
        subject = fixated_tracks(tracks.xy, tracks.visible, (frames.shape[2], frames.shape[1]))
        if len(subject):
            chosen = "fixation"
            masks = segment(frames, tracks.xy, tracks.visible, scores, depth, subject, mask_params, motion,
                            progress=lambda done, total: ctx.progress("segmenting (fixation)", done, total))
    if not masks.any() and chosen != "prompt":
        raise DynrecError(
            f"masks: nothing moves against the camera motion ({len(tracks.xy)} tracks, {moving} moving, "
            f"camera model '{ev.method}'); name the subject with --prompt x,y or --prompt-box x0,y0,x1,y1 "
            "(pixels of the input video's first kept frame), e.g. --prompt 320,240")
    if not masks.any():
        raise DynrecError(
            f"masks: the prompt names {len(subject)} track(s) but GrabCut kept no pixel around them in any frame; "
            "try --prompt-box x0,y0,x1,y1 around the subject, or more points (--prompt 'x1,y1;x2,y2')")
    Masks(masks).save(ctx.out)
    empty = int((~masks.any(axis=(1, 2))).sum())
    if empty > 0.1 * len(masks):
        ctx.console.print(f"[yellow]masks: {empty} of {len(masks)} frames have an empty mask; look at them with "
                          "`dynrec inspect WORK` and name the subject with --prompt-box x0,y0,x1,y1 if it is missed[/]")
    if chosen == "prompt" and not (scores.track[subject] >= params.moving).any() and not 0.01 <= masks.mean() <= 0.5:
        ctx.console.print(
            f"[yellow]masks: the prompt names {len(subject)} track(s) that do not move against the camera and "
            f"GrabCut grew them to {100 * masks.mean():.2f}% of the pixels: the prompt may lie on the "
            "background rather than on an object; look at WORK/inspect/masks.png and put the point (or a "
            "--prompt-box) on the subject[/]")
    if chosen == "fixation":
        ctx.console.print(f"[yellow]masks: nothing moves on its own; the subject is what the camera keeps centred "
                          f"({len(subject)} tracks). Name it with --prompt x,y if that is wrong[/]")
    return {"backend": "offline", "subject": chosen, "moving_tracks": moving, "empty_frames": empty,
            "foreground_fraction": float(masks.mean()), "depth_used": depth is not None, "motion": ev.method,
            "prompt_tracks": None if subject is None else len(subject)}


BACKENDS = {"learned": _learned, "gt": _gt, "offline": _offline}


def run(ctx: StageContext, params: MasksParams) -> dict[str, Any]:
    from dynrec.geometry.colmap import logs_in

    with logs_in(ctx.logs):  # COLMAP's own log lines: to the work dir's logs, not the terminal
        return pick_backend("masks", BACKENDS, params.backend)(ctx, params)



def _weights(params: MasksParams) -> list[Any]:
    from dynrec.weights import for_hf_model

    w = for_hf_model(params.model, "masks (learned)") if params.backend == "learned" else None
    return [w] if w else []


def _check(params: MasksParams) -> None:
    check_fields("masks", params, choices={"backend": BACKENDS}, minimum={"sam_points": 1, "batch": 1})


STAGE = StageSpec(
    name="masks", version=8, upstream=("frames", "tracks", "depth"), params=MasksParams, run=run,
    external=gt_external("masks"), summary="foreground masks [T,H,W]", weights=_weights, check=_check,
)
