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
    grid = xy * torch.tensor([2.0 / W, 2.0 / H]) - 1.0
    out = F.grid_sample(stack, grid[None], mode="bilinear", padding_mode="border", align_corners=False)
    return out[0].permute(1, 0, 2)


def inside(stack: Tensor, xy: Tensor) -> Tensor:
    """Whether positions ``xy`` [..., 2] lie inside the image of ``stack`` [1, C, H, W]."""
    H, W = stack.shape[-2:]
    return ((xy >= 0) & (xy <= torch.tensor([float(W), float(H)]))).all(-1)


def offsets(radius: int) -> Tensor:
    """Integer patch offsets u [M, 2] (x, y), row-major, M = (2r+1)^2; the centre is M // 2."""
    a = torch.arange(-radius, radius + 1, dtype=torch.float32)
    yy, xx = torch.meshgrid(a, a, indexing="ij")
    return torch.stack([xx.flatten(), yy.flatten()], dim=-1)


def warp(p: Tensor, A: Tensor, u: Tensor) -> Tensor:
    """Sample positions ``p + A u`` [N, M, 2] of patches at ``p`` [N, 2] with affines ``A``
    [N, 2, 2] and offsets ``u`` [M, 2] (written out: a batched product with an inner size of
    two costs several times more)."""
    return p[:, None, :] + u[None, :, 0:1] * A[:, None, :, 0] + u[None, :, 1:2] * A[:, None, :, 1]


@dataclass
class Patches:
    """Templates of N points, one entry per pyramid level: ``values`` [N, 3, M] colours,
    ``grads`` [N, 2, 3, M] their image gradients (d/dx, d/dy first), ``weights`` [N, M]
    spatial x colour weights."""

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
    values, grads, weights = [], [], []
    for lv in range(pyr.levels):
        stack = pyr.level(t, lv)
        p = xy * pyr.scale(lv)
        at = p[:, None, :] + u[None] if A is None else warp(p, A, u)
        s = sample(stack, at)
        val = s[:, :3]
        g = s[:, 3:].reshape(len(xy), 2, 3, M)
        if A is not None:  # chain rule: gradients w.r.t. the template offsets u
            g = torch.einsum("nba,nbcm->nacm", A, g)
        w = spatial * inside(stack, at)  # samples outside the image carry no weight
        if params.sigma_color > 0:
            dc = ((val - val[:, :, M // 2 : M // 2 + 1]) ** 2).sum(1)
            w = w * torch.exp(-dc / (2 * params.sigma_color ** 2))
        values.append(val.contiguous())
        grads.append(g.contiguous())
        weights.append(w.expand(len(xy), M).contiguous())
    return Patches(values, grads, weights)


#: A patch stops iterating at a level once its step moves no sample by more than this
#: (pyramid-level pixels): its shift, and its linear part times the patch radius.
STEP_TOL = 0.01


def _inverse_2x2(m: Tensor) -> Tensor:
    """Inverses of [N, 2, 2] matrices in closed form (the batched LAPACK call costs more)."""
    det = m[:, 0, 0] * m[:, 1, 1] - m[:, 0, 1] * m[:, 1, 0]
    adj = torch.stack([m[:, 1, 1], -m[:, 0, 1], -m[:, 1, 0], m[:, 0, 0]], dim=1).reshape(-1, 2, 2)
    return adj / det[:, None, None]


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
    # parameters (dx, a11, a12, dy, a21, a22) of a warp x = (dx, dy) + (I + a) u: the
    # linear part is damped by the affine prior
    damping = torch.diag(torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 1.0]) * params.affine_prior + 1e-6)
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
        GG = (G[:, :, None] * G[:, None, :]).sum(3).reshape(N, 4, M)
        # A patch whose step has become negligible stops iterating at this level; the working
        # set is gathered again only once it has shrunk by a good share (a gather costs about
        # one step).
        rows: Tensor | None = None
        for _ in range(n_steps):
            n = len(T)
            p = (xy if rows is None else xy[rows]) * scale
            Aw = A if rows is None else A[rows]
            at = warp(p, Aw, u)
            e = sample(stack, at) - T  # [n, 3, M]
            w = Wt * inside(stack, at) / (1 + (e ** 2).sum(1) / params.cauchy ** 2)  # [n, M]
            H = ((w[:, None] * GG).reshape(n * 4, M) @ outer).reshape(n, 2, 2, 3, 3)
            H = H.permute(0, 1, 3, 2, 4).reshape(n, 6, 6)
            v = (e[:, None] * G).sum(2)  # [n, 2, M]
            b = ((w[:, None] * v).reshape(n * 2, M) @ basis).reshape(n, 6)
            H = H + damping + 1e-3 * torch.diag_embed(torch.diagonal(H, dim1=1, dim2=2))
            d = torch.linalg.solve(H, b[..., None])[..., 0].reshape(n, 2, 3)
            dt = d[:, :, 0].clamp(-2.0, 2.0)
            Aw = Aw @ _inverse_2x2(torch.eye(2) + d[:, :, 1:])
            moved = (p - (Aw @ dt[..., None])[..., 0]) / scale
            if rows is None:
                xy, A = moved, Aw
            else:
                xy[rows], A[rows] = moved, Aw
            busy = (dt.abs().amax(1) > STEP_TOL) | (d[:, :, 1:].abs().amax((1, 2)) * params.radius > STEP_TOL)
            kept = int(busy.sum())
            if kept == 0:
                break
            if kept < 0.75 * n:
                keep = busy.nonzero()[:, 0]
                rows = keep if rows is None else rows[keep]
                T, G, Wt, GG = T[keep], G[keep], Wt[keep], GG[keep]
    stack = pyr.level(t, 0)[:, :3]
    at = warp(xy, A, u)
    dist = ((sample(stack, at) - patches.values[0]) ** 2).sum(1).sqrt()
    W0 = patches.weights[0] * inside(stack, at)
    total = W0.sum(1)
    residual = (W0 * dist).sum(1) / total.clamp_min(1e-12)
    # a patch that has left the image has no residual to trust
    return xy, A, torch.where(total > 0.25 * patches.weights[0].sum(1), residual, torch.full_like(residual, float("inf")))
