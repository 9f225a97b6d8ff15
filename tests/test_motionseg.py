"""Camera-motion models of the offline masks (dynrec.vision.motionseg) on exact synthetic tracks."""

from __future__ import annotations

import numpy as np
import pytest

from dynrec.geometry.camera import project
from dynrec.vision.motionseg import (
    MotionParams,
    camera_motion_scores,
    local_motion,
    multiview_residuals,
    multiview_scores,
    pair_residuals,
)

W, H = 160, 120
F = 0.9 * max(W, H)
K = np.array([[F, 0.0, W / 2], [0.0, F, H / 2], [0.0, 0.0, 1.0]])


def _look_at(centre: np.ndarray, target: np.ndarray) -> np.ndarray:
    """w2c [4, 4] of an OpenCV camera at ``centre`` looking at ``target`` (y down)."""
    z = target - centre
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, -1.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = R, -R @ centre
    return w2c


def _scene(rng: np.random.Generator, n_static: int = 400, n_moving: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Static points in a box around the origin and a small cluster of moving ones:
    (points [N, 3] at t = 0, is_moving [N])."""
    static = rng.uniform([-3, -1.5, -3], [3, 1.5, 3], (n_static, 3))
    moving = rng.normal([0.3, 0.0, 0.2], 0.15, (n_moving, 3))
    return np.concatenate([static, moving]), np.r_[np.zeros(n_static, bool), np.ones(n_moving, bool)]


def _tracks(points: np.ndarray, moving: np.ndarray, w2c: np.ndarray, velocity: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """Exact tracks (xy [N, T, 2], visible [N, T]) of the points, the moving ones moving
    with ``velocity`` [3] per frame."""
    T = len(w2c)
    xy = np.zeros((len(points), T, 2))
    visible = np.zeros((len(points), T), bool)
    for t in range(T):
        p = points + np.outer(moving, velocity) * t
        uv, z = project(p, K, w2c[t])
        xy[:, t] = uv
        visible[:, t] = (z > 0.1) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
    return xy, visible


def _orbit(T: int, radius: float = 8.0, arc: float = 0.6) -> np.ndarray:
    angles = np.linspace(-arc / 2, arc / 2, T)
    return np.stack([_look_at(np.array([radius * np.sin(a), -0.5, -radius * np.cos(a)]), np.zeros(3)) for a in angles])


def test_a_panning_camera_is_a_homography_and_its_residual_is_the_independent_motion() -> None:
    rng = np.random.default_rng(0)
    points, moving = _scene(rng)
    centre = np.array([0.0, -0.5, -8.0])
    w2c = np.stack([_look_at(centre, np.array([x, 0.0, 0.0])) for x in (0.0, 0.4)])  # pure rotation: a pan
    xy, visible = _tracks(points, moving, w2c, np.array([0.0, 0.2, 0.0]))
    both = visible.all(1)
    res, noise = pair_residuals(xy[both, 0], xy[both, 1], None, K, MotionParams())
    assert noise < 0.05  # the homography explains the static points exactly
    moved = res > 1.0
    np.testing.assert_array_equal(moved, moving[both])


@pytest.mark.slow
def test_multiview_residuals_find_points_moving_along_an_orbiting_cameras_epipolar_lines() -> None:
    rng = np.random.default_rng(1)
    points, moving = _scene(rng)
    w2c = _orbit(24)
    # the cluster moves sideways, as the camera does: mostly along the epipolar lines
    xy, visible = _tracks(points, moving, w2c, np.array([0.03, 0.0, 0.0]))
    err = multiview_residuals(xy, visible, (W, H))
    assert err is not None
    static_err = err[~moving][np.isfinite(err[~moving])]
    assert np.median(static_err) < 0.05
    scores = multiview_scores(err)
    seen = visible.sum(1) >= 3
    assert (scores.track[moving & seen] >= 0.5).mean() > 0.95
    assert (scores.track[~moving & seen] < 0.2).mean() > 0.95


def _wall_scene(rng: np.random.Generator, T: int = 20) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An orbiting camera before a textured wall (one depth, so neighbours move alike) and a
    cluster moving sideways in front of it: (xy [N, T, 2], visible [N, T], is_moving [N])."""
    wall = np.c_[rng.uniform(-6, 6, 600), rng.uniform(-3, 3, 600), np.full(600, 3.0)]
    cluster = rng.normal([0.0, 0.0, 0.0], 0.3, (60, 3))
    moving = np.r_[np.zeros(600, bool), np.ones(60, bool)]
    xy, visible = _tracks(np.concatenate([wall, cluster]), moving, _orbit(T), np.array([0.03, 0.0, 0.0]))
    return xy, visible, moving


def test_local_motion_is_motion_against_the_still_tracks_around_a_track() -> None:
    rng = np.random.default_rng(3)
    xy, visible, moving = _wall_scene(rng)
    drift = np.zeros(len(xy), bool)
    drift[:20] = True  # background tracks that drift 0.05 px a frame, as a re-anchored tracker does
    xy = xy.copy()
    xy[drift] += 0.05 * np.arange(xy.shape[1])[None, :, None]
    liar = 20  # a moving track wrongly among the still ones: its own motion must not be its reference
    xy[liar] += np.c_[np.arange(xy.shape[1]) * 1.5, np.zeros(xy.shape[1])]
    still = ~moving
    local = local_motion(xy, visible, still)
    wall = ~moving & (visible.sum(1) > 10)
    wall[liar] = False
    assert np.nanmax(local[wall]) < 0.1  # drifting ones included
    assert local[liar] == 1.0
    assert (local[moving] >= 0.5).mean() > 0.95 and np.median(local[moving]) == 1.0


@pytest.mark.slow
def test_multiview_false_alarms_that_move_with_their_neighbours_are_dropped(monkeypatch: pytest.MonkeyPatch
                                                                          ) -> None:
    import dynrec.vision.motionseg as ms

    rng = np.random.default_rng(4)
    xy, visible, moving = _wall_scene(rng)
    alarms = np.zeros(len(xy), bool)
    alarms[rng.choice(600, 40, replace=False)] = True

    def residuals(xy_: np.ndarray, visible_: np.ndarray, size: tuple[int, int], params: MotionParams | None = None
                  ) -> np.ndarray:
        # COLMAP's residuals as seen on the development scenes: ~0.3 px noise, large on the moving
        # cluster and on a few background tracks whose anchors drifted
        err = np.abs(rng.normal(0.0, 0.3, visible_.shape))
        err[moving | alarms] += 5.0
        return np.where(visible_, err, np.nan)

    monkeypatch.setattr(ms, "multiview_residuals", residuals)
    scores, method = camera_motion_scores(xy, visible, None, (W, H))
    assert method == "multiview+pairs"
    called = scores.moving(0.5, 1, min_strong=10**9)  # the multi-view model's calls count fully here
    seen = visible.sum(1) >= 3
    assert called[moving & seen].mean() > 0.95
    assert not called[alarms].any()


@pytest.mark.slow
def test_camera_motion_scores_pick_the_model_the_camera_needs() -> None:
    rng = np.random.default_rng(2)
    points, moving = _scene(rng)
    velocity = np.array([0.03, 0.0, 0.0])
    still = np.repeat(_orbit(1), 12, axis=0)
    xy, visible = _tracks(points, moving, still, velocity)
    scores, method = camera_motion_scores(xy, visible, None, (W, H))
    assert method == "pairs"  # a still camera: displacement is motion
    assert (scores.track[moving] >= 0.5).all() and (scores.track[~moving & (visible.sum(1) > 1)] < 0.2).all()
    xy, visible = _tracks(points, moving, _orbit(20), velocity)
    _, method = camera_motion_scores(xy, visible, None, (W, H))
    assert method == "multiview+pairs"
    depth = np.ones((20, H, W))
    _, method = camera_motion_scores(xy, visible, depth, (W, H))
    assert method == "pairs"  # with z-depth the pairs use PnP, which sees this motion


def test_undecided_tracks_join_the_foreground_through_a_chain_of_near_neighbours() -> None:
    from dynrec.vision.motionseg import _joined

    # a chain 0-1-2-3 with steps of 1 px, and point 4 far away; 0 is moving, 1..4 undecided
    points = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [10.0, 0.0]])
    strong = np.array([True, False, False, False, False])
    weak = ~strong
    np.testing.assert_array_equal(_joined(points, strong, weak, 1.5), [False, True, True, True, False])
    # a still point (neither strong nor weak) breaks the chain
    weak[1] = False
    np.testing.assert_array_equal(_joined(points, strong, weak, 1.5), [False, False, False, False, False])


def test_prompt_box_parses_to_ordered_corners_in_kept_pixels_and_rejects_bad_boxes() -> None:
    from dynrec.errors import DynrecError
    from dynrec.vision.motionseg import parse_box, parse_points

    assert parse_box("300,200,100,40", 2, 10, 64, 48, (0.1, 0.1)) == (2, 10.0, 4.0, 30.0, 20.0)
    assert parse_points("10,20; 30,40", 0, 10, 64, 48, (1.0, 1.0)) == [(0, 10.0, 20.0), (0, 30.0, 40.0)]
    for text, message in (("1,2,3", "expects 'x0,y0,x1,y1'"), ("0,0,700,10", "outside the image"),
                          ("5,5,6,20", "under 2 pixels")):
        with pytest.raises(DynrecError, match=message):
            parse_box(text, 0, 10, 64, 48, (1.0, 1.0))


def test_box_tracks_are_those_on_the_object_grabcut_finds_in_the_box() -> None:
    from dynrec.vision.motionseg import box_tracks

    rng = np.random.default_rng(3)
    frame = np.clip(rng.normal(90, 12, (48, 64, 3)), 0, 255).astype(np.uint8)  # grey, noisy background
    frame[12:30, 20:36] = np.clip(rng.normal([200, 40, 40], 12, (18, 16, 3)), 0, 255).astype(np.uint8)  # red object
    on_object = np.array([[22.5, 14.5], [30.5, 20.5], [34.5, 28.5]])
    in_box_background = np.array([[15.5, 8.5], [40.5, 33.5]])  # inside the box, off the object
    outside = np.array([[2.5, 2.5], [60.5, 44.5]])
    xy = np.concatenate([on_object, in_box_background, outside])[:, None, :]
    visible = np.ones((len(xy), 1), bool)
    box = (0, 14.0, 7.0, 42.0, 35.0)
    np.testing.assert_array_equal(box_tracks(frame, xy, visible, box, min_tracks=3), [0, 1, 2])
    # too few tracks on the segment to trust it: every track in the box
    np.testing.assert_array_equal(box_tracks(frame, xy, visible, box, min_tracks=4), [0, 1, 2, 3, 4])


def _blocks(T: int = 3) -> np.ndarray:
    """[T, H, W, 3] frames: grey noise with a red block (x 20..50) and a blue one (x 110..140), y 40..80."""
    rng = np.random.default_rng(5)
    frame = np.clip(128 + 20 * rng.standard_normal((H, W, 1)), 0, 255).repeat(3, -1)
    frame[40:80, 20:50] = (220, 30, 30)
    frame[40:80, 110:140] = (30, 30, 220)
    return np.repeat(frame[None].astype(np.uint8), T, 0)


def _block_tracks(T: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Still tracks on a 5-px grid (xy [N, T, 2], visible [N, T]) and which block each is on
    (0 none, 1 red, 2 blue)."""
    gx, gy = np.meshgrid(np.arange(2.5, W, 5.0), np.arange(2.5, H, 5.0))
    pts = np.c_[gx.ravel(), gy.ravel()]
    inside = lambda x0, x1: (pts[:, 0] > x0) & (pts[:, 0] < x1) & (pts[:, 1] > 40) & (pts[:, 1] < 80)
    block = np.where(inside(20, 50), 1, np.where(inside(110, 140), 2, 0))
    return np.repeat(pts[:, None], T, 1), np.ones((len(pts), T), bool), block


def test_tracks_only_the_multiview_model_calls_moving_are_no_seeds_on_their_own() -> None:
    from dynrec.vision.motionseg import MaskParams, MotionScores, segment

    frames = _blocks()
    xy, visible, block = _block_tracks()
    T = frames.shape[0]
    score = (block > 0).astype(float)  # both blocks moving, the rest still
    weak = block == 2  # the blue block: the multi-view model's word alone (a drifting background)
    scores = MotionScores(score, np.full(len(score), 40.0), np.repeat(score[:, None], T, 1), weak)
    np.testing.assert_array_equal(scores.moving(0.5, 20), block == 1)  # what both masks backends seed with
    np.testing.assert_array_equal(scores.moving(0.5, 20, min_strong=1000), block > 0)
    params = MaskParams()
    masks = segment(frames, xy, visible, scores, params=params)
    red, blue = masks[:, 45:75, 25:45], masks[:, 45:75, 115:135]
    assert red.mean() > 0.95 and not blue.any()
    # when the pairs call too few tracks moving, the multi-view model's finds are seeds again
    few = MaskParams(min_strong=int((block == 1).sum()) + 1)
    masks = segment(frames, xy, visible, scores, params=few)
    assert masks[:, 45:75, 25:45].mean() > 0.95 and masks[:, 45:75, 115:135].mean() > 0.95
    # and without the flag both blocks are seeds
    masks = segment(frames, xy, visible, MotionScores(score, scores.pairs, scores.sample), params=params)
    assert masks[:, 45:75, 115:135].mean() > 0.95


def test_seed_labels_voronoi_cells_conflicts_and_firm_seeds():
    """GrabCut's starting labels on a 40x30 image, checked pixel by pixel: one foreground seed
    at (10.5, 10.5), background seeds at (20.5, 10.5) and (12.5, 10.5) (2 px from it)."""
    import cv2

    from dynrec.vision.motionseg import MaskParams, seed_labels

    fg = np.array([[10.5, 10.5], [30.5, 25.5]])
    bg = np.array([[20.5, 10.5], [12.5, 10.5]])
    params = MaskParams(conflict_px=4.0, reach=0.25)  # reach 10 px
    label = seed_labels((30, 40), fg, bg, None, params)
    # both seeds 2 px apart are unsure; the lone foreground seed is sure, and the far
    # background seed too
    assert label[10, 10] == cv2.GC_PR_FGD and label[10, 12] == cv2.GC_PR_BGD
    assert label[25, 30] == cv2.GC_FGD and label[10, 20] == cv2.GC_BGD
    # the Voronoi cells (pixels as (x, y)): (10, 5) is 5 px from the first foreground seed and
    # over 5 from both background ones; (15, 10) is nearer the background seed at x = 12;
    # (30, 20) is 5 px from the second foreground seed and 14 from the nearest background one
    assert label[5, 10] == cv2.GC_PR_FGD and label[10, 15] == cv2.GC_PR_BGD
    assert label[20, 30] == cv2.GC_PR_FGD
    assert label[0, 0] == cv2.GC_BGD  # over 10 px from every foreground seed
    # without the Voronoi cells only the seeds' own neighbourhood is probable foreground
    plain = seed_labels((30, 40), fg, bg, None, MaskParams(conflict_px=4.0, reach=0.25, nearest_seed=False))
    assert plain[5, 10] == cv2.GC_PR_BGD and plain[11, 10] == cv2.GC_PR_FGD
    # a prompted subject's seed stays sure next to a background seed; a static map wins elsewhere
    still = np.zeros((30, 40), bool)
    still[5, 10] = True
    firm = seed_labels((30, 40), fg, bg, still, params, firm=np.array([True, False]))
    assert firm[10, 10] == cv2.GC_FGD and firm[5, 10] == cv2.GC_BGD


def test_in_between_tracks_join_only_in_frames_where_they_move() -> None:
    """A red block's tracks move; the green block next to it has in-between tracks (score 0.3)
    that move in frames 0-2 and are still in frames 3-4: they join the red block's seeds by
    hysteresis only in the frames where they move."""
    from dynrec.vision.motionseg import MaskParams, MotionScores, segment

    T = 5
    rng = np.random.default_rng(6)
    frame = np.clip(128 + 20 * rng.standard_normal((H, W, 1)), 0, 255).repeat(3, -1)
    frame[40:80, 20:50] = (220, 30, 30)
    frame[40:80, 50:80] = (30, 200, 30)
    frames = np.repeat(frame[None].astype(np.uint8), T, 0)
    gx, gy = np.meshgrid(np.arange(2.5, W, 3.0), np.arange(2.5, H, 3.0))
    pts = np.c_[gx.ravel(), gy.ravel()]
    rows = (pts[:, 1] > 40) & (pts[:, 1] < 80)
    red, green = rows & (pts[:, 0] > 20) & (pts[:, 0] < 50), rows & (pts[:, 0] > 50) & (pts[:, 0] < 80)
    track = np.where(red, 1.0, np.where(green, 0.3, 0.0))
    sample = np.repeat(track[:, None], T, 1)
    sample[green, 3:] = 0.0
    scores = MotionScores(track, np.full(len(pts), 40.0), sample)
    masks = segment(frames, np.repeat(pts[:, None], T, 1), np.ones((len(pts), T), bool), scores, params=MaskParams())
    assert masks[:, 45:75, 25:45].mean() > 0.95
    assert masks[:2, 45:75, 55:75].mean() > 0.95
    assert masks[4, 45:75, 55:75].mean() < 0.05
