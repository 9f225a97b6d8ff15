"""Weighted rigid (and similarity) Procrustes: Kabsch / Umeyama with per-point weights.

HiMoR §3.2.3 turns each K-Means cluster of 3D tracks into an SE(3) motion basis by
"solving the Procrustes problem over time": for every frame t, the transform that maps the
cluster's canonical points onto their positions at t. ``procrustes`` does that for a whole
batch (e.g. [M, T] clusters x frames) at once. Visibility enters as zero weights.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from dynrec.geometry.se3 import make_transform


class Similarity(NamedTuple):
    """``dst ≈ s * R @ src + t``. ``R`` [..., 3, 3], ``t`` [..., 3], ``s`` [...] (1 for rigid)."""

    R: Tensor
    t: Tensor
    s: Tensor

    def matrix(self) -> Tensor:
        """4x4 matrices ``[[s R, t], [0, 1]]`` [..., 4, 4]."""
        return make_transform(self.s[..., None, None] * self.R, self.t)


def procrustes(
    src: Tensor,
    dst: Tensor,
    weights: Tensor | None = None,
    *,
    with_scale: bool = False,
    eps: float = 1e-12,
) -> Similarity:
    """Weighted least squares ``min sum_i w_i |s R src_i + t - dst_i|^2`` over R in SO(3), t, s.

    Umeyama (1991) with weights: centroids ``mu = sum w x / sum w``; cross-covariance
    ``S = sum w (dst - mu_d)(src - mu_s)^T / sum w = U D V^T``;
    ``R = U diag(1, 1, det(U V^T)) V^T`` (a proper rotation, never a reflection);
    ``s = tr(D diag(1, 1, ±1)) / var_src`` when ``with_scale``, else 1; ``t = mu_d - s R mu_s``.

    Args:
        src, dst: corresponding points [..., P, 3] (any float dtype; batched over ``...``).
        weights: [..., P], non-negative; ``None`` means all ones. Needs at least 3
            non-collinear points of positive weight for a unique rotation.
        with_scale: also estimate a uniform scale (Sim(3), as for ATE alignment).

    Returns:
        ``Similarity(R [..., 3, 3], t [..., 3], s [...])``.
    """
    if src.shape[-1] != 3 or dst.shape[-1] != 3:
        raise ValueError(
            f"points must be [..., P, 3], got {tuple(src.shape)} and {tuple(dst.shape)}"
        )
    if weights is None:
        weights = torch.ones(
            torch.broadcast_shapes(src.shape[:-1], dst.shape[:-1]),
            dtype=src.dtype,
            device=src.device,
        )
    w = weights.to(src.dtype)[..., None]  # [..., P, 1]
    wsum = w.sum(dim=-2).clamp_min(eps)  # [..., 1]
    mu_s = (w * src).sum(dim=-2) / wsum  # [..., 3]
    mu_d = (w * dst).sum(dim=-2) / wsum
    xs = src - mu_s[..., None, :]
    xd = dst - mu_d[..., None, :]
    cov = (w * xd).transpose(-1, -2) @ xs / wsum[..., None]  # [..., 3, 3] = E[xd xs^T]
    U, S, Vh = torch.linalg.svd(cov)
    d = torch.sign(torch.linalg.det(U @ Vh))
    d = torch.where(d == 0, torch.ones_like(d), d)
    diag = torch.stack([torch.ones_like(d), torch.ones_like(d), d], dim=-1)  # [..., 3]
    R = U @ (diag[..., None] * Vh)
    if with_scale:
        var_s = (w * xs * xs).sum(dim=(-2, -1)) / wsum[..., 0]
        s = (S * diag).sum(-1) / var_s.clamp_min(eps)
    else:
        s = torch.ones_like(d)
    t = mu_d - s[..., None] * (R @ mu_s[..., None])[..., 0]
    return Similarity(R, t, s)
