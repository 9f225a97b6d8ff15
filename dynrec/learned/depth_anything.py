"""Depth Anything V2 through transformers (``AutoModelForDepthEstimation``).

Relative models predict *disparity* (larger = nearer, affine-invariant); the metric ones
predict z-depth in metres. :func:`predict_depth` says which in its second return value;
turning disparity into depth (and aligning its scale) is the stage's job.

Preprocessing is the checkpoint's own image processor; without torchvision transformers 5
picks the PIL one (``DPTImageProcessorPil``), which is what we want here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dynrec.learned.weights import load_transformers_model

DEPTH_MODELS: dict[str, str] = {
    "small": "depth-anything/Depth-Anything-V2-Small-hf",
    "base": "depth-anything/Depth-Anything-V2-Base-hf",
    "large": "depth-anything/Depth-Anything-V2-Large-hf",
    "metric-indoor-small": "depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf",
    "metric-indoor-base": "depth-anything/Depth-Anything-V2-Metric-Indoor-Base-hf",
    "metric-indoor-large": "depth-anything/Depth-Anything-V2-Metric-Indoor-Large-hf",
    "metric-outdoor-small": "depth-anything/Depth-Anything-V2-Metric-Outdoor-Small-hf",
    "metric-outdoor-base": "depth-anything/Depth-Anything-V2-Metric-Outdoor-Base-hf",
    "metric-outdoor-large": "depth-anything/Depth-Anything-V2-Metric-Outdoor-Large-hf",
}
DEFAULT_DEPTH_MODEL = DEPTH_MODELS["small"]
BACKEND = "depth (Depth Anything V2)"


@dataclass
class DepthModel:
    model: Any
    processor: Any
    device: torch.device
    source: Path
    kind: str  # "disparity" (relative models) or "depth" (metric models)


def model_id_for(name: str) -> str:
    """A short name of :data:`DEPTH_MODELS` (``small``, ``metric-indoor-base``...) or a hub id."""
    return DEPTH_MODELS.get(name.lower(), name)


def load_depth_model(
    model_id: str = DEFAULT_DEPTH_MODEL,
    weights_dir: Path | str | None = None,
    device: torch.device | str | None = "cpu",
) -> DepthModel:
    """Load a Depth Anything (V2) checkpoint offline (see :mod:`dynrec.learned.weights`).

    Raises:
        WeightsMissing: the checkpoint or its ``preprocessor_config.json`` is not available.
    """
    model_id = model_id_for(model_id)
    model, processor, dev, folder = load_transformers_model("AutoModelForDepthEstimation", model_id, weights_dir,
                                                            device, BACKEND)
    kind = (
        "depth"
        if getattr(model.config, "depth_estimation_type", "relative") == "metric"
        else "disparity"
    )
    return DepthModel(model, processor, dev, folder, kind)


def predict_depth(bundle: DepthModel, frames: np.ndarray, batch: int = 4) -> tuple[np.ndarray, str]:
    """Depth of ``frames`` uint8 ``[T, H, W, 3]``: ``(maps [T, H, W] float32, kind)``.

    The model's output is resized back to ``H x W`` bilinearly (``align_corners=False``, the
    +0.5 pixel-centre convention). ``kind`` is ``"disparity"`` for relative models and
    ``"depth"`` (metres) for metric ones. ``batch`` frames go through the model at once.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3], got {frames.shape}")
    T, H, W, _ = frames.shape
    out = np.zeros((T, H, W), np.float32)
    for s in range(0, T, max(1, batch)):
        chunk = [np.ascontiguousarray(f) for f in frames[s : s + batch]]
        inputs = bundle.processor(images=chunk, return_tensors="pt")
        pixels = inputs["pixel_values"].to(bundle.device)
        with torch.no_grad():
            pred = bundle.model(pixel_values=pixels).predicted_depth  # [B, h, w]
        pred = F.interpolate(pred[:, None].float(), (H, W), mode="bilinear", align_corners=False)
        out[s : s + len(chunk)] = pred[:, 0].cpu().numpy()
    if bundle.kind == "depth":
        np.maximum(out, 0, out=out)
    return out, bundle.kind
