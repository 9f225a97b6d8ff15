"""PSNR and SSIM, plain and masked (DyCheck's co-visibility masked mPSNR / mSSIM).

Images are float in [0, 1] (data range 1), ``[H, W, 3]`` or ``[B, H, W, 3]``; masks
``[H, W]`` or ``[B, H, W]`` (1 = evaluate). Computation is float64 on the CPU (or on the
images' device).

* **PSNR** = ``-10 log10(MSE)`` dB, MSE over all pixels and channels; with a mask, the
  mask-weighted mean over masked pixels (DyCheck ``compute_psnr``). Identical images give
  ``inf``; an empty mask gives NaN for that frame.
* **SSIM**: Gaussian window 11 taps, sigma 1.5, K1 = 0.01, K2 = 0.03, population
  statistics, averaged over channels and over the pixels whose window lies inside the
  image; equal to ``skimage.metrics.structural_similarity(..., channel_axis=-1,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)``.
  With a mask it is DyCheck's ``compute_ssim``: local statistics are computed with masked
  partial convolutions (Liu et al. 2018), separably (x then y), and the SSIM map is
  averaged over all valid window positions (windows that contain no masked pixel score 1,
  exactly as DyCheck).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from dynrec.metrics.base import (
    ArrayLike,
    MetricNotComputable,
    Reduction,
    as_image_batch,
    as_mask_batch,
    reduce_frames,
)


def psnr(
    pred: ArrayLike, gt: ArrayLike, mask: ArrayLike | None = None, reduction: Reduction = "mean"
) -> float | np.ndarray:
    """Peak signal-to-noise ratio in dB (data range 1), higher is better.

    Args:
        pred, gt: images ``[H, W, 3]`` or ``[B, H, W, 3]`` in [0, 1].
        mask: optional ``[H, W]`` / ``[B, H, W]`` weights in [0, 1] (DyCheck mPSNR):
            MSE = sum(mask * err^2) / (3 * sum(mask)).
        reduction: ``"mean"`` (mean of per-image PSNR, NaN frames skipped) or ``"none"``
            (``[B]`` array).
    """
    p = as_image_batch(pred, "psnr")
    g = as_image_batch(gt, "psnr", device=p.device)
    _check_same(p, g, "psnr")
    b, c, h, w = p.shape
    m = as_mask_batch(mask, b, h, w, "psnr", device=p.device)
    se = ((p - g) ** 2 * m).sum(dim=(1, 2, 3))
    denom = m.sum(dim=(1, 2, 3)) * c
    values = []
    for s, d in zip(se.tolist(), denom.tolist()):
        if d <= 0:
            values.append(math.nan)
        elif s <= 0:
            values.append(math.inf)
        else:
            values.append(-10.0 * math.log10(s / d))
    return reduce_frames(np.array(values), reduction, "psnr")


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Normalised 1D Gaussian window ``[size]`` (float64), centred on the middle tap."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def _partial_conv1d(
    z: torch.Tensor, m: torch.Tensor, f: torch.Tensor, dim: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One separable pass of DyCheck's masked blur along ``dim`` (2 = y, 3 = x), 'valid'.

    ``z`` [B, C, H, W], ``m`` [B, 1, H, W]. Returns the blurred ``z`` (rescaled by
    n / count of mask in the window, 0 where the window has no mask) and the new binary mask.
    """
    n = f.numel()
    c = z.shape[1]
    shape = (1, 1, n, 1) if dim == 2 else (1, 1, 1, n)
    kz = f.to(z).view(shape).expand(c, 1, *shape[2:])
    km = torch.ones(shape, dtype=z.dtype, device=z.device)
    z_ = F.conv2d(z * m, kz, groups=c)
    m_ = F.conv2d(m, km)
    valid = m_ != 0
    out = torch.where(
        valid, z_ * n / torch.where(valid, m_, torch.ones_like(m_)), torch.zeros_like(z_)
    )
    return out, valid.to(z.dtype)


def _masked_blur(z: torch.Tensor, m: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    z1, m1 = _partial_conv1d(z, m, f, dim=3)  # along x first, as DyCheck (filt_fn2 then filt_fn1)
    z2, _ = _partial_conv1d(z1, m1, f, dim=2)
    return z2


def ssim_map(
    pred: ArrayLike,
    gt: ArrayLike,
    mask: ArrayLike | None = None,
    window: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Per-pixel SSIM ``[B, 3, H - window + 1, W - window + 1]`` (float64), see :func:`ssim`."""
    p = as_image_batch(pred, "ssim")
    g = as_image_batch(gt, "ssim", device=p.device)
    _check_same(p, g, "ssim")
    b, _, h, w = p.shape
    if h < window or w < window:
        raise MetricNotComputable(
            "ssim", f"images of {w}x{h} pixels are smaller than the {window}-pixel window"
        )
    m = as_mask_batch(mask, b, h, w, "ssim", device=p.device)
    f = gaussian_window(window, sigma).to(p.device)
    mu0 = _masked_blur(p, m, f)
    mu1 = _masked_blur(g, m, f)
    mu00, mu11, mu01 = mu0 * mu0, mu1 * mu1, mu0 * mu1
    s00 = (_masked_blur(p * p, m, f) - mu00).clamp_min(0.0)
    s11 = (_masked_blur(g * g, m, f) - mu11).clamp_min(0.0)
    s01 = _masked_blur(p * g, m, f) - mu01
    s01 = torch.sign(s01) * torch.minimum(torch.sqrt(s00 * s11), s01.abs())
    c1, c2 = k1**2, k2**2  # data range 1
    num = (2 * mu01 + c1) * (2 * s01 + c2)
    den = (mu00 + mu11 + c1) * (s00 + s11 + c2)
    return num / den


def ssim(
    pred: ArrayLike, gt: ArrayLike, mask: ArrayLike | None = None, reduction: Reduction = "mean"
) -> float | np.ndarray:
    """Structural similarity (data range 1), in [-1, 1], higher is better.

    Args:
        pred, gt: images ``[H, W, 3]`` or ``[B, H, W, 3]`` in [0, 1], at least 11x11.
        mask: optional ``[H, W]`` / ``[B, H, W]`` co-visibility mask (DyCheck mSSIM, see
            the module docstring); an all-zero mask gives NaN for that frame.
        reduction: ``"mean"`` over images or ``"none"`` (``[B]`` array).
    """
    smap = ssim_map(pred, gt, mask)
    values = smap.mean(dim=(1, 2, 3)).cpu().numpy()
    if mask is not None:
        p = as_image_batch(pred, "ssim")
        m = as_mask_batch(mask, p.shape[0], p.shape[2], p.shape[3], "ssim")
        empty = (m.sum(dim=(1, 2, 3)) <= 0).cpu().numpy()
        values = np.where(empty, np.nan, values)
    return reduce_frames(values, reduction, "ssim")


def _check_same(a: torch.Tensor, b: torch.Tensor, metric: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{metric}: prediction {tuple(a.shape)} and ground truth {tuple(b.shape)} differ in shape"
        )
