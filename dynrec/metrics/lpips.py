"""LPIPS (Zhang et al. 2018, v0.1, AlexNet trunk) in plain torch, without torchvision.

The model is the ``lpips`` package's ``LPIPS(net='alex', version='0.1')``:

1. inputs in [0, 1] are mapped to [-1, 1], then the scaling layer
   ``(x - shift) / scale`` with shift = (-.030, -.088, -.188), scale = (.458, .448, .450);
2. AlexNet ``features`` (torchvision's layout; ``features.{0,3,6,8,10}`` are the convs),
   taking the five ReLU outputs (after ``features.1, 4, 7, 9, 11``);
3. each feature map is unit-normalised over channels (``x / (||x||_2 + 1e-10)``), the two
   images' features are subtracted and squared;
4. a 1x1 conv without bias per layer (``lin0..lin4``, the learned heads), spatially
   averaged, summed over layers.

Masked LPIPS follows DyCheck: both images are multiplied by the mask, the spatial LPIPS
map (each layer's map bilinearly upsampled to the image size) is averaged over the mask.

Weights: the AlexNet backbone file is torchvision's ``alexnet-owt-7be5be79.pth`` (its
``features.*`` entries are used; an ``lpips``-style ``net.sliceK.N.*`` dict is accepted
too); the heads are the ``lpips`` wheel's ``weights/v0.1/alex.pth`` (install it with
``pip install --no-deps lpips``; it is never imported, only its data file is read) or
``lpips_alex_v0.1.pth`` in the weights folder.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dynrec.metrics.base import (
    ArrayLike,
    MetricNotComputable,
    Reduction,
    as_image_batch,
    as_mask_batch,
    reduce_frames,
)
from dynrec.metrics.weights import WeightsMissing, find_weights, search_dirs
from dynrec.weights import lpips_package_heads

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
LPIPS_HEADS_FILE = "lpips_alex_v0.1.pth"
CHANNELS = (64, 192, 384, 256, 256)
_RELU_AFTER = (1, 4, 7, 9, 11)  # indices in features whose outputs LPIPS uses


class AlexNetFeatures(nn.Module):
    """torchvision's ``alexnet().features`` (same module indices), returning the five
    ReLU feature maps ``[B, C_k, H_k, W_k]``, C = (64, 192, 384, 256, 256)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _RELU_AFTER:
                outs.append(x)
                if i == _RELU_AFTER[-1]:
                    break
        return outs


class LPIPSModel(nn.Module):
    """LPIPS v0.1 with an AlexNet trunk. ``forward(a, b)`` takes ``[B, 3, H, W]`` in [-1, 1]
    and returns the per-layer distance maps (before spatial averaging), ``[B, 1, H_k, W_k]``."""

    def __init__(self) -> None:
        super().__init__()
        self.net = AlexNetFeatures()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in CHANNELS)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.eval()
        self.requires_grad_(False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> list[torch.Tensor]:
        fa = self.net((a - self.shift) / self.scale)
        fb = self.net((b - self.shift) / self.scale)
        maps = []
        for lin, xa, xb in zip(self.lins, fa, fb):
            na = xa / (torch.sqrt((xa**2).sum(dim=1, keepdim=True)) + 1e-10)
            nb = xb / (torch.sqrt((xb**2).sum(dim=1, keepdim=True)) + 1e-10)
            maps.append(lin((na - nb) ** 2))
        return maps

    def load_backbone(self, state: dict[str, torch.Tensor]) -> None:
        """Load AlexNet conv weights from a torchvision (``features.N.*``) or lpips
        (``net.sliceK.N.*``) state dict; other entries (the classifier) are ignored."""
        own: dict[str, torch.Tensor] = {}
        for k, v in state.items():
            m = re.fullmatch(
                r"(?:module\.)?(?:net\.)?(?:features|slice\d)\.(\d+)\.(weight|bias)", k
            )
            if m:
                own[f"features.{m.group(1)}.{m.group(2)}"] = v
        expected = {k for k in self.net.state_dict()}
        missing = expected - set(own)
        if missing:
            raise ValueError(f"AlexNet state dict lacks {sorted(missing)}")
        self.net.load_state_dict(own)

    def load_heads(self, state: dict[str, torch.Tensor]) -> None:
        """Load ``lin{k}.model.{0|1}.weight`` ``[1, C_k, 1, 1]`` (the lpips heads file)."""
        for k, lin in enumerate(self.lins):
            key = next(
                (n for n in (f"lin{k}.model.1.weight", f"lin{k}.model.0.weight") if n in state),
                None,
            )
            if key is None:
                raise ValueError(f"LPIPS heads lack 'lin{k}.model.1.weight'")
            w = state[key]
            if tuple(w.shape) != (1, CHANNELS[k], 1, 1):
                raise ValueError(
                    f"LPIPS head {key} has shape {tuple(w.shape)}, expected (1, {CHANNELS[k]}, 1, 1)"
                )
            lin.weight.data.copy_(w)


def load_lpips(
    weights_dir: Path | str | None = None, device: torch.device | str = "cpu"
) -> LPIPSModel:
    """Build LPIPS(alex, v0.1) from local files (nothing is downloaded).

    Backbone ``alexnet-owt-7be5be79.pth``: looked for in ``weights_dir``, ``$DYNREC_WEIGHTS``,
    ``$TORCH_HOME/hub/checkpoints``. Heads ``lpips_alex_v0.1.pth``: in ``weights_dir``,
    ``$DYNREC_WEIGHTS``, then the installed ``lpips`` package's ``weights/v0.1/alex.pth``.

    Raises:
        WeightsMissing: a file is not found (the message names it and the folders searched).
    """
    backbone = find_weights(
        ALEXNET_FILE,
        weights_dir,
        "lpips",
        hint="torchvision's AlexNet ImageNet weights",
    )
    pkg = lpips_package_heads()
    heads = find_weights(
        LPIPS_HEADS_FILE,
        weights_dir,
        "lpips",
        extra=[pkg] if pkg else [],
        hint="install the heads with `pip install --no-deps lpips` "
        "or copy lpips/weights/v0.1/alex.pth there",
    )
    model = LPIPSModel()
    try:
        model.load_backbone(torch.load(backbone, map_location="cpu", weights_only=True))
        model.load_heads(torch.load(heads, map_location="cpu", weights_only=True))
    except (ValueError, RuntimeError, OSError) as e:
        raise MetricNotComputable(
            "lpips", f"cannot load LPIPS weights ({backbone}, {heads}): {e}"
        ) from e
    return model.to(device)


def lpips(
    pred: ArrayLike,
    gt: ArrayLike,
    model: LPIPSModel,
    mask: ArrayLike | None = None,
    reduction: Reduction = "mean",
    batch_size: int = 8,
) -> float | np.ndarray:
    """LPIPS distance (lower is better, 0 for identical images).

    Args:
        pred, gt: images ``[H, W, 3]`` or ``[B, H, W, 3]`` in [0, 1]; at least 32x32 pixels.
        model: from :func:`load_lpips`; computation runs on its device in float32.
        mask: optional ``[H, W]`` / ``[B, H, W]`` mask: DyCheck's masked LPIPS (images
            multiplied by the mask, spatial map averaged over the mask).
        reduction: ``"mean"`` over images or ``"none"`` (``[B]`` array).
        batch_size: images per forward pass.
    """
    device = next(model.parameters()).device
    p = as_image_batch(pred, "lpips", torch.float32, device)
    g = as_image_batch(gt, "lpips", torch.float32, device)
    if p.shape != g.shape:
        raise ValueError(
            f"lpips: prediction {tuple(p.shape)} and ground truth {tuple(g.shape)} differ in shape"
        )
    b, _, h, w = p.shape
    if min(h, w) < 32:
        raise MetricNotComputable(
            "lpips", f"images of {w}x{h} pixels are too small for AlexNet (min 32)"
        )
    m = None if mask is None else as_mask_batch(mask, b, h, w, "lpips", torch.float32, device)
    values: list[float] = []
    with torch.no_grad():
        for s in range(0, b, batch_size):
            pa, ga = p[s : s + batch_size], g[s : s + batch_size]
            if m is None:
                maps = model(pa * 2 - 1, ga * 2 - 1)
                values += sum(x.mean(dim=(1, 2, 3)) for x in maps).tolist()
            else:
                mb = m[s : s + batch_size]
                maps = model(pa * mb * 2 - 1, ga * mb * 2 - 1)
                full = sum(
                    F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
                    for x in maps
                )
                den = mb.sum(dim=(1, 2, 3))
                num = (full * mb).sum(dim=(1, 2, 3))
                values += torch.where(
                    den > 0, num / den.clamp_min(1e-6), torch.full_like(den, float("nan"))
                ).tolist()
    return reduce_frames(np.array(values), reduction, "lpips")


__all__ = [
    "ALEXNET_FILE",
    "LPIPS_HEADS_FILE",
    "AlexNetFeatures",
    "LPIPSModel",
    "WeightsMissing",
    "load_lpips",
    "lpips",
    "lpips_package_heads",
    "search_dirs",
]
