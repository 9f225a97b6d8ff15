"""CUDA path of :func:`dynrec.render.rasterize`: a thin wrapper over ``gsplat.rasterization``.

gsplat is imported lazily, inside :func:`rasterize_gsplat` only: importing it on a machine
with nvcc may start a JIT build of its CUDA sources, so CPU code paths must never touch it.
"""

from __future__ import annotations

from torch import Tensor

from dynrec.errors import DynrecError
from dynrec.render.reference import RenderOutput


def rasterize_gsplat(
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
    """Render one camera with ``gsplat.rasterization(render_mode="RGB+ED", packed=False)``.

    Shapes as :func:`dynrec.render.rasterize`; all tensors must be float32 on a CUDA device.
    ``info`` is gsplat's ``meta`` dict unchanged.
    """
    try:
        import gsplat
    except ImportError as exc:
        raise DynrecError(
            "gsplat is not installed, so CUDA rendering is unavailable: install the GPU extra "
            "(pip install 'dynrec[gpu]') or run on the CPU (--device cpu)."
        ) from exc
    backgrounds = None if background is None else background.to(means.dtype)[None]
    render, alpha, meta = gsplat.rasterization(
        means,
        quats,
        scales,
        opacities,
        colors,
        viewmat[None],
        K[None],
        width,
        height,
        near_plane=near,
        far_plane=far,
        eps2d=eps2d,
        tile_size=tile_size,
        backgrounds=backgrounds,
        render_mode="RGB+ED",
        rasterize_mode="classic",
        packed=False,
        sh_degree=None,
    )
    return RenderOutput(
        rgb=render[0, ..., :-1], depth=render[0, ..., -1:], alpha=alpha[0], info=meta
    )
