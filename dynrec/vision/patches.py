"""Image pyramids and batched patch alignment: a robust, colour-weighted, affine
inverse-compositional Lucas-Kanade (Baker & Matthews 2004) in plain torch.

OpenCV's ``calcOpticalFlowPyrLK`` is translation-only with a square unweighted window; on
thin limbs (3-5 px wide) the background inside the window drags the point along. Here each
patch weights its pixels by colour similarity to its centre and by a Cauchy robust weight
on the residual, and may rotate / scale / shear (affine), so a template taken many frames
earlier still aligns.

Coordinates are the project's (pixel centres at +0.5, x right, y down). A patch has
``M = (2r+1)^2`` samples at integer offsets ``u`` around its centre; its warp into a frame
is ``x(u) = p + A u`` with ``p`` [2] in that pyramid level's pixels and ``A`` [2, 2].
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch on one thread inside the block (and restore the count after).

    Alignment works on many small tensors (N x M ~ 1e5 elements per op): OpenMP threads cost
    more than they give, and on a busy machine they spin against other processes (measured:
    16x slower with 2 threads than with 1 on a loaded 2-core machine).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class AlignParams:
    """``radius`` r of the (2r+1)^2 patch; ``levels`` of the image pyramid (x0.5 each);
    ``iters`` Gauss-Newton steps per level, coarsest first; ``sigma_color`` (RGB in [0, 1])
    of the colour-similarity weights (0 = off); ``cauchy`` scale of the robust residual
    weight; ``affine_prior`` damping of the affine part of each step (0 = free, large =
    translation only)."""

    radius: int = 5
    levels: int = 3
    iters: tuple[int, ...] = (5, 5, 8)
    sigma_color: float = 0.15
    cauchy: float = 0.1
    affine_prior: float = 1.0


class Pyramid:
    """Per-frame image pyramids of ``frames`` [T, H, W, 3] uint8, built on demand and cached.

    ``level(t, l)`` is a [1, 9, H_l, W_l] tensor: RGB in [0, 1], then its x and y
    central-difference gradients; ``scale(l)`` maps full-resolution pixels to level ``l``
    (exact with +0.5 pixel centres when a level halves the size).
    """

    def __init__(self, frames: np.ndarray, levels: int, cache: int = 12):
        self.frames = frames
        self.levels = levels
        self.count, self.height, self.width = frames.shape[:3]
        self._cache: OrderedDict[int, list[Tensor]] = OrderedDict()
        self._size = cache
        self._scales: list[Tensor] = []
        h, w = self.height, self.width
        for _ in range(levels):
            self._scales.append(torch.tensor([w / self.width, h / self.height]))
            h, w = max(h // 2, 1), max(w // 2, 1)

    def scale(self, level: int) -> Tensor:
        """[2] (sx, sy): level-``level`` pixels per full-resolution pixel."""
        return self._scales[level]

    def level(self, t: int, level: int) -> Tensor:
        if t not in self._cache:
            if len(self._cache) >= self._size:
                self._cache.popitem(last=False)
            self._cache[t] = self._build(t)
        self._cache.move_to_end(t)
        return self._cache[t][level]

    def _build(self, t: int) -> list[Tensor]:
        img = torch.from_numpy(np.ascontiguousarray(self.frames[t])).permute(2, 0, 1)[None].float() / 255.0
        out = []
        for lv in range(self.levels):
            if lv > 0:
                h, w = self._scales[lv][1] * self.height, self._scales[lv][0] * self.width
                img = F.interpolate(img, size=(round(float(h)), round(float(w))), mode="area")
            gx = torch.zeros_like(img)
            gy = torch.zeros_like(img)
            gx[..., 1:-1] = (img[..., 2:] - img[..., :-2]) / 2
            gy[..., 1:-1, :] = (img[..., 2:, :] - img[..., :-2, :]) / 2
            out.append(torch.cat([img, gx, gy], 1))
        return out


def sample(stack: Tensor, xy: Tensor) -> Tensor:
    """Bilinear samples of ``stack`` [1, C, H, W] at ``xy`` [N, M, 2] (+0.5 centres) -> [N, C, M].

    Outside the image the border pixels are repeated.
    """
    H, W = stack.shape[-2:]
    grid = torch.stack([2 * xy[..., 0] / W - 1, 2 * xy[..., 1] / H - 1], dim=-1)[None]
    out = F.grid_sample(stack, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0].permute(1, 0, 2)


def inside(stack: Tensor, xy: Tensor) -> Tensor:
    """Whether positions ``xy`` [..., 2] lie inside the image of ``stack`` [1, C, H, W]."""
    H, W = stack.shape[-2:]
    return (xy[..., 0] >= 0) & (xy[..., 0] <= W) & (xy[..., 1] >= 0) & (xy[..., 1] <= H)


def offsets(radius: int) -> Tensor:
    """Integer patch offsets u [M, 2] (x, y), row-major, M = (2r+1)^2; the centre is M // 2."""
    a = torch.arange(-radius, radius + 1, dtype=torch.float32)
    yy, xx = torch.meshgrid(a, a, indexing="ij")
    return torch.stack([xx.flatten(), yy.flatten()], dim=-1)


@dataclass
class Patches:
    """Templates of N points, one entry per pyramid level: ``values`` [N, 3, M] colours,
    ``grads`` [N, 3, M, 2] their image gradients, ``weights`` [N, M] spatial x colour
    weights."""

    values: list[Tensor]
    grads: list[Tensor]
    weights: list[Tensor]

    def __len__(self) -> int:
        return self.values[0].shape[0]

    def take(self, index: Tensor) -> Patches:
        return Patches([v[index] for v in self.values], [g[index] for g in self.grads],
                       [w[index] for w in self.weights])

    def put(self, index: Tensor, other: Patches) -> None:
        """Overwrite the templates at rows ``index`` with ``other`` (in place)."""
        for mine, theirs in zip((self.values, self.grads, self.weights), (other.values, other.grads, other.weights)):
            for a, b in zip(mine, theirs):
                a[index] = b


def extract(pyr: Pyramid, t: int, xy: Tensor, params: AlignParams, A: Tensor | None = None) -> Patches:
    """Templates of frame ``t`` at full-resolution points ``xy`` [N, 2], sampled through the
    affine ``A`` [N, 2, 2] (identity when None) so they share the geometry of the patch
    that ``A`` maps into frame ``t``."""
    u = offsets(params.radius)
    M = u.shape[0]
    spatial = torch.exp(-(u ** 2).sum(-1) / (2 * (params.radius / 2) ** 2))[None]
    warped = u[None].expand(len(xy), M, 2) if A is None else u[None] @ A.transpose(1, 2)
    values, grads, weights = [], [], []
    for lv in range(pyr.levels):
        stack = pyr.level(t, lv)
        at = (xy * pyr.scale(lv))[:, None, :] + warped
        s = sample(stack, at)
        val = s[:, :3]
        g = torch.stack([s[:, 3:6], s[:, 6:9]], dim=-1)  # [N, 3, M, 2]
        if A is not None:  # chain rule: gradients w.r.t. the template offsets u
            g = g @ A[:, None]
        w = spatial * inside(stack, at)  # samples outside the image carry no weight
        if params.sigma_color > 0:
            dc = ((val - val[:, :, M // 2 : M // 2 + 1]) ** 2).sum(1)
            w = w * torch.exp(-dc / (2 * params.sigma_color ** 2))
        values.append(val)
        grads.append(g)
        weights.append(w.expand(len(xy), M).contiguous())
    return Patches(values, grads, weights)


#: Positions of the shift (dx, dy) and of the linear part in the parameter vector
#: (dx, a11, a12, dy, a21, a22) of a warp ``x = (dx, dy) + (I + a) u``.
_SHIFT = [0, 3]
_LINEAR = [1, 2, 4, 5]


def align(pyr: Pyramid, t: int, patches: Patches, xy: Tensor, A: Tensor, params: AlignParams,
          iters: tuple[int, ...] | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Align N templates to frame ``t``, coarse to fine.

    Args:
        patches: N templates (see :func:`extract`).
        xy: [N, 2] initial centres in full-resolution pixels; A: [N, 2, 2] initial affines.
        iters: Gauss-Newton steps per level, coarsest first (default ``params.iters``;
            levels with 0 steps are skipped).

    Returns:
        ``(xy [N, 2], A [N, 2, 2], residual [N])``: the aligned warp and the template-weighted
        mean colour distance at full resolution (RGB units in [0, 1]) over the samples inside
        the image; ``inf`` when less than a quarter of the template's weight is inside.
    """
    iters = params.iters if iters is None else iters
    u = offsets(params.radius)
    basis = torch.cat([torch.ones(len(u), 1), u], dim=1)  # [M, 3]: d x / d (t, A row)
    outer = (basis[:, :, None] * basis[:, None, :]).reshape(-1, 9)  # [M, 9]
    damping = torch.full((6,), 1e-6)
    damping[_LINEAR] += params.affine_prior
    xy = xy.clone()
    A = A.clone()
    levels = pyr.levels
    for k, n_steps in enumerate(iters[-levels:]):
        lv = levels - 1 - k
        if n_steps == 0:
            continue
        stack = pyr.level(t, lv)[:, :3]
        scale = pyr.scale(lv)
        T, G, Wt = patches.values[lv], patches.grads[lv], patches.weights[lv]
        N, _, M = T.shape
        # Inverse-compositional LK: the template's steepest-descent images g (x) (1, u) are
        # fixed; with parameters ordered (dx, a11, a12, dy, a21, a22) both sides factorise:
        # H[(a,i),(b,j)] = sum_m w_m GG_m[a,b] B_m[i,j], b[(a,i)] = sum_m w_m v_m[a] basis_m[i].
        GG = (G[..., :, None] * G[..., None, :]).sum(1).reshape(N, M, 4)
        for _ in range(n_steps):
            p = xy * scale
            at = p[:, None, :] + u[None] @ A.transpose(1, 2)
            I = sample(stack, at)
            e = I - T  # [N, 3, M]
            w = Wt * inside(stack, at) / (1 + (e ** 2).sum(1) / params.cauchy ** 2)  # [N, M]
            H = ((w[..., None] * GG).transpose(1, 2) @ outer).reshape(N, 2, 2, 3, 3)
            H = H.permute(0, 1, 3, 2, 4).reshape(N, 6, 6)
            v = (e[..., None] * G).sum(1)  # [N, M, 2]
            b = ((w[..., None] * v).transpose(1, 2) @ basis).reshape(N, 6)
            H = H + torch.diag(damping) + 1e-3 * torch.diag_embed(torch.diagonal(H, dim1=1, dim2=2))
            d = torch.linalg.solve(H, b[..., None])[..., 0]
            dt = d[:, _SHIFT].clamp(-2.0, 2.0)
            dM = torch.eye(2) + d[:, _LINEAR].reshape(-1, 2, 2)
            inv = torch.linalg.inv(dM)
            A = A @ inv
            xy = (p - (A @ dt[..., None])[..., 0]) / scale
    stack = pyr.level(t, 0)[:, :3]
    at = xy[:, None, :] + u[None] @ A.transpose(1, 2)
    dist = ((sample(stack, at) - patches.values[0]) ** 2).sum(1).sqrt()
    W0 = patches.weights[0] * inside(stack, at)
    total = W0.sum(1)
    residual = (W0 * dist).sum(1) / total.clamp_min(1e-12)
    # a patch that has left the image has no residual to trust
    return xy, A, torch.where(total > 0.25 * patches.weights[0].sum(1), residual, torch.full_like(residual, float("inf")))
