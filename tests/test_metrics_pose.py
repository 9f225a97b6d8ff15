"""ATE / RPE after Sim(3) Umeyama alignment: known answers and a cross-check against evo
(GPLv3; a test-only dependency, skipped when it is not installed)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dynrec.metrics import (
    MetricNotComputable,
    align_trajectory,
    ate,
    rpe,
    trajectory_errors,
    umeyama,
)


def _random_traj(
    rng: np.random.Generator, t: int = 30, step: float = 1.0, rot_step: float = 0.1
) -> np.ndarray:
    poses = np.tile(np.eye(4), (t, 1, 1))
    poses[:, :3, :3] = Rotation.from_rotvec(
        np.cumsum(rng.normal(0, rot_step, (t, 3)), 0)
    ).as_matrix()
    poses[:, :3, 3] = np.cumsum(rng.normal(0, step, (t, 3)), 0)
    return poses


def _sim3(
    scale: float, rotvec: list[float], t: list[float]
) -> tuple[float, np.ndarray, np.ndarray]:
    return scale, Rotation.from_rotvec(rotvec).as_matrix(), np.array(t)


def _apply(poses: np.ndarray, s: float, r: np.ndarray, t: np.ndarray) -> np.ndarray:
    out = poses.copy()
    out[:, :3, :3] = r @ poses[:, :3, :3]
    out[:, :3, 3] = s * poses[:, :3, 3] @ r.T + t
    return out


def test_umeyama_recovers_similarity() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 3))
    s, r, t = _sim3(2.5, [0.3, -1.2, 0.7], [1.0, -2.0, 0.5])
    sim = umeyama(x, s * x @ r.T + t)
    assert sim.scale == pytest.approx(s, rel=1e-12)
    np.testing.assert_allclose(sim.R, r, atol=1e-12)
    np.testing.assert_allclose(sim.t, t, atol=1e-12)
    assert umeyama(x, x @ r.T, with_scale=False).scale == 1.0


def test_similar_trajectory_has_zero_error() -> None:
    gt = _random_traj(np.random.default_rng(1))
    pred = _apply(gt, *_sim3(0.3, [2.0, 0.1, -0.4], [5.0, 1.0, -3.0]))  # another gauge
    e = trajectory_errors(pred, gt)
    assert e.ate == pytest.approx(0.0, abs=1e-9)
    assert e.rpe_trans == pytest.approx(0.0, abs=1e-9)
    assert e.rpe_rot == pytest.approx(0.0, abs=1e-5)
    assert e.alignment.scale == pytest.approx(1 / 0.3)
    assert e.ate_per_frame.shape == (30,) and e.rpe_trans_per_pair.shape == (29,)
    # without alignment the gauge difference is an error
    assert ate(pred, gt, align=False) > 1.0


def test_known_answers() -> None:
    # ground truth: 8 frames on a line; prediction: the same plus a perpendicular offset
    # d * pattern, with the pattern uncorrelated with the frame index and of mean 0.
    # Umeyama then shrinks the scale to var_x / (var_x + d^2); closed form:
    # ATE^2 = (s - 1)^2 var_x + s^2 d^2.
    t, d = 8, 0.1
    pattern = np.array([1, -1, -1, 1, 1, -1, -1, 1], float)
    gt = np.tile(np.eye(4), (t, 1, 1))
    gt[:, 0, 3] = np.arange(t)
    pred = gt.copy()
    pred[:, 1, 3] = d * pattern
    var_x = np.var(np.arange(t))
    s = var_x / (var_x + d**2)
    _, _, sim = align_trajectory(pred, gt)
    assert sim.scale == pytest.approx(s)  # (R is only defined up to a rotation about the line)
    assert ate(pred, gt) == pytest.approx(np.sqrt((s - 1) ** 2 * var_x + s**2 * d**2), rel=1e-12)
    per = ate(pred, gt, reduction="none")
    np.testing.assert_allclose(per, np.hypot((s - 1) * (np.arange(t) - 3.5), s * d), rtol=1e-12)
    # RPE-trans: consecutive relative motions differ by s*(1,0,0) vs (1,0,0) and the offset jump
    et, _ = rpe(pred, gt, reduction="none")
    np.testing.assert_allclose(et, np.hypot(s - 1, s * d * np.diff(pattern)), rtol=1e-9, atol=1e-12)
    # one rotated frame: RPE-rot sees it twice (entering and leaving), in degrees
    pred2 = gt.copy()
    pred2[4, :3, :3] = Rotation.from_rotvec([0, 0, np.radians(3.0)]).as_matrix()
    _, rot = rpe(pred2, gt, reduction="none")
    expected = np.zeros(t - 1)
    expected[[3, 4]] = 3.0
    np.testing.assert_allclose(rot, expected, atol=1e-9)
    assert rpe(pred2, gt)[1] == pytest.approx(np.sqrt(2 * 9.0 / (t - 1)))


def test_w2c_convention() -> None:
    rng = np.random.default_rng(2)
    gt, pred = _random_traj(rng), _random_traj(rng)
    a = trajectory_errors(pred, gt)
    b = trajectory_errors(np.linalg.inv(pred), np.linalg.inv(gt), convention="w2c")
    assert a.ate == pytest.approx(b.ate) and a.rpe_rot == pytest.approx(b.rpe_rot)


def test_degenerate_trajectories() -> None:
    gt = _random_traj(np.random.default_rng(3), t=5)
    static = np.tile(np.eye(4), (5, 1, 1))
    with pytest.raises(MetricNotComputable, match="predicted"):
        ate(static, gt)
    with pytest.raises(MetricNotComputable, match="ground-truth"):
        ate(gt, static)
    with pytest.raises(MetricNotComputable):
        ate(gt[:1], gt[:1])
    with pytest.raises(ValueError):
        ate(gt[:4], gt)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_evo(seed: int) -> None:
    pytest.importorskip("evo")
    from evo.core import metrics
    from evo.core.trajectory import PosePath3D

    rng = np.random.default_rng(seed)
    gt = _random_traj(rng, t=25 + seed)
    # a noisy prediction in a different gauge (scale, rotation, offset)
    noisy = gt.copy()
    noisy[:, :3, 3] += rng.normal(0, 0.3, (len(gt), 3))
    noisy[:, :3, :3] = (
        Rotation.from_rotvec(rng.normal(0, 0.05, (len(gt), 3))).as_matrix() @ noisy[:, :3, :3]
    )
    pred = _apply(noisy, *_sim3(0.5 + seed, [0.4, 1.0, -0.2 * seed], [3.0, -1.0, 2.0]))

    ref = PosePath3D(poses_se3=list(gt))
    est = PosePath3D(poses_se3=list(pred))
    est.align(ref, correct_scale=True)  # evo_ape / evo_rpe --align --correct_scale
    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data((ref, est))
    rpe_t = metrics.RPE(
        metrics.PoseRelation.translation_part,
        delta=1,
        delta_unit=metrics.Unit.frames,
        all_pairs=True,
    )
    rpe_t.process_data((ref, est))
    rpe_r = metrics.RPE(
        metrics.PoseRelation.rotation_angle_deg,
        delta=1,
        delta_unit=metrics.Unit.frames,
        all_pairs=True,
    )
    rpe_r.process_data((ref, est))
    rmse = metrics.StatisticsType.rmse

    ours = trajectory_errors(pred, gt)
    assert ours.ate == pytest.approx(ape.get_statistic(rmse), rel=1e-9)
    assert ours.rpe_trans == pytest.approx(rpe_t.get_statistic(rmse), rel=1e-9)
    assert ours.rpe_rot == pytest.approx(rpe_r.get_statistic(rmse), rel=1e-7)
    np.testing.assert_allclose(ours.ate_per_frame, ape.error, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.rpe_trans_per_pair, rpe_t.error, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.rpe_rot_per_pair, rpe_r.error, rtol=1e-7, atol=1e-9)
    assert ate(pred, gt) == pytest.approx(ours.ate) and rpe(pred, gt) == pytest.approx(
        (ours.rpe_trans, ours.rpe_rot)
    )
