"""Lifting 2D tracks to 3D and initialising HiMoR's first level (HiMoR §3.2.3), pure torch.

The pipeline of the ``lift`` stage is::

    xyz, valid = lift_tracks(xy, visible, depth, K, w2c)   # unproject with aligned depth
    xyz = fill_gaps(xyz, valid)                            # first guess where a track is unseen
    c = canonical_frame(valid)                             # frame with most valid tracks
    bases, labels, centres = motion_bases(xyz, valid, M, c, seed)   # K-Means + Procrustes
    xyz = complete_tracks(xyz, valid, labels, bases)       # unseen parts follow their basis
    bases, labels, centres = motion_bases(xyz, valid, M, c, seed, known=...)  # refit, repeat
    positions, coefficients, radii = init_nodes(xyz[:, c], centres, L, seed)
    coefficients = fit_coefficients(positions, xyz, valid, bases, c)  # or HiMoR's IDW

Conventions are those of :mod:`dynrec.geometry.camera` (OpenCV, ``w2c`` 4x4, pixel centres
at +0.5, z-depth with 0 = unknown). ``project_points`` / ``unproject_points`` are the
differentiable torch twins of ``camera.project`` / ``camera.unproject``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dynrec.geometry.kmeans import kmeans
from dynrec.geometry.procrustes import procrustes
from dynrec.geometry.se3 import invert, make_transform, transform_points

#: Bilinear depth samples whose known neighbours carry less than this weight are invalid.
_MIN_KNOWN_WEIGHT = 1.0 - 1e-6


def project_points(
    points: Tensor, K: Tensor, w2c: Tensor, eps: float = 1e-12
) -> tuple[Tensor, Tensor]:
    """Project world points to pixels (torch, differentiable).

    ``points`` [..., 3], ``K`` [..., 3, 3], ``w2c`` [..., 4, 4] (broadcast over the leading
    dims, e.g. ``K[:, None]`` for [T, N, 3] points). Returns ``(xy [..., 2], z [...])`` with
    pixel centres at +0.5; points with ``z <= 0`` get meaningless ``xy`` (mask on ``z > 0``).
    """
    cam = transform_points(w2c, points)
    z = cam[..., 2]
    safe = torch.where(z.abs() < eps, torch.full_like(z, eps), z)
    uv = torch.stack([cam[..., 0] / safe, cam[..., 1] / safe, torch.ones_like(z)], dim=-1)
    xy = (K[..., :2, :] @ uv[..., None])[..., 0]
    return xy, z


def unproject_points(xy: Tensor, depth: Tensor, K: Tensor, w2c: Tensor) -> Tensor:
    """Lift pixels ``xy`` [..., 2] with z-depth [...] to world points [..., 3] (inverse of ``project_points``).

    ``K`` [..., 3, 3] and ``w2c`` [..., 4, 4] broadcast against the leading dims.
    """
    pix = torch.cat([xy, torch.ones_like(xy[..., :1])], dim=-1)
    ray = (torch.linalg.inv(K) @ pix[..., None])[..., 0]
    cam = ray * (depth / ray[..., 2])[..., None]
    return transform_points(invert(w2c), cam)


def sample_depth(depth: Tensor, xy: Tensor, max_rel_range: float = 0.05) -> tuple[Tensor, Tensor]:
    """Bilinear z-depth at pixel positions, ignoring unknown (0) depth and depth edges.

    ``depth`` [T, H, W]; ``xy`` [N, T, 2] (x, y) with pixel ``(i, j)`` centred at
    ``(j + 0.5, i + 0.5)``. Positions between the outermost pixel centres and the image
    border use the border pixels. Returns ``(z [N, T], ok [N, T])``: ``ok`` is False
    outside ``[0, W) x [0, H)``, for non-finite ``xy``, and where a neighbour with non-zero
    bilinear weight has unknown depth (so known and unknown depths are never mixed), and
    at depth edges: where the known neighbours' depths span more than ``max_rel_range``
    of the nearest one (a point on a silhouette would otherwise be lifted half-way to the
    background).
    """
    T, H, W = depth.shape
    x, y = xy[..., 0], xy[..., 1]
    inside = torch.isfinite(x) & torch.isfinite(y) & (x >= 0) & (x < W) & (y >= 0) & (y < H)
    u = torch.nan_to_num(x - 0.5).clamp(0, W - 1)
    v = torch.nan_to_num(y - 0.5).clamp(0, H - 1)
    u0 = u.floor().long().clamp(max=W - 1)
    v0 = v.floor().long().clamp(max=H - 1)
    u1 = (u0 + 1).clamp(max=W - 1)
    v1 = (v0 + 1).clamp(max=H - 1)
    fu = u - u0.to(u.dtype)
    fv = v - v0.to(v.dtype)
    t = torch.arange(T, device=depth.device)[None, :].expand_as(u0)
    corners = [
        (v0, u0, (1 - fv) * (1 - fu)),
        (v0, u1, (1 - fv) * fu),
        (v1, u0, fv * (1 - fu)),
        (v1, u1, fv * fu),
    ]
    z = torch.zeros_like(u)
    known = torch.zeros_like(u)
    lo = torch.full_like(u, float("inf"))
    hi = torch.zeros_like(u)
    for vi, ui, wgt in corners:
        d = depth[t, vi, ui].to(u.dtype)
        has = (d > 0).to(u.dtype)
        z = z + wgt * has * d
        known = known + wgt * has
        used = (d > 0) & (wgt > 0)
        lo = torch.where(used, torch.minimum(lo, d), lo)
        hi = torch.where(used, torch.maximum(hi, d), hi)
    smooth = (hi - lo) <= max_rel_range * lo
    ok = inside & (known >= _MIN_KNOWN_WEIGHT) & smooth
    z = torch.where(ok, z / known.clamp_min(1e-12), torch.zeros_like(z))
    return z, ok


def lift_tracks(
    xy: Tensor, visible: Tensor, depth: Tensor, K: Tensor, w2c: Tensor
) -> tuple[Tensor, Tensor]:
    """Unproject 2D tracks with per-frame depth to world-space 3D tracks (HiMoR §3.2.3).

    Args:
        xy: [N, T, 2] pixel positions (+0.5 convention).
        visible: [N, T] bool, the tracker's visibility.
        depth: [T, H, W] z-depth (scene units), 0 = unknown.
        K: [T, 3, 3] intrinsics; w2c: [T, 4, 4] world-to-camera.

    Returns:
        ``(xyz [N, T, 3], valid [N, T])``: ``valid`` = visible, inside the image and with
        known depth at the bilinear sample; ``xyz`` is 0 where not valid.
    """
    dtype = depth.dtype if depth.is_floating_point() else torch.float32
    xy = xy.to(dtype)
    z, ok = sample_depth(depth.to(dtype), xy)
    valid = ok & visible.bool()
    world = unproject_points(xy, z, K.to(dtype)[None], w2c.to(dtype)[None])
    world = torch.where(valid[..., None], world, torch.zeros_like(world))
    return world, valid


def fill_gaps(xyz: Tensor, valid: Tensor) -> Tensor:
    """Complete trajectories: linear interpolation in time between valid samples.

    ``xyz`` [N, T, D], ``valid`` [N, T] -> [N, T, D]. Before the first and after the last
    valid sample the nearest valid value is repeated; tracks with no valid sample are
    returned unchanged.
    """
    N, T = valid.shape
    valid = valid.bool()
    t = torch.arange(T, device=xyz.device)[None, :].expand(N, T)
    prev = torch.where(valid, t, torch.full_like(t, -1)).cummax(dim=1).values
    nxt = torch.where(valid, t, torch.full_like(t, T)).flip(1).cummin(dim=1).values.flip(1)
    has_prev = prev >= 0
    has_next = nxt < T
    p = torch.where(has_prev, prev, nxt).clamp(0, T - 1)
    n = torch.where(has_next, nxt, prev).clamp(0, T - 1)
    xp = xyz.gather(1, p[..., None].expand_as(xyz))
    xn = xyz.gather(1, n[..., None].expand_as(xyz))
    span = (n - p).to(xyz.dtype)
    alpha = torch.where(span > 0, (t - p).to(xyz.dtype) / span.clamp_min(1), torch.zeros_like(span))
    filled = xp + alpha[..., None] * (xn - xp)
    any_valid = valid.any(dim=1)[:, None, None]
    return torch.where(any_valid, filled, xyz)


def canonical_frame(valid: Tensor) -> int:
    """HiMoR §3.2.3 canonical frame: the frame with the most valid tracks (first on ties). ``valid`` [N, T]."""
    return int(valid.bool().sum(dim=0).argmax())


def complete_tracks(xyz: Tensor, valid: Tensor, labels: Tensor, bases: Tensor) -> Tensor:
    """Fill the frames where a track is not valid with the motion of its basis.

    A linear gap fill (:func:`fill_gaps`) leaves a point that is hidden while its body
    walks on standing where it was last seen, metres from where it is; its canonical
    position is then wrong too. Here an unseen sample follows its basis from the nearest
    valid frame ``s``: ``x_t = B(t) B(s)^-1 x_s`` (bases map canonical -> frame, so this
    is exact when the track moves rigidly with its basis).

    ``xyz`` [N, T, 3], ``valid`` [N, T], ``labels`` [N], ``bases`` [M, T, 4, 4] -> [N, T, 3];
    valid samples and tracks with no valid sample are returned unchanged.
    """
    N, T = valid.shape
    valid = valid.bool()
    t = torch.arange(T, device=xyz.device)[None, :].expand(N, T)
    prev = torch.where(valid, t, torch.full_like(t, -T)).cummax(dim=1).values
    nxt = torch.where(valid, t, torch.full_like(t, 2 * T)).flip(1).cummin(dim=1).values.flip(1)
    src = torch.where((t - prev) <= (nxt - t), prev, nxt).clamp(0, T - 1)  # nearest valid frame
    B = bases.to(xyz.dtype)[labels]  # [N, T, 4, 4]
    rel = B @ invert(B.gather(1, src[..., None, None].expand(N, T, 4, 4)))  # B(t) B(s)^-1
    x_src = xyz.gather(1, src[..., None].expand(N, T, 3))
    moved = transform_points(rel, x_src)
    fill = ~valid & valid.any(dim=1, keepdim=True)
    return torch.where(fill[..., None], moved, xyz)


def fit_coefficients(positions: Tensor, xyz: Tensor, valid: Tensor, bases: Tensor, canonical: int,
                     k: int = 12) -> Tensor:
    """Basis coefficients [L, M] of nodes at ``positions`` [L, 3]: one-hot on the basis that
    best carries the ``k`` tracks nearest to the node (canonical frame).

    HiMoR §3.2.3 weighs the bases by inverse distance to the cluster centres, so a node
    between two clusters (a knee between thigh and shin, one leg beside the other) blends
    motions that neither part has: on a walking figure the initial motion is then 6 cm off
    where the tracks' own bases are 2 cm off (``docs/motion.md``). The error of basis m on
    track n is the mean over its valid frames of ``|B_m(t) x_n(c) - x_n(t)|``; the
    coefficients stay trainable, so blends can still be learned.

    ``xyz`` [N, T, 3] completed tracks, ``valid`` [N, T], ``bases`` [M, T, 4, 4].
    """
    M = bases.shape[0]
    can = xyz[:, canonical]
    w = valid.to(xyz.dtype)
    err = []
    for m in range(M):
        pred = transform_points(bases[m].to(xyz.dtype)[None], can[:, None])  # [N, T, 3]
        err.append(((pred - xyz).norm(dim=-1) * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0))
    err_t = torch.stack(err, dim=1)  # [N, M]
    near = torch.cdist(positions.to(xyz.dtype), can).topk(min(k, can.shape[0]), dim=1, largest=False).indices
    best = err_t[near].mean(dim=1).argmin(dim=1)  # [L]
    return torch.nn.functional.one_hot(best, M).to(positions.dtype)


def motion_bases(
    xyz: Tensor, valid: Tensor, M: int, canonical: int, seed: int = 0, known: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """SE(3) motion bases from 3D tracks: K-Means, then Procrustes over time (HiMoR §3.2.3).

    The trajectories (gap-filled, e.g. by :func:`fill_gaps`) are clustered as [N, T*3]
    vectors into ``M`` clusters. For cluster m and frame t the basis is the weighted
    Procrustes fit mapping the members' canonical positions onto their positions at t,
    with weights ``known * valid[:, t]``; ``known`` [N] bool says whose canonical position
    can be trusted (default ``valid[:, canonical]``; all tracks once
    :func:`complete_tracks` has carried them there). At frames where fewer than 3 members
    have a positive weight (a blade turned away), the basis is the fit of every track: the
    body's overall motion, exact for a rigid body. A cluster with fewer than 3 members
    gets a translation-only basis.

    Args:
        xyz: [N, T, 3] world trajectories; valid: [N, T] bool.
        M: number of bases (``1 <= M <= N``); canonical: frame index; seed: K-Means seed.

    Returns:
        ``(bases [M, T, 4, 4], labels [N], centres [M, 3])``: ``bases[:, canonical]`` is the
        identity, ``centres`` are the cluster centres in the canonical frame.
    """
    N, T, _ = xyz.shape
    if not 1 <= M <= N:
        raise ValueError(f"motion_bases: need 1 <= M <= N tracks, got M={M} for N={N}")
    result = kmeans(xyz.reshape(N, T * 3), M, seed=seed)
    labels = result.labels
    centres = result.centers.reshape(M, T, 3)[:, canonical]
    trusted = valid[:, canonical].bool() if known is None else known.bool()
    w_all = (trusted[:, None] & valid.bool()).to(xyz.dtype)  # [N, T]
    src_all = xyz[:, canonical]
    # frames where a cluster has fewer than 3 weighted members take the fit of every track
    # (the body's overall motion: exact for a rigid body), not the gap-filled positions
    glob = procrustes(src_all.expand(T, -1, -1), xyz.transpose(0, 1), w_all.T.clamp_min(1e-9))
    bases = []
    for m in range(M):
        members = labels == m
        src = src_all[members]  # [P, 3]
        dst = xyz[members].transpose(0, 1)  # [T, P, 3]
        w = w_all[members].transpose(0, 1)  # [T, P]
        few = (w > 0).sum(dim=1) < 3
        fit = procrustes(src.expand(T, -1, -1), dst, torch.where(few[:, None], torch.ones_like(w), w))
        R = torch.where(few[:, None, None], glob.R, fit.R)
        t = torch.where(few[:, None], glob.t, fit.t)
        if src.shape[0] < 3:
            R = torch.eye(3, dtype=xyz.dtype, device=xyz.device).expand(T, 3, 3)
            t = (dst - src).mean(dim=1)
        B = make_transform(R, t)
        B[canonical] = torch.eye(4, dtype=xyz.dtype, device=xyz.device)
        bases.append(B)
    return torch.stack(bases), labels, centres


def farthest_point_sampling(points: Tensor, n: int, seed: int = 0) -> Tensor:
    """Indices [n] of ``n`` points of ``points`` [P, D] chosen by farthest-point sampling.

    The first point is drawn uniformly with a seeded generator; each next one is the point
    farthest from those chosen. Requires ``1 <= n <= P``.
    """
    P = points.shape[0]
    if not 1 <= n <= P:
        raise ValueError(f"farthest_point_sampling: need 1 <= n <= {P}, got {n}")
    gen = torch.Generator().manual_seed(int(seed))
    idx = torch.empty(n, dtype=torch.long, device=points.device)
    idx[0] = int(torch.randint(P, (1,), generator=gen, device="cpu"))
    d = (points - points[idx[0]]).norm(dim=-1)
    for i in range(1, n):
        j = d.argmax()
        idx[i] = j
        d = torch.minimum(d, (points - points[j]).norm(dim=-1))
    return idx


def idw_coefficients(
    points: Tensor, centres: Tensor, power: float = 2.0, eps: float = 1e-6
) -> Tensor:
    """Inverse-distance weights of ``points`` [P, 3] to ``centres`` [M, 3] -> [P, M], rows sum to 1.

    ``w_m ∝ 1 / (|p - c_m| + eps)^power`` (HiMoR §3.2.3: coefficients of a node for the motion
    bases from its distance to the cluster centres in the canonical frame).
    """
    w = (torch.cdist(points, centres) + eps).pow(-power)
    return w / w.sum(dim=-1, keepdim=True)


def mean_knn_distance(points: Tensor, k: int = 3, chunk_elements: int = 1 << 24) -> Tensor:
    """Mean distance of each of ``points`` [L, 3] to its ``k`` nearest other points -> [L].

    Uses ``min(k, L - 1)`` neighbours; a single point gets 0. Differentiable in ``points``
    (the neighbour choice is not). The neighbour search is chunked to at most
    ``chunk_elements`` distances at a time: a full ``cdist`` of the 47k seed points of a
    160x120 scene alone took 8.9 GB.
    """
    L = points.shape[0]
    kk = min(k, L - 1)
    if kk <= 0:
        return points.new_zeros(L)
    rows = max(1, chunk_elements // max(L, 1))
    nbrs = []
    with torch.no_grad():
        for s in range(0, L, rows):
            d = torch.cdist(points[s : s + rows], points)
            d[torch.arange(d.shape[0], device=d.device), torch.arange(s, s + d.shape[0], device=d.device)] = float("inf")
            nbrs.append(d.topk(kk, dim=1, largest=False).indices)  # [c, kk]
    nbr = torch.cat(nbrs)
    return (points[:, None, :] - points[nbr]).norm(dim=-1).mean(dim=1)


def init_nodes(
    canonical_xyz: Tensor, centres: Tensor, n_nodes: int, seed: int = 0, power: float = 2.0
) -> tuple[Tensor, Tensor, Tensor]:
    """Level-1 nodes of HiMoR (§3.2.3): positions, basis coefficients and radii.

    Args:
        canonical_xyz: [N, 3] canonical-frame 3D track points (valid ones).
        centres: [M, 3] cluster centres in the canonical frame (from :func:`motion_bases`).
        n_nodes: L, clipped to N. seed: first FPS point. power: IDW exponent.

    Returns:
        ``positions [L, 3]`` (farthest-point sample of the track points),
        ``coefficients [L, M]`` (inverse distance weights, rows sum to 1),
        ``radii [L]`` (mean distance to the 3 nearest other nodes; the mean distance to the
        track points when L = 1).
    """
    L = min(n_nodes, canonical_xyz.shape[0])
    positions = canonical_xyz[farthest_point_sampling(canonical_xyz, L, seed)]
    coefficients = idw_coefficients(positions, centres, power)
    if L > 1:
        radii = mean_knn_distance(positions, 3)
    else:
        radii = (canonical_xyz - positions).norm(dim=-1).mean().clamp_min(1e-6)[None]
    return positions, coefficients, radii.clamp_min(1e-6)


def to_canonical(points: Tensor, t: int, track_xyz: Tensor, track_valid: Tensor, labels: Tensor,
                 bases: Tensor) -> Tensor:
    """Carry points seen at frame ``t`` back to the canonical frame with the motion basis of
    their nearest lifted track (HiMoR §3.2.3 bases map canonical -> t, so this applies the
    inverse).

    ``points`` [P, 3] world points at frame t; ``track_xyz`` [N, T, 3] and ``track_valid``
    [N, T] the lifted tracks; ``labels`` [N] their basis; ``bases`` [M, T, 4, 4]. Returns
    [P, 3]; points are returned unchanged when no track is valid at t.
    """
    valid = torch.nonzero(track_valid[:, t])[:, 0]
    if len(valid) == 0 or len(points) == 0:
        return points
    nearest = valid[torch.cdist(points, track_xyz[valid, t]).argmin(dim=1)]
    back = invert(bases[labels[nearest], t])
    return transform_points(back, points)
