"""Differentiable Gaussian rasterization with one signature for every device.

:func:`rasterize` renders RGB, expected depth and alpha of 3D Gaussians seen by one OpenCV
camera (conventions in :mod:`dynrec.geometry.camera`). CUDA tensors go to
``gsplat.rasterization`` (imported lazily, never on the CPU path); anything else goes to the
pure-torch reference rasterizer in :mod:`dynrec.render.reference`, which follows gsplat
1.5.3's rules so both agree to ~1e-3 in RGB.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from dynrec.render.reference import RenderOutput, rasterize_reference

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
    """Raise ``ValueError`` naming the argument whose shape is wrong."""
    N = means.shape[0] if means.ndim == 2 else -1
    want = {
        "means": (means, (N, 3)),
        "quats": (quats, (N, 4)),
        "scales": (scales, (N, 3)),
        "opacities": (opacities, (N,)),
        "viewmat": (viewmat, (4, 4)),
        "K": (K, (3, 3)),
    }
    for name, (tensor, shape) in want.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(f"rasterize: {name} has shape {tuple(tensor.shape)}, expected {shape}")
    if colors.ndim != 2 or colors.shape[0] != N:
        raise ValueError(f"rasterize: colors has shape {tuple(colors.shape)}, expected ({N}, D)")
    if background is not None and tuple(background.shape) != (colors.shape[1],):
        raise ValueError(
            f"rasterize: background has shape {tuple(background.shape)}, expected ({colors.shape[1]},)"
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
    tile_size: int = 16,
    eps2d: float = 0.3,
) -> RenderOutput:
    """Render N Gaussians with one camera.

    Args:
        means: [N, 3] world positions.
        quats: [N, 4] wxyz rotations (normalised internally).
        scales: [N, 3] linear (not log) standard deviations.
        opacities: [N] in (0, 1).
        colors: [N, D] post-activation colours (D = 3 for RGB).
        viewmat: [4, 4] world-to-camera (OpenCV).
        K: [3, 3] intrinsics; pixel centres at +0.5.
        width, height: image size in pixels.
        near, far: z-range kept (Gaussians with centre z outside are culled).
        background: [D] colour behind the Gaussians, or None for black.
        tile_size: rasterization tile size (gsplat's default 16).
        eps2d: low-pass dilation added to every 2D covariance (gsplat's 0.3).

    Returns:
        :class:`RenderOutput` with ``rgb`` [H, W, D], ``depth`` [H, W, 1] (expected z),
        ``alpha`` [H, W, 1] and gsplat-compatible ``info`` (``means2d`` [1, N, 2], ``radii``
        [1, N, 2], ``width``, ``height``, ``n_cameras``, ``gaussian_ids``, ...).
    """
    _check_inputs(means, quats, scales, opacities, colors, viewmat, K, background)
    kwargs: dict[str, Any] = {
        "near": near,
        "far": far,
        "background": background,
        "tile_size": tile_size,
        "eps2d": eps2d,
    }
    if means.is_cuda:
        from dynrec.render.gsplat_backend import rasterize_gsplat

        return rasterize_gsplat(
            means, quats, scales, opacities, colors, viewmat, K, width, height, **kwargs
        )
    return rasterize_reference(
        means, quats, scales, opacities, colors, viewmat, K, width, height, **kwargs
    )
