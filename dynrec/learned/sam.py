"""SAM (Segment Anything) through transformers' ``SamModel``, prompted per frame.

Coordinates: prompts are in dynrec pixels (pixel centres at +0.5, see
:mod:`dynrec.geometry.camera`). SAM's prompt encoder adds 0.5 itself (it takes pixel
*indices*), so a prompt ``x`` becomes ``x * s - 0.5`` at the model's input scale ``s``.

Images go through the checkpoint's own image processor (``SamImageProcessorPil`` when
torchvision is absent); the prompt scaling is done here so that the image embeddings of a
whole batch of frames can be computed at once and each frame decoded with its own prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dynrec.errors import DynrecError
from dynrec.learned.weights import load_transformers_model

DEFAULT_SAM_MODEL = "facebook/sam-vit-base"
BACKEND = "masks (SAM)"


@dataclass
class SamBundle:
    model: Any
    image_processor: Any
    device: torch.device
    source: Path


def load_sam(
    model_id: str = DEFAULT_SAM_MODEL,
    weights_dir: Path | str | None = None,
    device: torch.device | str | None = "cpu",
) -> SamBundle:
    """Load a SAM checkpoint (``SamModel`` + its image processor) offline.

    Raises:
        WeightsMissing: not in the weights folders nor in the hub cache.
    """
    model, proc, dev, folder = load_transformers_model("SamModel", model_id, weights_dir, device, BACKEND,
                                                       "post_process_masks")
    return SamBundle(model, proc, dev, folder)


def parse_prompt(text: str, width: int, height: int) -> np.ndarray:
    """``"x,y"`` (pixels, +0.5 centres) -> ``[2]`` float32; a DynrecError names the image size
    when the text is malformed or the point lies outside ``[0, width) x [0, height)``."""
    try:
        x, y = (float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise DynrecError(f"--prompt '{text}': expected two numbers 'x,y' (pixels)") from None
    if not (0 <= x < width and 0 <= y < height):
        raise DynrecError(
            f"--prompt {text}: the point is outside the image ({width}x{height} pixels; "
            f"x must be in [0, {width}), y in [0, {height}))"
        )
    return np.array([x, y], np.float32)


def prompts_from_tracks(
    xy: np.ndarray,
    visible: np.ndarray,
    moving: np.ndarray,
    max_points: int = 8,
    image_size: tuple[int, int] | None = None,
) -> list[np.ndarray]:
    """Per-frame point prompts from moving foreground tracks.

    ``xy`` [N, T, 2], ``visible`` [N, T], ``moving`` [N] bool; ``image_size`` (W, H) drops
    points outside the frame. For each frame, up to ``max_points`` of the visible moving
    points, spread out by farthest-point sampling from the one nearest their median.
    Returns a list of T arrays ``[P_t, 2]`` (P_t may be 0).
    """
    xy = np.asarray(xy, np.float32)
    visible = np.asarray(visible, bool)
    moving = np.asarray(moving, bool)
    N, T = visible.shape
    if xy.shape != (N, T, 2) or moving.shape != (N,):
        raise ValueError(f"xy {xy.shape}, visible {visible.shape}, moving {moving.shape} disagree")
    out: list[np.ndarray] = []
    for t in range(T):
        keep = visible[:, t] & moving & np.isfinite(xy[:, t]).all(-1)
        pts = xy[keep, t]
        if image_size is not None and len(pts):
            w, h = image_size
            pts = pts[(pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)]
        out.append(_farthest_points(pts, max_points))
    return out


def _farthest_points(pts: np.ndarray, k: int) -> np.ndarray:
    if len(pts) <= k:
        return pts.reshape(-1, 2).astype(np.float32)
    first = int(np.argmin(np.linalg.norm(pts - np.median(pts, 0), axis=1)))
    chosen = [first]
    d = np.linalg.norm(pts - pts[first], axis=1)
    while len(chosen) < k:
        i = int(np.argmax(d))
        chosen.append(i)
        d = np.minimum(d, np.linalg.norm(pts - pts[i], axis=1))
    return pts[chosen].astype(np.float32)


def _check_inside(p: np.ndarray, width: int, height: int, what: str, t: int) -> None:
    x, y = p[..., 0::2], p[..., 1::2]
    if (x < 0).any() or (x > width).any() or (y < 0).any() or (y > height).any():
        raise DynrecError(
            f"mask {what} of frame {t} lies outside the image ({width}x{height} pixels): "
            f"{np.round(p, 2).tolist()}"
        )


def segment(
    bundle: SamBundle,
    frames: np.ndarray,
    points: Sequence[np.ndarray | None] | None = None,
    boxes: Sequence[np.ndarray | None] | np.ndarray | None = None,
    labels: Sequence[np.ndarray | None] | None = None,
    batch: int = 4,
) -> np.ndarray:
    """Foreground masks ``[T, H, W]`` bool of ``frames`` uint8 ``[T, H, W, 3]``.

    Per frame t: ``points[t]`` ``[P, 2]`` (x, y) pixels and/or ``boxes[t]`` ``[4]`` xyxy
    pixels; ``labels[t]`` ``[P]`` (1 foreground, 0 background; all 1 by default). A frame with
    neither gets an empty mask. Image embeddings are computed ``batch`` frames at a time; of
    SAM's candidate masks the one with the best predicted IoU is kept, upsampled to ``H x W``
    by the processor's ``post_process_masks``.

    Raises:
        DynrecError: a prompt outside the image.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3], got {frames.shape}")
    T, H, W, _ = frames.shape
    pts_list = list(points) if points is not None else [None] * T
    box_list = list(boxes) if boxes is not None else [None] * T
    lab_list = list(labels) if labels is not None else [None] * T
    if not (len(pts_list) == len(box_list) == len(lab_list) == T):
        raise ValueError(f"need one prompt entry per frame ({T})")
    for t in range(T):
        if pts_list[t] is not None and len(pts_list[t]):
            pts_list[t] = np.asarray(pts_list[t], np.float64).reshape(-1, 2)
            _check_inside(pts_list[t], W, H, "prompt point", t)
        else:
            pts_list[t] = None
        if box_list[t] is not None:
            box_list[t] = np.asarray(box_list[t], np.float64).reshape(4)
            _check_inside(box_list[t], W, H, "prompt box", t)

    proc, model, dev = bundle.image_processor, bundle.model, bundle.device
    out = np.zeros((T, H, W), bool)
    for s in range(0, T, max(1, batch)):
        idx = [
            t
            for t in range(s, min(T, s + batch))
            if pts_list[t] is not None or box_list[t] is not None
        ]
        if not idx:
            continue
        enc = proc(images=[np.ascontiguousarray(frames[t]) for t in idx], return_tensors="pt")
        reshaped = [tuple(int(v) for v in r) for r in enc["reshaped_input_sizes"]]
        with torch.no_grad():
            emb = model.get_image_embeddings(enc["pixel_values"].to(dev))
        for j, t in enumerate(idx):
            rh, rw = reshaped[j]
            scale = np.array([rw / W, rh / H])
            kwargs: dict[str, torch.Tensor] = {}
            if pts_list[t] is not None:
                p = pts_list[t] * scale - 0.5  # +0.5 centres -> SAM's pixel indices
                lab = lab_list[t]
                lab = (
                    np.ones(len(p), np.int64)
                    if lab is None
                    else np.asarray(lab, np.int64).reshape(-1)
                )
                kwargs["input_points"] = torch.tensor(p, dtype=torch.float32, device=dev)[
                    None, None
                ]
                kwargs["input_labels"] = torch.tensor(lab, device=dev)[None, None]
            if box_list[t] is not None:
                b = box_list[t] * np.tile(scale, 2) - 0.5  # same convention as points
                kwargs["input_boxes"] = torch.tensor(b, dtype=torch.float32, device=dev)[None, None]
            single_point = box_list[t] is None and pts_list[t] is not None and len(pts_list[t]) == 1
            with torch.no_grad():
                res = model(
                    image_embeddings=emb[j : j + 1], multimask_output=single_point, **kwargs
                )
            best = int(res.iou_scores[0, 0].argmax())
            low = res.pred_masks[0, :, best : best + 1].float().cpu()  # [1, 1, h, w]
            full = proc.post_process_masks([low], [(H, W)], [(rh, rw)])[0]
            out[t] = full[0, 0].numpy().astype(bool)
    return out
