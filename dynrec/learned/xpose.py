"""X-Pose as an optional adapter: the user points at a clone of its code and a checkpoint.

X-Pose (IDEA-Research) has no installable package and its deformable-attention kernel is
CUDA-only, so nothing here is imported unless asked for. :func:`load_xpose` checks the
paths, puts ``code_dir`` on ``sys.path`` and builds the model the way X-Pose's own
``inference_on_a_image.py`` does (``util.config.Config`` + ``models.build_model``).
:func:`detect_keypoints_xpose` then follows that script's ``get_unipose_output``: CLIP text
embeddings of "a photo of {instance}" and "a photo of {keypoint}" go into the target dict of
``model(image[None], [target])``, and one detection per frame is kept (the one whose box
best overlaps the given box) instead of the script's threshold + NMS.

The clone's own modules (``transforms``, ``predefined_keypoints``) and its dependencies
(``clip``, torchvision) are imported from the user's environment, lazily; dynrec itself
never imports torchvision.

Coordinates: X-Pose predicts boxes (cx, cy, w, h) and keypoints (x, y) normalised by the
image size. Boxes follow DETR (pixel edges, as dynrec), keypoints were trained on COCO-style
pixel indices (its ``transforms.hflip`` maps x to w - x - 1), so keypoints get +0.5.
"""

from __future__ import annotations

import argparse
import pickle
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dynrec.errors import DynrecError

BACKEND = "keypoints (X-Pose)"
_FALLBACK = "use the ViTPose backend (or --offline)"
_PIP = {
    "clip": "OpenAI CLIP (pip install git+https://github.com/openai/CLIP.git)",
    "torchvision": "torchvision",
}
MAX_TEXT_KPTS = 100  # rows of the padded keypoint-text table X-Pose's inference script builds
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def _import_error(e: ImportError, what: str) -> DynrecError:
    """A :class:`DynrecError` naming the package that ``e`` could not import."""
    name = (e.name or "").split(".")[0]
    pkg = _PIP.get(name, f"'{name}'" if name else "a package")
    return DynrecError(
        f"{BACKEND}: {what} needs {pkg}, which cannot be imported ({e}); install it in this "
        f"environment or {_FALLBACK}"
    )


def load_xpose(
    code_dir: Path | str | None,
    checkpoint: Path | str | None,
    config: Path | str | None = None,
    device: str = "cuda",
) -> Any:
    """Build X-Pose from the clone ``code_dir`` with weights ``checkpoint``.

    ``config`` defaults to ``<code_dir>/config_model/UniPose_SwinT.py``.

    Raises:
        DynrecError: a path is missing, or the clone cannot be imported.
    """
    if code_dir is None or not Path(code_dir).expanduser().is_dir():
        raise DynrecError(
            f"{BACKEND}: X-Pose code folder {code_dir!s} not found; clone "
            "https://github.com/IDEA-Research/X-Pose and pass its folder, "
            f"or {_FALLBACK}"
        )
    code = Path(code_dir).expanduser().resolve()
    if checkpoint is None or not Path(checkpoint).expanduser().is_file():
        raise DynrecError(
            f"{BACKEND}: X-Pose checkpoint {checkpoint!s} not found; download its weights "
            f"(e.g. unipose_swint.pth) and pass the file, or {_FALLBACK}"
        )
    cfg = Path(config).expanduser() if config else code / "config_model" / "UniPose_SwinT.py"
    if not cfg.is_file():
        raise DynrecError(f"{BACKEND}: X-Pose config {cfg} not found")
    if str(code) not in sys.path:
        sys.path.insert(0, str(code))
    try:
        import torch
        from models import build_model  # type: ignore[import-not-found]  # X-Pose's package
        from util.config import Config  # type: ignore[import-not-found]
    except ImportError as e:
        raise _import_error(e, f"the X-Pose clone {code}") from e
    args = Config.fromfile(str(cfg))
    args.device = device
    model = build_model(args)
    path = Path(checkpoint).expanduser()
    try:  # tensors only (X-Pose's training checkpoints also hold an argparse.Namespace)
        with torch.serialization.safe_globals([argparse.Namespace]):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise DynrecError(f"{BACKEND}: checkpoint {path} holds objects other than tensors, which dynrec "
                          f"does not unpickle ({str(e).splitlines()[0]}); save its 'model' state dict alone") from e
    state = state.get("model", state)
    # as X-Pose's clean_state_dict: drop the DataParallel prefix
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model.load_state_dict(state, strict=False)
    return model.eval().to(device)


def xpose_keypoint_set(
    keypoint_set: str | Mapping[str, Any] = "person",
) -> tuple[tuple[str, ...], np.ndarray]:
    """Keypoint names ``(J,)`` and 0-based skeleton ``[E, 2]`` int64 of a keypoint set.

    ``keypoint_set`` names a dict of the clone's ``predefined_keypoints.py`` (``person``,
    ``animal``, ``face``, ...; call :func:`load_xpose` first so the clone is importable) or is
    such a dict, ``{"keypoints": [...], "skeleton": [[a, b], ...]}``. Skeletons there are
    1-based for most sets and 0-based for some (``animal``, ``car``); as X-Pose's own plotting,
    a skeleton whose smallest index is 1 is taken as 1-based.
    """
    if isinstance(keypoint_set, str):
        try:
            import predefined_keypoints  # type: ignore[import-not-found]  # X-Pose's module
        except ImportError as e:
            raise DynrecError(
                f"{BACKEND}: cannot import predefined_keypoints from the X-Pose clone ({e}); "
                "load the model with load_xpose first"
            ) from e
        spec = getattr(predefined_keypoints, keypoint_set, None)
        if not isinstance(spec, Mapping):
            raise DynrecError(
                f"{BACKEND}: no keypoint set '{keypoint_set}' in X-Pose's predefined_keypoints.py"
            )
    else:
        spec = keypoint_set
    names = tuple(str(n) for n in spec.get("keypoints") or ())
    if not names:
        raise DynrecError(f"{BACKEND}: keypoint set {keypoint_set!r} has no keypoints")
    sk = np.asarray(spec.get("skeleton") or np.zeros((0, 2)), np.int64).reshape(-1, 2)
    if len(sk) and sk.min() == 1:
        sk = sk - 1
    if len(sk) and (sk.min() < 0 or sk.max() >= len(names)):
        raise DynrecError(f"{BACKEND}: skeleton of {keypoint_set!r} indexes past its keypoints")
    return names, sk


def _text_target(
    clip: Any, clip_model: Any, instances: list[str], names: tuple[str, ...], device: Any
) -> dict[str, Any]:
    """The target dict of X-Pose's ``get_unipose_output``: CLIP embeddings ``[I, D]`` of the
    instance prompts, ``[100, D]`` of the keypoint prompts (zero rows after the ``J`` used)
    and the keypoint mask ``[100]``."""
    import torch

    def embed(texts: list[str]) -> torch.Tensor:
        rows = [clip_model.encode_text(clip.tokenize(t).to(device)) for t in texts]
        return torch.cat(rows, 0).float()

    ins = embed([f"a photo of {c.lower().replace('_', ' ').replace('-', ' ')}" for c in instances])
    kpt = embed([f"a photo of {k.lower().replace('_', ' ')}" for k in names])
    pad = MAX_TEXT_KPTS - len(names)
    vis = torch.zeros(MAX_TEXT_KPTS, device=kpt.device)
    vis[: len(names)] = 1
    return {
        "instance_text_prompt": instances,
        "keypoint_text_prompt": list(names),
        "object_embeddings_text": ins,
        "kpts_embeddings_text": torch.cat([kpt, kpt.new_zeros(pad, kpt.shape[1])], 0),
        "kpt_vis_text": vis,
    }


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU ``[N]`` of boxes ``a [N, 4]`` with one box ``b [4]`` (xyxy)."""
    lo, hi = np.maximum(a[:, :2], b[:2]), np.minimum(a[:, 2:], b[2:])
    inter = np.clip(hi - lo, 0, None).prod(1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(1)
    area_b = np.clip(b[2:] - b[:2], 0, None).prod()
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


def detect_keypoints_xpose(
    model: Any,
    frames: np.ndarray,
    boxes: np.ndarray,
    instance: str = "person",
    keypoint_set: str | Mapping[str, Any] = "person",
    clip_model: Any = None,
    device: Any = None,
    valid: np.ndarray | None = None,
    box_threshold: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints of the subject in ``frames`` uint8 RGB ``[T, H, W, 3]`` inside ``boxes``
    ``[T, 4]`` xyxy (dynrec pixels, e.g. from :func:`dynrec.learned.vitpose.boxes_from_masks`).

    ``model`` comes from :func:`load_xpose`; ``instance`` is the text prompt (comma-separated
    for several), ``keypoint_set`` as in :func:`xpose_keypoint_set` (which gives the names
    and skeleton of the ``J`` keypoints). ``clip_model`` defaults to the model's own
    ``clip_model`` (X-Pose builds CLIP ViT-B/32 inside), else ``clip.load("ViT-B/32")``.
    ``device`` defaults to the model's. Each frame keeps the detection whose box overlaps
    ``boxes[t]`` most among those scoring at least ``box_threshold``; its score is the
    confidence of all its keypoints (X-Pose's keypoint visibility output is a constant).
    Frames with no such overlapping detection, or ``valid[t] = False``, get confidence 0.

    Returns ``xy [T, J, 2]`` float32 (dynrec pixels, centres at +0.5) and
    ``confidence [T, J]`` float32 in [0, 1].

    Raises:
        DynrecError: ``clip`` or the clone's ``transforms`` cannot be imported, or the set
            has more keypoints than the model predicts.
    """
    import torch
    from PIL import Image

    frames = np.asarray(frames)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3], got {frames.shape}")
    T, H, W = frames.shape[:3]
    if len(boxes) != T:
        raise ValueError(f"{len(boxes)} boxes for {T} frames")
    try:
        import clip  # type: ignore[import-not-found]  # OpenAI CLIP, X-Pose's text encoder
        import transforms as xt  # type: ignore[import-not-found]  # X-Pose's own transforms
    except ImportError as e:
        raise _import_error(e, "X-Pose") from e
    names, _ = xpose_keypoint_set(keypoint_set)
    J = len(names)
    if J > MAX_TEXT_KPTS:
        raise DynrecError(f"{BACKEND}: {J} keypoints; X-Pose takes at most {MAX_TEXT_KPTS}")
    if device is None:
        device = next(iter(model.parameters()), torch.zeros(())).device
    if clip_model is None:
        clip_model = getattr(model, "clip_model", None)
    if clip_model is None:
        clip_model = clip.load("ViT-B/32", device=device)[0]
    # X-Pose's load_image: short side 800 (long side at most 1333), ImageNet normalisation
    prep = xt.Compose([
        xt.RandomResize([800], max_size=1333),
        xt.ToTensor(),
        xt.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])
    instances = [s.strip() for s in instance.split(",")]
    scale = np.array([W, H, W, H], np.float64)
    xy = np.zeros((T, J, 2), np.float32)
    conf = np.zeros((T, J), np.float32)
    with torch.no_grad():
        target = _text_target(clip, clip_model, instances, names, device)
        for t in range(T):
            image, _ = prep(Image.fromarray(np.ascontiguousarray(frames[t], np.uint8)), None)
            out = model(image[None].to(device), [target])
            score = out["pred_logits"][0].sigmoid().max(-1).values.float().cpu().numpy()  # [Q]
            cxcywh = out["pred_boxes"][0].float().cpu().numpy().astype(np.float64)  # [Q, 4]
            kpts = out["pred_keypoints"][0].float().cpu().numpy()  # [Q, 3K]: xy pairs, then vis
            if kpts.shape[-1] // 3 < J:
                raise DynrecError(
                    f"{BACKEND}: the model predicts {kpts.shape[-1] // 3} keypoints, "
                    f"the set has {J}"
                )
            half = cxcywh[:, 2:] / 2
            xyxy = np.concatenate([cxcywh[:, :2] - half, cxcywh[:, :2] + half], 1)
            iou = np.where(score >= box_threshold, _iou(xyxy * scale, boxes[t]), -1.0)
            q = int(np.lexsort((score, iou))[-1])  # best overlap, then best score
            xy[t] = kpts[q, : 2 * J].reshape(J, 2) * np.array([W, H], np.float32) + 0.5
            conf[t] = float(np.clip(score[q], 0, 1)) if iou[q] > 0 else 0.0
    if valid is not None:
        conf[~np.asarray(valid, bool)] = 0
    return xy, conf
