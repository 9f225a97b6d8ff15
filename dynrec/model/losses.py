"""Loss terms of HiMoR (Eq. 7, Appendix B.1) with the paper's weights as defaults.

Images are channels-last, as the renderer returns them: ``[..., H, W, C]``. Every term is a
small function returning a scalar; :func:`weighted_sum` evaluates only the terms whose
weight is non-zero, so switching a term off (weight 0) also skips its computation.

Choices where the paper leaves room (following Shape of Motion, HiMoR's [48]):

* D-SSIM is ``1 - SSIM`` (3DGS convention), SSIM with an 11-pixel Gaussian window, σ = 1.5,
  zero padding ("same" size), C1 = 0.01², C2 = 0.03² (images in [0, 1]).
* Depth and depth-gradient terms compare disparities ``1/z`` with L1 and drop the worst
  2% / 5% of the pixels (Shape of Motion's trainer): the rendered expected depth blends two
  surfaces at depth edges, and squared metric depth errors there would dominate Eq. 7.
* Track-2d MSE is on pixel coordinates divided by ``max(W, H)`` (isotropic normalisation).
* Rigidity (Eq. 8) uses the absolute change of distance, ``| |x_i,t - x_j,t| -
  |x_i,t+Δ - x_j,t+Δ| |``, plus ``|T_j,t^-1 x_i,t - T_j,t+Δ^-1 x_i,t+Δ|``, averaged over
  nodes, neighbours and all frame pairs of the batch.
* Accelerations are mean norms of second finite differences in time; the scale
  regulariser is Shape of Motion's variance of each Gaussian's three scales.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dynrec.geometry.lift import mean_knn_distance
from dynrec.geometry.se3 import invert, transform_points


@dataclass
class LossWeights:
    """HiMoR Appendix B.1 weights (0 switches a term off), except the motion regularisers.

    Rigidity and track acceleration are distances in scene units (metres here) and are set
    to a tenth of B.1's: at B.1's values they outweigh the track terms about 50 to 1 and
    drag an exact initial motion of a walking figure from 1.7 to 3.4 cm EPE in 150 steps;
    at a tenth it ends at 2.2 cm, at a hundredth at 2.7 cm (``docs/motion.md``).

    Rigidity per level: ``rigid_level1`` while the tree has one level; once level 2 is on,
    ``rigid_level1_with_level2`` for level 1 and ``rigid_level2`` for level 2
    (see :meth:`rigidity_weights`).
    """

    rgb_mse: float = 0.8
    rgb_dssim: float = 0.2
    rgb_lpips: float = 0.01
    mask: float = 1.0
    depth: float = 0.5
    depth_grad: float = 1.0
    track_2d: float = 2.0
    track_depth: float = 0.1
    rigid_level1: float = 0.05
    rigid_level1_with_level2: float = 0.25
    rigid_level2: float = 0.05
    accel_bases: float = 0.1
    accel_tracks: float = 0.2
    scale: float = 0.01
    node_radius: float = 1e-4

    def rigidity_weights(self, num_levels: int) -> list[float]:
        """Per-level rigidity weights for a tree with ``num_levels`` levels (deeper levels as level 2)."""
        if num_levels <= 1:
            return [self.rigid_level1][:num_levels]
        return [self.rigid_level1_with_level2] + [self.rigid_level2] * (num_levels - 1)


def weighted_sum(
    terms: Mapping[str, Callable[[], Tensor]], weights: LossWeights | Mapping[str, float]
) -> tuple[Tensor | None, dict[str, Tensor]]:
    """``sum_k w_k term_k()`` over terms with non-zero weight; zero-weight terms are not called.

    ``terms`` maps a weight name (a :class:`LossWeights` field, or any key of a mapping) to a
    zero-argument callable. Returns ``(total or None when nothing ran, {name: detached
    unweighted value})``.
    """
    table = asdict(weights) if isinstance(weights, LossWeights) else dict(weights)
    total: Tensor | None = None
    values: dict[str, Tensor] = {}
    for name, fn in terms.items():
        w = table[name]
        if w == 0:
            continue
        v = fn()
        values[name] = v.detach()
        total = w * v if total is None else total + w * v
    return total, values


def _masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``x`` over ``mask`` (broadcast to ``x``); plain mean when ``mask`` is None; 0 if empty."""
    if mask is None:
        return x.mean()
    m = mask.to(x.dtype).expand_as(x)
    return (x * m).sum() / m.sum().clamp_min(1.0)


def mse(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared error over ``mask``. ``pred``, ``target`` [...]; ``mask`` broadcastable [...]."""
    return _masked_mean((pred - target).square(), mask)


def _gaussian_kernel(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Normalised 1D Gaussian [size]."""
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2.0
    g = torch.exp(-x.square() / (2.0 * sigma**2))
    return g / g.sum()


def ssim_map(pred: Tensor, target: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Differentiable per-pixel SSIM (Wang et al. 2004), same size as the input.

    ``pred``, ``target`` [..., H, W, C] in [0, 1] -> [..., H, W, C]; Gaussian window
    ``window`` x ``window`` with std ``sigma``, zero padding, C1 = 0.01², C2 = 0.03².
    """
    shape = pred.shape
    H, W, C = shape[-3:]
    x = pred.reshape(-1, H, W, C).permute(0, 3, 1, 2)
    y = target.reshape(-1, H, W, C).permute(0, 3, 1, 2)
    g = _gaussian_kernel(window, sigma, x.dtype, x.device)
    kx = g.view(1, 1, 1, window).expand(C, 1, 1, window)
    ky = g.view(1, 1, window, 1).expand(C, 1, window, 1)
    pad = window // 2

    def blur(z: Tensor) -> Tensor:
        z = F.conv2d(z, kx, padding=(0, pad), groups=C)
        return F.conv2d(z, ky, padding=(pad, 0), groups=C)

    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.permute(0, 2, 3, 1).reshape(shape)


def dssim(pred: Tensor, target: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """D-SSIM = ``1 - mean SSIM``. ``pred``, ``target`` [..., H, W, C] in [0, 1] -> scalar."""
    return 1.0 - ssim_map(pred, target, window, sigma).mean()


def rgb_loss(
    pred: Tensor,
    target: Tensor,
    weights: LossWeights | None = None,
    lpips: Callable[[Tensor, Tensor], Tensor] | None = None,
) -> Tensor:
    """B.1 ``L_rgb = 0.8 MSE + 0.2 D-SSIM + 0.01 LPIPS`` (LPIPS only when ``lpips`` is given).

    ``pred``, ``target`` [..., H, W, 3] in [0, 1]; ``lpips(pred, target) -> scalar`` takes the
    same layout. Zero weights skip their term.
    """
    w = weights or LossWeights()
    terms: dict[str, Callable[[], Tensor]] = {
        "rgb_mse": lambda: mse(pred, target),
        "rgb_dssim": lambda: dssim(pred, target),
    }
    if lpips is not None:
        terms["rgb_lpips"] = lambda: lpips(pred, target)
    total, _ = weighted_sum(terms, w)
    return total if total is not None else pred.new_zeros(())


def mask_loss(pred_mask: Tensor, target_mask: Tensor) -> Tensor:
    """B.1 mask term: MSE between the rendered foreground mask and the target. [..., H, W(, 1)]."""
    return mse(pred_mask, target_mask.to(pred_mask.dtype))


def _disparity(depth: Tensor, eps: float = 1e-5) -> Tensor:
    """``1 / z`` (Shape of Motion compares depths as disparities)."""
    return 1.0 / (depth + eps)


def _quantile_mean(err: Tensor, quantile: float) -> Tensor:
    """Mean of the 1-D ``err`` without its values above the ``quantile`` (robust to the
    few pixels where rendered expected depth blends two surfaces)."""
    if err.numel() == 0:
        return err.sum()
    if quantile < 1.0:
        err = err[err <= torch.quantile(err.detach(), quantile)]
    return err.mean()


def depth_loss(pred_depth: Tensor, target_depth: Tensor, mask: Tensor | None = None,
               quantile: float = 0.98) -> Tensor:
    """B.1 depth term, as Shape of Motion: L1 between rendered and target disparity ``1/z``
    where the target is known (> 0) and ``mask`` holds, ignoring errors above the
    ``quantile`` (0.98).

    ``pred_depth``, ``target_depth`` [..., H, W] (or [..., H, W, 1]); ``mask`` broadcastable.
    """
    valid = target_depth > 0
    if mask is not None:
        valid = valid & mask.bool()
    err = (_disparity(pred_depth) - _disparity(target_depth)).abs()
    return _quantile_mean(err[valid], quantile)


def depth_gradient_loss(
    pred_depth: Tensor, target_depth: Tensor, mask: Tensor | None = None, quantile: float = 0.95
) -> Tensor:
    """B.1 depth-gradient term (as Shape of Motion): L1 between finite differences of the
    rendered and target disparity ``1/z``, on pixel pairs whose target depth is known (> 0)
    at both ends (and inside ``mask``), ignoring errors above the ``quantile`` (0.95).

    ``pred_depth``, ``target_depth`` and ``mask`` are [..., H, W, 1] (the renderer's layout)
    or [..., H, W].
    """
    if pred_depth.shape[-1] == 1:
        pred_depth, target_depth = pred_depth[..., 0], target_depth[..., 0]
        if mask is not None and mask.shape[-1] == 1:
            mask = mask[..., 0]
    valid = target_depth > 0
    if mask is not None:
        valid = valid & mask.bool()
    pred, target = _disparity(pred_depth), _disparity(target_depth)
    errs = []
    for dim in (-1, -2):
        n = pred.shape[dim]
        dp = pred.narrow(dim, 1, n - 1) - pred.narrow(dim, 0, n - 1)
        dt = target.narrow(dim, 1, n - 1) - target.narrow(dim, 0, n - 1)
        m = valid.narrow(dim, 1, n - 1) & valid.narrow(dim, 0, n - 1)
        errs.append((dp - dt).abs()[m])
    return _quantile_mean(torch.cat(errs), quantile)


def track_2d_loss(
    pred_xy: Tensor, target_xy: Tensor, visible: Tensor, width: int, height: int
) -> Tensor:
    """B.1 ``L_track-2d``: MSE of rendered vs target 2D tracks on normalised pixel coordinates.

    ``pred_xy``, ``target_xy`` [..., 2] pixels; ``visible`` [...] bool; coordinates are
    divided by ``max(width, height)``. Mean over visible tracks of the squared distance.
    """
    s = float(max(width, height))
    d2 = ((pred_xy - target_xy) / s).square().sum(dim=-1)
    return _masked_mean(d2, visible.bool())


def track_depth_loss(pred_z: Tensor, target_z: Tensor, visible: Tensor) -> Tensor:
    """B.1 ``L_track-depth``: MSE of the tracks' rendered z-depth vs the aligned depth.

    ``pred_z``, ``target_z`` [...]; counted where ``visible`` and the target is known (> 0).
    """
    return mse(pred_z, target_z, visible.bool() & (target_z > 0))


def rigidity_loss(canonical: Tensor, transforms: Tensor, knn: Tensor) -> Tensor:
    """HiMoR Eq. 8 for one level, averaged over nodes, neighbours and frame pairs.

    Args:
        canonical: [L, 3] canonical node positions ``x_i``.
        transforms: [B, L, 4, 4] the nodes' global motions ``T_i,t`` at the B batch frames.
        knn: [L, K] neighbours by curve distance (:func:`dynrec.model.himor.knn_curve`).

    For every pair of batch frames (t, t+Δ): ``| |x_i,t - x_j,t| - |x_i,t+Δ - x_j,t+Δ| | +
    |T_j,t^-1 x_i,t - T_j,t+Δ^-1 x_i,t+Δ|`` with ``x_i,t = T_i,t x_i``. Zero for any rigid
    motion of the whole level; 0 when B < 2 or K = 0.
    """
    B = transforms.shape[0]
    if B < 2 or knn.numel() == 0:
        return transforms.new_zeros(())
    x = transform_points(transforms, canonical[None])  # [B, L, 3]
    xj = x[:, knn]  # [B, L, K, 3]
    dist = (x[:, :, None] - xj).norm(dim=-1)  # [B, L, K]
    local = transform_points(invert(transforms)[:, knn], x[:, :, None])  # [B, L, K, 3]
    a, b = torch.triu_indices(B, B, offset=1, device=transforms.device)
    term_dist = (dist[a] - dist[b]).abs()
    term_local = (local[a] - local[b]).norm(dim=-1)
    return (term_dist + term_local).mean()


def acceleration_loss(x: Tensor, dim: int = -2) -> Tensor:
    """Mean norm of the second finite difference along time ``dim`` (last dim = components).

    Motion bases (B.1, weight 0.1): call on ``rot6d`` [..., T, 6] and ``trans`` [..., T, 3]
    and add. Needs at least 3 frames (0 otherwise).
    """
    n = x.shape[dim]
    if n < 3:
        return x.new_zeros(())
    acc = x.narrow(dim, 2, n - 2) - 2 * x.narrow(dim, 1, n - 2) + x.narrow(dim, 0, n - 2)
    return acc.norm(dim=-1).mean()


def bases_acceleration_loss(bases: list[tuple[Tensor, Tensor]]) -> Tensor:
    """B.1 acceleration of motion bases: sum over ``[(rot6d [..., T, 6], trans [..., T, 3])]``."""
    return sum(
        (acceleration_loss(r) + acceleration_loss(t) for r, t in bases), bases[0][0].new_zeros(())
    )


def track_acceleration_loss(x_prev: Tensor, x: Tensor, x_next: Tensor) -> Tensor:
    """B.1 acceleration of rendered tracks: mean ``|x_{t-1} - 2 x_t + x_{t+1}|``. Each [..., D]."""
    return (x_prev - 2 * x + x_next).norm(dim=-1).mean()


def scale_loss(log_scales: Tensor) -> Tensor:
    """B.1 Gaussian scale regulariser (Shape of Motion): mean variance of the 3 scales. [G, 3] log-scales."""
    return torch.exp(log_scales).var(dim=-1).mean()


def node_radius_loss(positions: Tensor, radii: Tensor, k: int = 3) -> Tensor:
    """B.1: radius no larger than the mean distance to the ``k`` = 3 nearest nodes (hinge).

    ``positions`` [L, 3], ``radii`` [L] -> ``mean(relu(r - d_knn))`` with ``d_knn`` detached.
    """
    if positions.shape[0] < 2:
        return radii.new_zeros(())
    bound = mean_knn_distance(positions.detach(), k)
    return F.relu(radii - bound).mean()


__all__ = [
    "LossWeights",
    "acceleration_loss",
    "bases_acceleration_loss",
    "depth_gradient_loss",
    "depth_loss",
    "dssim",
    "mask_loss",
    "mse",
    "node_radius_loss",
    "rgb_loss",
    "rigidity_loss",
    "scale_loss",
    "ssim_map",
    "track_2d_loss",
    "track_acceleration_loss",
    "track_depth_loss",
    "weighted_sum",
]
