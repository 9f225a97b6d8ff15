"""Rebuild a trained scene from ``recon/model.pt`` + ``recon/model.json`` (any size: after
densification and level 2), for every consumer of a finished reconstruction."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import torch

from dynrec.errors import DynrecError
from dynrec.model.gaussians import Gaussians
from dynrec.model.himor import GlobalBases, MotionTree, TreeConfig
from dynrec.model.scene import DynamicScene
from dynrec.model.sirenpose import SirenResidual


class SceneSettings(Protocol):
    """The reconstruction settings that shape a saved scene (``ReconParams`` has them)."""

    motion: str
    skinning: str
    siren_hidden: int
    siren_layers: int
    siren_w0: float
    siren_lambda: float


def _sub(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def restore_scene(state: dict[str, torch.Tensor], settings: SceneSettings) -> DynamicScene:
    """The scene of ``DynamicScene.state_dict()`` output ``state``."""
    g = Gaussians.from_state_dict(_sub(state, "gaussians."))
    motion_state = _sub(state, "motion.")
    motion: MotionTree | GlobalBases
    if settings.motion == "himor":
        motion = MotionTree.from_state_dict(motion_state, TreeConfig(skin_by=settings.skinning))
    else:
        motion = GlobalBases(motion_state["bases_rot6d"], motion_state["bases_trans"])
    residual_state = _sub(state, "residual.")
    residual = None
    if residual_state:
        residual = SirenResidual(motion.num_frames, residual_state["center"], float(residual_state["extent"]),
                                 settings.siren_hidden, settings.siren_layers, settings.siren_w0,
                                 settings.siren_lambda)
        residual.load_state_dict(residual_state)
    return DynamicScene(g, motion, residual)


class _Saved:
    """Settings read from ``model.json`` (older files lack ``skinning``: HiMoR's canonical choice)."""

    def __init__(self, params: dict[str, Any]):
        self.motion = str(params.get("motion", "himor"))
        self.skinning = str(params.get("skinning", "canonical"))
        self.siren_hidden = int(params.get("siren_hidden", 64))
        self.siren_layers = int(params.get("siren_layers", 3))
        self.siren_w0 = float(params.get("siren_w0", 30.0))
        self.siren_lambda = float(params.get("siren_lambda", 1.0))


def load_scene(recon: Path, device: str | torch.device = "cpu") -> DynamicScene:
    """The trained scene of a ``recon`` stage folder, in eval mode on ``device``."""
    model, meta = recon / "model.pt", recon / "model.json"
    if not model.is_file() or not meta.is_file():
        raise DynrecError(f"{recon}: no trained model (model.pt / model.json); run `dynrec reconstruct`")
    params = json.loads(meta.read_text()).get("params", {})
    state = torch.load(model, map_location=device, weights_only=True)["scene"]
    return restore_scene(state, _Saved(params)).eval()
