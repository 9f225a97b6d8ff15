"""The metric helpers of ``python -m bench real`` on cases with known answers."""

import numpy as np
import pytest

from bench.bench_real import camera_ate, mask_coverage, plain_lk, tapvid_metrics


def test_tapvid_delta_avg_and_survival():
    # 1 track, query at frame 0, 5 later frames visible in the truth with errors 0.5, 1.5, 3, 6, 20 px
    T = 6
    gt = np.zeros((1, T, 2))
    pred = gt.copy()
    pred[0, 1:, 0] = [0.5, 1.5, 3.0, 6.0, 20.0]
    pred[0, 0, 0] = 100.0  # the query frame itself is not evaluated
    gt_vis = np.ones((1, T), bool)
    vis = np.array([[True, True, True, False, True, False]])
    m = tapvid_metrics(pred, vis, gt, gt_vis, np.array([0]))
    # within 1: 1/5, 2: 2/5, 4: 3/5, 8: 4/5, 16: 4/5 -> mean 0.56
    assert m["delta_avg"] == pytest.approx(0.56)
    assert m["within"]["16"] == pytest.approx(0.8)
    assert m["survival"] == pytest.approx(3 / 5)
    assert m["samples"] == 5
    assert m["median_error_px"] == pytest.approx(3.0)


def test_tapvid_counts_only_after_query_and_visible():
    gt = np.zeros((2, 4, 2))
    pred = gt + 100.0  # everything wrong ...
    pred[1, 3] = 0.0  # ... except track 1 at frame 3
    gt_vis = np.array([[True, True, False, False], [False, False, True, True]])
    m = tapvid_metrics(pred, gt_vis, gt, gt_vis, np.array([0, 2]))
    # evaluated samples: (0, 1) wrong and (1, 3) right
    assert m["samples"] == 2
    assert m["delta_avg"] == pytest.approx(0.5)
    assert m["survival"] == pytest.approx(1.0)


def test_camera_ate_is_invariant_to_similarity_and_in_percent_of_path():
    rng = np.random.default_rng(0)
    gt = np.cumsum(rng.normal(size=(20, 3)), axis=0)
    path = np.linalg.norm(np.diff(gt, axis=0), axis=1).sum()
    angle = 0.7
    R = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    est = 0.3 * gt @ R.T + np.array([1.0, -2.0, 5.0])
    res = camera_ate(est, gt)
    assert res["ate_m"] == pytest.approx(0.0, abs=1e-9)
    assert res["path_m"] == pytest.approx(path)
    # one frame off by 1 m along x (after alignment, in GT units): less than but close to the
    # RMSE of that offset alone; a percentage of the path
    est2 = gt.copy()
    est2[5, 0] += 1.0
    res2 = camera_ate(est2, gt)
    assert 0 < res2["ate_m"] <= 1.0 / np.sqrt(20) + 1e-9
    assert res2["ate_pct_path"] == pytest.approx(100 * res2["ate_m"] / path)
    # unregistered frames are left out of the alignment and the error
    reg = np.ones(20, bool)
    reg[5] = False
    assert camera_ate(est2, gt, reg)["ate_m"] == pytest.approx(0.0, abs=1e-9)


def test_camera_ate_static_estimate():
    gt = np.c_[np.arange(5.0), np.zeros(5), np.zeros(5)]  # moves 1 m a frame along x
    res = camera_ate(np.zeros((5, 3)), gt)  # the estimate says the camera never moved
    assert res["ate_m"] == pytest.approx(np.sqrt(2.0))  # RMS of -2..2 about the mean
    assert res["ate_pct_path"] == pytest.approx(100 * np.sqrt(2.0) / 4)


def test_mask_coverage_recall_and_hull_ratio():
    masks = np.zeros((2, 40, 40), bool)
    masks[0, 10:30, 10:30] = True  # 400 px
    masks[1, 10:30, 10:20] = True  # 200 px: half the points' square
    square = np.array([[10.5, 10.5], [29.5, 10.5], [29.5, 29.5], [10.5, 29.5], [20.5, 20.5]])
    res = mask_coverage(masks, [square, square], [np.zeros(5, int), np.zeros(5, int)])
    # frame 0: all 5 in; frame 1: (10.5,10.5), (10.5,29.5) in -> 2/5
    assert res["recall"] == pytest.approx((1.0 + 0.4) / 2)
    assert res["recall_pooled"] == pytest.approx(7 / 10)
    # hull of the corners (pixels 10..29 filled by fillConvexPoly): 20 x 20 = 400 px
    assert res["area_ratio"] == pytest.approx((400 / 400 + 200 / 400) / 2)
    assert res["area_ratio_object_hulls"] == pytest.approx(res["area_ratio"])
    assert res["frames"] == 2 and res["empty_mask_frames"] == 0


def test_mask_coverage_skips_frames_with_few_points():
    masks = np.zeros((1, 10, 10), bool)
    res = mask_coverage(masks, [np.array([[1.0, 1.0], [50.0, 50.0]])])
    assert res["frames"] == 0 and res["recall"] is None


def test_plain_lk_follows_a_translating_blob():
    yy, xx = np.mgrid[:64, :64]
    frames = []
    for t in range(4):
        cx, cy = 20 + 2 * t, 30 + t
        img = 255 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 30.0)
        frames.append(np.repeat(img[..., None], 3, axis=2).astype(np.uint8))
    xy, vis = plain_lk(np.stack(frames), np.array([[0, 20.5, 30.5]]))
    assert vis.all()
    assert np.allclose(xy[0, 3], [26.5, 33.5], atol=0.3)


def test_direction_error_after_best_rotation():
    from bench.bench_real import direction_error

    rng = np.random.default_rng(1)
    gt = rng.normal(size=(10, 3))
    gt /= np.linalg.norm(gt, axis=1, keepdims=True)
    c, s = np.cos(1.0), np.sin(1.0)
    R = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    assert direction_error(2.0 * gt @ R.T, gt) == pytest.approx(0.0, abs=1e-6)
    flipped = gt.copy()
    flipped[0] *= -1  # one direction reversed: large error for it alone
    assert 0 < direction_error(flipped, gt) < 180
