"""SirenPose (SirenPose §III) in the HiMoR model: keypoint anchors, L_pos / L_geo, the SIREN stream.

* **Keypoint anchors**: keypoint j gets a learnable canonical 3D anchor ``a_j``, lifted
  from the frame where it is most confident (:func:`lift_anchors`) and mapped to the
  canonical frame by inverting the motion at that frame (:func:`canonicalise`). At frame t
  it is deformed like a foreground Gaussian (``scene.deform_points``) and projected with
  camera t: ``k̂_j(t)`` (:class:`KeypointAnchors`).
* **Losses** (Eq. 5-7): :func:`pos_loss`, :func:`geo_loss`, :func:`sirenpose_loss`, on
  image coordinates divided by ``max(W, H)`` (:func:`normalise_xy`). The total objective is
  Eq. 8, ``L_recon + lambda_sp * (L_pos + lambda_geo * L_geo)``.
* **SIREN stream** (Eq. 1-4): :class:`Siren` (Sitzmann et al.'s initialisation) and
  :class:`SirenResidual`, an SE(3) residual on each leaf node's motion, composed by
  :func:`apply_residual` and used by :func:`deform_with_residual`.

``docs/sirenpose.md`` maps each equation to the code and explains the choices (scale of
the image coordinates, periodicity of the sine, the residual's frame).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Protocol

import torch
from torch import Tensor, nn

from dynrec.geometry.lift import project_points, sample_depth, unproject_points
from dynrec.geometry.se3 import make_transform, so3_exp
from dynrec.model.himor import MotionTree
from dynrec.model.skinning import deform as skin_deform

#: ``deform_fn(points [P, 3], ts [B]) -> [B, P, 3]``: canonical points at frames ``ts``.
DeformFn = Callable[[Tensor, Tensor], Tensor]


class HasDeformPoints(Protocol):
    """Anything with ``deform_points(points [P, 3], ts [B]) -> [B, P, 3]`` (a ``DynamicScene``)."""

    def deform_points(self, points: Tensor, t: Tensor) -> Tensor: ...


def as_deform_fn(deform: DeformFn | HasDeformPoints) -> DeformFn:
    """A scene's ``deform_points`` or the callable itself."""
    fn = getattr(deform, "deform_points", None)
    return fn if fn is not None else deform  # type: ignore[return-value]


# --------------------------------------------------------------------------- anchors


def lift_anchors(
    kp_xy: Tensor,
    conf: Tensor,
    depth: Tensor,
    K: Tensor,
    w2c: Tensor,
    prefer_frame: int | None = None,
) -> tuple[Tensor, Tensor]:
    """World positions of the keypoints at the frame where each is most confident.

    Args:
        kp_xy: [T, J, 2] pixels (+0.5 centres); conf: [T, J] in [0, 1].
        depth: [T, H, W] z-depth, 0 = unknown; K: [T, 3, 3]; w2c: [T, 4, 4].
        prefer_frame: ties in confidence go to the frame nearest this one (e.g. the lift's
            canonical frame, where the motion to invert is the identity); else the first.

    Returns:
        ``(anchors_world [J, 3], frame [J] long)``. Frame candidates need ``conf > 0`` and a
        valid depth sample (:func:`~dynrec.geometry.lift.sample_depth`: known, inside the
        image, not on a depth edge). A keypoint with no candidate uses its most confident
        frame and the median known depth of that frame (its anchor is then only a start
        for ``L_pos`` to correct).
    """
    T, J = conf.shape
    dtype = kp_xy.dtype if kp_xy.is_floating_point() else torch.float32
    z, ok = sample_depth(depth.to(dtype), kp_xy.to(dtype).transpose(0, 1))  # [J, T]
    c = conf.to(dtype).T  # [J, T]
    cand = ok & (c > 0)
    score = torch.where(cand, c, torch.full_like(c, -1.0))
    best = score.amax(dim=1, keepdim=True)
    t = torch.arange(T, device=conf.device)
    dist = (t - prefer_frame).abs() if prefer_frame is not None else t
    tied = cand & (score >= best - 1e-6)
    frame = torch.where(tied, dist[None].to(dtype), torch.full_like(c, float("inf"))).argmin(1)
    has = cand.any(dim=1)
    frame = torch.where(has, frame, c.argmax(dim=1))
    zj = z[torch.arange(J, device=z.device), frame]
    if not bool(has.all()):
        known = depth > 0
        if not bool(known.any()):
            raise ValueError("lift_anchors: the depth maps have no known value")
        glob = depth[known].median().to(dtype)
        for j in torch.nonzero(~has).flatten().tolist():
            d = depth[frame[j]]
            zj[j] = d[d > 0].median().to(dtype) if bool((d > 0).any()) else glob
    xy = kp_xy.to(dtype)[frame, torch.arange(J, device=kp_xy.device)]
    world = unproject_points(xy, zj, K.to(dtype)[frame], w2c.to(dtype)[frame])
    return world, frame


def track_guess(points: Tensor, frame: Tensor, trajectories: Tensor, canonical: Tensor) -> Tensor:
    """Initial canonical guesses [P, 3] from the nearest tracked point at each point's frame.

    ``points`` [P, 3] world positions at frames ``frame`` [P]; ``trajectories`` [N, T, 3] and
    ``canonical`` [N, 3] of lifted tracks (or Gaussians): the guess is the canonical
    position of the nearest trajectory at that frame plus the (world) offset to it (the
    track's rotation is ignored: :func:`canonicalise` refines the guess).
    """
    at = trajectories[:, frame].transpose(0, 1)  # [P, N, 3]
    nearest = (at - points[:, None]).norm(dim=-1).argmin(dim=1)
    idx = torch.arange(points.shape[0], device=points.device)
    return canonical[nearest] + points - at[idx, nearest]


def canonicalise(
    points: Tensor,
    frame: Tensor,
    deform: DeformFn | HasDeformPoints,
    x0: Tensor | None = None,
    iters: int = 10,
    tol: float = 1e-7,
) -> tuple[Tensor, Tensor]:
    """Invert the motion: canonical ``x`` with ``deform(x, frame) = points``, by Newton's method.

    The skinned motion of a point (HiMoR Eq. 4-5) is the dual-quaternion blend ``T_x(t)`` of
    its nearest leaves with weights that depend on ``x``; it is invertible where it is
    locally a diffeomorphism. Each step solves ``J(x) dx = p - deform(x, t)`` with the 3x3
    Jacobian ``J`` from autograd (a point's motion depends only on its own position, so
    three backward passes give all Jacobians). A rigidly moving region (all nearest leaves
    with the same motion) has ``J = R`` and is inverted exactly in one step.

    Args:
        points: [P, 3] world points, ``points[p]`` observed at frame ``frame[p]`` ([P] long).
        deform: ``deform(points [P, 3], ts [U]) -> [U, P, 3]`` or a scene (``deform_points``).
        x0: [P, 3] initial guesses (default ``points``; see :func:`track_guess`).
        iters: Newton steps at most; tol: stop when every residual is below it.

    Returns:
        ``(canonical [P, 3], residual [P])``: the iterate with the smallest residual
        ``|deform(x, frame) - points|`` per point (detached; no graph to the model).
    """
    fn = as_deform_fn(deform)
    uniq, inv = torch.unique(frame, return_inverse=True)
    rows = torch.arange(points.shape[0], device=points.device)
    p = points.detach()
    x = (x0 if x0 is not None else p).detach().clone()
    best_x, best_r = x.clone(), torch.full_like(p[:, 0], float("inf"))
    for _ in range(iters + 1):
        with torch.enable_grad():
            xr = x.clone().requires_grad_(True)
            y = fn(xr, uniq)[inv, rows]  # [P, 3]
            jac = torch.stack(
                [torch.autograd.grad(y[:, c].sum(), xr, retain_graph=c < 2)[0] for c in range(3)],
                dim=1,
            )  # [P, 3 (out), 3 (in)]
        r = p - y.detach()
        rn = r.norm(dim=-1)
        better = rn < best_r
        best_x = torch.where(better[:, None], x, best_x)
        best_r = torch.where(better, rn, best_r)
        if bool((best_r < tol).all()):
            break
        x = x + (torch.linalg.pinv(jac) @ r[..., None])[..., 0]
    return best_x, best_r


class KeypointAnchors(nn.Module):
    """Learnable canonical keypoint anchors ``a_j`` [J, 3] (SirenPose §III-C, our ``k̂_j(t)``).

    ``k̂_j(t) = π_t(deform(a_j, t))``: the anchor moves like a foreground Gaussian at its
    position (same skinning) and is projected with camera t.
    """

    def __init__(self, canonical: Tensor) -> None:
        super().__init__()
        self.canonical = nn.Parameter(canonical.detach().clone())

    @classmethod
    def from_keypoints(
        cls,
        kp_xy: Tensor,
        conf: Tensor,
        depth: Tensor,
        K: Tensor,
        w2c: Tensor,
        deform: DeformFn | HasDeformPoints,
        prefer_frame: int | None = None,
        x0_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    ) -> KeypointAnchors:
        """Lift (:func:`lift_anchors`) and canonicalise (:func:`canonicalise`) the anchors.

        ``x0_fn(world [J, 3], frame [J]) -> [J, 3]`` gives initial guesses (e.g. a
        :func:`track_guess` closure); default: the world positions themselves.
        """
        world, frame = lift_anchors(kp_xy, conf, depth, K, w2c, prefer_frame)
        x0 = x0_fn(world, frame) if x0_fn is not None else None
        canonical, _ = canonicalise(world, frame, deform, x0)
        return cls(canonical)

    @property
    def num_keypoints(self) -> int:
        return self.canonical.shape[0]

    def positions(self, deform: DeformFn | HasDeformPoints, ts: Tensor) -> Tensor:
        """World positions [B, J, 3] of the anchors at frames ``ts`` [B]."""
        return as_deform_fn(deform)(self.canonical, ts)

    def project(
        self, deform: DeformFn | HasDeformPoints, ts: Tensor, K: Tensor, w2c: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``k̂(t)``: pixels ``xy`` [B, J, 2] and camera z [B, J] with ``K`` [B, 3, 3], ``w2c`` [B, 4, 4]."""
        return project_points(self.positions(deform, ts), K[:, None], w2c[:, None])

    def param_group(self, lr: float) -> dict:
        """Adam parameter group ``{"params", "lr", "name": "kp_anchors"}``."""
        return {"params": [self.canonical], "lr": lr, "name": "kp_anchors"}


# --------------------------------------------------------------------------- losses


def normalise_xy(xy: Tensor, width: int, height: int) -> Tensor:
    """Image coordinates for the keypoint losses: pixels / ``max(W, H)`` (isotropic, [0, 1]).

    The same scale as the 2D track loss; only differences enter the losses, so no centring.
    """
    return xy / float(max(width, height))


def _weighted_mean(x: Tensor, w: Tensor) -> Tensor:
    """``sum(w x) / sum(w)`` (0 when every weight is 0)."""
    return (w * x).sum() / w.sum().clamp_min(1e-12)


def _weights(conf: Tensor, visible: Tensor | None) -> Tensor:
    """Per keypoint weight ``c * v`` [B, J]."""
    return conf if visible is None else conf * visible.to(conf.dtype)


def pos_loss(
    pred: Tensor,
    target: Tensor,
    conf: Tensor,
    visible: Tensor | None,
    width: int,
    height: int,
) -> Tensor:
    """SirenPose Eq. 5: ``L_pos = sum c_j(t) |k̂_j(t) - k_j(t)|^2`` as a weighted mean.

    ``pred``, ``target`` [B, J, 2] pixels; ``conf`` [B, J]; ``visible`` [B, J] bool or None
    (e.g. observed and in front of the camera). Coordinates are normalised
    (:func:`normalise_xy`); the sum is divided by the sum of the weights ``c * v`` so the
    loss does not grow with J or B.
    """
    d = normalise_xy(pred - target, width, height).square().sum(dim=-1)
    return _weighted_mean(d, _weights(conf, visible))


def geo_loss(
    pred: Tensor,
    target: Tensor,
    conf: Tensor,
    visible: Tensor | None,
    skeleton: Tensor,
    width: int,
    height: int,
    w0: float = 30.0,
    freqs: Sequence[float] = (1.0,),
    quadrature: bool = False,
) -> Tensor:
    """SirenPose Eq. 6: ``L_geo = sum_(i,j) |sin(w (k̂_i - k̂_j)) - sin(w (k_i - k_j))|^2 / w^2``.

    Args:
        pred, target: [B, J, 2] pixels (normalised here, :func:`normalise_xy`).
        conf: [B, J]; visible: [B, J] bool or None. An edge's weight is the product of its
            endpoints' ``c * v``; the loss is the weighted mean over edges and frames.
        skeleton: [E, 2] keypoint index pairs ``(i, j)``.
        w0: base frequency (rad per unit of normalised coordinate; the paper's 30).
        freqs: multipliers of ``w0``; the per-frequency terms are averaged. Lower
            frequencies widen the basin of attraction (see ``docs/sirenpose.md``).
        quadrature: also compare cosines, i.e. the phase ``exp(i w Δ)``: the term becomes
            ``4 sin^2(w (Δ̂ - Δ) / 2) / w^2``, whose basin is ``|Δ̂ - Δ| < π / w`` for every
            edge; the paper's sine-only term is attracted to the truth only while
            ``w Δ̂`` stays on the monotone branch of the sine that holds ``w Δ``.

    Each term is divided by ``w^2`` so that near the truth it is ``≈ |Δ̂ - Δ|^2 cos^2(w Δ)``
    (same units as ``L_pos``, independent of ``w``): for one frequency this is a constant
    factor (``lambda_geo`` of the paper = ours / w0^2); for several it lets the low ones
    dominate far from the truth instead of the highest.
    """
    i, j = skeleton[:, 0].long(), skeleton[:, 1].long()
    p = normalise_xy(pred, width, height)
    q = normalise_xy(target, width, height)
    dp = p[:, i] - p[:, j]  # [B, E, 2]
    dq = q[:, i] - q[:, j]
    terms = []
    for f in freqs:
        w = w0 * float(f)
        e = (torch.sin(w * dp) - torch.sin(w * dq)).square()
        if quadrature:
            e = e + (torch.cos(w * dp) - torch.cos(w * dq)).square()
        terms.append(e.sum(dim=-1) / w**2)
    per_edge = torch.stack(terms).mean(dim=0)  # [B, E]
    wk = _weights(conf, visible)
    return _weighted_mean(per_edge, wk[:, i] * wk[:, j])


def sirenpose_loss(
    pred: Tensor,
    target: Tensor,
    conf: Tensor,
    visible: Tensor | None,
    skeleton: Tensor,
    width: int,
    height: int,
    lambda_geo: float = 1.0,
    w0: float = 30.0,
    freqs: Sequence[float] = (1.0,),
    quadrature: bool = False,
) -> tuple[Tensor, dict[str, Tensor]]:
    """SirenPose Eq. 7: ``L_pos + lambda_geo * L_geo`` -> ``(loss, {"kp_pos", "kp_geo"} detached)``.

    Shapes as :func:`pos_loss` / :func:`geo_loss`; ``L_geo`` is skipped when
    ``lambda_geo == 0``. Eq. 8 adds ``lambda_sp`` times this to the reconstruction loss.
    """
    lp = pos_loss(pred, target, conf, visible, width, height)
    values = {"kp_pos": lp.detach()}
    if lambda_geo == 0:
        return lp, values
    lg = geo_loss(pred, target, conf, visible, skeleton, width, height, w0, freqs, quadrature)
    values["kp_geo"] = lg.detach()
    return lp + lambda_geo * lg, values


# --------------------------------------------------------------------------- SIREN


class Siren(nn.Module):
    """Sine-activation MLP (SirenPose Eq. 2; Sitzmann et al. 2020).

    ``h^l = sin(w0 (W^l h^{l-1} + b^l))`` for ``layers`` sine layers of width ``hidden``,
    then a linear output layer. Initialisation (Sitzmann et al. §3.2, their code):
    first layer ``W, b ~ U(-1/n, 1/n)`` (Eq. 3), hidden layers
    ``W, b ~ U(-sqrt(6/n)/w0, sqrt(6/n)/w0)`` (Eq. 4 *with* the ``1/w0`` that SirenPose's
    Eq. 4 omits: without it the pre-activations ``w0 W h`` would have std ≈ w0, not 1).
    For inputs in [-1, 1] the hidden pre-activations are then ≈ N(0, 1) and the activations
    ≈ arcsine-distributed at every depth. The output layer gets the hidden range times
    ``out_scale`` (0 gives an exactly zero output at initialisation).
    """

    def __init__(
        self,
        in_features: int,
        hidden: int,
        layers: int,
        out_features: int,
        w0: float = 30.0,
        out_scale: float = 1e-2,
    ) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"Siren: need at least one sine layer, got {layers}")
        self.w0 = float(w0)
        sizes = [in_features] + [hidden] * layers
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.out = nn.Linear(hidden, out_features)
        with torch.no_grad():
            for k, lin in enumerate(self.hidden):
                n = lin.in_features
                bound = 1.0 / n if k == 0 else math.sqrt(6.0 / n) / self.w0
                lin.weight.uniform_(-bound, bound)
                lin.bias.uniform_(-bound, bound)
            bound = out_scale * math.sqrt(6.0 / hidden) / self.w0
            self.out.weight.uniform_(-bound, bound)
            self.out.bias.uniform_(-bound, bound)

    def activations(self, x: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Per sine layer ``(pre = w0 (W h + b), post = sin(pre))``, each [..., hidden]."""
        out = []
        h = x
        for lin in self.hidden:
            z = self.w0 * lin(h)
            h = torch.sin(z)
            out.append((z, h))
        return out

    def forward(self, x: Tensor) -> Tensor:
        """``x`` [..., in_features] (coordinates in [-1, 1]) -> [..., out_features]."""
        h = x
        for lin in self.hidden:
            h = torch.sin(self.w0 * lin(h))
        return self.out(h)


class SirenResidual(nn.Module):
    """The high-frequency stream of SirenPose Eq. 1 as an SE(3) residual on leaf-node motion.

    ``g(x_l, t)`` = :class:`Siren` of the node's canonical position (normalised by the box
    ``center ± extent`` at construction) and time (``2 t / (T - 1) - 1``), with 6 outputs
    ``(ω, v)``: a rotation vector (radians) and a translation in units of ``extent``. The
    residual of node l at t, in its canonical frame and centred on it, is
    ``x -> exp(λ ω) (x - x_l) + x_l + λ extent v`` (identity at ``λ = 0``);
    :func:`apply_residual` composes it *before* the node's motion: ``G'_l = G_l Δ_l``.
    Node l's centre then moves to ``G_l x_l + λ R_l extent v``: Eq. 1's
    ``f_low + λ f_high`` in the node's frame.
    """

    def __init__(
        self,
        num_frames: int,
        center: Tensor,
        extent: float,
        hidden: int = 64,
        layers: int = 3,
        w0: float = 30.0,
        lam: float = 1.0,
        out_scale: float = 1e-2,
    ) -> None:
        super().__init__()
        self.num_frames = int(num_frames)
        self.lam = float(lam)
        # Buffers, so that a checkpoint restores the same input normalisation.
        self.register_buffer("center", center.detach().clone().reshape(3))
        self.register_buffer("extent", torch.as_tensor(float(extent), dtype=center.dtype))
        self.siren = Siren(4, hidden, layers, 6, w0, out_scale).to(center.device, center.dtype)

    def _inputs(self, positions: Tensor, t: Tensor) -> Tensor:
        """[B, L, 4]: normalised canonical positions and time."""
        x = (positions - self.center) / self.extent  # [L, 3]
        tt = torch.as_tensor(t, device=positions.device).reshape(-1).to(positions.dtype)
        tn = 2 * tt / max(self.num_frames - 1, 1) - 1  # [B]
        B, L = tn.shape[0], x.shape[0]
        return torch.cat([x[None].expand(B, L, 3), tn[:, None, None].expand(B, L, 1)], dim=-1)

    def tangent(self, positions: Tensor, t: Tensor) -> Tensor:
        """``λ (ω, extent v)`` [B, L, 6] for leaf positions [L, 3] at frames ``t`` [B]."""
        g = self.siren(self._inputs(positions, t))
        return self.lam * torch.cat([g[..., :3], self.extent * g[..., 3:]], dim=-1)

    def forward(self, positions: Tensor, t: Tensor) -> Tensor:
        """Residual transforms [B, L, 4, 4] (canonical frame, centred on each node)."""
        xi = self.tangent(positions, t)
        R = so3_exp(xi[..., :3])
        x = positions[None].expand(R.shape[:-2] + (3,))
        trans = x - (R @ x[..., None])[..., 0] + xi[..., 3:]
        return make_transform(R, trans)

    def param_group(self, lr: float) -> dict:
        """Adam parameter group ``{"params", "lr", "name": "siren"}``."""
        return {"params": list(self.siren.parameters()), "lr": lr, "name": "siren"}


def apply_residual(leaf_T: Tensor, residual: Tensor) -> Tensor:
    """``G'_l(t) = G_l(t) Δ_l(t)``: leaf motions [B, L, 4, 4] with canonical-frame residuals [B, L, 4, 4]."""
    return leaf_T @ residual


def residual_positions(tree: MotionTree) -> Tensor:
    """[L, 3]: where the residual of each leaf is evaluated and centred: the canonical
    position of its level-1 ancestor (the leaf itself while the tree has one level).

    Evaluating the SIREN at the level-1 nodes keeps its inputs fixed when HiMoR adds level 2
    halfway through: the new leaves inherit their parent's residual, whereas the SIREN at
    the new leaves' own positions would give unrelated values (a high-frequency function of
    position does not interpolate between the nodes it was trained on).
    """
    idx = torch.arange(tree.num_leaves, device=tree.leaf_positions().device)
    for level in reversed(list(tree.levels)[1:]):
        idx = level.parent[idx]
    return tree.levels[0].positions[idx]


def leaf_transforms_with_residual(
    tree: MotionTree, residual: SirenResidual | None, t: Tensor
) -> Tensor:
    """Leaf motions [B, L, 4, 4] at frames ``t`` [B], with the SIREN residual when given
    (evaluated at :func:`residual_positions`)."""
    leaf = tree.leaf_transforms(t)
    if residual is None:
        return leaf
    return apply_residual(leaf, residual(residual_positions(tree), t))


def deform_with_residual(
    tree: MotionTree,
    residual: SirenResidual | None,
    means: Tensor,
    quats: Tensor,
    t: Tensor,
    skin: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """:meth:`MotionTree.deform` with the residual on the leaves (``f_low + λ f_high``, Eq. 1).

    ``means`` [G, 3], ``quats`` [G, 4], ``t`` [B]; ``skin`` = cached ``(idx, w)``.
    Returns ``(means_t [B, G, 3], quats_t [B, G, 4])``.
    """
    idx, w = skin if skin is not None else tree.skin(means)
    return skin_deform(means, quats, idx, w, leaf_transforms_with_residual(tree, residual, t))


def residual_deform_fn(tree: MotionTree, residual: SirenResidual | None) -> DeformFn:
    """A :data:`DeformFn` for points (e.g. keypoint anchors) under the tree plus residual."""

    def fn(points: Tensor, t: Tensor) -> Tensor:
        quats = points.new_zeros(points.shape[0], 4)
        quats[:, 0] = 1
        return deform_with_residual(tree, residual, points, quats, t)[0]

    return fn


__all__ = [
    "DeformFn",
    "KeypointAnchors",
    "Siren",
    "SirenResidual",
    "apply_residual",
    "as_deform_fn",
    "canonicalise",
    "deform_with_residual",
    "geo_loss",
    "leaf_transforms_with_residual",
    "lift_anchors",
    "normalise_xy",
    "pos_loss",
    "residual_deform_fn",
    "residual_positions",
    "sirenpose_loss",
    "track_guess",
]
