"""ViTPose / ViTPose++ through transformers (``VitPoseForPoseEstimation``), top-down with
one box per frame taken from the foreground masks.

ViTPose++ checkpoints (``usyd-community/vitpose-plus-*``) have mixture-of-experts MLPs
selected by ``dataset_index`` (the training dataset: 0 COCO humans, 1 AIC, 2 MPII,
3 AP-10K animals, 4 APT-36K animals, 5 COCO-WholeBody); the transformers port keeps one
17-keypoint head, so keypoint names follow COCO unless the config's ``id2label`` names them.

Coordinates: boxes and keypoints are dynrec pixels (+0.5 centres). ViTPose's processor and
post-processing (UDP) work in pixel indices, so boxes are shifted by -0.5 on the way in
and keypoints by +0.5 on the way out. Preprocessing is the checkpoint's processor
(``VitPoseImageProcessorPil`` without torchvision; its affine warp uses scipy).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dynrec.learned.weights import load_transformers_model

DEFAULT_VITPOSE_MODEL = "usyd-community/vitpose-plus-base"
BACKEND = "keypoints (ViTPose)"
DATASET_INDEX = {
    "coco": 0,
    "human": 0,
    "aic": 1,
    "mpii": 2,
    "ap10k": 3,
    "animal": 3,
    "apt36k": 4,
    "wholebody": 5,
}

COCO_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
# 0-based COCO limbs (the 1-based list of the COCO annotations, minus one)
COCO_SKELETON = np.array(
    [[15, 13], [13, 11], [16, 14], [14, 12], [11, 12], [5, 11], [6, 12], [5, 6], [5, 7],
     [6, 8], [7, 9], [8, 10], [1, 2], [0, 1], [0, 2], [1, 3], [2, 4], [3, 5], [4, 6]],
    dtype=np.int64,
)  # fmt: skip


@dataclass
class VitPoseBundle:
    model: Any
    processor: Any
    device: torch.device
    source: Path
    names: tuple[str, ...]
    skeleton: np.ndarray


def load_vitpose(
    model_id: str = DEFAULT_VITPOSE_MODEL,
    weights_dir: Path | str | None = None,
    device: torch.device | str | None = "cpu",
) -> VitPoseBundle:
    """Load a ViTPose(++) checkpoint and its image processor offline.

    Raises:
        WeightsMissing: not in the weights folders nor in the hub cache.
    """
    model, proc, dev, folder = load_transformers_model("VitPoseForPoseEstimation", model_id, weights_dir, device,
                                                       BACKEND, "post_process_pose_estimation")
    j = int(model.config.num_labels)
    labels = getattr(model.config, "id2label", None) or {}
    generic = all(str(v).startswith("LABEL_") for v in labels.values())
    if j == len(COCO_NAMES) and (not labels or generic):
        names, skeleton = COCO_NAMES, COCO_SKELETON
    else:
        names = tuple(str(labels.get(i, f"kp{i}")) for i in range(j))
        skeleton = COCO_SKELETON if j == len(COCO_NAMES) else np.zeros((0, 2), np.int64)
    return VitPoseBundle(model, proc, dev, folder, names, skeleton.copy())


def boxes_from_masks(masks: np.ndarray, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Tight boxes ``[T, 4]`` xyxy (pixel edges: a mask spanning columns i..j gives
    x0 = i, x1 = j + 1) of masks ``[T, H, W]``, grown by ``margin`` x size on each side and
    clipped to the image, and ``valid [T]``. A frame with an empty mask gets the previous
    frame's box (the next one's before the first non-empty frame; the whole image when all
    are empty) and ``valid = False``."""
    masks = np.asarray(masks, bool)
    T, H, W = masks.shape
    boxes = np.zeros((T, 4), np.float32)
    valid = masks.reshape(T, -1).any(1)
    for t in np.flatnonzero(valid):
        ys = np.flatnonzero(masks[t].any(1))
        xs = np.flatnonzero(masks[t].any(0))
        x0, x1, y0, y1 = xs[0], xs[-1] + 1.0, ys[0], ys[-1] + 1.0
        mx, my = margin * (x1 - x0), margin * (y1 - y0)
        boxes[t] = [max(0, x0 - mx), max(0, y0 - my), min(W, x1 + mx), min(H, y1 + my)]
    if not valid.any():
        boxes[:] = [0, 0, W, H]
        return boxes, valid
    first = int(np.flatnonzero(valid)[0])
    boxes[:first] = boxes[first]
    for t in range(first + 1, T):
        if not valid[t]:
            boxes[t] = boxes[t - 1]
    return boxes, valid


def detect_keypoints(
    bundle: VitPoseBundle,
    frames: np.ndarray,
    boxes: np.ndarray,
    dataset_index: int | str = 0,
    batch: int = 8,
    valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints of the subject in ``frames`` uint8 ``[T, H, W, 3]`` inside ``boxes``
    ``[T, 4]`` xyxy (dynrec pixels, e.g. from :func:`boxes_from_masks`).

    ``dataset_index`` picks ViTPose++'s experts (an int or a name of :data:`DATASET_INDEX`;
    ignored by single-expert checkpoints). Frames with ``valid[t] = False`` get confidence 0.
    Returns ``xy [T, J, 2]`` float32 (dynrec pixels) and ``confidence [T, J]`` float32.
    """
    frames = np.asarray(frames)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3], got {frames.shape}")
    T = frames.shape[0]
    if len(boxes) != T:
        raise ValueError(f"{len(boxes)} boxes for {T} frames")
    idx = (
        DATASET_INDEX[dataset_index.lower()]
        if isinstance(dataset_index, str)
        else int(dataset_index)
    )
    # COCO (x, y, w, h) in ViTPose's pixel-index units
    coco = np.stack(
        [boxes[:, 0] - 0.5, boxes[:, 1] - 0.5,
         np.maximum(boxes[:, 2] - boxes[:, 0], 1.0), np.maximum(boxes[:, 3] - boxes[:, 1], 1.0)], 1
    )  # fmt: skip
    use_experts = int(getattr(bundle.model.config.backbone_config, "num_experts", 1)) > 1
    J = int(bundle.model.config.num_labels)
    xy = np.zeros((T, J, 2), np.float32)
    conf = np.zeros((T, J), np.float32)
    proc, dev = bundle.processor, bundle.device
    for s in range(0, T, max(1, batch)):
        sl = range(s, min(T, s + batch))
        bxs = [[coco[t].tolist()] for t in sl]
        enc = proc(
            images=[np.ascontiguousarray(frames[t]) for t in sl], boxes=bxs, return_tensors="pt"
        )
        kw: dict[str, torch.Tensor] = {}
        if use_experts:
            kw["dataset_index"] = torch.full((len(sl),), idx, dtype=torch.long, device=dev)
        with torch.no_grad():
            out = bundle.model(pixel_values=enc["pixel_values"].to(dev), **kw)
        res = proc.post_process_pose_estimation(out, boxes=bxs)
        for j, t in enumerate(sl):
            r = res[j][0]
            xy[t] = r["keypoints"].numpy() + 0.5
            conf[t] = np.clip(r["scores"].numpy().reshape(-1), 0, 1)
    if valid is not None:
        conf[~np.asarray(valid, bool)] = 0
    return xy, conf
