"""Deforming Gaussians with leaf-node motions (HiMoR §3.2.2, Eq. 4-5).

A Gaussian with canonical mean ``mu`` follows its K nearest leaf nodes (Euclidean, in the
canonical frame) with weights ``w_k = exp(-|mu - x_k|^2 / (2 r_k)) / Z`` (Eq. 5; the paper
divides by ``r_k``, not ``r_k^2``, and so do we), blended as dual quaternions (Eq. 4 with
Kavan et al.'s DLB, :mod:`dynrec.geometry.dualquat`). Background Gaussians are static: pass
only the foreground ones.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dynrec.geometry.dualquat import blend_dualquat, dualquat_to_rt, se3_to_dualquat
from dynrec.geometry.se3 import matrix_to_quat, quat_multiply, quat_to_matrix


def knn(query: Tensor, points: Tensor, k: int, chunk: int = 65536) -> Tensor:
    """Indices [Q, k'] of the ``k' = min(k, P)`` nearest ``points`` [P, D] to each ``query`` [Q, D].

    Sorted by distance; no gradient; chunked over queries to bound memory.
    """
    kk = min(k, points.shape[0])
    out = []
    with torch.no_grad():
        for s in range(0, query.shape[0], chunk):
            d = torch.cdist(query[s : s + chunk], points)
            out.append(d.topk(kk, dim=1, largest=False).indices)
    if not out:
        return torch.zeros(0, kk, dtype=torch.long, device=query.device)
    return torch.cat(out)


def skin_weights(
    means: Tensor, node_pos: Tensor, node_radii: Tensor, k: int, idx: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """HiMoR Eq. 5 skinning weights of Gaussians on their K nearest leaf nodes.

    Args:
        means: [G, 3] canonical Gaussian centres.
        node_pos: [L, 3] canonical leaf positions; node_radii: [L] (positive).
        k: number of nodes per Gaussian (clipped to L).
        idx: optional cached neighbour indices [G, k] (recomputed when None).

    Returns:
        ``(idx [G, k], w [G, k])`` with ``w_k = exp(-|mu - x_k|^2 / (2 r_k)) / Z`` summing to 1
        (computed as a softmax, so it never underflows to 0/0). ``w`` is differentiable in
        ``means``, ``node_pos`` and ``node_radii``.
    """
    if idx is None:
        idx = knn(means, node_pos, k)
    d2 = (means[:, None, :] - node_pos[idx]).square().sum(dim=-1)  # [G, k]
    logits = -d2 / (2.0 * node_radii[idx])
    return idx, torch.softmax(logits, dim=-1)


def blend_leaf_motions(idx: Tensor, w: Tensor, leaf_transforms: Tensor) -> tuple[Tensor, Tensor]:
    """Per-Gaussian rigid motions blended from leaf motions (Eq. 4, dual quaternions).

    ``idx``, ``w`` [G, k]; ``leaf_transforms`` [B, L, 4, 4] (canonical -> frame). Returns the
    rotation quaternions ``q [B, G, 4]`` (wxyz) and translations ``t [B, G, 3]``.
    """
    dq = se3_to_dualquat(leaf_transforms)  # [B, L, 8]
    gathered = dq[:, idx]  # [B, G, k, 8]
    blended = blend_dualquat(gathered, w.expand(gathered.shape[:-1]))
    return dualquat_to_rt(blended)


def deform(
    means: Tensor, quats: Tensor, idx: Tensor, w: Tensor, leaf_transforms: Tensor
) -> tuple[Tensor, Tensor]:
    """Deform canonical Gaussians to B frames (HiMoR §3.2.2: ``G(T mu, R Sigma R^T)``).

    Args:
        means: [G, 3] canonical centres; quats: [G, 4] wxyz canonical rotations.
        idx, w: [G, k] from :func:`skin_weights`.
        leaf_transforms: [B, L, 4, 4] global leaf motions (canonical -> frame).

    Returns:
        ``(means_t [B, G, 3], quats_t [B, G, 4])`` with ``mu_t = R mu + t`` and
        ``q_t = q_R * q`` (the Gaussian's rotation composed after its canonical one).
    """
    q, t = blend_leaf_motions(idx, w, leaf_transforms)
    means_t = (quat_to_matrix(q) @ means[None, :, :, None])[..., 0] + t
    quats_t = quat_multiply(q, quats[None])
    return means_t, quats_t


def apply_rt(means: Tensor, quats: Tensor, R: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Apply per-Gaussian rotations ``R`` [B, G, 3, 3] and translations ``t`` [B, G, 3].

    ``means`` [G, 3], ``quats`` [G, 4] -> ``(means_t [B, G, 3], quats_t [B, G, 4])``.
    """
    means_t = (R @ means[None, :, :, None])[..., 0] + t
    quats_t = quat_multiply(matrix_to_quat(R), quats[None])
    return means_t, quats_t
