"""CUDA path of :func:`dynrec.render.rasterize`: a thin wrapper over ``gsplat.rasterization``.

gsplat is imported lazily, inside :func:`check_gsplat` only: importing it on a machine with
nvcc may start a JIT build of its CUDA sources, so CPU code paths must never touch it.

gsplat 1.5.3 (``gsplat/rendering.py``) takes batch dims ``means [..., N, 3]`` with cameras
``viewmats [..., C, 4, 4]``. C cameras sharing the Gaussians are one call with ``means
[N, 3]`` and ``viewmats [C, 4, 4]`` (outputs [C, H, W, ·], ``meta["means2d"]`` [C, N, 2]);
C cameras each with their own Gaussians (a foreground deformed per frame) put the camera in
the batch dim: ``means [C, N, 3]``, ``viewmats [C, 1, 4, 4]`` (outputs [C, 1, H, W, ·],
``meta["means2d"]`` [C, 1, N, 2], ``meta["n_cameras"]`` 1). Its kernels are not in the PyPI
wheel: the first CUDA use JIT-compiles them with nvcc (``gsplat/cuda/_backend.py``: without
a CUDA toolkit ``_C`` stays None and every kernel call fails with an AttributeError).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from dynrec.errors import DynrecError
from dynrec.render.reference import RenderOutput

#: What to do when gsplat is unusable (appended to every message).
GPU_HELP = ("install the GPU extra with a CUDA toolkit whose nvcc matches torch's CUDA "
            "(pip install 'dynrec[gpu]'; nvcc on PATH or CUDA_HOME set), or run on the CPU with "
            "--device cpu (the reference rasterizer, much slower)")

_CHECKED: dict[str, Any] = {}


def check_gsplat() -> Any:
    """``gsplat.rasterization``, with its CUDA kernels loaded (compiled on first use).

    Raises :class:`DynrecError` naming the ``gpu`` extra and nvcc when gsplat is missing, has
    no kernels (no CUDA toolkit) or fails to compile them. The outcome is cached.
    """
    if "rasterization" in _CHECKED:
        return _CHECKED["rasterization"]
    try:
        import gsplat
    except ImportError as exc:
        if getattr(exc, "name", None) in ("gsplat", None) and "gsplat" in str(exc):
            raise DynrecError(f"CUDA rendering needs gsplat, which is not installed: {GPU_HELP}.") from exc
        raise DynrecError(f"gsplat is installed but cannot be imported ({type(exc).__name__}: {exc}): "
                          f"{GPU_HELP}.") from exc
    try:
        from gsplat.cuda._backend import _C  # triggers the JIT build when no compiled module exists
    except Exception as exc:
        raise DynrecError(
            f"gsplat {getattr(gsplat, '__version__', '?')} could not compile its CUDA kernels "
            f"({type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}): {GPU_HELP}."
        ) from exc
    if _C is None:
        raise DynrecError(
            f"gsplat {getattr(gsplat, '__version__', '?')} has no CUDA kernels and found no CUDA toolkit "
            f"(nvcc) to compile them: {GPU_HELP}."
        )
    _CHECKED["rasterization"] = gsplat.rasterization
    return gsplat.rasterization


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
    """Render with ``gsplat.rasterization(render_mode="RGB+ED", packed=False)``.

    Shapes as :func:`dynrec.render.rasterize` (one camera, or C cameras with shared or
    per-camera Gaussians); all tensors float32 on a CUDA device. ``info`` is gsplat's
    ``meta`` dict unchanged (``means2d`` / ``radii`` reshape to [C, N, 2]).
    """
    rasterization = check_gsplat()
    single = viewmat.ndim == 2
    viewmats = viewmat[None] if single else viewmat  # [C, 4, 4]
    Ks = K[None] if single else K
    C, N, D = viewmats.shape[0], means.shape[-2], colors.shape[-1]
    dtype = means.dtype
    per_camera = not single and any(
        t.ndim == base + 1 for t, base in ((means, 2), (quats, 2), (scales, 2), (opacities, 1), (colors, 2))
    )
    backgrounds = None if background is None else background.to(dtype).expand(C, D)
    args: dict[str, Any] = {
        "near_plane": near, "far_plane": far, "eps2d": eps2d, "tile_size": tile_size,
        "render_mode": "RGB+ED", "rasterize_mode": "classic", "packed": False, "sh_degree": None,
    }
    if per_camera:  # the camera is gsplat's batch dim, each with one view of its own Gaussians
        render, alpha, meta = rasterization(
            means.expand(C, N, 3), quats.expand(C, N, 4), scales.expand(C, N, 3), opacities.expand(C, N),
            colors.expand(C, N, D), viewmats[:, None], Ks[:, None], width, height,
            backgrounds=None if backgrounds is None else backgrounds[:, None], **args,
        )
        render, alpha = render[:, 0], alpha[:, 0]
    else:
        render, alpha, meta = rasterization(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height, backgrounds=backgrounds, **args
        )
    if single:
        render, alpha = render[0], alpha[0]
    return RenderOutput(rgb=render[..., :-1], depth=render[..., -1:], alpha=alpha, info=meta)

