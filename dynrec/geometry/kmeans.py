"""K-Means in pure torch: k-means++ seeding (seeded ``torch.Generator``) and Lloyd iterations.

HiMoR §3.2.3 clusters the lifted 3D tracks (flattened trajectories, [P, T*3]) into M motion
clusters, and at level 2 clusters Gaussians' relative motions per leaf node. Points are rows
of ``x`` [P, D]; any D works.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class KMeansResult(NamedTuple):
    """``centers`` [M, D], ``labels`` [P] (int64), ``inertia`` [] (sum of squared distances), ``n_iter``."""

    centers: Tensor
    labels: Tensor
    inertia: Tensor
    n_iter: int


def _sq_dists(x: Tensor, c: Tensor) -> Tensor:
    """Squared Euclidean distances [P, M] between rows of ``x`` [P, D] and ``c`` [M, D]."""
    return torch.cdist(x, c).square()


def kmeans_plusplus(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): indices [k] of the chosen rows of ``x`` [P, D].

    The first centre is uniform; each next one is drawn with probability proportional to the
    squared distance to the nearest chosen centre (uniform among unchosen rows when every
    row coincides with a centre).
    """
    P = x.shape[0]
    idx = torch.empty(k, dtype=torch.long, device="cpu")  # indices drawn with the CPU generator
    idx[0] = torch.randint(P, (1,), generator=generator, device=generator.device).item()
    d2 = _sq_dists(x, x[idx[:1]])[:, 0]
    for i in range(1, k):
        probs = d2.clone()
        if not bool((probs > 0).any()):
            probs = torch.ones_like(d2)
            probs[idx[:i].to(x.device)] = 0.0
        j = torch.multinomial(probs.double().cpu(), 1, generator=generator).item()
        idx[i] = j
        d2 = torch.minimum(d2, _sq_dists(x, x[j : j + 1])[:, 0])
    return idx


def kmeans(
    x: Tensor,
    k: int,
    *,
    n_iter: int = 50,
    seed: int | torch.Generator = 0,
    tol: float = 0.0,
) -> KMeansResult:
    """Cluster rows of ``x`` [P, D] into ``k`` clusters.

    Args:
        x: points [P, D], float (any device; the random draws happen on the CPU).
        k: number of clusters, ``1 <= k <= P``.
        n_iter: maximum Lloyd iterations; stops earlier when labels stop changing or the
            centres move less than ``tol`` (max squared shift).
        seed: an int or a CPU ``torch.Generator`` for k-means++ (same seed, same result).

    Empty clusters are re-seeded with the point farthest from its current centre, so all
    ``k`` centres stay distinct whenever ``x`` has at least ``k`` distinct rows.

    Returns:
        ``KMeansResult(centers [k, D], labels [P], inertia, n_iter)``.
    """
    if x.ndim != 2:
        raise ValueError(f"x must be [P, D], got {tuple(x.shape)}")
    P = x.shape[0]
    if not 1 <= k <= P:
        raise ValueError(f"k must be in [1, {P}] for {P} points, got {k}")
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
    centers = x[kmeans_plusplus(x, k, gen).to(x.device)].clone()
    labels = torch.full((P,), -1, dtype=torch.long, device=x.device)
    it = 0
    for it in range(1, n_iter + 1):
        d2 = _sq_dists(x, centers)
        new_labels = d2.argmin(dim=1)
        counts = torch.bincount(new_labels, minlength=k)
        empty = torch.nonzero(counts == 0).flatten()
        if empty.numel() > 0:
            new_labels, counts = _fill_empty(d2, new_labels, counts, empty)
        new_centers = torch.zeros_like(centers).index_add_(0, new_labels, x)
        new_centers = new_centers / counts.clamp_min(1)[:, None].to(x.dtype)
        shift = (new_centers - centers).square().sum(dim=1).max()
        changed = bool((new_labels != labels).any())
        centers, labels = new_centers, new_labels
        if not changed or shift <= tol:
            break
    inertia = _sq_dists(x, centers).gather(1, labels[:, None]).sum()
    return KMeansResult(centers, labels, inertia, it)


def _fill_empty(d2: Tensor, labels: Tensor, counts: Tensor, empty: Tensor) -> tuple[Tensor, Tensor]:
    """Give each empty cluster the point farthest from its centre (taken from a cluster of >1)."""
    labels = labels.clone()
    counts = counts.clone()
    own = d2.gather(1, labels[:, None])[:, 0].clone()
    for c in empty.tolist():
        movable = counts[labels] > 1
        cand = torch.where(movable, own, torch.full_like(own, -1.0))
        j = int(cand.argmax())
        if cand[j] < 0:
            break
        counts[labels[j]] -= 1
        labels[j] = c
        counts[c] += 1
        own[j] = -1.0
    return labels, counts
