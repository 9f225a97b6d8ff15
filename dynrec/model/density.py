"""Gaussian density control (3DGS §5.2, with gsplat 1.5.3 ``DefaultStrategy``'s rules and defaults).

Every ``refine_every`` steps: Gaussians whose mean screen-space gradient exceeds
``grow_grad2d`` are cloned when small (max scale ≤ ``grow_scale3d`` · scene scale) or split
in two when large (samples from the Gaussian, scales / 1.6); Gaussians with opacity below
``prune_opacity`` (and, after the first opacity reset, with a scale above ``prune_scale3d``
· scene scale) are removed; every ``reset_every`` steps opacities are clamped to
2 · ``prune_opacity``.

Written here rather than taken from ``gsplat.strategy``: gsplat is the optional ``gpu``
extra and is not installed on CPU machines, and this version also keeps a *single*
``torch.optim.Adam`` (with one named param group per tensor, as :class:`Gaussians` gives)
in step, where gsplat's expects one optimizer per tensor. Gradients are normalised as
gsplat does (pixels · (W/2, H/2) → NDC), so ``grow_grad2d = 2e-4`` means the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dynrec.geometry.se3 import quat_to_matrix
from dynrec.model.gaussians import Gaussians


@dataclass
class DensityConfig:
    """gsplat 1.5.3 ``DefaultStrategy`` defaults; step numbers are optimisation steps."""

    refine_start: int = 500
    refine_stop: int = 15000
    refine_every: int = 100
    reset_every: int = 3000
    grow_grad2d: float = 2e-4
    grow_scale3d: float = 0.01
    prune_opacity: float = 0.005
    prune_scale3d: float = 0.1
    max_gaussians: int = 1_000_000


class DensityControl:
    """Accumulates screen-space gradients between refinements and edits :class:`Gaussians`."""

    def __init__(self, config: DensityConfig, scene_scale: float):
        self.config = config
        self.scene_scale = scene_scale
        self.grad2d: Tensor | None = None
        self.count: Tensor | None = None

    def _reset_stats(self, n: int, like: Tensor) -> None:
        self.grad2d = like.new_zeros(n)
        self.count = like.new_zeros(n)

    @torch.no_grad()
    def accumulate(self, means2d: Tensor, radii: Tensor, ids: Tensor, n: int, width: int, height: int,
                   n_cameras: int = 1) -> None:
        """Add the statistics of one render (one camera or several) after ``backward``.

        ``means2d`` [..., R, 2] (the rasterizer's tensor, whose ``.grad`` is read; [C, R, 2]
        for C cameras, gsplat's [C, 1, R, 2] with per-camera Gaussians also works),
        ``radii`` [..., R, 2] (0 = not drawn), ``ids`` [R]: which of the ``n`` Gaussians each
        rendered one is. Each camera counts on its own: a Gaussian drawn by two cameras adds
        two gradient norms and a count of 2, as gsplat's ``DefaultStrategy._update_state``.
        ``n_cameras``: how many views the loss averaged over. gsplat scales the gradient by
        ``width / 2 * n_cameras`` (and ``height / 2 * n_cameras``) for one batched render
        of ``n_cameras`` views, which undoes the loss's mean over them; views averaged in
        the loss need that factor whether rendered in one call or one by one, or
        ``grow_grad2d`` acts ``n_cameras`` times larger.
        """
        if means2d.grad is None:
            return
        if self.grad2d is None or len(self.grad2d) != n:
            self._reset_stats(n, means2d.detach())
        R = ids.shape[0]
        grad = means2d.grad.reshape(-1, R, 2).clone()
        grad[..., 0] *= width / 2.0 * n_cameras
        grad[..., 1] *= height / 2.0 * n_cameras
        seen = (radii.reshape(-1, R, 2) > 0).all(-1)  # [C, R]
        gs_ids = ids.expand(seen.shape[0], R)[seen]
        norms = grad[seen].norm(dim=-1)
        self.grad2d.index_add_(0, gs_ids, norms)
        self.count.index_add_(0, gs_ids, torch.ones_like(norms))

    def due(self, step: int) -> bool:
        """Whether :meth:`refine` should run after optimisation step ``step`` (1-based)."""
        c = self.config
        return c.refine_start < step <= c.refine_stop and step % c.refine_every == 0

    @torch.no_grad()
    def refine(self, gaussians: Gaussians, optimizer: torch.optim.Optimizer, step: int,
               generator: torch.Generator | None = None) -> dict[str, int]:
        """Clone, split, prune (and reset opacities when due); returns the counts."""
        c = self.config
        n = len(gaussians)
        counts = {"cloned": 0, "split": 0, "pruned": 0}
        if self.grad2d is not None and len(self.grad2d) == n:
            mean_grad = self.grad2d / self.count.clamp_min(1)
            high = mean_grad > c.grow_grad2d
            small = gaussians.scales.max(-1).values <= c.grow_scale3d * self.scene_scale
            room = max(c.max_gaussians - n, 0)
            clone = _limit(high & small, room)
            split = _limit(high & ~small, max(room - int(clone.sum()), 0))
            counts["cloned"], counts["split"] = int(clone.sum()), int(split.sum())
            _clone(gaussians, optimizer, clone)
            _split(gaussians, optimizer, torch.cat([split, split.new_zeros(counts["cloned"])]), generator)
        too_faint = gaussians.opacities < c.prune_opacity
        if step > c.reset_every:
            too_faint |= gaussians.scales.max(-1).values > c.prune_scale3d * self.scene_scale
        counts["pruned"] = int(too_faint.sum())
        _edit(gaussians, optimizer, ~too_faint, None)
        if step % c.reset_every == 0:
            _reset_opacity(gaussians, optimizer, 2.0 * c.prune_opacity)
        self.grad2d = self.count = None
        return counts


def _limit(mask: Tensor, room: int) -> Tensor:
    """``mask`` with at most ``room`` True entries (the first ones kept)."""
    if int(mask.sum()) <= room:
        return mask
    keep = torch.nonzero(mask)[:room, 0]
    out = torch.zeros_like(mask)
    out[keep] = True
    return out


def _edit(gaussians: Gaussians, optimizer: torch.optim.Optimizer, keep: Tensor | None,
          new: dict[str, Tensor] | None) -> None:
    """Keep rows ``keep`` [G] bool (all when None), then append rows ``new`` (every key) to
    every tensor of ``gaussians.params``; Adam moments follow (zeros for new rows)."""
    for name, old in list(gaussians.params.items()):
        value = old.data if keep is None else old.data[keep]
        if new is not None:
            value = torch.cat([value, new[name].to(value.dtype)])
        param = torch.nn.Parameter(value, requires_grad=old.requires_grad)
        for group in optimizer.param_groups:
            if group["params"][0] is old:
                state = optimizer.state.pop(old, {})
                for key, moment in state.items():
                    if key == "step" or moment.shape[:1] != old.shape[:1]:
                        continue
                    moment = moment if keep is None else moment[keep]
                    if new is not None:
                        moment = torch.cat([moment, moment.new_zeros((len(new[name]), *moment.shape[1:]))])
                    state[key] = moment
                group["params"][0] = param
                optimizer.state[param] = state
        gaussians.params[name] = param


def _clone(gaussians: Gaussians, optimizer: torch.optim.Optimizer, mask: Tensor) -> None:
    """Duplicate the Gaussians in ``mask`` [G] unchanged."""
    if mask.any():
        _edit(gaussians, optimizer, None, {k: p.data[mask] for k, p in gaussians.params.items()})


def _split(gaussians: Gaussians, optimizer: torch.optim.Optimizer, mask: Tensor,
           generator: torch.Generator | None) -> None:
    """Replace each Gaussian in ``mask`` [G] by two samples from it with scales / 1.6."""
    if not mask.any():
        return
    p = {k: v.data[mask] for k, v in gaussians.params.items()}
    scales = torch.exp(p["scales"])
    rot = quat_to_matrix(torch.nn.functional.normalize(p["quats"], dim=-1))
    gen_device = generator.device if generator is not None else torch.device("cpu")
    noise = torch.randn((2, *scales.shape), generator=generator, dtype=scales.dtype, device=gen_device)
    noise = noise.to(scales.device)  # a CPU generator stays reproducible whatever the device
    offsets = torch.einsum("nij,bnj->bni", rot, scales * noise)
    new = {k: torch.cat([v, v]) for k, v in p.items()}
    new["means"] = (p["means"][None] + offsets).reshape(-1, 3)
    new["scales"] = torch.log(scales / 1.6).repeat(2, 1)
    _edit(gaussians, optimizer, ~mask, new)


def _reset_opacity(gaussians: Gaussians, optimizer: torch.optim.Optimizer, value: float) -> None:
    """Clamp opacities to ``value`` and zero their Adam moments (3DGS's opacity reset)."""
    logits = gaussians.params["opacities"]
    cap = torch.logit(torch.tensor(value, dtype=logits.dtype))
    logits.data.clamp_(max=cap)
    for key, moment in optimizer.state.get(logits, {}).items():
        if key != "step":
            moment.zero_()
