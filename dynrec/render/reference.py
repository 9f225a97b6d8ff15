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
3. **Tiles**: each Gaussian is binned into the tiles its box touches; inside a tile
   Gaussians are ordered by camera-frame z (stable, ties by index). The tile size changes
   no pixel: a Gaussian's box holds every pixel where its alpha reaches 1/255, so every tile
   size gives each pixel the same depth-ordered contributions (only the work differs). The
   reference uses 8x8 tiles (:data:`REFERENCE_TILE`), about 1.6x less work on the CPU than
   gsplat's 16x16 for Gaussians a few pixels wide.
4. **Compositing**, front to back per pixel:
   ``alpha = min(0.999, o exp(-sigma))``, ``sigma = 0.5 (A dx^2 + C dy^2) + B dx dy`` with the
   conic ``(A, B, C) = inverse(Sigma2d)``; a Gaussian is skipped when ``sigma < 0`` or
   ``alpha < 1/255``; the pixel stops (exclusively) at the first Gaussian that would bring the
   transmittance to ``<= 1e-4``. ``C = sum alpha_k T_k c_k + T_end bg``, ``alpha_out = 1 - T_end``.
   Depth is rendered as an extra colour channel (camera z) and divided by ``alpha_out``
   ("RGB+ED", expected depth).

**Cameras in one call**: ``viewmat`` [C, 4, 4] and ``K`` [C, 3, 3] render C images, with
per-Gaussian tensors either shared ([N, ...]) or one set per camera ([C, N, ...], e.g. a
foreground deformed to each camera's frame). The C images are one problem: Gaussian ``n``
seen by camera ``c`` is instance ``c N + n`` and tile ``t`` of image ``c`` is tile
``c n_tiles + t``, so projection, binning and compositing run once over all of them, and
each image is exactly what a one-camera call gives.

Compositing is one ``torch.autograd.Function`` that works on padded [tiles, pixels, K]
blocks in chunks (tiles grouped by list length, so little padding) and recomputes them in
its analytic backward (the same maths as gsplat's backward kernel), so memory stays
bounded and ``means2d`` receives exactly the screen-space gradient gsplat's
``DefaultStrategy`` expects (``absgrad`` is not produced). The block temporaries live in
per-thread buffers reused across calls (:func:`release_workspace` frees them).
"""

from __future__ import annotations

import functools
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

#: Tile size of the reference's compositing (gsplat's 16 gives the same images, with more work).
REFERENCE_TILE = 8

#: Upper bound on the elements of one [tiles, pixels, K] block. The block passes keep up to
#: 7 buffers of this size per thread (28 MB in float32), reused across calls.
DEFAULT_CHUNK_ELEMENTS = 1 << 20


@dataclass
class RenderOutput:
    """Result of :func:`dynrec.render.rasterize`.

    One camera: ``rgb`` [H, W, D] (background composited), ``depth`` [H, W, 1] expected
    z-depth (accumulated z / alpha; 0 where nothing was hit), ``alpha`` [H, W, 1]; C cameras
    in one call: [C, H, W, D], [C, H, W, 1], [C, H, W, 1]. ``info``: gsplat's ``meta`` dict
    (``means2d`` [C, N, 2] with grad, ``radii`` [C, N, 2] int32, ``depths``, ``conics``,
    ``opacities``, ``gaussian_ids`` None, ``width``, ``height``, ``n_cameras``, tile bins,
    ...; C = 1 for one camera), as ``gsplat.strategy.DefaultStrategy`` consumes it.
    """

    rgb: Tensor
    depth: Tensor
    alpha: Tensor
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Projection:
    """Per-Gaussian screen-space quantities, with the cameras' leading dims (none for one camera).

    ``means2d`` [..., N, 2] pixels, ``conics`` [..., N, 3] = (A, B, C) of ``inverse(Sigma2d)``,
    ``depths`` [..., N] camera z, ``radii`` [..., N, 2] int32 (0 = culled). Differentiable
    except radii.
    """

    means2d: Tensor
    conics: Tensor
    depths: Tensor
    radii: Tensor


@dataclass
class TileBins:
    """Gaussian lists per tile of ``n_images`` images, depth-sorted, in gsplat's layout.

    Tile ``t`` of image ``i`` has the global id ``i * tile_width * tile_height + t`` and
    Gaussian ``n`` of image ``i`` the instance id ``i * N + n``. ``tile_ids`` [n_isects] and
    ``flatten_ids`` [n_isects] (int64, instance ids) are the intersections sorted by (tile,
    depth); ``offsets`` [n_tiles + 1] start each tile's run; ``tiles_per_gauss`` [..., N].
    """

    tile_size: int
    tile_width: int
    tile_height: int
    tiles_per_gauss: Tensor
    tile_ids: Tensor
    flatten_ids: Tensor
    offsets: Tensor
    n_images: int = 1

    @property
    def tiles_per_image(self) -> int:
        return self.tile_width * self.tile_height

    @property
    def n_tiles(self) -> int:
        return self.n_images * self.tiles_per_image


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
        means [..., N, 3], quats [..., N, 4] (wxyz, any norm), scales [..., N, 3] (linear),
        opacities [..., N] (only for the radii), viewmat [..., 4, 4] w2c, K [..., 3, 3].
        Leading dims broadcast: one camera ([4, 4]) gives [N, ...] outputs; C cameras
        ([C, 4, 4]) give [C, N, ...] with per-Gaussian tensors shared ([N, ...]) or per
        camera ([C, N, ...]).
    """
    R = viewmat[..., :3, :3]
    t = viewmat[..., None, :3, 3]  # [..., 1, 3]
    fx, fy = K[..., None, 0, 0], K[..., None, 1, 1]  # [..., 1]
    cx, cy = K[..., None, 0, 2], K[..., None, 1, 2]

    RM = R[..., None, :, :] @ (quat_to_matrix(quats) * scales[..., None, :])  # [..., N, 3, 3] = W R S
    mean_c = means @ R.transpose(-1, -2) + t  # [..., N, 3]

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
    ).reshape(*z.shape, 2, 3)
    JRM = J @ RM  # [..., N, 2, 3]
    cov2d = JRM @ JRM.transpose(-1, -2)  # J W Sigma W^T J^T, [..., N, 2, 2]
    means2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], dim=-1)

    a = cov2d[..., 0, 0] + eps2d
    b = cov2d[..., 0, 1]
    c = cov2d[..., 1, 0]
    d = cov2d[..., 1, 1] + eps2d
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
            valid[..., None], torch.zeros_like(means2d.detach())
        )
        radii = radii.to(torch.int32)
    return Projection(means2d=means2d, conics=conics, depths=z, radii=radii)


@torch.no_grad()
def intersect_tiles(
    means2d: Tensor, radii: Tensor, depths: Tensor, width: int, height: int, tile_size: int = 16
) -> TileBins:
    """Bin Gaussians into tiles and sort each tile's list by depth (gsplat ``isect_tiles``).

    ``means2d`` [..., N, 2], ``radii`` [..., N, 2] int32, ``depths`` [..., N]: one image, or
    one per leading index (see :class:`TileBins` for the global ids). A Gaussian covers tiles
    ``[floor((m - r)/ts), ceil((m + r)/ts))`` per axis, clamped to the grid.
    """
    device = means2d.device
    lead = tuple(means2d.shape[:-2])
    n_images = math.prod(lead)
    N = means2d.shape[-2]
    M = n_images * N
    tw = math.ceil(width / tile_size)
    th = math.ceil(height / tile_size)
    m = means2d.detach().float().reshape(M, 2)
    r = radii.reshape(M, 2).float()
    live = (r > 0).all(dim=-1)
    t_xy = m / tile_size
    t_r = r / tile_size
    hi = torch.tensor([tw, th], device=device)
    tmin = torch.floor(t_xy - t_r).clamp_min(0).long().minimum(hi)
    tmax = torch.ceil(t_xy + t_r).clamp_min(0).long().minimum(hi)
    extent = (tmax - tmin).clamp_min(0)
    counts = torch.where(live, extent[:, 0] * extent[:, 1], torch.zeros_like(extent[:, 0]))

    gauss = torch.repeat_interleave(torch.arange(M, device=device), counts)
    start = torch.cumsum(counts, 0) - counts
    local = torch.arange(gauss.numel(), device=device) - start[gauss]
    ex = extent[gauss, 0].clamp_min(1)
    tile_x = tmin[gauss, 0] + local % ex
    tile_y = tmin[gauss, 1] + local // ex
    tile_ids = torch.div(gauss, N, rounding_mode="floor") * (tw * th) + tile_y * tw + tile_x

    # one depth ranking over every image: restricted to an image it is that image's order
    depth_rank = torch.empty(M, dtype=torch.long, device=device)
    depth_rank[torch.sort(depths.detach().reshape(M), stable=True).indices] = torch.arange(
        M, device=device
    )
    order = torch.sort(tile_ids * M + depth_rank[gauss]).indices  # keys are unique
    tile_ids = tile_ids[order]
    flatten_ids = gauss[order]
    n_tiles = n_images * tw * th
    per_tile = torch.bincount(tile_ids, minlength=n_tiles)
    offsets = torch.zeros(n_tiles + 1, dtype=torch.long, device=device)
    offsets[1:] = torch.cumsum(per_tile, 0)
    return TileBins(
        tile_size=tile_size,
        tile_width=tw,
        tile_height=th,
        tiles_per_gauss=counts.to(torch.int32).reshape(*lead, N),
        tile_ids=tile_ids,
        flatten_ids=flatten_ids,
        offsets=offsets,
        n_images=n_images,
    )


@dataclass
class _Block:
    """One chunk of non-empty tiles (of any images), padded to ``K`` Gaussians each.

    ``tiles`` [Tc] global tile ids, ``gid`` [Tc, K] instance ids (0 where padded), ``slot``
    [Tc, K] bool (real entry), ``px`` / ``py`` [Tc, S] pixel-centre x of each tile column /
    y of each tile row (S = tile size). ``k_live`` (set by the forward pass) is the number of
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
    """Group non-empty tiles into chunks of at most ``chunk_elements`` (tiles x pixels x K),
    longest lists first, so that tiles sharing a block have similar lengths (little padding)."""
    S = bins.tile_size
    P = S * S
    counts_t = (bins.offsets[1:] - bins.offsets[:-1]).cpu()
    nonempty_t = torch.nonzero(counts_t > 0).flatten()
    nonempty_t = nonempty_t[torch.sort(counts_t[nonempty_t], descending=True, stable=True).indices]
    nonempty: list[int] = nonempty_t.tolist()
    counts: list[int] = counts_t[nonempty_t].tolist()
    device = bins.flatten_ids.device
    ar = torch.arange(S, device=device, dtype=dtype) + 0.5
    blocks: list[_Block] = []
    i = 0
    while i < len(nonempty):
        kmax = counts[i]  # the longest list of the block comes first
        j = i + max(1, min(chunk_elements // (P * kmax), len(nonempty) - i))
        tiles = torch.tensor(nonempty[i:j], device=device, dtype=torch.long)
        start = bins.offsets[tiles]  # [Tc]
        n = bins.offsets[tiles + 1] - start
        pos = torch.arange(kmax, device=device)
        slot = pos[None, :] < n[:, None]
        idx = (start[:, None] + pos[None, :]) * slot
        gid = bins.flatten_ids[idx] * slot
        local = tiles % bins.tiles_per_image
        tx = (local % bins.tile_width).to(dtype) * S
        ty = (local // bins.tile_width).to(dtype) * S
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


@functools.cache
def _below(value: float, dtype: torch.dtype) -> float:
    """The largest ``dtype`` number below ``value``: ``x > _below(v)`` is ``x >= v``."""
    v = torch.tensor(value, dtype=dtype, device="cpu")  # a Python float out: host maths on purpose
    return float(torch.nextafter(v, torch.tensor(-math.inf, dtype=dtype, device="cpu")))


def _block_forward(blk: _Block, geo: Tensor, ws: _Workspace, keep: bool) -> _BlockState:
    """Alphas, transmittances and weights of one block (no autograd; gsplat's rules).

    ``geo`` [M, 6]: per instance ``(mean x, mean y, A, B, C, opacity)`` (2D mean, conic,
    opacity), gathered once per block. Masks are applied with float ops (``threshold``,
    ``sign``) rather than boolean tensors, and the [Tc, P, K] temporaries live in workspace
    buffers updated in place: on a CPU these blocks are bound by memory traffic. Padded
    slots get opacity 0, so they fall under the alpha threshold. ``keep`` also returns
    ``vis``, ``araw``, ``alpha`` and ``T`` (backward).
    """
    Tc, Kb = blk.gid.shape
    S = blk.px.shape[1]
    shape = (Tc, S * S, Kb)
    dtype = geo.dtype
    g = geo.index_select(0, blk.gid.reshape(-1)).view(Tc, Kb, 6)
    op = (g[..., 5] * blk.slot)[:, None, :]  # [Tc, 1, K]
    dx = g[:, None, :, 0] - blk.px[:, :, None]  # [Tc, S, K]
    dy = g[:, None, :, 1] - blk.py[:, :, None]
    A, B, C = g[:, None, :, 2], g[:, None, :, 3], g[:, None, :, 4]
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
    """[I, H, W, D] images -> [I * tiles_per_image, S*S, D] (zero-padded to whole tiles)."""
    S, tw, th = bins.tile_size, bins.tile_width, bins.tile_height
    I, H, W, D = img.shape
    pad = img.new_zeros(I, th * S, tw * S, D)
    pad[:, :H, :W] = img
    return pad.reshape(I, th, S, tw, S, D).permute(0, 1, 3, 2, 4, 5).reshape(I * th * tw, S * S, D)


def _from_tiles(tiles: Tensor, bins: TileBins, height: int, width: int) -> Tensor:
    """[I * tiles_per_image, S*S, D] -> [I, H, W, D]."""
    S, tw, th, I = bins.tile_size, bins.tile_width, bins.tile_height, bins.n_images
    D = tiles.shape[-1]
    img = tiles.reshape(I, th, tw, S, S, D).permute(0, 1, 3, 2, 4, 5).reshape(I, th * S, tw * S, D)
    return img[:, :height, :width]


def _weighted_colors(w: Tensor, cols: Tensor) -> Tensor:
    """``w @ cols``: [Tc, P, K] x [Tc, K, D] -> [Tc, P, D] (transposed form: far faster on CPU)."""
    return torch.bmm(cols.transpose(1, 2), w.transpose(1, 2)).transpose(1, 2)


def _block_backward(
    blk: _Block,
    geo: Tensor,
    colors: Tensor,
    bg: Tensor,
    gO: Tensor,
    gA: Tensor,
    ws: _Workspace,
) -> tuple[Tensor, Tensor]:
    """Vector-Jacobian product of one block (gsplat's backward kernel, vectorised).

    ``geo`` [M, 6] as :func:`_block_forward`; ``bg`` [Tc, D] each tile's background; ``gO``
    [Tc, P, D], ``gA`` [Tc, P] are the output gradients of the block's pixels. With ``c.g``
    the colour dotted with ``gO``, the gradient of a composited alpha is ``T_k (c_k.g) -
    (sum_{j>k} w_j (c_j.g) + T_end (bg.g - gA)) / (1 - alpha_k)``, passed to opacity, conic
    and mean through ``alpha = o exp(-sigma)`` unless clamped at 0.999.
    Returns per-slot grads ``[Tc, K, 6 + D]`` (means2d, conic, opacity as ``geo``, then
    colours; exactly 0 in padded slots) and each tile's background grad ``[Tc, D]``.
    """
    st = _block_forward(blk, geo, ws, keep=True)
    assert st.vis is not None and st.araw is not None and st.alpha is not None and st.T is not None
    Tc, P, Kb = st.w.shape
    S = blk.px.shape[1]
    cols = colors.index_select(0, blk.gid.reshape(-1)).view(Tc, Kb, -1)  # [Tc, K, D]
    v_cols = torch.bmm(gO.transpose(1, 2), st.w).transpose(1, 2)  # [Tc, K, D]
    v_bg = (st.T_end[..., None] * gO).sum(dim=1)  # [Tc, D]

    cw = torch.bmm(gO, cols.transpose(1, 2), out=ws.take(5, (Tc, P, Kb)))  # c_k . gO
    v_alpha = st.T.mul_(cw)  # T_k (c_k . g)
    acc = st.w.mul_(cw).cumsum_(dim=-1)  # inclusive sum_{j<=k} w_j (c_j . g)
    tail = st.T_end * ((gO * bg[:, None, :]).sum(-1) - gA)  # [Tc, P]
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
    con = geo.index_select(0, blk.gid.reshape(-1)).view(Tc, Kb, 6)[..., 2:5]
    A, B, C = con.unbind(-1)
    grads = torch.stack(
        [A * s_x + B * s_y, B * s_x + C * s_y, 0.5 * s_xx, s_xy, 0.5 * s_yy, v_op], dim=-1
    )
    return torch.cat([grads, v_cols], dim=-1), v_bg


class _Composite(torch.autograd.Function):
    """Tile-based front-to-back alpha compositing with gsplat's rules and analytic backward.

    Inputs (M instances of I images, see :class:`TileBins`): ``means2d`` [M, 2], ``conics``
    [M, 3], ``opacities`` [M], ``colors`` [M, D], ``background`` [I, D]. Outputs: ``render``
    [I, H, W, D] (background added), ``alpha`` [I, H, W, 1].
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
        bg_tiles = background.repeat_interleave(bins.tiles_per_image, dim=0)  # [n_tiles, D]
        out = bg_tiles[:, None, :].expand(bins.n_tiles, P, D).clone()
        T_end = means2d.new_ones(bins.n_tiles, P)
        geo = torch.cat([means2d, conics, opacities[:, None]], dim=-1)
        ws = _Workspace(means2d.device, means2d.dtype)
        for blk in blocks:
            st = _block_forward(blk, geo, ws, keep=False)
            blk.k_live = st.k_live
            cols = colors.index_select(0, blk.gid.reshape(-1)).view(*blk.gid.shape, D)
            out[blk.tiles] = _weighted_colors(st.w, cols) + st.T_end[..., None] * bg_tiles[blk.tiles, None]
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
        D = colors.shape[-1]
        gO_tiles = _to_tiles(g_render, bins)  # [n_tiles, P, D]
        gA_tiles = _to_tiles(g_alpha, bins)[..., 0]  # [n_tiles, P]
        bg_tiles = background.repeat_interleave(bins.tiles_per_image, dim=0)
        image_of = torch.arange(bins.n_tiles, device=means2d.device) // bins.tiles_per_image
        geo = torch.cat([means2d, conics, opacities[:, None]], dim=-1)
        v_all = geo.new_zeros(geo.shape[0], 6 + D)
        v_bg = torch.zeros_like(background)
        uncovered = torch.ones(bins.n_tiles, dtype=torch.bool, device=means2d.device)
        ws = _Workspace(means2d.device, means2d.dtype)
        for blk in ctx.blocks:
            uncovered[blk.tiles] = False
            v_slots, v_b = _block_backward(
                blk, geo, colors, bg_tiles[blk.tiles], gO_tiles[blk.tiles], gA_tiles[blk.tiles], ws
            )
            # scatter_add_: index_add_ on rows runs one small op per row on the CPU
            gid = blk.gid.reshape(-1, 1).expand(-1, 6 + D)
            v_all.scatter_add_(0, gid, v_slots.reshape(-1, 6 + D))
            v_bg.index_add_(0, image_of[blk.tiles], v_b)
        v_bg.index_add_(0, image_of[uncovered], gO_tiles[uncovered].sum(dim=1))
        grads = (v_all[:, 0:2], v_all[:, 2:5], v_all[:, 5], v_all[:, 6:], v_bg)
        needs = ctx.needs_input_grad
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
    """Differentiable compositing of projected Gaussians: ``render`` [I, H, W, D], ``alpha`` [I, H, W, 1].

    ``means2d`` [M, 2], ``conics`` [M, 3], ``opacities`` [M], ``colors`` [M, D] for the
    ``M = I * N`` instances of ``bins`` (from :func:`intersect_tiles`), ``background`` [I, D].
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
    tile_size: int = REFERENCE_TILE,
    eps2d: float = 0.3,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> RenderOutput:
    """Render one camera or C cameras with the pure-torch reference rasterizer (module docstring).

    Shapes as :func:`dynrec.render.rasterize`: ``viewmat`` [4, 4] / ``K`` [3, 3] for one
    camera (outputs [H, W, ·]), or [C, 4, 4] / [C, 3, 3] for C (outputs [C, H, W, ·]) with
    ``means`` [N, 3] or [C, N, 3] and likewise ``quats``, ``scales``, ``opacities``,
    ``colors``; ``background`` [D] or [C, D]. Works for float32 and float64 on any device.
    """
    single = viewmat.ndim == 2
    viewmats = viewmat[None] if single else viewmat
    Ks = K[None] if single else K
    C = viewmats.shape[0]
    proj = project_gaussians(
        means, quats, scales, opacities, viewmats, Ks, width, height, near=near, far=far, eps2d=eps2d
    )
    N = proj.depths.shape[-1]
    D = colors.shape[-1]
    op = opacities.expand(C, N)
    feats = torch.cat([colors.to(means.dtype).expand(C, N, D), proj.depths[..., None]], dim=-1)
    bg = means.new_zeros(C, D + 1)
    if background is not None:
        bg = torch.cat([background.to(means.dtype).expand(C, D), means.new_zeros(C, 1)], dim=-1)
    bins = intersect_tiles(proj.means2d, proj.radii, proj.depths, width, height, tile_size)
    # the views below carry the screen-space gradient into proj.means2d, info["means2d"]
    render, alpha = composite(
        proj.means2d.reshape(C * N, 2), proj.conics.reshape(C * N, 3), op.reshape(C * N),
        feats.reshape(C * N, D + 1), bg, bins, width, height, chunk_elements,
    )
    depth = render[..., D:] / alpha.clamp_min(1e-10)
    info = _info(proj, op, bins, width, height)
    rgb = render[..., :D]
    if single:
        return RenderOutput(rgb=rgb[0], depth=depth[0], alpha=alpha[0], info=info)
    return RenderOutput(rgb=rgb, depth=depth, alpha=alpha, info=info)


def _info(proj: Projection, opacities: Tensor, bins: TileBins, width: int, height: int) -> dict[str, Any]:
    """gsplat 1.5.3 ``meta`` for C cameras, unpacked (``means2d`` etc. [C, N, ...])."""
    depth_bits = (
        proj.depths.detach().float().reshape(-1)[bins.flatten_ids].view(torch.int32).long() & 0xFFFFFFFF
    )
    isect_ids = (bins.tile_ids << 32) | depth_bits
    return {
        "batch_ids": None,
        "camera_ids": None,
        "gaussian_ids": None,
        "radii": proj.radii,
        "means2d": proj.means2d,
        "depths": proj.depths,
        "conics": proj.conics,
        "opacities": opacities,
        "tile_width": bins.tile_width,
        "tile_height": bins.tile_height,
        "tiles_per_gauss": bins.tiles_per_gauss,
        "isect_ids": isect_ids,
        "flatten_ids": bins.flatten_ids.to(torch.int32),
        "isect_offsets": bins.offsets[:-1]
        .to(torch.int32)
        .reshape(bins.n_images, bins.tile_height, bins.tile_width),
        "width": width,
        "height": height,
        "tile_size": bins.tile_size,
        "n_batches": 1,
        "n_cameras": bins.n_images,
    }
