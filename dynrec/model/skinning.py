"""Deforming Gaussians with leaf-node motions (HiMoR §3.2.2, Eq. 4-5).

A Gaussian with canonical mean ``mu`` follows K leaf nodes with weights ``w_k = exp(-|mu - x_k|^2 / (2 r_k)) / Z`` (Eq. 5; the paper
divides by ``r_k``, not ``r_k^2``, and so do we), blended as dual quaternions (Eq. 4 with
Kavan et al.'s DLB, :mod:`dynrec.geometry.dualquat`). Background Gaussians are static: pass
only the foreground ones.

Which K leaves: HiMoR takes the K nearest in the canonical frame (:func:`knn`). In one frame
two limbs can touch (legs mid-stride, an arm hanging by the torso), and a Gaussian then
blends the motion of both: a walking figure smears into a ghost. :func:`curve_neighbours`
keeps, among the ``2K`` canonical nearest, the K whose trajectories stay closest to the
Gaussian's over the whole video (HiMoR's curve distance, Eq. 6); ``docs/motion.md`` has
the figures.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dynrec.geometry.dualquat import blend_dualquat, dualquat_to_rt, se3_to_dualquat
from dynrec.geometry.se3 import matrix_to_quat, quat_multiply, quat_to_matrix


def knn(query: Tensor, points: Tensor, k: int, chunk_elements: int = 1 << 24) -> Tensor:
    """Indices [Q, k'] of the ``k' = min(k, P)`` nearest ``points`` [P, D] to each ``query`` [Q, D].

    Sorted by distance; no gradient; chunked over queries so that at most
    ``chunk_elements`` distances exist at a time.
    """
    kk = min(k, points.shape[0])
    rows = max(1, chunk_elements // max(points.shape[0], 1))
    out = []
    with torch.no_grad():
        for s in range(0, query.shape[0], rows):
            d = torch.cdist(query[s : s + rows], points)
            out.append(d.topk(kk, dim=1, largest=False).indices)
    if not out:
        return torch.zeros(0, kk, dtype=torch.long, device=query.device)
    return torch.cat(out)


def curve_neighbours(
    means: Tensor,
    node_pos: Tensor,
    leaf_transforms: Tensor,
    k: int,
    candidates: int,
    chunk: int = 4096,
) -> Tensor:
    """Indices [G, k'] of the ``k' = min(k, L)`` leaves that move most like each Gaussian.

    ``means`` [G, 3] canonical centres; ``node_pos`` [L, 3] canonical leaves;
    ``leaf_transforms`` [T, L, 4, 4] (canonical -> frame, every frame or a subset). The
    ``min(candidates, L)`` leaves nearest in the canonical frame are candidates; a
    Gaussian's trajectory is approximated by its nearest leaf's motion applied to it, and
    the k candidates with the smallest curve distance ``max_t |x_t - y_t|`` (HiMoR Eq. 6)
    to it are kept, sorted by that distance. No gradient.
    """
    kk = min(k, node_pos.shape[0])
    cand_n = max(min(candidates, node_pos.shape[0]), kk)
    out = []
    with torch.no_grad():
        R, tr = leaf_transforms[..., :3, :3], leaf_transforms[..., :3, 3]  # [T, L, 3, 3], [T, L, 3]
        node_traj = (R @ node_pos[None, :, :, None])[..., 0] + tr  # [T, L, 3]
        for s in range(0, means.shape[0], chunk):
            mu = means[s : s + chunk]
            cand = torch.cdist(mu, node_pos).topk(cand_n, dim=1, largest=False).indices  # [c, n]
            own = cand[:, 0]
            traj = (R[:, own] @ mu[None, :, :, None])[..., 0] + tr[:, own]  # [T, c, 3]
            dist = (traj[:, :, None] - node_traj[:, cand]).norm(dim=-1).amax(dim=0)  # [c, n]
            out.append(cand.gather(1, dist.topk(kk, dim=1, largest=False).indices))
    if not out:
        return torch.zeros(0, kk, dtype=torch.long, device=means.device)
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
