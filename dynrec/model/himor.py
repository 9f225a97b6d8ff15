"""HiMoR: the hierarchical motion tree (HiMoR §3.2, Eq. 2-3 and 6), and the global-bases ablation.

Every node holds an SE(3) motion sequence relative to its parent (Eq. 2). The root is the
identity. The children of one parent share M motion bases, each a per-frame rot6d [T, 6]
and translation [T, 3]; a child's relative motion at frame t is the linear combination of
its parent's bases with its own coefficients (Eq. 3: rot6d and translations combined
linearly, the rot6d re-orthonormalised by Gram-Schmidt). Its global motion is its parent's
global motion composed with it: ``G_child(t) = G_parent(t) @ D_child(t)``. Leaves drive
the Gaussians (:mod:`dynrec.model.skinning`).

Storage is per level (:class:`TreeLevel`), flat over nodes: level k has bases
[P, M, T, ·] (one set per node of level k-1; P = 1 for the root) and nodes with canonical
``positions`` [L, 3], ``coefficients`` [L, M], ``log_radii`` [L] and a ``parent`` index [L].
Level 1 (≈50 nodes, M1 = 10 bases) comes from :mod:`dynrec.geometry.lift`;
:meth:`MotionTree.enable_level2` adds level 2 (C = 10 children per level-1 node, M2 = 5
bases each, §3.2.3); :meth:`MotionTree.densify` adds leaves (§3.2.4, Eq. 6).

**Optimizer state**: ``enable_level2`` and ``densify`` replace the node ``Parameter``
objects (and ``enable_level2`` adds new bases). The caller must rebuild its Adam from
:meth:`MotionTree.param_groups` afterwards (and recompute any cached skinning indices and
curve-distance KNN).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

from dynrec.geometry.kmeans import kmeans
from dynrec.geometry.lift import farthest_point_sampling, idw_coefficients, mean_knn_distance
from dynrec.geometry.se3 import (
    invert,
    make_transform,
    matrix_to_rot6d,
    quat_to_matrix,
    rot6d_to_matrix,
    rot6d_translation_to_transform,
    transform_points,
)
from dynrec.model.skinning import apply_rt, blend_leaf_motions, curve_neighbours, knn, skin_weights
from dynrec.model.skinning import deform as skin_deform


@dataclass
class TreeConfig:
    """Structure of the tree (HiMoR §4 implementation details) and its initialisation knobs.

    ``skin_k``: leaves per Gaussian (Eq. 4); ``skin_by``: how they are chosen, ``canonical``
    (HiMoR: nearest in the canonical frame) or ``curve`` (among the ``skin_candidates``
    canonical nearest, those whose trajectories stay closest, see
    :func:`~dynrec.model.skinning.curve_neighbours`); ``n_children`` / ``n_bases_level2``: C and M2
    of level 2; ``idw_power``: exponent of the inverse-distance coefficient initialisation;
    ``gather_radius_scale``: level-2 bases are fitted to the Gaussians within this multiple
    of a level-1 node's radius (at least ``max(C, M2)`` nearest ones); ``densify_k``: nodes
    compared with each Gaussian by curve distance (Eq. 6).
    """

    skin_k: int = 8
    skin_by: str = "curve"
    skin_candidates: int = 16
    n_children: int = 10
    n_bases_level2: int = 5
    idw_power: float = 2.0
    gather_radius_scale: float = 1.0
    densify_k: int = 8


@dataclass
class MotionLRs:
    """Adam learning rates of the motion model (HiMoR Appendix B.2)."""

    bases: float = 1.6e-4
    positions: float = 1.6e-5
    radii: float = 5e-4
    coefficients: float = 1e-2


def curve_distance(a: Tensor, b: Tensor) -> Tensor:
    """HiMoR Eq. 6: ``max_t |a_t - b_t|``. ``a``, ``b`` [..., T, 3] (broadcast) -> [...]."""
    return (a - b).norm(dim=-1).amax(dim=-1)


def knn_curve(trajectories: Tensor, k: int, chunk: int = 256) -> Tensor:
    """K nearest other nodes by curve distance (Eq. 6), for the rigidity loss (Eq. 8).

    ``trajectories`` [L, T, 3] -> indices [L, min(k, L - 1)] (self excluded, no gradient).
    """
    L = trajectories.shape[0]
    kk = min(k, L - 1)
    out = []
    with torch.no_grad():
        for s in range(0, L, chunk):
            d = curve_distance(trajectories[s : s + chunk, None], trajectories[None])  # [c, L]
            rows = torch.arange(s, min(s + chunk, L), device=d.device)
            d[rows - s, rows] = float("inf")
            out.append(d.topk(kk, dim=1, largest=False).indices)
    return (
        torch.cat(out) if out else torch.zeros(0, kk, dtype=torch.long, device=trajectories.device)
    )


def blend_bases(coefficients: Tensor, rot6d: Tensor, trans: Tensor) -> Tensor:
    """HiMoR Eq. 3: ``D = sum_m v_m B_m`` on rot6d and translation, re-orthonormalised.

    ``coefficients`` [L, M]; ``rot6d`` [L, M, B, 6] and ``trans`` [L, M, B, 3] (each node's
    parent's bases at B frames) -> transforms [B, L, 4, 4].
    """
    r = torch.einsum("lm,lmbd->bld", coefficients, rot6d)
    t = torch.einsum("lm,lmbd->bld", coefficients, trans)
    return rot6d_translation_to_transform(r, t)


def _times(t: Tensor | int | list[int], device: torch.device) -> Tensor:
    """Frame indices as a LongTensor [B]."""
    return torch.as_tensor(t, dtype=torch.long, device=device).reshape(-1)


def _identity_rot6d_trans(shape: tuple[int, ...], like: Tensor) -> tuple[Tensor, Tensor]:
    """Identity motion as rot6d [*shape, 6] and translation [*shape, 3]."""
    r = like.new_zeros(shape + (6,))
    r[..., 0] = 1.0
    r[..., 4] = 1.0
    return r, like.new_zeros(shape + (3,))


class TreeLevel(nn.Module):
    """One level of the tree: its parents' bases and its nodes (see the module docstring).

    ``bases_rot6d`` [P, M, T, 6], ``bases_trans`` [P, M, T, 3], ``positions`` [L, 3],
    ``coefficients`` [L, M], ``radii`` [L] (stored as ``log_radii``), ``parent`` [L] in [0, P).
    """

    def __init__(
        self,
        bases_rot6d: Tensor,
        bases_trans: Tensor,
        positions: Tensor,
        coefficients: Tensor,
        radii: Tensor,
        parent: Tensor,
    ) -> None:
        super().__init__()
        P, M, T, _ = bases_rot6d.shape
        L = positions.shape[0]
        if bases_trans.shape != (P, M, T, 3) or coefficients.shape != (L, M) or radii.shape != (L,):
            raise ValueError(
                "TreeLevel: inconsistent shapes "
                f"rot6d {tuple(bases_rot6d.shape)}, trans {tuple(bases_trans.shape)}, "
                f"positions {tuple(positions.shape)}, coefficients {tuple(coefficients.shape)}, "
                f"radii {tuple(radii.shape)}"
            )
        self.bases_rot6d = nn.Parameter(bases_rot6d.detach().clone())
        self.bases_trans = nn.Parameter(bases_trans.detach().clone())
        self.set_nodes(positions, coefficients, torch.log(radii.clamp_min(1e-12)), parent)

    def set_nodes(
        self, positions: Tensor, coefficients: Tensor, log_radii: Tensor, parent: Tensor
    ) -> None:
        """Replace the node parameters (new ``Parameter`` objects) and parent indices."""
        self.positions = nn.Parameter(positions.detach().clone())
        self.coefficients = nn.Parameter(coefficients.detach().clone())
        self.log_radii = nn.Parameter(log_radii.detach().clone())
        self.register_buffer("parent", parent.detach().long().clone().to(positions.device))

    @property
    def num_nodes(self) -> int:
        return self.positions.shape[0]

    @property
    def radii(self) -> Tensor:
        """[L] node radii ``exp(log_radii)`` (the ``r`` of Eq. 5)."""
        return torch.exp(self.log_radii)

    def relative_transforms(self, t: Tensor) -> Tensor:
        """Eq. 3 relative motions of this level's nodes at frames ``t`` [B] -> [B, L, 4, 4]."""
        r = self.bases_rot6d[:, :, t][self.parent]  # [L, M, B, 6]
        tr = self.bases_trans[:, :, t][self.parent]
        return blend_bases(self.coefficients, r, tr)


class MotionModel(Protocol):
    """What the reconstruction needs from a motion model (tree or global bases)."""

    def deform(
        self, means: Tensor, quats: Tensor, t: Tensor, coefs: Tensor | None = None
    ) -> tuple[Tensor, Tensor]: ...

    def bases(self) -> list[tuple[Tensor, Tensor]]: ...

    def param_groups(self, lrs: MotionLRs | None = None) -> list[dict]: ...


class MotionTree(nn.Module):
    """The HiMoR tree (§3.2.1). Construct with level 1; see :meth:`enable_level2`, :meth:`densify`.

    Args:
        bases_rot6d: [M1, T, 6] and bases_trans: [M1, T, 3], level-1 bases (shared by all
            level-1 nodes, the root's bases).
        positions: [L1, 3] canonical node positions; coefficients: [L1, M1]; radii: [L1] (> 0).
        config: structure and initialisation knobs.
    """

    def __init__(
        self,
        bases_rot6d: Tensor,
        bases_trans: Tensor,
        positions: Tensor,
        coefficients: Tensor,
        radii: Tensor,
        config: TreeConfig | None = None,
    ) -> None:
        super().__init__()
        self.config = config or TreeConfig()
        parent = torch.zeros(positions.shape[0], dtype=torch.long, device=positions.device)
        level1 = TreeLevel(
            bases_rot6d[None], bases_trans[None], positions, coefficients, radii, parent
        )
        self.levels = nn.ModuleList([level1])

    @classmethod
    def from_bases(
        cls,
        bases: Tensor,
        positions: Tensor,
        coefficients: Tensor,
        radii: Tensor,
        config: TreeConfig | None = None,
    ) -> MotionTree:
        """Build level 1 from SE(3) bases [M1, T, 4, 4] (e.g. :func:`dynrec.geometry.lift.motion_bases`)."""
        return cls(
            matrix_to_rot6d(bases[..., :3, :3]),
            bases[..., :3, 3],
            positions,
            coefficients,
            radii,
            config,
        )

    @classmethod
    def from_state_dict(
        cls, state: dict[str, Tensor], config: TreeConfig | None = None
    ) -> MotionTree:
        """Rebuild a tree of any shape (levels, densified nodes) from :meth:`state_dict` output."""

        def get(k: int, name: str) -> Tensor:
            return state[f"levels.{k}.{name}"]

        tree = cls(
            get(0, "bases_rot6d")[0],
            get(0, "bases_trans")[0],
            get(0, "positions"),
            get(0, "coefficients"),
            torch.exp(get(0, "log_radii")),
            config,
        )
        k = 1
        while f"levels.{k}.positions" in state:
            tree.add_level(
                get(k, "bases_rot6d"),
                get(k, "bases_trans"),
                get(k, "positions"),
                get(k, "coefficients"),
                torch.exp(get(k, "log_radii")),
                get(k, "parent"),
            )
            k += 1
        tree.load_state_dict(state)
        return tree

    def add_level(
        self,
        bases_rot6d: Tensor,
        bases_trans: Tensor,
        positions: Tensor,
        coefficients: Tensor,
        radii: Tensor,
        parent: Tensor,
    ) -> None:
        """Append a level under the current leaves (shapes as :class:`TreeLevel`, P = current leaf count)."""
        if bases_rot6d.shape[0] != self.num_leaves or bases_rot6d.shape[2] != self.num_frames:
            raise ValueError(
                f"add_level: bases must be [{self.num_leaves}, M, {self.num_frames}, 6], "
                f"got {tuple(bases_rot6d.shape)}"
            )
        self.levels.append(
            TreeLevel(bases_rot6d, bases_trans, positions, coefficients, radii, parent)
        )

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    @property
    def num_frames(self) -> int:
        return self.levels[0].bases_rot6d.shape[2]

    @property
    def num_leaves(self) -> int:
        return self.levels[-1].num_nodes

    def leaf_positions(self) -> Tensor:
        """[L, 3] canonical positions of the leaves."""
        return self.levels[-1].positions

    def leaf_radii(self) -> Tensor:
        """[L] radii of the leaves (Eq. 5)."""
        return self.levels[-1].radii

    def level_positions(self) -> list[Tensor]:
        """Canonical node positions per level, [L_k, 3] each (root excluded)."""
        return [level.positions for level in self.levels]

    def level_radii(self) -> list[Tensor]:
        """Node radii per level, [L_k] each."""
        return [level.radii for level in self.levels]

    def level_transforms(self, t: Tensor | int | list[int]) -> list[Tensor]:
        """Global motions (canonical -> frame t) per level, [B, L_k, 4, 4] each.

        ``G_k(t) = G_{k-1}(t)[parent] @ D_k(t)`` with ``G_0 = I`` (the root).
        """
        t = _times(t, self.levels[0].bases_rot6d.device)
        out: list[Tensor] = []
        for level in self.levels:
            rel = level.relative_transforms(t)
            out.append(rel if not out else out[-1][:, level.parent] @ rel)
        return out

    def leaf_transforms(self, t: Tensor | int | list[int]) -> Tensor:
        """[B, L, 4, 4] global leaf motions at frames ``t`` [B]."""
        return self.level_transforms(t)[-1]

    def node_trajectories(self, level: int = -1, chunk: int = 64) -> Tensor:
        """[L_k, T, 3] positions over all frames of the nodes of ``level`` (``G(t) x``)."""
        k = level % self.num_levels
        x = self.levels[k].positions
        out = []
        for s in range(0, self.num_frames, chunk):
            G = self.level_transforms(torch.arange(s, min(s + chunk, self.num_frames), device=x.device))[k]
            out.append(transform_points(G, x[None]))
        return torch.cat(out).transpose(0, 1)

    def bases(self) -> list[tuple[Tensor, Tensor]]:
        """Per level ``(rot6d [P, M, T, 6], trans [P, M, T, 3])`` (for the acceleration loss)."""
        return [(level.bases_rot6d, level.bases_trans) for level in self.levels]

    def skin_neighbours(self, means: Tensor) -> Tensor:
        """Indices [G, k] of the leaves that drive each of ``means`` [G, 3] (``config.skin_by``)."""
        cfg = self.config
        if cfg.skin_by == "canonical":
            return knn(means, self.leaf_positions(), cfg.skin_k)
        if cfg.skin_by != "curve":
            raise ValueError(f"TreeConfig.skin_by must be 'canonical' or 'curve', got {cfg.skin_by!r}")
        with torch.no_grad():
            frames = torch.arange(self.num_frames, device=means.device)
            leaves = self.leaf_transforms(frames)
        return curve_neighbours(
            means.detach(), self.leaf_positions().detach(), leaves, cfg.skin_k, cfg.skin_candidates
        )

    def skin(self, means: Tensor, idx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Eq. 5 skinning of ``means`` [G, 3] on the current leaves -> ``(idx [G, k], w [G, k])``;
        ``idx`` cached neighbours, else :meth:`skin_neighbours`."""
        if idx is None:
            idx = self.skin_neighbours(means)
        return skin_weights(
            means, self.leaf_positions(), self.leaf_radii(), self.config.skin_k, idx
        )

    def deform(
        self,
        means: Tensor,
        quats: Tensor,
        t: Tensor | int | list[int],
        coefs: Tensor | None = None,
        skin: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Deform foreground Gaussians to frames ``t`` [B] (§3.2.2).

        ``means`` [G, 3], ``quats`` [G, 4]; ``coefs`` is ignored (it exists for
        :class:`GlobalBases`); ``skin`` = precomputed ``(idx, w)``, else :meth:`skin`.
        Returns ``(means_t [B, G, 3], quats_t [B, G, 4])``.
        """
        idx, w = skin if skin is not None else self.skin(means)
        return skin_deform(means, quats, idx, w, self.leaf_transforms(t))

    def param_groups(self, lrs: MotionLRs | None = None) -> list[dict]:
        """Adam param groups (B.2): bases, node positions, radii, coefficients (all levels)."""
        lrs = lrs or MotionLRs()
        groups = {
            "bases": (
                [p for lv in self.levels for p in (lv.bases_rot6d, lv.bases_trans)],
                lrs.bases,
            ),
            "node_positions": ([lv.positions for lv in self.levels], lrs.positions),
            "node_radii": ([lv.log_radii for lv in self.levels], lrs.radii),
            "node_coefficients": ([lv.coefficients for lv in self.levels], lrs.coefficients),
        }
        return [{"params": ps, "lr": lr, "name": name} for name, (ps, lr) in groups.items()]

    @torch.no_grad()
    def enable_level2(
        self,
        gaussian_means: Tensor,
        n_children: int | None = None,
        n_bases: int | None = None,
        seed: int = 0,
    ) -> None:
        """Add level 2 under the current (level-1) leaves (HiMoR §3.2.3).

        For each level-1 node p: the foreground Gaussians (canonical ``gaussian_means``
        [G, 3]) within ``gather_radius_scale * r_p`` (at least the ``max(C, M2)`` nearest)
        are deformed by the current tree over all frames; their motion relative to p,
        ``G_p(t)^-1 T_i(t)``, as [T * (6 + 3)] rot6d + translation vectors, is clustered by
        K-Means into M2 clusters whose centre sequences become p's M2 bases (already
        oriented: no Procrustes). p's C children are a farthest-point sample of those
        Gaussians, with inverse-distance coefficients to the clusters' canonical centres;
        child radii are the mean distance to the 3 nearest level-2 nodes. Rebuild the
        optimizer afterwards.
        """
        if self.num_levels != 1:
            raise RuntimeError(f"enable_level2: the tree already has {self.num_levels} levels")
        C = n_children or self.config.n_children
        M2 = n_bases or self.config.n_bases_level2
        parents = self.levels[-1]
        T, L1, G = self.num_frames, parents.num_nodes, gaussian_means.shape[0]
        glob = self.leaf_transforms(torch.arange(T, device=gaussian_means.device))  # [T, L1, 4, 4]
        idx, w = self.skin(gaussian_means)
        dist = torch.cdist(parents.positions, gaussian_means)  # [L1, G]
        need = min(max(C, M2), G)
        rot_all, trans_all, pos_all, coef_all, parent_all = [], [], [], [], []
        for p in range(L1):
            cand = torch.nonzero(
                dist[p] <= self.config.gather_radius_scale * parents.radii[p]
            ).flatten()
            if cand.numel() < need:
                cand = dist[p].topk(need, largest=False).indices
            q, tr = blend_leaf_motions(idx[cand], w[cand], glob)  # [T, n, 4], [T, n, 3]
            rel = invert(glob[:, p : p + 1]) @ make_transform(quat_to_matrix(q), tr)
            feats = torch.cat([matrix_to_rot6d(rel[..., :3, :3]), rel[..., :3, 3]], dim=-1)
            n = cand.numel()
            k = min(M2, n)
            km = kmeans(feats.transpose(0, 1).reshape(n, T * 9), k, seed=seed + p)
            centres_motion = km.centers.reshape(k, T, 9)
            rot, trans = _identity_rot6d_trans((M2, T), gaussian_means)
            rot[:k], trans[:k] = centres_motion[..., :6], centres_motion[..., 6:]
            pts = gaussian_means[cand]
            centres = parents.positions[p].expand(M2, 3).clone()
            counts = torch.bincount(km.labels, minlength=k).clamp_min(1).to(pts.dtype)
            centres[:k] = (
                torch.zeros(k, 3, dtype=pts.dtype, device=pts.device).index_add_(0, km.labels, pts)
                / counts[:, None]
            )
            children = pts[farthest_point_sampling(pts, min(C, n), seed + p)]
            rot_all.append(rot)
            trans_all.append(trans)
            pos_all.append(children)
            coef_all.append(idw_coefficients(children, centres, self.config.idw_power))
            parent_all.append(
                torch.full((children.shape[0],), p, dtype=torch.long, device=pts.device)
            )
        positions = torch.cat(pos_all)
        radii = mean_knn_distance(positions, 3).clamp_min(1e-6)
        self.add_level(
            torch.stack(rot_all),
            torch.stack(trans_all),
            positions,
            torch.cat(coef_all),
            radii,
            torch.cat(parent_all),
        )

    @torch.no_grad()
    def densify(
        self,
        gaussian_trajectories: Tensor,
        gaussian_canonical: Tensor,
        threshold: float,
        max_new: int,
        min_spacing: float | None = None,
        chunk: int = 4096,
    ) -> int:
        """Node densification by curve distance (HiMoR §3.2.4, Eq. 6). Returns the number added.

        For each Gaussian (trajectory [G, T, 3], canonical position [G, 3]) the curve
        distance to each of its ``densify_k`` nearest leaves (canonical frame) is computed;
        Gaussians whose *smallest* such distance exceeds ``threshold`` are candidates. New
        leaves are picked among the candidates by farthest-point sampling seeded with the
        existing leaves (canonical frame), at most ``max_new``, stopping when the farthest
        candidate is closer than ``min_spacing`` to every leaf (default: half the median
        distance between a leaf and its nearest other leaf). A new leaf sits at the
        Gaussian's canonical position and copies the coefficients, radius and parent of its
        nearest existing leaf. Rebuild the optimizer afterwards.
        """
        leaf = self.levels[-1]
        pos = leaf.positions
        node_traj = self.node_trajectories(-1)  # [L, T, 3]
        k = self.config.densify_k
        dmin = []
        for s in range(0, gaussian_canonical.shape[0], chunk):
            nbr = knn(gaussian_canonical[s : s + chunk], pos, k)  # [c, k]
            d = curve_distance(gaussian_trajectories[s : s + chunk, None], node_traj[nbr])
            dmin.append(d.amin(dim=1))
        if not dmin:
            return 0
        cand = torch.nonzero(torch.cat(dmin) > threshold).flatten()
        if cand.numel() == 0 or max_new <= 0:
            return 0
        if min_spacing is None:
            spacing = torch.cdist(pos, pos).fill_diagonal_(float("inf")).amin(dim=1)
            min_spacing = 0.5 * float(spacing.median()) if pos.shape[0] > 1 else 0.0
        pts = gaussian_canonical[cand]
        d = torch.cdist(pts, pos).amin(dim=1)
        chosen: list[int] = []
        while len(chosen) < max_new:
            j = int(d.argmax())
            if d[j] < min_spacing:
                break
            chosen.append(j)
            d = torch.minimum(d, (pts - pts[j]).norm(dim=-1))
            d[j] = float("-inf")
        if not chosen:
            return 0
        new_pos = pts[torch.tensor(chosen, device=pts.device)]
        near = knn(new_pos, pos, 1)[:, 0]
        leaf.set_nodes(
            torch.cat([pos, new_pos]),
            torch.cat([leaf.coefficients, leaf.coefficients[near]]),
            torch.cat([leaf.log_radii, leaf.log_radii[near]]),
            torch.cat([leaf.parent, leaf.parent[near]]),
        )
        return len(chosen)


class GlobalBases(nn.Module):
    """Shape-of-Motion-like ablation: no tree, each foreground Gaussian blends M global bases.

    ``bases_rot6d`` [M, T, 6], ``bases_trans`` [M, T, 3]. The per-Gaussian coefficients
    [G, M] are *not* stored here: they live in the Gaussians' parameter dict
    (``motion_coefs``) so that densification carries them; pass them to :meth:`deform`.
    """

    def __init__(self, bases_rot6d: Tensor, bases_trans: Tensor) -> None:
        super().__init__()
        self.bases_rot6d = nn.Parameter(bases_rot6d.detach().clone())
        self.bases_trans = nn.Parameter(bases_trans.detach().clone())

    @classmethod
    def from_bases(cls, bases: Tensor) -> GlobalBases:
        """From SE(3) bases [M, T, 4, 4]."""
        return cls(matrix_to_rot6d(bases[..., :3, :3]), bases[..., :3, 3])

    @staticmethod
    def init_coefficients(means: Tensor, centres: Tensor, power: float = 2.0) -> Tensor:
        """Inverse-distance coefficients [G, M] of ``means`` [G, 3] to the bases' ``centres`` [M, 3]."""
        return idw_coefficients(means, centres, power)

    @property
    def num_frames(self) -> int:
        return self.bases_rot6d.shape[1]

    def bases(self) -> list[tuple[Tensor, Tensor]]:
        """``[(rot6d [M, T, 6], trans [M, T, 3])]`` (for the acceleration loss)."""
        return [(self.bases_rot6d, self.bases_trans)]

    def rotations_translations(
        self, coefs: Tensor, t: Tensor | int | list[int]
    ) -> tuple[Tensor, Tensor]:
        """Eq. 3 per Gaussian: ``R [B, G, 3, 3]``, ``t [B, G, 3]`` from ``coefs`` [G, M] at frames ``t`` [B]."""
        t = _times(t, self.bases_rot6d.device)
        r = torch.einsum("gm,mbd->bgd", coefs, self.bases_rot6d[:, t])
        tr = torch.einsum("gm,mbd->bgd", coefs, self.bases_trans[:, t])
        return rot6d_to_matrix(r), tr

    def deform(
        self, means: Tensor, quats: Tensor, t: Tensor | int | list[int], coefs: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Deform Gaussians ``means`` [G, 3], ``quats`` [G, 4] with their ``coefs`` [G, M] (required).

        Returns ``(means_t [B, G, 3], quats_t [B, G, 4])``.
        """
        if coefs is None:
            raise ValueError(
                "GlobalBases.deform needs the per-Gaussian coefficients (coefs [G, M])"
            )
        R, tr = self.rotations_translations(coefs, t)
        return apply_rt(means, quats, R, tr)

    def param_groups(self, lrs: MotionLRs | None = None) -> list[dict]:
        """One Adam group for the bases (B.2 rate); the coefficients belong to the Gaussians."""
        lrs = lrs or MotionLRs()
        return [{"params": [self.bases_rot6d, self.bases_trans], "lr": lrs.bases, "name": "bases"}]


__all__ = [
    "GlobalBases",
    "MotionLRs",
    "MotionModel",
    "MotionTree",
    "TreeConfig",
    "TreeLevel",
    "blend_bases",
    "curve_distance",
    "knn_curve",
]
