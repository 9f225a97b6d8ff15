"""Unit dual quaternions and dual-quaternion linear blending (DLB), pure torch.

A rigid transform ``x' = R x + t`` is the unit dual quaternion ``q = q_r + eps q_d`` with
``q_r`` the wxyz rotation quaternion and ``q_d = 0.5 * (0, t) * q_r``. Dual quaternions are
stored as tensors [..., 8] = ``cat(q_r, q_d)``.

HiMoR §3.2.2 (Eq. 4-5) deforms a Gaussian by the weighted motion of its K nearest leaf
nodes, ``T = sum_k w_k D_k``, blended as dual quaternions (Kavan et al. 2008):
``b = sum_k w_k s_k q_k`` with ``s_k = ±1`` putting every ``q_k`` in the hemisphere of a
pivot (antipodality), then ``T = to_se3(b / |b_r|)``. The result is always rigid.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dynrec.geometry.se3 import (
    make_transform,
    matrix_to_quat,
    normalize_quat,
    quat_conjugate,
    quat_multiply,
    quat_to_matrix,
)


def _pure_quat(v: Tensor) -> Tensor:
    """Quaternion ``(0, v)``. ``v`` [..., 3] -> [..., 4]."""
    return torch.cat([torch.zeros_like(v[..., :1]), v], dim=-1)


def se3_to_dualquat(T: Tensor) -> Tensor:
    """Unit dual quaternions from rigid transforms. ``T`` [..., 4, 4] -> [..., 8].

    The real part has ``w >= 0``; ``q`` and ``-q`` are the same transform.
    """
    q_r = matrix_to_quat(T[..., :3, :3])
    q_d = 0.5 * quat_multiply(_pure_quat(T[..., :3, 3]), q_r)
    return torch.cat([q_r, q_d], dim=-1)


def rt_to_dualquat(q_r: Tensor, t: Tensor) -> Tensor:
    """Dual quaternions from a wxyz rotation [..., 4] (normalised here) and translation [..., 3] -> [..., 8]."""
    q_d = 0.5 * quat_multiply(_pure_quat(t), normalize_quat(q_r))
    q_r = normalize_quat(q_r).expand_as(q_d)
    return torch.cat([q_r, q_d], dim=-1)


def normalize_dualquat(dq: Tensor, eps: float = 1e-12) -> Tensor:
    """Project a (blended) dual quaternion onto unit dual quaternions. ``dq`` [..., 8] -> [..., 8].

    Divides by ``|q_r|`` and removes the component of ``q_d`` along ``q_r`` so that
    ``q_r . q_d = 0`` holds exactly.
    """
    q_r, q_d = dq[..., :4], dq[..., 4:]
    n = q_r.norm(dim=-1, keepdim=True).clamp_min(eps)
    q_r = q_r / n
    q_d = q_d / n
    q_d = q_d - (q_r * q_d).sum(-1, keepdim=True) * q_r
    return torch.cat([q_r, q_d], dim=-1)


def dualquat_to_rt(dq: Tensor) -> tuple[Tensor, Tensor]:
    """Rotation quaternion [..., 4] and translation [..., 3] of (normalised here) dual quaternions [..., 8].

    ``t = 2 * vec(q_d * conj(q_r))``.
    """
    dq = normalize_dualquat(dq)
    q_r, q_d = dq[..., :4], dq[..., 4:]
    t = 2.0 * quat_multiply(q_d, quat_conjugate(q_r))[..., 1:]
    return q_r, t


def dualquat_to_se3(dq: Tensor) -> Tensor:
    """Rigid transforms from (normalised here) dual quaternions. ``dq`` [..., 8] -> [..., 4, 4]."""
    q_r, t = dualquat_to_rt(dq)
    return make_transform(quat_to_matrix(q_r), t)


def blend_dualquat(dq: Tensor, weights: Tensor) -> Tensor:
    """Dual-quaternion linear blending. ``dq`` [..., K, 8], ``weights`` [..., K] -> unit [..., 8].

    Weights need not sum to one (the result is normalised) but their sum must be positive.
    Antipodality: each ``q_k`` is flipped into the hemisphere of the quaternion with the
    largest weight before summing, so that ``q`` and ``-q`` blend identically.
    """
    q_r = dq[..., :4]
    pivot_idx = weights.argmax(dim=-1)  # [...]
    pivot = torch.gather(q_r, -2, pivot_idx[..., None, None].expand(pivot_idx.shape + (1, 4)))
    sign = torch.where((q_r * pivot).sum(-1) < 0, -1.0, 1.0).to(dq.dtype)  # [..., K]
    blended = ((weights * sign)[..., None] * dq).sum(dim=-2)
    return normalize_dualquat(blended)


def blend(transforms: Tensor, weights: Tensor) -> Tensor:
    """Blend rigid transforms with DLB (HiMoR Eq. 4 with dual quaternions).

    ``transforms``: [..., K, 4, 4] matrices or [..., K, 8] dual quaternions;
    ``weights``: [..., K] non-negative (normalised internally, e.g. HiMoR Eq. 5 weights
    before dividing by Z). Returns rigid transforms [..., 4, 4].
    """
    if transforms.shape[-2:] == (4, 4):
        dq = se3_to_dualquat(transforms)
    elif transforms.shape[-1] == 8:
        dq = transforms
    else:
        raise ValueError(
            f"transforms must be [..., K, 4, 4] or [..., K, 8], got {tuple(transforms.shape)}"
        )
    return dualquat_to_se3(blend_dualquat(dq, weights))
