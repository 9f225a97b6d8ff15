"""CLIP-I, CLIP-T and CLIP temporal consistency with transformers' ``CLIPModel``.

Preprocessing is done here in torch (no torchvision, no ``CLIPProcessor``), following
``CLIPImageProcessor``: resize the shortest side to ``shortest_edge`` (bicubic,
antialiased), centre-crop ``crop_size``, normalise with the model's ``image_mean`` /
``image_std`` (OpenAI's constants by default). Values read from the checkpoint's
``preprocessor_config.json`` when present. Differences from PIL's bicubic resampling are
at the 1e-3 level on the embeddings' cosine.

* **CLIP-I** = mean over frames of ``cos(E_img(pred_i), E_img(ref_i))`` (paired frames).
* **CLIP-T** = mean over frames of ``cos(E_img(image_i), E_txt(text))``.
* **CLIP temporal consistency** = mean over t of ``cos(E_img(f_t), E_img(f_{t+1}))``.

All are raw cosines in [-1, 1] (not x100, no CLIPScore rescaling); higher is better.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dynrec.metrics.base import (
    ArrayLike,
    MetricNotComputable,
    Reduction,
    as_image_batch,
    reduce_frames,
)
from dynrec.metrics.weights import WeightsMissing
from dynrec.weights.locate import find_model

DEFAULT_CLIP = "openai/clip-vit-base-patch32"
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

TextInput = str | Sequence[str] | torch.Tensor | Mapping[str, torch.Tensor]


@dataclass
class ClipScorer:
    """A loaded CLIP model with its preprocessing constants and (optional) tokenizer."""

    model: Any  # transformers.CLIPModel
    tokenizer: Any | None
    shortest_edge: int
    crop_size: tuple[int, int]  # (height, width)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def preprocess(self, images: ArrayLike) -> torch.Tensor:
        """Images ``[H, W, 3]`` / ``[B, H, W, 3]`` in [0, 1] -> pixel values ``[B, 3, h, w]``."""
        x = as_image_batch(images, "clip", torch.float32, self.device)
        _, _, h, w = x.shape
        short, long = (h, w) if h <= w else (w, h)
        new_short = self.shortest_edge
        new_long = int(new_short * long / short)
        size = (new_short, new_long) if h <= w else (new_long, new_short)
        if (h, w) != size:
            x = F.interpolate(
                x, size=size, mode="bicubic", align_corners=False, antialias=True
            ).clamp(0, 1)
        ch, cw = self.crop_size
        hh, ww = x.shape[-2:]
        if hh < ch or ww < cw:  # as CLIPImageProcessor: pad with zeros then crop
            x = F.pad(
                x,
                (
                    max(0, (cw - ww) // 2),
                    max(0, cw - ww - (cw - ww) // 2),
                    max(0, (ch - hh) // 2),
                    max(0, ch - hh - (ch - hh) // 2),
                ),
            )
            hh, ww = x.shape[-2:]
        top, left = (hh - ch) // 2, (ww - cw) // 2
        x = x[..., top : top + ch, left : left + cw]
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def image_embeddings(self, images: ArrayLike, batch_size: int = 16) -> torch.Tensor:
        """L2-normalised image embeddings ``[B, P]`` (float32, CPU)."""
        x = as_image_batch(images, "clip", torch.float32)
        out = []
        with torch.no_grad():
            for s in range(0, x.shape[0], batch_size):
                pix = self.preprocess(x[s : s + batch_size].permute(0, 2, 3, 1))
                out.append(_pooled(self.model.get_image_features(pixel_values=pix)).float().cpu())
        return F.normalize(torch.cat(out), dim=-1)

    def text_embeddings(self, text: TextInput) -> torch.Tensor:
        """L2-normalised text embeddings ``[K, P]`` of strings (needs the tokenizer) or of
        pre-tokenised ``input_ids`` ``[K, L]`` (a tensor, or a mapping with ``input_ids`` and
        optionally ``attention_mask``)."""
        if isinstance(text, Mapping):
            ids = text["input_ids"]
            mask = text.get("attention_mask")
        elif isinstance(text, torch.Tensor):
            ids, mask = text, None
        else:
            texts = [text] if isinstance(text, str) else list(text)
            if self.tokenizer is None:
                raise WeightsMissing(
                    "clip_t",
                    "tokenizer files (vocab.json, merges.txt / tokenizer.json)",
                    [self.source],
                    "pass pre-tokenised input_ids instead",
                )
            max_len = int(self.model.config.text_config.max_position_embeddings)
            enc = self.tokenizer(
                texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt"
            )
            ids, mask = enc["input_ids"], enc.get("attention_mask")
        ids = torch.as_tensor(ids, dtype=torch.long, device=self.device)
        if ids.ndim == 1:
            ids = ids[None]
        kwargs = {"input_ids": ids}
        if mask is not None:
            kwargs["attention_mask"] = torch.as_tensor(mask, device=self.device)
        with torch.no_grad():
            emb = _pooled(self.model.get_text_features(**kwargs)).float().cpu()
        return F.normalize(emb, dim=-1)


def _pooled(out: Any) -> torch.Tensor:
    """transformers 4 returns the projected embedding; 5 a ModelOutput with it as pooler_output."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def _read_preprocessor(folder: Path | None) -> dict[str, Any]:
    if folder is None:
        return {}
    p = folder / "preprocessor_config.json"
    try:
        return json.loads(p.read_text()) if p.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def _size_from(cfg: dict[str, Any], key: str, default: int) -> tuple[int, int]:
    v = cfg.get(key)
    if isinstance(v, int):
        return v, v
    if isinstance(v, Mapping):
        if "height" in v and "width" in v:
            return int(v["height"]), int(v["width"])
        if "shortest_edge" in v:
            return int(v["shortest_edge"]), int(v["shortest_edge"])
    return default, default


def load_clip(
    name_or_path: str | Path = DEFAULT_CLIP,
    weights_dir: Path | str | None = None,
    device: torch.device | str = "cpu",
) -> ClipScorer:
    """Load a CLIP checkpoint offline.

    ``name_or_path`` is a folder written by ``save_pretrained`` or a hub id. A hub id is
    looked for as a folder ``<dir>/<id>``, ``<dir>/<id with / -> -->`` or ``<dir>/<last part>``
    in ``weights_dir`` and ``$DYNREC_WEIGHTS``, then in the Hugging Face cache
    (``local_files_only``; nothing is downloaded). The tokenizer is loaded from the same
    place when its files are there (otherwise ``clip_t`` needs pre-tokenised ids).

    Raises:
        WeightsMissing: no checkpoint found, or transformers is not installed.
    """
    name = str(name_or_path)
    given = Path(name).expanduser()
    folder, searched = (given, [str(given)]) if (given / "config.json").is_file() else find_model(name, weights_dir)
    hint = "save a CLIPModel there with save_pretrained, or pass its folder"
    if folder is None:
        # nothing to load: say so before importing transformers (seconds on a small machine)
        raise WeightsMissing("clip", name, searched, hint)
    try:
        from transformers import AutoTokenizer, CLIPModel
    except ImportError as e:
        raise WeightsMissing(
            "clip", str(name_or_path), [], "install transformers (pip install transformers)"
        ) from e
    source = str(folder)
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no output from metrics
    try:
        model = CLIPModel.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as e:
        raise WeightsMissing("clip", name, searched, hint) from e
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError, TypeError):
        tokenizer = None
    cfg = _read_preprocessor(folder)
    image_size = int(model.config.vision_config.image_size)
    shortest = _size_from(cfg, "size", image_size)[0]
    crop = _size_from(cfg, "crop_size", image_size)
    mean = tuple(float(v) for v in cfg.get("image_mean", OPENAI_CLIP_MEAN))
    std = tuple(float(v) for v in cfg.get("image_std", OPENAI_CLIP_STD))
    model.eval().to(device)
    return ClipScorer(model, tokenizer, shortest, crop, mean, std, source)  # type: ignore[arg-type]


def clip_i(
    pred: ArrayLike,
    ref: ArrayLike,
    clip: ClipScorer,
    reduction: Reduction = "mean",
    batch_size: int = 16,
) -> float | np.ndarray:
    """CLIP image similarity of paired frames ``[B, H, W, 3]`` (in [0, 1]; sizes may differ
    between the two sets): mean cosine of their CLIP image embeddings; 1 for identical sets."""
    a = clip.image_embeddings(pred, batch_size)
    b = clip.image_embeddings(ref, batch_size)
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"clip_i: {a.shape[0]} predicted and {b.shape[0]} reference images; they are paired"
        )
    return reduce_frames((a * b).sum(-1).double().numpy(), reduction, "clip_i")


def clip_t(
    images: ArrayLike,
    text: TextInput,
    clip: ClipScorer,
    reduction: Reduction = "mean",
    batch_size: int = 16,
) -> float | np.ndarray:
    """CLIP text-image similarity: mean cosine between the image embeddings of ``images``
    ``[B, H, W, 3]`` and the embedding of ``text`` (one prompt for all, or one per image)."""
    a = clip.image_embeddings(images, batch_size)
    t = clip.text_embeddings(text)
    if t.shape[0] not in (1, a.shape[0]):
        raise ValueError(
            f"clip_t: {t.shape[0]} texts for {a.shape[0]} images (give 1 or one per image)"
        )
    return reduce_frames((a * t).sum(-1).double().numpy(), reduction, "clip_t")


def clip_temporal_consistency(
    frames: ArrayLike, clip: ClipScorer, reduction: Reduction = "mean", batch_size: int = 16
) -> float | np.ndarray:
    """Mean cosine between CLIP embeddings of consecutive frames of a video
    ``[T, H, W, 3]`` (T >= 2); per-pair values ``[T-1]`` with ``reduction="none"``."""
    e = clip.image_embeddings(frames, batch_size)
    if e.shape[0] < 2:
        raise MetricNotComputable("tc_clip", "needs at least 2 frames")
    return reduce_frames((e[1:] * e[:-1]).sum(-1).double().numpy(), reduction, "tc_clip")
