"""The dynamic scene: canonical Gaussians (static background, deformed foreground) plus a
motion model (HiMoR tree or global bases), rendered with one camera or with the B frames of
a training step in one rasterizer call (:meth:`DynamicScene.render_frames`).

The foreground channel is rendered as a fourth colour channel, so one rasterization gives
RGB, the foreground mask, expected depth and alpha.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from dynrec.model.gaussians import Gaussians
from dynrec.model.himor import GlobalBases, MotionTree
from dynrec.model.sirenpose import SirenResidual, deform_with_residual
from dynrec.model.skinning import knn
from dynrec.render import rasterize


@dataclass
class Snapshot:
    """The Gaussians of a scene at one frame, in the scene's order (not the render order).

    ``means`` [G, 3] world positions (foreground deformed to the frame), ``quats`` [G, 4]
    unit wxyz rotations, ``log_scales`` [G, 3] log standard deviations, ``opacity_logits``
    [G], ``colors`` [G, 3] RGB in (0, 1), ``foreground`` [G] bool. Raw logits and log
    scales are kept so exporters write the model's values, not re-inverted activations.
    """

    means: Tensor
    quats: Tensor
    log_scales: Tensor
    opacity_logits: Tensor
    colors: Tensor
    foreground: Tensor

    @property
    def scales(self) -> Tensor:
        """[G, 3] standard deviations."""
        return torch.exp(self.log_scales)

    @property
    def opacities(self) -> Tensor:
        """[G] opacities in (0, 1)."""
        return torch.sigmoid(self.opacity_logits)

    def select(self, keep: Tensor) -> Snapshot:
        """The Gaussians where ``keep`` [G] bool is true."""
        return Snapshot(self.means[keep], self.quats[keep], self.log_scales[keep], self.opacity_logits[keep],
                        self.colors[keep], self.foreground[keep])


@dataclass
class Frame:
    """One rendered frame: ``rgb`` [H, W, 3], ``fg`` [H, W, 1], ``depth`` [H, W, 1], ``alpha`` [H, W, 1]
    (B frames rendered together: [B, H, W, ·]); ``info`` the rasterizer's (``means2d`` /
    ``radii`` reshape to [B, G, 2]); ``ids`` [G]: which Gaussian of the scene each rendered
    one is (the rasterizer sees background first, then foreground)."""

    rgb: Tensor
    fg: Tensor
    depth: Tensor
    alpha: Tensor
    info: dict
    ids: Tensor


class DynamicScene(nn.Module):
    """Gaussians + motion. ``motion`` is a :class:`MotionTree` (HiMoR) or :class:`GlobalBases`
    (per-Gaussian coefficients over global bases, the Shape-of-Motion-like ablation).

    ``residual``: the optional SIREN stream of SirenPose (Eq. 1), an SE(3) residual on the
    tree's leaf motions (:class:`~dynrec.model.sirenpose.SirenResidual`, HiMoR only). Every
    deformation (foreground Gaussians, track points, keypoint anchors) then includes it.
    """

    def __init__(self, gaussians: Gaussians, motion: MotionTree | GlobalBases,
                 residual: SirenResidual | None = None):
        super().__init__()
        if residual is not None and not isinstance(motion, MotionTree):
            raise ValueError("DynamicScene: the SIREN residual acts on HiMoR leaf nodes; motion is not a tree")
        self.gaussians = gaussians
        self.motion = motion
        self.residual = residual
        self._skin_idx: Tensor | None = None
        self._point_skin: dict[str, Tensor] = {}

    @property
    def is_tree(self) -> bool:
        return isinstance(self.motion, MotionTree)

    def refresh_skinning(self) -> None:
        """Choose the leaves of every foreground Gaussian and query point again (call after node
        changes, density control, and now and then as the motion changes)."""
        self._skin_idx = None
        self._point_skin = {}

    def _fg_skin(self, means: Tensor) -> tuple[Tensor, Tensor]:
        """Eq. 5 weights on cached neighbour indices (the neighbours change slowly)."""
        cached = self._skin_idx if self._skin_idx is not None and len(self._skin_idx) == len(means) else None
        idx, w = self.motion.skin(means, cached)
        self._skin_idx = idx.detach()
        return idx, w

    def deform_foreground(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """Foreground means [B, Gf, 3] and quats [B, Gf, 4] at frames ``t`` [B]."""
        g = self.gaussians
        fg = g.foreground
        means, quats = g.means[fg], g.quats[fg]
        if self.is_tree:
            return deform_with_residual(self.motion, self.residual, means, quats, t, skin=self._fg_skin(means))
        return self.motion.deform(means, quats, t, coefs=g.motion_coefs[fg])

    def deform_points(self, points: Tensor, t: Tensor, cache: str | None = None) -> Tensor:
        """Canonical points [P, 3] (e.g. track points, keypoint anchors) at frames ``t`` [B] -> [B, P, 3].

        A point moves like a foreground Gaussian at its position: HiMoR skinning on the
        tree (with the SIREN residual when there is one), or the coefficients of its
        nearest foreground Gaussian with global bases. ``cache`` names a set of points
        deformed every step (e.g. ``"tracks"``): their leaves are chosen once and kept
        until :meth:`refresh_skinning`.
        """
        quats = points.new_zeros(points.shape[0], 4)
        quats[:, 0] = 1
        if self.is_tree:
            cached = self._point_skin.get(cache) if cache is not None else None
            if cached is not None and cached.shape[0] != points.shape[0]:
                cached = None
            idx, w = self.motion.skin(points, cached)
            if cache is not None:
                self._point_skin[cache] = idx.detach()
            return deform_with_residual(self.motion, self.residual, points, quats, t, skin=(idx, w))[0]
        g = self.gaussians
        fg_means = g.means[g.foreground]
        nearest = knn(points, fg_means.detach(), 1)[:, 0]
        return self.motion.deform(points, quats, t, coefs=g.motion_coefs[g.foreground][nearest])[0]

    @torch.no_grad()
    def snapshot(self, t: int) -> Snapshot:
        """The Gaussians at frame ``t``: the background as it is, the foreground deformed."""
        g = self.gaussians
        fg = g.foreground
        means, quats = g.means.detach().clone(), g.quats.detach().clone()
        if bool(fg.any()):
            fg_means, fg_quats = self.deform_foreground(torch.tensor([t], device=means.device))
            means[fg], quats[fg] = fg_means[0], fg_quats[0]
        quats = quats / quats.norm(dim=-1, keepdim=True)
        return Snapshot(means, quats, g.log_scales.detach().clone(), g.opacity_logits.detach().clone(),
                        g.colors.detach(), fg.clone())

    def render_features(self, fg_means: Tensor, fg_quats: Tensor, bg_features: Tensor | None, fg_features: Tensor,
                        K: Tensor, w2c: Tensor, width: int, height: int) -> tuple[Tensor, Tensor]:
        """Alpha-composite per-Gaussian features instead of colours: ``bg_features`` [Gb, D]
        (None: render the foreground alone), ``fg_features`` [Gf, D] with the foreground at
        ``fg_means`` [Gf, 3] / ``fg_quats``.

        Returns ``(features [H, W, D], alpha [H, W, 1])`` (features not divided by alpha).
        """
        g = self.gaussians
        fg = g.foreground
        if bg_features is None:
            ids = torch.nonzero(fg)[:, 0]
            means, quats, features = fg_means, fg_quats, fg_features
        else:
            ids = torch.cat([torch.nonzero(~fg)[:, 0], torch.nonzero(fg)[:, 0]])
            means = torch.cat([g.means[~fg], fg_means])
            quats = torch.cat([g.quats[~fg], fg_quats])
            features = torch.cat([bg_features, fg_features])
        out = rasterize(means, quats, g.scales[ids], g.opacities[ids], features.to(means.dtype), w2c, K, width,
                        height)
        return out.rgb, out.alpha

    def _render_order(self) -> tuple[Tensor, Tensor, Tensor]:
        """``order`` [G]: scene index of each rendered Gaussian (background first), and the
        background / foreground masks [G]."""
        fg = self.gaussians.foreground
        return torch.cat([torch.nonzero(~fg)[:, 0], torch.nonzero(fg)[:, 0]]), ~fg, fg

    def render(self, t: int, fg_means: Tensor, fg_quats: Tensor, K: Tensor, w2c: Tensor,
               width: int, height: int) -> Frame:
        """Render frame ``t`` with deformed foreground ``fg_means`` [Gf, 3], ``fg_quats`` [Gf, 4]."""
        g = self.gaussians
        order, bg, fg = self._render_order()
        means = torch.cat([g.means[bg], fg_means])
        quats = torch.cat([g.quats[bg], fg_quats])
        colors = torch.cat([g.colors, fg[:, None].to(g.colors.dtype)], dim=1)[order]
        out = rasterize(means, quats, g.scales[order], g.opacities[order], colors, w2c, K, width, height)
        return Frame(out.rgb[..., :3], out.rgb[..., 3:4], out.depth, out.alpha, out.info, order)

    def render_frames(self, fg_means: Tensor, fg_quats: Tensor, K: Tensor, w2c: Tensor,
                      width: int, height: int) -> Frame:
        """Render B frames in one rasterizer call: foreground ``fg_means`` [B, Gf, 3] and
        ``fg_quats`` [B, Gf, 4] deformed to each frame, cameras ``K`` [B, 3, 3], ``w2c``
        [B, 4, 4] -> a :class:`Frame` of [B, H, W, ·] images; frame ``b`` equals
        :meth:`render` with ``fg_means[b]``, ``K[b]``, ``w2c[b]``."""
        g = self.gaussians
        order, bg, fg = self._render_order()
        B = fg_means.shape[0]
        means = torch.cat([g.means[bg].expand(B, -1, 3), fg_means], dim=1)
        quats = torch.cat([g.quats[bg].expand(B, -1, 4), fg_quats], dim=1)
        colors = torch.cat([g.colors, fg[:, None].to(g.colors.dtype)], dim=1)[order]
        out = rasterize(means, quats, g.scales[order], g.opacities[order], colors, w2c, K, width, height)
        return Frame(out.rgb[..., :3], out.rgb[..., 3:4], out.depth, out.alpha, out.info, order)


@dataclass
class Sequence:
    """Renders of a camera sequence: ``rgb`` [F, H, W, 3] float in [0, 1], ``depth`` [F, H, W]
    expected z-depth (0 where nothing was drawn), ``alpha`` [F, H, W], ``fg`` [F, H, W] the
    foreground channel (all numpy on the CPU)."""

    rgb: np.ndarray
    depth: np.ndarray
    alpha: np.ndarray
    fg: np.ndarray

    @property
    def rgb8(self) -> np.ndarray:
        """[F, H, W, 3] uint8: ``rgb`` clamped and rounded, as every saved render is."""
        return (np.clip(self.rgb, 0, 1) * 255).round().astype(np.uint8)


@torch.no_grad()
def render_sequence(scene: DynamicScene, K: Tensor, w2c: Tensor, ts: list[int], width: int, height: int,
                    chunk: int = 4, progress: Callable[[int, int], None] | None = None) -> Sequence:
    """Render frame ``ts[i]`` with camera ``K[i]`` [3, 3], ``w2c[i]`` [4, 4] for every i,
    ``chunk`` frames per rasterizer call (:meth:`DynamicScene.render_frames`).

    The one renderer of finished scenes: the recon stage's training and held-out renders,
    ``dynrec render`` and the viewer all go through it, so they agree pixel for pixel.
    ``progress(done, total)`` is called after each chunk.
    """
    if len(ts) != len(K) or len(ts) != len(w2c):
        raise ValueError(f"render_sequence: {len(ts)} frames but {len(K)} K and {len(w2c)} w2c")
    parts: list[list[np.ndarray]] = [[], [], [], []]
    for s in range(0, len(ts), chunk):
        frames = ts[s:s + chunk]
        means, quats = scene.deform_foreground(torch.tensor(frames, device=K.device))
        out = scene.render_frames(means, quats, K[s:s + len(frames)], w2c[s:s + len(frames)], width, height)
        for part, value in zip(parts, (out.rgb, out.depth[..., 0], out.alpha[..., 0], out.fg[..., 0])):
            part.append(value.float().cpu().numpy())
        if progress is not None:
            progress(min(s + chunk, len(ts)), len(ts))
    return Sequence(*(np.concatenate(p) for p in parts))
