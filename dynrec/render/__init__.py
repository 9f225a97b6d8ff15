"""Differentiable Gaussian rasterization with one signature for every device.

:func:`rasterize` renders RGB, expected depth and alpha of 3D Gaussians seen by one OpenCV
camera, or by C cameras in one call (conventions in :mod:`dynrec.geometry.camera`). CUDA
tensors go to ``gsplat.rasterization`` (imported lazily, never on the CPU path); anything
else goes to the pure-torch reference rasterizer in :mod:`dynrec.render.reference`, which
follows gsplat 1.5.3's rules so both agree to ~1e-3 in RGB.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from dynrec.render.reference import REFERENCE_TILE, RenderOutput, rasterize_reference

__all__ = ["RenderOutput", "rasterize"]


def _check_inputs(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmat: Tensor,
    K: Tensor,
    background: Tensor | None,
) -> None:
    """Raise ``ValueError`` naming the argument whose shape is wrong (see :func:`rasterize`)."""
    batched = viewmat.ndim == 3
    C = viewmat.shape[0] if batched else 0
    cams = (C,) if batched else ()
    if tuple(viewmat.shape) != (*cams, 4, 4):
        raise ValueError(f"rasterize: viewmat has shape {tuple(viewmat.shape)}, expected [4, 4] or [C, 4, 4]")
    if tuple(K.shape) != (*cams, 3, 3):
        raise ValueError(f"rasterize: K has shape {tuple(K.shape)}, expected {(*cams, 3, 3)}")
    N = means.shape[-2] if means.ndim >= 2 else -1
    want: dict[str, tuple[Tensor, tuple[int, ...]]] = {
        "means": (means, (N, 3)),
        "quats": (quats, (N, 4)),
        "scales": (scales, (N, 3)),
        "opacities": (opacities, (N,)),
    }
    for name, (tensor, shape) in want.items():
        ok = tuple(tensor.shape) == shape or (batched and tuple(tensor.shape) == (C, *shape))
        if not ok:
            per_cam = f" or {(C, *shape)}" if batched else ""
            raise ValueError(f"rasterize: {name} has shape {tuple(tensor.shape)}, expected {shape}{per_cam}")
    D = colors.shape[-1] if colors.ndim else -1
    if not (colors.ndim == 2 or (batched and colors.ndim == 3 and colors.shape[0] == C)) or colors.shape[-2] != N:
        raise ValueError(f"rasterize: colors has shape {tuple(colors.shape)}, expected ({N}, D)"
                         + (f" or ({C}, {N}, D)" if batched else ""))
    if background is not None and tuple(background.shape) not in ((D,), (*cams, D)):
        raise ValueError(
            f"rasterize: background has shape {tuple(background.shape)}, expected ({D},)"
            + (f" or ({C}, {D})" if batched else "")
        )


def rasterize(
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
    tile_size: int | None = None,
    eps2d: float = 0.3,
) -> RenderOutput:
    """Render N Gaussians with one camera, or with C cameras in one call.

    Args:
        means: [N, 3] world positions, or [C, N, 3]: one set per camera (e.g. a foreground
            deformed to each camera's frame).
        quats: [N, 4] or [C, N, 4] wxyz rotations (normalised internally).
        scales: [N, 3] or [C, N, 3] linear (not log) standard deviations.
        opacities: [N] or [C, N] in (0, 1).
        colors: [N, D] or [C, N, D] post-activation colours (D = 3 for RGB).
        viewmat: [4, 4] world-to-camera (OpenCV), or [C, 4, 4] for C cameras.
        K: [3, 3] (or [C, 3, 3]) intrinsics; pixel centres at +0.5.
        width, height: image size in pixels (shared by the cameras).
        near, far: z-range kept (Gaussians with centre z outside are culled).
        background: [D] (or [C, D]) colour behind the Gaussians, or None for black.
        tile_size: rasterization tile size; None: gsplat's 16 on CUDA, the reference's 8 on
            the CPU (the tile size changes no pixel, only the work).
        eps2d: low-pass dilation added to every 2D covariance (gsplat's 0.3).

    Returns:
        :class:`RenderOutput` with ``rgb`` [H, W, D], ``depth`` [H, W, 1] (expected z),
        ``alpha`` [H, W, 1] for one camera ([C, H, W, ·] for C), and gsplat-compatible
        ``info`` (``means2d`` with the screen-space gradient and ``radii``, reshapeable to
        [C, N, 2] (C = 1 for one camera), ``width``, ``height``, ``n_cameras``, ...). Image
        ``c`` of a C-camera call equals the one-camera call with camera ``c`` and set ``c``.
    """
    _check_inputs(means, quats, scales, opacities, colors, viewmat, K, background)
    kwargs: dict[str, Any] = {"near": near, "far": far, "background": background, "eps2d": eps2d}
    if means.is_cuda:
        from dynrec.render.gsplat_backend import rasterize_gsplat

        return rasterize_gsplat(
            means, quats, scales, opacities, colors, viewmat, K, width, height,
            tile_size=tile_size or 16, **kwargs,
        )
    return rasterize_reference(
        means, quats, scales, opacities, colors, viewmat, K, width, height,
        tile_size=tile_size or REFERENCE_TILE, **kwargs,
    )
