"""Per-frame camera refinement: learnable SE(3) corrections of the input cameras.

SirenPose (Table II) reports camera pose errors (ATE / RPE) that improve on the input
trajectory; for the cameras to change, reconstruction must be able to move them. Frame t
gets a tangent vector ``ξ_t = (ω_t, u_t)`` [6] (zero at the start) and

    w2c'_t = Δ_t @ w2c_t,    Δ_t = [[exp(ω_t), s u_t], [0, 1]]

(**left** multiplication: the correction acts in the camera frame, after the input
world-to-camera). ``ω`` is a rotation vector (radians) about the camera centre and ``v`` a
camera-frame translation ``v = s u``, so they decouple: ``v = 0`` leaves the camera centre
where it was (the centre moves by ``-R'^T v``). The rotation is
:func:`~dynrec.geometry.se3.so3_exp`; the translation is used as is (SO(3) x R^3 rather
than the SE(3) exponential's screw motion, so the regulariser penalises angle and distance
directly). ``u`` is stored in units of the scene scale ``s`` (e.g. the camera-to-scene
distance): a step of Adam then moves the image about as much through ``u`` as through
``ω`` (a rotation of ε rad and a translation of ε s both shift points at distance s by
about ``f ε`` pixels), which matters because the two are nearly ambiguous (rotating about
the centre vs translating sideways) and Adam scales each parameter on its own.

The regulariser keeps the corrections near the input cameras (and fixes the gauge: a
rigid motion of the whole world and all cameras would otherwise be free):
``mean_t (w_rot |ω_t|^2 + w_trans |u_t|^2)``, ``|u| = |v| / s``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dynrec.geometry.se3 import make_transform, so3_exp


class CameraRefiner(nn.Module):
    """Per-frame corrections ``delta = (ω, u)`` [T, 6] of input cameras ``w2c`` [T, 4, 4].

    Args:
        w2c: [T, 4, 4] input world-to-camera matrices (kept as a buffer).
        scene_scale: ``s``, the unit of ``u`` (e.g. the mean camera-to-scene distance);
        rot_weight / trans_weight: regulariser weights of ``|ω|^2`` and ``|u|^2``.
    """

    def __init__(
        self,
        w2c: Tensor,
        scene_scale: float = 1.0,
        rot_weight: float = 1.0,
        trans_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if w2c.ndim != 3 or w2c.shape[1:] != (4, 4):
            raise ValueError(f"CameraRefiner: w2c must be [T, 4, 4], got {tuple(w2c.shape)}")
        if scene_scale <= 0:
            raise ValueError(f"CameraRefiner: scene_scale must be > 0, got {scene_scale}")
        self.register_buffer("w2c_input", w2c.detach().clone())
        self.delta = nn.Parameter(w2c.new_zeros(w2c.shape[0], 6))
        self.register_buffer("scene_scale", w2c.new_tensor(float(scene_scale)))  # in checkpoints
        self.rot_weight = float(rot_weight)
        self.trans_weight = float(trans_weight)

    @property
    def num_frames(self) -> int:
        return self.delta.shape[0]

    def corrections(self, ts: Tensor | None = None) -> Tensor:
        """``Δ_t`` [B, 4, 4] at frames ``ts`` [B] (all frames when None)."""
        xi = self.delta if ts is None else self.delta[ts]
        return make_transform(so3_exp(xi[..., :3]), self.scene_scale * xi[..., 3:])

    def w2c(self, ts: Tensor) -> Tensor:
        """Refined world-to-camera ``Δ_t @ w2c_t`` [B, 4, 4] at frames ``ts`` [B] (differentiable)."""
        return self.corrections(ts) @ self.w2c_input[ts]

    def refined_all(self) -> Tensor:
        """All refined cameras [T, 4, 4], detached (to save as the ``Cameras`` artifact)."""
        with torch.no_grad():
            return self.corrections() @ self.w2c_input

    def regulariser(self, ts: Tensor | None = None) -> Tensor:
        """``mean_t (w_rot |ω_t|^2 + w_trans |u_t|^2)`` over frames ``ts`` (all when None)."""
        xi = self.delta if ts is None else self.delta[ts]
        rot = xi[..., :3].square().sum(dim=-1)
        trans = xi[..., 3:].square().sum(dim=-1)
        return (self.rot_weight * rot + self.trans_weight * trans).mean()

    def param_group(self, lr: float) -> dict:
        """Adam parameter group ``{"params", "lr", "name": "camera_delta"}``."""
        return {"params": [self.delta], "lr": lr, "name": "camera_delta"}


__all__ = ["CameraRefiner"]
