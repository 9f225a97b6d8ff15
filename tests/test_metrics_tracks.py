"""Track metrics: PCK-T, EPE-3D, jitter, smoothness and warp-based temporal consistency."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dynrec.metrics import (
    MetricNotComputable,
    epe_3d,
    motion_smoothness,
    pck_t,
    temporal_jitter,
    warp_error,
    within_3d,
)


def test_pck_t_known_answer() -> None:
    h, w = 48, 64  # threshold 0.05 * 64 = 3.2 px
    gt = np.zeros((4, 2, 2))
    pred = gt.copy()
    pred[:, :, 0] = np.array([0.0, 3.1, 3.3, 10.0])[:, None]  # errors per point
    visible = np.ones((4, 2), bool)
    assert pck_t(pred, gt, (h, w), visible) == pytest.approx(0.5)
    visible[3] = False  # the far-off point is occluded: not counted
    assert pck_t(pred, gt, (h, w), visible) == pytest.approx(2 / 3)
    visible[:, 1] = False
    per = pck_t(pred, gt, (h, w), visible, reduction="none")
    assert per[0] == pytest.approx(2 / 3) and np.isnan(per[1])
    pred[0, 0] = np.nan  # a lost prediction counts as wrong
    assert pck_t(pred, gt, (h, w), visible) == pytest.approx(1 / 3)
    assert pck_t(torch.from_numpy(gt), torch.from_numpy(gt), (h, w)) == 1.0
    with pytest.raises(MetricNotComputable):
        pck_t(pred, gt, (h, w), np.zeros((4, 2), bool))


def test_epe_3d_known_answer() -> None:
    gt = np.zeros((2, 3, 3))
    pred = gt.copy()
    pred[0, :, 0] = 3.0
    pred[1, :, 1] = 4.0
    pred[1, 2] = [30.0, 40.0, 0.0]
    valid = np.ones((2, 3), bool)
    valid[1, 2] = False
    assert epe_3d(pred, gt, valid) == pytest.approx((3 * 3 + 4 * 2) / 5)
    np.testing.assert_allclose(epe_3d(pred, gt, valid, reduction="none"), [3.5, 3.5, 3.0])
    assert within_3d(pred, gt, 3.5, valid) == pytest.approx(3 / 5)


def test_smoothness_and_jitter_known_answers() -> None:
    t = np.arange(12, dtype=float)
    const_vel = np.stack([2 * t, -t], -1)[None]  # [1, T, 2]
    assert motion_smoothness(const_vel) == pytest.approx(0.0, abs=1e-12)
    assert temporal_jitter(const_vel) == pytest.approx(0.0, abs=1e-12)
    quad = np.stack([t**2, np.zeros_like(t)], -1)[None]  # constant acceleration 2
    assert motion_smoothness(quad) == pytest.approx(2.0)
    assert temporal_jitter(quad) == pytest.approx(0.0, abs=1e-9)  # a quadratic is its own fit
    eps = 0.5
    zigzag = np.stack([eps * (-1.0) ** t, np.zeros_like(t)], -1)[None]
    assert motion_smoothness(zigzag) == pytest.approx(4 * eps)
    assert temporal_jitter(zigzag) == pytest.approx(48 / 35 * eps)
    # jitter separates noise from smooth motion: added zigzag on a parabola
    both = quad + zigzag
    assert temporal_jitter(both) == pytest.approx(48 / 35 * eps)
    per = temporal_jitter(both, reduction="none")
    assert per.shape == (12,) and np.isnan(per[:2]).all() and np.isnan(per[-2:]).all()


def test_smoothness_respects_visibility() -> None:
    t = np.arange(10, dtype=float)
    x = np.stack([t, t], -1)[None].repeat(2, axis=0)
    x[1, 5] = [100.0, -100.0]  # an outlier in a frame where the point is invisible
    visible = np.ones((2, 10), bool)
    visible[1, 5] = False
    assert motion_smoothness(x, visible) == pytest.approx(0.0, abs=1e-12)
    assert temporal_jitter(x, visible) == pytest.approx(0.0, abs=1e-12)
    assert motion_smoothness(x) > 10
    with pytest.raises(MetricNotComputable):
        temporal_jitter(x[:, :4])
    with pytest.raises(MetricNotComputable):
        motion_smoothness(x, np.zeros((2, 10), bool))


def _moving_video(t: int = 6, h: int = 32, w: int = 40, shift: int = 2) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.random((h, w + shift * t, 3))
    return np.stack([base[:, shift * k : shift * k + w] for k in range(t)])  # content moves left


def test_warp_error() -> None:
    t, shift = 6, 2
    video = _moving_video(t, shift=shift)
    ys, xs = np.mgrid[4:28:4, 16:36:4]
    start = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], -1)  # pixel centres
    follow = np.stack([start - [shift * k, 0] for k in range(t)], 1)  # [N, T, 2]
    assert warp_error(video, follow) == pytest.approx(0.0, abs=1e-12)
    still = np.repeat(start[:, None], t, axis=1)
    e = warp_error(video, still)
    assert e > 0.1  # colours at a fixed pixel change as the content moves
    per = warp_error(video, still, reduction="none")
    assert per.shape == (t - 1,) and np.mean(per) == pytest.approx(e)
    # a flicker of +0.1 in frame 3 shows up in pairs (2, 3) and (3, 4) only
    flicker = video.copy()
    flicker[3] = np.clip(flicker[3] + 0.1, 0, 1)
    per = warp_error(flicker, follow, reduction="none")
    assert per[0] == pytest.approx(0.0, abs=1e-12) and per[2] > 0.05 and per[3] > 0.05
    # invisible or out-of-image samples are skipped
    vis = np.ones(follow.shape[:2], bool)
    vis[:, 3] = False
    assert warp_error(flicker, follow, vis) == pytest.approx(0.0, abs=1e-12)
    out = follow.copy()
    out[:, 3] = -50.0
    assert warp_error(flicker, out) == pytest.approx(0.0, abs=1e-12)
