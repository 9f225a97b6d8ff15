"""X-Pose as an optional adapter: the user points at a clone of its code and a checkpoint.

X-Pose (IDEA-Research) has no installable package and its deformable-attention kernel is
CUDA-only, so nothing here is imported unless asked for. :func:`load_xpose` checks the
paths, puts ``code_dir`` on ``sys.path`` and builds the model the way X-Pose's own
``inference_on_a_image.py`` does (``util.config.Config`` + ``models.build_model``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from dynrec.errors import DynrecError

BACKEND = "keypoints (X-Pose)"


def load_xpose(
    code_dir: Path | str | None,
    checkpoint: Path | str | None,
    config: Path | str | None = None,
    device: str = "cuda",
) -> Any:
    """Build X-Pose from the clone ``code_dir`` with weights ``checkpoint``.

    ``config`` defaults to ``<code_dir>/config_model/UniPose_SwinT.py``.

    Raises:
        DynrecError: a path is missing, or the clone cannot be imported.
    """
    if code_dir is None or not Path(code_dir).expanduser().is_dir():
        raise DynrecError(
            f"{BACKEND}: X-Pose code folder {code_dir!s} not found; clone "
            "https://github.com/IDEA-Research/X-Pose and pass its folder, "
            "or use the ViTPose backend (or --offline)"
        )
    code = Path(code_dir).expanduser().resolve()
    if checkpoint is None or not Path(checkpoint).expanduser().is_file():
        raise DynrecError(
            f"{BACKEND}: X-Pose checkpoint {checkpoint!s} not found; download its weights "
            "(e.g. unipose_swint.pth) and pass the file, or use the ViTPose backend (or --offline)"
        )
    cfg = Path(config).expanduser() if config else code / "config_model" / "UniPose_SwinT.py"
    if not cfg.is_file():
        raise DynrecError(f"{BACKEND}: X-Pose config {cfg} not found")
    if str(code) not in sys.path:
        sys.path.insert(0, str(code))
    try:
        import torch
        from models import build_model  # type: ignore[import-not-found]  # X-Pose's package
        from util.config import Config  # type: ignore[import-not-found]
    except ImportError as e:
        raise DynrecError(f"{BACKEND}: cannot import X-Pose from {code} ({e})") from e
    args = Config.fromfile(str(cfg))
    args.device = device
    model = build_model(args)
    state = torch.load(Path(checkpoint).expanduser(), map_location="cpu", weights_only=False)
    model.load_state_dict(state.get("model", state), strict=False)
    return model.eval().to(device)
