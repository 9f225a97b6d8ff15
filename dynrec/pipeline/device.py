"""Device resolution: ``auto`` picks CUDA when present; asking for CUDA without it is an error."""

from __future__ import annotations

import torch

from dynrec.errors import DynrecError


def resolve_device(name: str) -> str:
    """Map ``auto | cpu | cuda`` to an available torch device string."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise DynrecError(
            "--device cuda was asked for but no CUDA device is available "
            f"(torch {torch.__version__}); use --device cpu or --device auto"
        )
    if name not in ("cpu", "cuda"):
        raise DynrecError(f"unknown device '{name}'; use auto, cpu or cuda")
    return name
