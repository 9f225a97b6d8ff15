"""Pure-torch, differentiable, tile-based EWA splatting with gsplat 1.5.3's exact rules.

This is the CPU path of :func:`dynrec.render.rasterize` (gsplat has no CPU kernels). It
reproduces ``gsplat.rasterization(..., packed=False, render_mode="RGB+ED")`` step by step:

1. **Projection** (gsplat ``fully_fused_projection``, pinhole): ``Sigma = R S S^T R^T`` from
   the normalised wxyz quaternion and linear scales; camera-frame mean and covariance;
   ``Sigma2d = J W Sigma W^T J^T + 0.3 I`` (``eps2d`` low-pass), where the Jacobian uses the
   mean with x/z and y/z clamped to 1.3x the field of view; ``mean2d = (fx x/z + cx,
   fy y/z + cy)`` (pixel centres at +0.5, so the pixel ``(j, i)`` is sampled at
   ``(j + 0.5, i + 0.5)``). A Gaussian is culled (radii 0) when ``z < near`` or
   ``z > far``, ``det(Sigma2d) <= 0``, ``opacity < 1/255``, or its box lies outside the image.
2. **Radii**: opacity-aware axis-aligned half-extents
   ``r = ceil(min(3.33, sqrt(2 ln(255 opacity))) * sqrt(diag(Sigma2d)))``, int32 [N, 2].
3. **Tiles**: each Gaussian is binned into the 16x16 tiles its box touches; inside a tile
   Gaussians are ordered by camera-frame z (stable, ties by index).
4. **Compositing**, front to back per pixel:
   ``alpha = min(0.999, o exp(-sigma))``, ``sigma = 0.5 (A dx^2 + C dy^2) + B dx dy`` with the
   conic ``(A, B, C) = inverse(Sigma2d)``; a Gaussian is skipped when ``sigma < 0`` or
   ``alpha < 1/255``; the pixel stops (exclusively) at the first Gaussian that would bring the
   transmittance to ``<= 1e-4``. ``C = sum alpha_k T_k c_k + T_end bg``, ``alpha_out = 1 - T_end``.
   Depth is rendered as an extra colour channel (camera z) and divided by ``alpha_out``
   ("RGB+ED", expected depth).

Compositing is one ``torch.autograd.Function`` that works on padded [tiles, 256, K] blocks
in chunks and recomputes them in its analytic backward (the same maths as gsplat's backward
kernel), so memory stays bounded and ``means2d`` receives exactly the screen-space gradient
gsplat's ``DefaultStrategy`` expects (``absgrad`` is not produced). The block temporaries live
in per-thread buffers reused across calls (:func:`release_workspace` frees them).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from dynrec.geometry.se3 import quat_to_matrix

#: gsplat's ALPHA_THRESHOLD (1/255 in float32) and its other hard-coded constants.
ALPHA_THRESHOLD = float(torch.tensor(1.0 / 255.0, dtype=torch.float32))
MAX_ALPHA = 0.999
TRANSMITTANCE_MIN = 1e-4
MAX_EXTEND = 3.33
#: sigma is clamped here before exp: alpha <= opacity * exp(-30) is always skipped (opacities
#: are at most 1), and exp never underflows into (slow) denormals.
SIGMA_MAX = 30.0

#: Upper bound on the elements of one [tiles, pixels, K] block. The block passes keep up to
#: 7 buffers of this size per thread (28 MB in float32), reused across calls.
DEFAULT_CHUNK_ELEMENTS = 1 << 20


@dataclass
class RenderOutput:
    """Result of :func:`dynrec.render.rasterize` for one camera.

    ``rgb`` [H, W, 3] (background composited), ``depth`` [H, W, 1] expected z-depth
    (accumulated z / alpha; 0 where nothing was hit), ``alpha`` [H, W, 1], and ``info``:
    gsplat's ``meta`` dict (``means2d`` [1, N, 2] with grad, ``radii`` [1, N, 2] int32,
    ``depths``, ``conics``, ``opacities``, ``gaussian_ids`` None, ``width``, ``height``,
    ``n_cameras``, tile bins, ...), as ``gsplat.strategy.DefaultStrategy`` consumes it.
    """

    rgb: Tensor
    depth: Tensor
    alpha: Tensor
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Projection:
    """Per-Gaussian screen-space quantities (single camera).

    ``means2d`` [N, 2] pixels, ``conics`` [N, 3] = (A, B, C) of ``inverse(Sigma2d)``,
    ``depths`` [N] camera z, ``radii`` [N, 2] int32 (0 = culled). Differentiable except radii.
    """

    means2d: Tensor
    conics: Tensor
    depths: Tensor
    radii: Tensor


@dataclass
class TileBins:
    """Gaussian lists per 16x16 tile, depth-sorted, in gsplat's layout.

    ``tile_ids`` [n_isects] and ``flatten_ids`` [n_isects] (int64) are the intersections
    sorted by (tile, depth); ``offsets`` [n_tiles + 1] start each tile's run.
    """

    tile_size: int
    tile_width: int
    tile_height: int
    tiles_per_gauss: Tensor
    tile_ids: Tensor
    flatten_ids: Tensor
    offsets: Tensor

    @property
    def n_tiles(self) -> int:
        return self.tile_width * self.tile_height


def project_gaussians(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    viewmat: Tensor,
    K: Tensor,
    width: int,
    height: int,
    *,
    near: float = 0.01,
    far: float = 1e10,
    eps2d: float = 0.3,
) -> Projection:
    """EWA projection of 3D Gaussians, as gsplat's ``fully_fused_projection`` (pinhole).

    Args:
        means [N, 3], quats [N, 4] (wxyz, any norm), scales [N, 3] (linear),
        opacities [N] (only for the radii), viewmat [4, 4] w2c, K [3, 3].
    """
    R = viewmat[:3, :3]
    t = viewmat[:3, 3]
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]

    M = quat_to_matrix(quats) * scales[:, None, :]  # [N, 3, 3] = R S
    covar = M @ M.transpose(-1, -2)
    mean_c = means @ R.T + t  # [N, 3]
    covar_c = R @ covar @ R.T  # [N, 3, 3]

    x, y, z = mean_c.unbind(-1)
    in_depth = (z >= near) & (z <= far)
    z_safe = torch.where(in_depth, z, torch.ones_like(z))
    rz = 1.0 / z_safe
    tan_fovx = 0.5 * width / fx
    tan_fovy = 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + 0.3 * tan_fovx
    lim_x_neg = cx / fx + 0.3 * tan_fovx
    lim_y_pos = (height - cy) / fy + 0.3 * tan_fovy
    lim_y_neg = cy / fy + 0.3 * tan_fovy
    tx = z_safe * torch.minimum(torch.maximum(x * rz, -lim_x_neg), lim_x_pos)
    ty = z_safe * torch.minimum(torch.maximum(y * rz, -lim_y_neg), lim_y_pos)
    zero = torch.zeros_like(z)
    J = torch.stack(
        [fx * rz, zero, -fx * tx * rz * rz, zero, fy * rz, -fy * ty * rz * rz], dim=-1
    ).reshape(-1, 2, 3)
    cov2d = J @ covar_c @ J.transpose(-1, -2)  # [N, 2, 2]
    means2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], dim=-1)

    a = cov2d[:, 0, 0] + eps2d
    b = cov2d[:, 0, 1]
    c = cov2d[:, 1, 0]
    d = cov2d[:, 1, 1] + eps2d
    det = a * d - b * c
    valid = in_depth & (det > 0)
    inv_det = 1.0 / torch.where(valid, det, torch.ones_like(det))
    conics = torch.stack([d * inv_det, -b * inv_det, a * inv_det], dim=-1)

    with torch.no_grad():
        op = opacities.detach()
        valid = valid & (op >= ALPHA_THRESHOLD)
        extend = torch.sqrt(2.0 * torch.log((op / ALPHA_THRESHOLD).clamp_min(1.0))).clamp_max(
            MAX_EXTEND
        )
        rx = torch.ceil(extend * torch.sqrt(a.detach().clamp_min(0.0)))
        ry = torch.ceil(extend * torch.sqrt(d.detach().clamp_min(0.0)))
        valid = valid & ~((rx <= 0) & (ry <= 0))
        mx, my = means2d.detach().unbind(-1)
        outside = (mx + rx <= 0) | (mx - rx >= width) | (my + ry <= 0) | (my - ry >= height)
        valid = valid & ~outside
        radii = torch.stack([rx, ry], dim=-1).where(
            valid[:, None], torch.zeros_like(means2d.detach())
        )
        radii = radii.to(torch.int32)
    return Projection(means2d=means2d, conics=conics, depths=z, radii=radii)


@torch.no_grad()
def intersect_tiles(
    means2d: Tensor, radii: Tensor, depths: Tensor, width: int, height: int, tile_size: int = 16
) -> TileBins:
    """Bin Gaussians into tiles and sort each tile's list by depth (gsplat ``isect_tiles``).

    ``means2d`` [N, 2], ``radii`` [N, 2] int32, ``depths`` [N]. A Gaussian covers tiles
    ``[floor((m - r)/ts), ceil((m + r)/ts))`` per axis, clamped to the grid.
    """
    device = means2d.device
    N = means2d.shape[0]
    tw = math.ceil(width / tile_size)
    th = math.ceil(height / tile_size)
    m = means2d.detach().float()
    r = radii.float()
    live = (r > 0).all(dim=-1)
    t_xy = m / tile_size
    t_r = r / tile_size
    hi = torch.tensor([tw, th], device=device)
    tmin = torch.floor(t_xy - t_r).clamp_min(0).long().minimum(hi)
    tmax = torch.ceil(t_xy + t_r).clamp_min(0).long().minimum(hi)
    extent = (tmax - tmin).clamp_min(0)
    counts = torch.where(live, extent[:, 0] * extent[:, 1], torch.zeros_like(extent[:, 0]))

    gauss = torch.repeat_interleave(torch.arange(N, device=device), counts)
    start = torch.cumsum(counts, 0) - counts
    local = torch.arange(gauss.numel(), device=device) - start[gauss]
    ex = extent[gauss, 0]
    tile_x = tmin[gauss, 0] + local % ex.clamp_min(1)
    tile_y = tmin[gauss, 1] + local // ex.clamp_min(1)
    tile_ids = tile_y * tw + tile_x

    depth_rank = torch.empty(N, dtype=torch.long, device=device)
    depth_rank[torch.sort(depths.detach(), stable=True).indices] = torch.arange(N, device=device)
    order = torch.sort(tile_ids * N + depth_rank[gauss], stable=True).indices
    tile_ids = tile_ids[order]
    flatten_ids = gauss[order]
    per_tile = torch.bincount(tile_ids, minlength=tw * th)
    offsets = torch.zeros(tw * th + 1, dtype=torch.long, device=device)
    offsets[1:] = torch.cumsum(per_tile, 0)
    return TileBins(
        tile_size=tile_size,
        tile_width=tw,
        tile_height=th,
        tiles_per_gauss=counts.to(torch.int32),
        tile_ids=tile_ids,
        flatten_ids=flatten_ids,
        offsets=offsets,
    )


@dataclass
class _Block:
    """One chunk of non-empty tiles, padded to ``K`` Gaussians each.

    ``tiles`` [Tc] tile ids, ``gid`` [Tc, K] Gaussian ids (0 where padded), ``slot`` [Tc, K]
    bool (real entry), ``px`` / ``py`` [Tc, S] pixel-centre x of each tile column / y of
    each tile row (S = tile size). ``k_live`` (set by the forward pass) is the number of
    leading entries that can contribute to any pixel; the backward pass only needs those.
    """

    tiles: Tensor
    gid: Tensor
    slot: Tensor
    px: Tensor
    py: Tensor
    k_live: int = -1

    def truncated(self) -> _Block:
        """The block restricted to its first ``k_live`` entries (identical results)."""
        k = max(self.k_live, 1)
        return _Block(self.tiles, self.gid[:, :k], self.slot[:, :k], self.px, self.py, k)


def _blocks(bins: TileBins, dtype: torch.dtype, chunk_elements: int) -> list[_Block]:
    """Group non-empty tiles into chunks of at most ``chunk_elements`` (tiles x pixels x K)."""
    S = bins.tile_size
    P = S * S
    counts = (bins.offsets[1:] - bins.offsets[:-1]).cpu()
    nonempty = torch.nonzero(counts > 0).flatten().tolist()
    device = bins.flatten_ids.device
    ar = torch.arange(S, device=device, dtype=dtype) + 0.5
    blocks: list[_Block] = []
    i = 0
    while i < len(nonempty):
        j = i
        kmax = 0
        while j < len(nonempty):
            k_new = max(kmax, int(counts[nonempty[j]]))
            if j > i and (j - i + 1) * P * k_new > chunk_elements:
                break
            kmax = k_new
            j += 1
        tiles = torch.tensor(nonempty[i:j], device=device, dtype=torch.long)
        start = bins.offsets[tiles]  # [Tc]
        n = bins.offsets[tiles + 1] - start
        pos = torch.arange(kmax, device=device)
        slot = pos[None, :] < n[:, None]
        idx = (start[:, None] + pos[None, :]) * slot
        gid = bins.flatten_ids[idx] * slot
        tx = (tiles % bins.tile_width).to(dtype) * S
        ty = (tiles // bins.tile_width).to(dtype) * S
        blocks.append(_Block(tiles, gid, slot, tx[:, None] + ar[None], ty[:, None] + ar[None]))
        i = j
    return blocks


class _Workspace:
    """Reusable flat buffers for the [Tc, P, K] temporaries of the block passes.

    Allocating a fresh multi-megabyte tensor per op makes the CPU path spend most of its
    time in page faults; one set of buffers per thread, device and dtype, grown on demand,
    avoids that. ``take(i, shape)`` returns buffer ``i`` viewed as ``shape`` (contents
    undefined). Buffers are reused by the next call on the same thread.
    """

    _local = threading.local()

    def __init__(self, device: torch.device, dtype: torch.dtype) -> None:
        pools = getattr(self._local, "pools", None)
        if pools is None:
            pools = self._local.pools = {}
        self._bufs: list[Tensor] = pools.setdefault((device, dtype), [])
        self._device, self._dtype = device, dtype

    def take(self, i: int, shape: tuple[int, ...]) -> Tensor:
        n = math.prod(shape)
        while len(self._bufs) <= i:
            self._bufs.append(torch.empty(0, device=self._device, dtype=self._dtype))
        if self._bufs[i].numel() < n:
            self._bufs[i] = torch.empty(n, device=self._device, dtype=self._dtype)
        return self._bufs[i][:n].view(shape)


def release_workspace() -> None:
    """Free the calling thread's rasterizer buffers (they are otherwise kept for reuse)."""
    _Workspace._local.pools = {}


@dataclass
class _BlockState:
    """Forward quantities of one block. Big tensors are [Tc, P, K] (P = S*S pixels, row-major)
    views of workspace buffers 0-4; in forward-only mode only ``w`` and ``T_end`` are set.
    """

    dx: Tensor  # [Tc, S, K]: mean x - pixel-centre x, per tile column
    dy: Tensor  # [Tc, S, K]: mean y - pixel-centre y, per tile row
    w: Tensor  # alpha * T
    T_end: Tensor  # [Tc, P] transmittance after the last composited Gaussian
    k_live: int  # entries beyond this never contribute
    may_clamp: bool  # some opacity exceeds 0.999, so the alpha clamp can be active
    vis: Tensor | None = None  # exp(-min(sigma, 30)); exp(-30) where sigma < 0 (skipped)
    araw: Tensor | None = None  # opacity * vis (before the 0.999 clamp)
    alpha: Tensor | None = None  # composited alphas (0 where skipped or after the pixel is done)
    T: Tensor | None = None  # transmittance in front of k


def _below(value: float, dtype: torch.dtype) -> float:
    """The largest ``dtype`` number below ``value``: ``x > _below(v)`` is ``x >= v``."""
    v = torch.tensor(value, dtype=dtype, device="cpu")  # a Python float out: host maths on purpose
    return float(torch.nextafter(v, torch.tensor(-math.inf, dtype=dtype, device="cpu")))


def _block_forward(
    blk: _Block, means2d: Tensor, conics: Tensor, opacities: Tensor, ws: _Workspace, keep: bool
) -> _BlockState:
    """Alphas, transmittances and weights of one block (no autograd; gsplat's rules).

    Masks are applied with float ops (``threshold``, ``sign``) rather than boolean tensors,
    and the [Tc, P, K] temporaries live in workspace buffers updated in place: on a CPU these
    blocks are bound by memory traffic. Padded slots get opacity 0, so they fall under the
    alpha threshold. ``keep`` also returns ``vis``, ``araw``, ``alpha`` and ``T`` (backward).
    """
    Tc, Kb = blk.gid.shape
    S = blk.px.shape[1]
    shape = (Tc, S * S, Kb)
    dtype = means2d.dtype
    m = means2d[blk.gid]  # [Tc, K, 2]
    con = conics[blk.gid]  # [Tc, K, 3]
    op = (opacities[blk.gid] * blk.slot)[:, None, :]  # [Tc, 1, K]
    dx = m[:, None, :, 0] - blk.px[:, :, None]  # [Tc, S, K]
    dy = m[:, None, :, 1] - blk.py[:, :, None]
    A, B, C = con[:, None, :, 0], con[:, None, :, 1], con[:, None, :, 2]
    qx = 0.5 * A * dx * dx  # [Tc, S(col), K]
    qy = 0.5 * C * dy * dy  # [Tc, S(row), K]
    sigma = ws.take(0, (Tc, S, S, Kb))  # [Tc, row, col, K]
    torch.add(qy[:, :, None], qx[:, None], out=sigma)
    sigma.addcmul_(B[:, None] * dx[:, None], dy[:, :, None])
    sigma = sigma.view(shape).clamp_max_(SIGMA_MAX)
    F.threshold(sigma, _below(0.0, dtype), SIGMA_MAX, inplace=True)  # sigma < 0: skip
    vis = sigma.neg_().exp_()
    if keep:
        araw = torch.mul(vis, op, out=ws.take(1, shape))
        a = torch.clamp(araw, max=MAX_ALPHA, out=ws.take(2, shape))
    else:
        araw = None
        a = vis.mul_(op).clamp_max_(MAX_ALPHA)
    F.threshold(a, _below(ALPHA_THRESHOLD, dtype), 0.0, inplace=True)
    T_incl = torch.neg(a, out=ws.take(3, shape)).add_(1.0).cumprod_(dim=-1)
    live = ws.take(4, shape).copy_(T_incl)
    F.threshold(live, TRANSMITTANCE_MIN, 0.0, inplace=True).sign_()  # 1 while T > 1e-4
    n_live = live.sum(dim=-1).long()  # [Tc, P]; live is a prefix of each list
    a.mul_(live)
    T = live
    T[..., 0] = 1.0
    T[..., 1:] = T_incl[..., :-1]
    last = T_incl.gather(-1, (n_live - 1).clamp_min(0)[..., None])[..., 0]
    T_end = torch.where(n_live > 0, last, torch.ones_like(last))
    k_live = int(n_live.max()) if n_live.numel() else 0
    may_clamp = bool((op > MAX_ALPHA).any())
    if keep:
        w = torch.mul(a, T, out=T_incl)
        return _BlockState(dx, dy, w, T_end, k_live, may_clamp, vis, araw, a, T)
    return _BlockState(dx, dy, a.mul_(T), T_end, k_live, may_clamp)


def _to_tiles(img: Tensor, bins: TileBins) -> Tensor:
    """[H, W, D] image -> [n_tiles, S*S, D] (zero-padded to whole tiles)."""
    S, tw, th = bins.tile_size, bins.tile_width, bins.tile_height
    H, W, D = img.shape
    pad = img.new_zeros(th * S, tw * S, D)
    pad[:H, :W] = img
    return pad.reshape(th, S, tw, S, D).permute(0, 2, 1, 3, 4).reshape(th * tw, S * S, D)


def _from_tiles(tiles: Tensor, bins: TileBins, height: int, width: int) -> Tensor:
    """[n_tiles, S*S, D] -> [H, W, D]."""
    S, tw, th = bins.tile_size, bins.tile_width, bins.tile_height
    D = tiles.shape[-1]
    img = tiles.reshape(th, tw, S, S, D).permute(0, 2, 1, 3, 4).reshape(th * S, tw * S, D)
    return img[:height, :width]


def _weighted_colors(w: Tensor, cols: Tensor) -> Tensor:
    """``w @ cols``: [Tc, P, K] x [Tc, K, D] -> [Tc, P, D] (transposed form: far faster on CPU)."""
    return torch.bmm(cols.transpose(1, 2), w.transpose(1, 2)).transpose(1, 2)


def _block_backward(
    blk: _Block,
    means2d: Tensor,
    conics: Tensor,
    opacities: Tensor,
    colors: Tensor,
    background: Tensor,
    gO: Tensor,
    gA: Tensor,
    ws: _Workspace,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Vector-Jacobian product of one block (gsplat's backward kernel, vectorised).

    ``gO`` [Tc, P, D], ``gA`` [Tc, P] are the output gradients of the block's pixels. With
    ``c.g`` the colour dotted with ``gO``, the gradient of a composited alpha is
    ``T_k (c_k.g) - (sum_{j>k} w_j (c_j.g) + T_end (bg.g - gA)) / (1 - alpha_k)``, passed to
    opacity, conic and mean through ``alpha = o exp(-sigma)`` unless clamped at 0.999.
    Returns per-slot grads ``(v_means2d [Tc, K, 2], v_conics [Tc, K, 3], v_opac [Tc, K],
    v_colors [Tc, K, D], v_background [D])``.
    """
    st = _block_forward(blk, means2d, conics, opacities, ws, keep=True)
    assert st.vis is not None and st.araw is not None and st.alpha is not None and st.T is not None
    Tc, P, Kb = st.w.shape
    S = blk.px.shape[1]
    cols = colors[blk.gid]  # [Tc, K, D]
    v_cols = torch.bmm(gO.transpose(1, 2), st.w).transpose(1, 2)  # [Tc, K, D]
    v_bg = (st.T_end[..., None] * gO).sum(dim=(0, 1))

    cw = torch.bmm(gO, cols.transpose(1, 2), out=ws.take(5, (Tc, P, Kb)))  # c_k . gO
    v_alpha = st.T.mul_(cw)  # T_k (c_k . g)
    acc = st.w.mul_(cw).cumsum_(dim=-1)  # inclusive sum_{j<=k} w_j (c_j . g)
    tail = st.T_end * ((gO * background).sum(-1) - gA)  # [Tc, P]
    behind = acc.neg_().add_(acc[..., -1:].neg() + tail[..., None])  # sum_{j>k} ... + tail
    through = torch.sign(st.alpha, out=cw)  # 1 where composited
    if st.may_clamp:
        unclamped = torch.neg(st.araw, out=ws.take(6, (Tc, P, Kb))).add_(MAX_ALPHA)
        through.mul_(F.threshold(unclamped, _below(0.0, st.araw.dtype), 0.0, inplace=True).sign_())
    v_alpha.sub_(behind.div_(st.alpha.neg_().add_(1.0)))
    v_araw = v_alpha.mul_(through)
    v_op = st.vis.mul_(v_araw).sum(dim=1)  # [Tc, K]
    u = v_araw.mul_(st.araw).view(Tc, S, S, Kb)  # = -dL/dsigma, [Tc, row, col, K]
    g_col = u.sum(dim=1)  # [Tc, col, K]
    g_row = u.sum(dim=2)  # [Tc, row, K]
    s_x = -(g_col * st.dx).sum(1)  # sum dL/dsigma * dx
    s_y = -(g_row * st.dy).sum(1)
    s_xx = -(g_col * st.dx * st.dx).sum(1)
    s_yy = -(g_row * st.dy * st.dy).sum(1)
    u_dx = torch.mul(u, st.dx[:, None], out=st.vis.view(Tc, S, S, Kb))
    s_xy = -(u_dx.sum(2) * st.dy).sum(1)
    con = conics[blk.gid]  # [Tc, K, 3]
    A, B, C = con.unbind(-1)
    v_m = torch.stack([A * s_x + B * s_y, B * s_x + C * s_y], dim=-1)
    v_c = torch.stack([0.5 * s_xx, s_xy, 0.5 * s_yy], dim=-1)
    return v_m, v_c, v_op, v_cols, v_bg


class _Composite(torch.autograd.Function):
    """Tile-based front-to-back alpha compositing with gsplat's rules and analytic backward.

    Inputs: ``means2d`` [N, 2], ``conics`` [N, 3], ``opacities`` [N], ``colors`` [N, D],
    ``background`` [D]. Outputs: ``render`` [H, W, D] (background added), ``alpha`` [H, W, 1].
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        means2d: Tensor,
        conics: Tensor,
        opacities: Tensor,
        colors: Tensor,
        background: Tensor,
        bins: TileBins,
        width: int,
        height: int,
        chunk_elements: int,
    ) -> tuple[Tensor, Tensor]:
        D = colors.shape[-1]
        P = bins.tile_size**2
        blocks = _blocks(bins, means2d.dtype, chunk_elements)
        out = background.expand(bins.n_tiles, P, D).clone()
        T_end = means2d.new_ones(bins.n_tiles, P)
        ws = _Workspace(means2d.device, means2d.dtype)
        for blk in blocks:
            st = _block_forward(blk, means2d, conics, opacities, ws, keep=False)
            blk.k_live = st.k_live
            out[blk.tiles] = (
                _weighted_colors(st.w, colors[blk.gid]) + st.T_end[..., None] * background
            )
            T_end[blk.tiles] = st.T_end
        ctx.save_for_backward(means2d, conics, opacities, colors, background)
        ctx.blocks = [blk.truncated() for blk in blocks if blk.k_live > 0]
        ctx.bins = bins
        render = _from_tiles(out, bins, height, width)
        alpha = _from_tiles(1.0 - T_end[..., None], bins, height, width)
        return render, alpha

    @staticmethod
    def backward(ctx: Any, g_render: Tensor, g_alpha: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        means2d, conics, opacities, colors, background = ctx.saved_tensors
        bins: TileBins = ctx.bins
        gO_tiles = _to_tiles(g_render, bins)  # [n_tiles, P, D]
        gA_tiles = _to_tiles(g_alpha, bins)[..., 0]  # [n_tiles, P]
        v_means2d = torch.zeros_like(means2d)
        v_conics = torch.zeros_like(conics)
        v_opac = torch.zeros_like(opacities)
        v_colors = torch.zeros_like(colors)
        v_bg = torch.zeros_like(background)
        uncovered = torch.ones(bins.n_tiles, dtype=torch.bool, device=means2d.device)
        ws = _Workspace(means2d.device, means2d.dtype)
        for blk in ctx.blocks:
            uncovered[blk.tiles] = False
            v_m, v_c, v_op, v_cols, v_b = _block_backward(
                blk,
                means2d,
                conics,
                opacities,
                colors,
                background,
                gO_tiles[blk.tiles],
                gA_tiles[blk.tiles],
                ws,
            )
            ids = blk.gid[blk.slot]
            v_means2d.index_add_(0, ids, v_m[blk.slot])
            v_conics.index_add_(0, ids, v_c[blk.slot])
            v_opac.index_add_(0, ids, v_op[blk.slot])
            v_colors.index_add_(0, ids, v_cols[blk.slot])
            v_bg += v_b
        v_bg += gO_tiles[uncovered].sum(dim=(0, 1))
        needs = ctx.needs_input_grad
        grads = (v_means2d, v_conics, v_opac, v_colors, v_bg)
        return tuple(g if need else None for g, need in zip(grads, needs[:5])) + (None,) * 4


def composite(
    means2d: Tensor,
    conics: Tensor,
    opacities: Tensor,
    colors: Tensor,
    background: Tensor,
    bins: TileBins,
    width: int,
    height: int,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> tuple[Tensor, Tensor]:
    """Differentiable compositing of projected Gaussians: ``render`` [H, W, D], ``alpha`` [H, W, 1].

    ``means2d`` [N, 2], ``conics`` [N, 3], ``opacities`` [N], ``colors`` [N, D],
    ``background`` [D]; ``bins`` from :func:`intersect_tiles`.
    """
    return _Composite.apply(
        means2d, conics, opacities, colors, background, bins, width, height, chunk_elements
    )


def rasterize_reference(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmat: Tensor,
    K: Tensor,
    width: int,
    height: int,
    *,
    near: float = 0.01,
    far: float = 1e10,
    background: Tensor | None = None,
    tile_size: int = 16,
    eps2d: float = 0.3,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> RenderOutput:
    """Render one camera with the pure-torch reference rasterizer (see the module docstring).

    Shapes as :func:`dynrec.render.rasterize`; works for float32 and float64 on any device.
    """
    proj = project_gaussians(
        means, quats, scales, opacities, viewmat, K, width, height, near=near, far=far, eps2d=eps2d
    )
    means2d = proj.means2d[None]  # [1, N, 2]: the tensor DefaultStrategy retains grads of
    bins = intersect_tiles(proj.means2d, proj.radii, proj.depths, width, height, tile_size)
    D = colors.shape[-1]
    bg = means.new_zeros(D + 1)
    if background is not None:
        bg = torch.cat([background.to(means.dtype), means.new_zeros(1)])
    feats = torch.cat([colors, proj.depths[:, None]], dim=-1)
    render, alpha = composite(
        means2d[0], proj.conics, opacities, feats, bg, bins, width, height, chunk_elements
    )
    depth = render[..., D:] / alpha.clamp_min(1e-10)
    info = _info(proj, means2d, opacities, bins, width, height)
    return RenderOutput(rgb=render[..., :D], depth=depth, alpha=alpha, info=info)


def _info(
    proj: Projection, means2d: Tensor, opacities: Tensor, bins: TileBins, width: int, height: int
) -> dict[str, Any]:
    """gsplat 1.5.3 ``meta`` for one camera, unpacked (batch dims [1, ...])."""
    depth_bits = (
        proj.depths.detach().float()[bins.flatten_ids].view(torch.int32).long() & 0xFFFFFFFF
    )
    isect_ids = (bins.tile_ids << 32) | depth_bits
    return {
        "batch_ids": None,
        "camera_ids": None,
        "gaussian_ids": None,
        "radii": proj.radii[None],
        "means2d": means2d,
        "depths": proj.depths[None],
        "conics": proj.conics[None],
        "opacities": opacities[None],
        "tile_width": bins.tile_width,
        "tile_height": bins.tile_height,
        "tiles_per_gauss": bins.tiles_per_gauss[None],
        "isect_ids": isect_ids,
        "flatten_ids": bins.flatten_ids.to(torch.int32),
        "isect_offsets": bins.offsets[:-1]
        .to(torch.int32)
        .reshape(1, bins.tile_height, bins.tile_width),
        "width": width,
        "height": height,
        "tile_size": bins.tile_size,
        "n_batches": 1,
        "n_cameras": 1,
    }
