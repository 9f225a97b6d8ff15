"""Camera trajectory errors: ATE and RPE after Sim(3) Umeyama alignment (evo's definitions).

Poses are ``[T, 4, 4]`` **camera-to-world** matrices (OpenCV axes) by default; pass
``convention="w2c"`` for world-to-camera matrices such as ``Cameras.w2c``. Frame ``i`` of
the prediction corresponds to frame ``i`` of the ground truth.

* **Alignment** (``evo_ape/evo_rpe --align --correct_scale``): Umeyama (1991) similarity
  ``(s, R, t)`` minimising ``sum_i |c_gt_i - (s R c_pred_i + t)|^2`` over camera centres;
  every predicted pose becomes ``[[R, t], [0, 1]] @ [[R_i, s t_i], [0, 1]]``.
* **ATE** (``evo_ape`` ``translation_part``): per-frame error
  ``e_i = |c_gt_i - c_aligned_i|`` in ground-truth scene units; ATE = RMSE over frames.
* **RPE** (``evo_rpe``, delta = 1 frame, consecutive pairs): for each pair ``(i, i+1)``
  ``E_i = (Q_i^-1 Q_{i+1})^-1 (P_i^-1 P_{i+1})`` with Q ground truth and P the aligned
  prediction; RPE-trans = RMSE of ``|translation(E_i)|`` (scene units), RPE-rot = RMSE of
  the rotation angle of ``E_i`` in **degrees**.

evo (GPLv3) is used only in a test as an independent cross-check, never imported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from dynrec.metrics.base import ArrayLike, MetricNotComputable, to_numpy

PoseConvention = Literal["c2w", "w2c"]


@dataclass(frozen=True)
class Sim3:
    """A similarity transform ``x -> scale * R @ x + t``."""

    scale: float
    R: np.ndarray
    t: np.ndarray

    def apply_points(self, x: np.ndarray) -> np.ndarray:
        """Transform points ``[..., 3]``."""
        return self.scale * x @ self.R.T + self.t

    def apply_poses(self, c2w: np.ndarray) -> np.ndarray:
        """Transform camera-to-world poses ``[T, 4, 4]`` (as evo's ``align``): rotations are
        left-multiplied by R, centres mapped by the similarity."""
        out = np.array(c2w, dtype=np.float64, copy=True)
        out[:, :3, :3] = self.R @ out[:, :3, :3]
        out[:, :3, 3] = self.apply_points(out[:, :3, 3])
        return out


@dataclass(frozen=True)
class TrajectoryErrors:
    """ATE / RPE results. Errors are in ground-truth scene units (RPE-rot in degrees).

    ``ate_per_frame`` [T]; ``rpe_trans_per_pair`` / ``rpe_rot_per_pair`` [T-1], entry i
    being the pair (i, i+1); ``alignment`` the Sim(3) applied to the prediction.
    """

    ate: float
    rpe_trans: float
    rpe_rot: float
    ate_per_frame: np.ndarray
    rpe_trans_per_pair: np.ndarray
    rpe_rot_per_pair: np.ndarray
    alignment: Sim3


def umeyama(src: ArrayLike, dst: ArrayLike, with_scale: bool = True) -> Sim3:
    """Least-squares similarity (Umeyama 1991) with ``dst ~ scale * R @ src + t``.

    Args:
        src, dst: corresponding points ``[N, 3]`` (N >= 2; N >= 3 non-collinear for a
            unique rotation).
        with_scale: estimate the scale (Sim(3)); otherwise ``scale = 1`` (SE(3)).

    Raises:
        MetricNotComputable: fewer than 2 points, or ``src`` has no spread (all equal).
    """
    x = to_numpy(src)
    y = to_numpy(dst)
    if x.shape != y.shape or x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"umeyama: src {x.shape} and dst {y.shape} must both be [N, 3]")
    n = x.shape[0]
    if n < 2:
        raise MetricNotComputable("ate", f"{n} pose(s): alignment needs at least 2")
    mx, my = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - mx, y - my
    var_x = (xc**2).sum() / n
    if var_x < 1e-24:
        raise MetricNotComputable(
            "ate", "the predicted camera centres do not move; Sim(3) alignment is undefined"
        )
    cov = yc.T @ xc / n
    u, d, vt = np.linalg.svd(cov)
    sgn = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sgn[2, 2] = -1.0
    r = u @ sgn @ vt
    scale = float(np.trace(np.diag(d) @ sgn) / var_x) if with_scale else 1.0
    t = my - scale * r @ mx
    return Sim3(scale, r, t)


def _as_c2w(poses: ArrayLike, convention: PoseConvention, what: str) -> np.ndarray:
    p = to_numpy(poses)
    if p.ndim != 3 or p.shape[1:] != (4, 4):
        raise ValueError(f"{what} poses must be [T, 4, 4], got {p.shape}")
    if convention == "w2c":
        return np.linalg.inv(p)
    if convention != "c2w":
        raise ValueError(f"convention must be 'c2w' or 'w2c', got {convention!r}")
    return p


def _rotation_angle_deg(r: np.ndarray) -> np.ndarray:
    """Rotation angles (degrees) of rotation matrices ``[..., 3, 3]``, robust near 0 and 180."""
    cos = (np.trace(r, axis1=-2, axis2=-1) - 1.0) / 2.0
    skew = np.stack(
        [r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]], -1
    )
    sin = np.linalg.norm(skew, axis=-1) / 2.0
    return np.degrees(np.arctan2(sin, cos))


def align_trajectory(
    pred: ArrayLike, gt: ArrayLike, convention: PoseConvention = "c2w", with_scale: bool = True
) -> tuple[np.ndarray, np.ndarray, Sim3]:
    """Align predicted to ground-truth poses on camera centres.

    Returns ``(pred_aligned_c2w [T, 4, 4], gt_c2w [T, 4, 4], alignment)``.
    Raises :class:`MetricNotComputable` for < 2 poses or static cameras.
    """
    p = _as_c2w(pred, convention, "predicted")
    g = _as_c2w(gt, convention, "ground-truth")
    if p.shape != g.shape:
        raise ValueError(
            f"predicted ({p.shape[0]}) and ground-truth ({g.shape[0]}) trajectories differ in length"
        )
    gc = g[:, :3, 3]
    if len(gc) >= 2 and ((gc - gc.mean(axis=0)) ** 2).sum(axis=1).mean() < 1e-24:
        raise MetricNotComputable(
            "ate", "the ground-truth camera does not move; Sim(3) alignment is undefined"
        )
    sim = umeyama(p[:, :3, 3], gc, with_scale)
    return sim.apply_poses(p), g, sim


def ate(
    pred: ArrayLike,
    gt: ArrayLike,
    convention: PoseConvention = "c2w",
    align: bool = True,
    reduction: Literal["mean", "none"] = "mean",
) -> float | np.ndarray:
    """Absolute trajectory error (RMSE of camera-centre distances after Sim(3) alignment),
    in ground-truth scene units; lower is better.

    Args:
        pred, gt: poses ``[T, 4, 4]`` (``convention``), T >= 2.
        align: apply the Umeyama Sim(3) (default); ``False`` compares raw centres.
        reduction: ``"mean"`` -> RMSE; ``"none"`` -> per-frame errors ``[T]``.
    """
    if align:
        p, g, _ = align_trajectory(pred, gt, convention)
    else:
        p, g = _as_c2w(pred, convention, "predicted"), _as_c2w(gt, convention, "ground-truth")
    err = np.linalg.norm(p[:, :3, 3] - g[:, :3, 3], axis=-1)
    return err if reduction == "none" else float(np.sqrt((err**2).mean()))


def relative_errors(
    pred_c2w: np.ndarray, gt_c2w: np.ndarray, delta: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """evo's RPE errors for pairs ``(i, i+delta)``: translation norms ``[T-delta]`` and
    rotation angles in degrees ``[T-delta]`` of ``(Q_i^-1 Q_j)^-1 (P_i^-1 P_j)``."""
    if len(gt_c2w) <= delta:
        raise MetricNotComputable(
            "rpe", f"{len(gt_c2w)} pose(s): relative errors need more than {delta}"
        )
    inv_p = np.linalg.inv(pred_c2w)
    inv_g = np.linalg.inv(gt_c2w)
    rel_p = inv_p[:-delta] @ pred_c2w[delta:]
    rel_g = inv_g[:-delta] @ gt_c2w[delta:]
    e = np.linalg.inv(rel_g) @ rel_p
    return np.linalg.norm(e[:, :3, 3], axis=-1), _rotation_angle_deg(e[:, :3, :3])


def rpe(
    pred: ArrayLike,
    gt: ArrayLike,
    convention: PoseConvention = "c2w",
    align: bool = True,
    reduction: Literal["mean", "none"] = "mean",
) -> tuple[float, float] | tuple[np.ndarray, np.ndarray]:
    """Relative pose error over consecutive frames (delta = 1), after Sim(3) alignment.

    Returns ``(rpe_trans, rpe_rot)``: RMSE of the relative translation error (scene units)
    and of the relative rotation angle (degrees); with ``reduction="none"`` the per-pair
    arrays ``[T-1]``. Lower is better.
    """
    if align:
        p, g, _ = align_trajectory(pred, gt, convention)
    else:
        p, g = _as_c2w(pred, convention, "predicted"), _as_c2w(gt, convention, "ground-truth")
    et, er = relative_errors(p, g, 1)
    if reduction == "none":
        return et, er
    return float(np.sqrt((et**2).mean())), float(np.sqrt((er**2).mean()))


def trajectory_errors(
    pred: ArrayLike, gt: ArrayLike, convention: PoseConvention = "c2w"
) -> TrajectoryErrors:
    """ATE, RPE-trans and RPE-rot (one alignment, shared), with per-frame / per-pair errors."""
    p, g, sim = align_trajectory(pred, gt, convention)
    e_ate = np.linalg.norm(p[:, :3, 3] - g[:, :3, 3], axis=-1)
    et, er = relative_errors(p, g, 1)
    rmse = lambda v: float(np.sqrt((v**2).mean()))
    return TrajectoryErrors(rmse(e_ate), rmse(et), rmse(er), e_ate, et, er, sim)
