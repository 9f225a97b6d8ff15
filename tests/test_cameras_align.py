"""cameras (pycolmap / torch bundle adjustment / static) and align (robust per-frame
scale/shift of monocular depth) on the tiny synth scene's ground truth."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from dynrec.artifacts import Cameras, Depth, Masks, SparsePoints, Tracks
from dynrec.errors import DynrecError
from dynrec.geometry import colmap
from dynrec.geometry.depthfit import fit_scale_shift
from dynrec.metrics.pose import ate
from dynrec.stages import align, cameras
from dynrec.stages.base import StageContext


def _ctx(work: Path, out: Path, **override: Path) -> StageContext:
    inputs = {name: work / name for name in ("frames", "tracks", "masks", "depth", "cameras")}
    inputs.update(override)
    out.mkdir(parents=True, exist_ok=True)
    return StageContext(work=work, out=out, inputs=inputs)


def _path_length(cams: Cameras) -> float:
    return float(np.linalg.norm(np.diff(cams.c2w[:, :3, 3], axis=0), axis=1).sum())


def _save_depth(folder: Path, maps: np.ndarray, kind: str = "depth", backend: str = "test") -> Path:
    Depth(maps.astype(np.float32)).save(folder)
    (folder / "manifest.json").write_text(json.dumps({"info": {"depth_kind": kind, "backend": backend}}))
    return folder


def _noisy_tracks(gt_work: Path, folder: Path, noise: float, outliers: float, seed: int = 0) -> Path:
    tracks = Tracks.load(gt_work / "tracks")
    rng = np.random.default_rng(seed)
    xy = tracks.xy + rng.normal(0, noise, tracks.xy.shape).astype(np.float32)
    bad = rng.random(tracks.visible.shape) < outliers
    xy[bad] += rng.uniform(-8, 8, (int(bad.sum()), 2)).astype(np.float32)
    Tracks(xy, tracks.visible, tracks.confidence, tracks.query_frame).save(folder)
    return folder


def test_ba_recovers_cameras_from_noisy_tracks(gt_work, tmp_path):
    truth = Cameras.load(gt_work / "cameras")
    tracks = _noisy_tracks(gt_work, tmp_path / "tracks", noise=0.2, outliers=0.03)
    ctx = _ctx(gt_work, tmp_path / "out", tracks=tracks)
    info = cameras.run(ctx, cameras.CamerasParams(backend="ba", focal_prior=1.1))
    cams = Cameras.load(ctx.out)
    assert info["method"] == "ba" == cams.method and info["unposed_frames"] == []
    err = ate(cams.w2c, truth.w2c, convention="w2c")
    assert err < 0.01 * _path_length(truth), (err, _path_length(truth))
    assert abs(info["focal"] / truth.K[0, 0, 0] - 1) < 0.03, info["focal"]
    assert info["reproj_error_px"]["median"] < 0.5 and info["ba"]["outliers"] > 0
    points = SparsePoints.load(ctx.out)
    assert len(points.xyz) > 100 and points.track_index.max() < len(Tracks.load(tracks).xy)


def test_ba_with_disparity_depth_and_a_wrong_focal(gt_work, tmp_path):
    """Depth only initialises the BA: a per-frame affine disparity still gives the cameras."""
    truth = Cameras.load(gt_work / "cameras")
    z = Depth.load(gt_work / "depth").depth.astype(np.float64)
    rng = np.random.default_rng(1)
    s, b = rng.uniform(0.5, 2, len(z)), rng.uniform(0, 0.3, len(z))
    depth = _save_depth(tmp_path / "depth", s[:, None, None] / z + b[:, None, None], "disparity")
    ctx = _ctx(gt_work, tmp_path / "out", depth=depth)
    info = cameras.run(ctx, cameras.CamerasParams(backend="ba", focal_prior=0.7))
    err = ate(Cameras.load(ctx.out).w2c, truth.w2c, convention="w2c")
    assert err < 0.005 * _path_length(truth), err
    assert abs(info["focal"] / truth.K[0, 0, 0] - 1) < 0.01


@pytest.mark.skipif(not colmap.available(), reason="pycolmap is not installed (pip install pycolmap)")
def test_pycolmap_registers_every_frame(gt_work, tmp_path):
    truth = Cameras.load(gt_work / "cameras")
    ctx = _ctx(gt_work, tmp_path / "out")
    info = cameras.run(ctx, cameras.CamerasParams(backend="learned", focal_prior=1.2))
    cams = Cameras.load(ctx.out)
    assert info["method"] == "colmap" and info["registered_sfm"] == 16 == len(cams.w2c)
    assert ate(cams.w2c, truth.w2c, convention="w2c") < 1e-3 * _path_length(truth)
    assert abs(info["focal"] / truth.K[0, 0, 0] - 1) < 1e-3


def test_static_video_gets_static_cameras(gt_work, tmp_path):
    tracks = Tracks.load(gt_work / "tracks")
    T = tracks.xy.shape[1]
    rng = np.random.default_rng(0)
    first = tracks.xy[np.arange(len(tracks.xy)), tracks.query_frame]
    still = np.repeat(first[:, None], T, 1) + rng.normal(0, 0.05, tracks.xy.shape).astype(np.float32)
    Tracks(still, tracks.visible, tracks.confidence, tracks.query_frame).save(tmp_path / "tracks")
    ctx = _ctx(gt_work, tmp_path / "out", tracks=tmp_path / "tracks")
    info = cameras.run(ctx, cameras.CamerasParams())
    cams = Cameras.load(ctx.out)
    assert info["method"] == "static" == cams.method and "static_reason" in info
    np.testing.assert_array_equal(cams.w2c, np.tile(np.eye(4), (T, 1, 1)))
    # align then fits every frame to a reference frame on the background
    out = tmp_path / "align"
    ainfo = align.run(_ctx(gt_work, out, cameras=ctx.out), align.AlignParams())
    assert ainfo["reference_frame"] == T // 2 and Depth.load(out).depth.shape == Depth.load(gt_work / "depth").depth.shape


@pytest.mark.parametrize("case", ["lost", "all_foreground"])
def test_no_background_tracks_is_a_clear_error(gt_work, tmp_path, case):
    tracks = Tracks.load(gt_work / "tracks")
    masks = Masks.load(gt_work / "masks").masks
    if case == "lost":
        Tracks(tracks.xy, np.zeros_like(tracks.visible), tracks.confidence * 0, tracks.query_frame).save(tmp_path / "tracks")
        Masks(masks).save(tmp_path / "masks")
    else:
        tracks.save(tmp_path / "tracks")
        Masks(np.ones_like(masks)).save(tmp_path / "masks")
    ctx = _ctx(gt_work, tmp_path / "out", tracks=tmp_path / "tracks", masks=tmp_path / "masks")
    with pytest.raises(DynrecError, match=r"cameras: no background tracks.*cameras\.backend=static"):
        cameras.run(ctx, cameras.CamerasParams(backend="learned"))


def test_fit_scale_shift_with_outliers():
    rng = np.random.default_rng(0)
    z = rng.uniform(1, 8, 400)
    m = (z + 0.4) / 2.5 * np.exp(rng.normal(0, 0.005, 400))
    bad = rng.random(400) < 0.3
    m[bad] = rng.uniform(0.1, 4, int(bad.sum()))
    fit = fit_scale_shift(m, z)
    assert abs(fit.scale - 2.5) < 0.02 and abs(fit.shift + 0.4) < 0.03
    assert (fit.inliers[~bad]).mean() > 0.95 and (fit.inliers[bad]).mean() < 0.2
    assert abs(fit_scale_shift(m[~bad] * 2.5, z[~bad], shift=False).scale - 1) < 0.1  # scale-only
    assert fit_scale_shift(m[:1], z[:1]) is None


@pytest.mark.parametrize("kind", ["depth", "disparity"])
def test_align_recovers_per_frame_scale_and_shift(gt_work, tmp_path, kind):
    z = Depth.load(gt_work / "depth").depth.astype(np.float64)
    T = len(z)
    rng = np.random.default_rng(2)
    s, b = rng.uniform(0.5, 2, T), rng.uniform(-0.1, 0.1, T)
    target = z if kind == "depth" else 1 / z
    mono = (target - b[:, None, None]) / s[:, None, None]
    bad = rng.random(mono.shape) < 0.1  # 10% of the pixels are wrong
    mono[bad] *= rng.uniform(0.3, 3, int(bad.sum()))
    depth = _save_depth(tmp_path / "depth", np.clip(mono, 1e-6, None), kind)
    ctx = _ctx(gt_work, tmp_path / "out", depth=depth)
    info = align.run(ctx, align.AlignParams())
    assert info["fast_path"] is None and info["depth_kind"] == kind and info["frames_fitted"] == T
    np.testing.assert_allclose(info["scale"], s, rtol=0.02)
    np.testing.assert_allclose(info["shift"], b, atol=0.02 * np.abs(target).max())
    out = Depth.load(ctx.out).depth
    good = ~bad & (out > 0)
    assert good.mean() > 0.85
    assert np.median(np.abs(out[good] / z[good] - 1)) < 0.01


def test_align_with_gt_depth_and_cameras_is_identity(gt_work, tmp_path):
    truth = Depth.load(gt_work / "depth").depth
    ctx = _ctx(gt_work, tmp_path / "fast", depth=_save_depth(tmp_path / "depth", truth, backend="gt"))
    info = align.run(ctx, align.AlignParams())
    assert info["fast_path"] == "gt" and info["scale"] == [1.0] * len(truth)
    np.testing.assert_array_equal(Depth.load(ctx.out).depth, truth)
    # the fit itself also finds the identity on exact inputs
    ctx = _ctx(gt_work, tmp_path / "fit", depth=tmp_path / "depth")
    info = align.run(ctx, align.AlignParams(gt_fast_path=False))
    np.testing.assert_allclose(info["scale"], 1, atol=2e-3)
    np.testing.assert_allclose(info["shift"], 0, atol=2e-3 * truth.max())
    assert info["frames_fitted"] == len(truth) and info["points"] > 50


def test_align_uses_the_cameras_sparse_points(gt_work, tmp_path):
    """BA cameras live in their own scale: align maps gt depth into it (shift ~ 0)."""
    ctx = _ctx(gt_work, tmp_path / "cams")
    cameras.run(ctx, cameras.CamerasParams(backend="ba"))
    cams = Cameras.load(ctx.out)
    truth = Cameras.load(gt_work / "cameras")
    sim = __import__("dynrec.metrics.pose", fromlist=["align_trajectory"]).align_trajectory(
        cams.w2c, truth.w2c, convention="w2c")[2]
    info = align.run(_ctx(gt_work, tmp_path / "align", cameras=ctx.out), align.AlignParams())
    z = Depth.load(gt_work / "depth").depth
    np.testing.assert_allclose(info["scale"], 1 / sim.scale, rtol=5e-3)
    out = Depth.load(tmp_path / "align").depth
    np.testing.assert_allclose(np.median(out / z), 1 / sim.scale, rtol=5e-3)
    shutil.rmtree(tmp_path / "cams")


def _track_work(tmp_path: Path, pts: np.ndarray, K: np.ndarray, w2c: np.ndarray, size: tuple[int, int],
                noise: float, rng: np.random.Generator, depth: np.ndarray, kind: str = "depth",
                near: float = 0.0) -> Path:
    """A work dir whose tracks are the projections of static ``pts`` [N, 3] into cameras
    ``w2c`` [T, 4, 4] with Gaussian ``noise`` (pixels), visible in the image and beyond
    ``near``; black frames, empty masks, ``depth`` [T, H, W] of ``kind``."""
    from dynrec.artifacts import Frames
    from dynrec.geometry.camera import project

    (W, H), T = size, len(w2c)
    xy = np.zeros((len(pts), T, 2))
    vis = np.zeros((len(pts), T), bool)
    for t in range(T):
        uv, z = project(pts, K, w2c[t])
        xy[:, t] = uv + rng.normal(0, noise, uv.shape)
        vis[:, t] = (z > near) & (uv[:, 0] > 0) & (uv[:, 0] < W) & (uv[:, 1] > 0) & (uv[:, 1] < H)
    work = tmp_path / "work"
    Frames(np.zeros((T, H, W, 3), np.uint8), 10.0, np.arange(T)).save(work / "frames")
    Tracks(xy.astype(np.float32), vis, vis.astype(np.float32), vis.argmax(1)).save(work / "tracks")
    Masks(np.zeros((T, H, W), bool)).save(work / "masks")
    _save_depth(work / "depth", depth, kind)
    return work


def test_panning_camera_is_initialised_as_a_rotation(tmp_path):
    """A camera turning on the spot over a distant scene (where depth + PnP is ambiguous):
    detected as rotation-dominant, focal self-calibrated, rotations recovered."""
    import torch

    from dynrec.geometry.se3 import so3_exp

    T, W, H, f = 20, 160, 120, 260.0
    rng = np.random.default_rng(0)
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])
    w2c = np.tile(np.eye(4), (T, 1, 1))
    w2c[:, :3, :3] = so3_exp(torch.tensor([[0.004 * t, 0.012 * t, 0.0] for t in range(T)], dtype=torch.float64)).numpy()
    dirs = np.c_[rng.uniform(-0.6, 0.9, 600), rng.uniform(-0.5, 0.5, 600), np.ones(600)]
    pts = dirs * rng.uniform(50, 80, (600, 1))
    work = _track_work(tmp_path, pts, K, w2c, (W, H), 0.2, rng, np.ones((T, H, W)))
    ctx = _ctx(work, tmp_path / "out")
    info = cameras.run(ctx, cameras.CamerasParams(backend="ba"))
    assert info["init"] == "rotation" and info["rotation_dominance"] < 0.05
    assert abs(info["focal"] / f - 1) < 0.1, info["focal"]
    cams = Cameras.load(ctx.out)
    R = cams.w2c[:, :3, :3].astype(np.float64)
    rel_est = R[1:] @ R[:-1].transpose(0, 2, 1)
    rel_true = w2c[1:, :3, :3] @ w2c[:-1, :3, :3].transpose(0, 2, 1)
    cos = (np.trace(rel_est.transpose(0, 2, 1) @ rel_true, axis1=1, axis2=2) - 1) / 2
    assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 0.1


def _street(tmp_path: Path, T: int = 40) -> tuple[Path, np.ndarray]:
    """A camera walking 0.1 m a frame down a street (two walls, the ground, distant
    buildings), swaying and turning by a fraction of a degree; tracks with 0.2 px noise, no
    depth maps (``depth_kind: none``). Returns the work dir and the true w2c [T, 4, 4]."""
    import torch

    from dynrec.geometry.se3 import so3_exp

    W, H, f = 160, 120, 144.0
    rng = np.random.default_rng(0)
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])
    t = np.arange(T)
    c2w = np.tile(np.eye(4), (T, 1, 1))
    c2w[:, :3, 3] = np.c_[0.05 * np.sin(t / 6), 0.02 * np.sin(t / 3), 0.1 * t]
    turn = np.c_[0.002 * np.sin(t / 5), 0.003 * np.sin(t / 7), np.zeros(T)]
    c2w[:, :3, :3] = so3_exp(torch.tensor(turn, dtype=torch.float64)).numpy()
    w2c = np.linalg.inv(c2w)
    walls = np.c_[rng.choice([-3.0, 3.0], 500), rng.uniform(-2, 1.6, 500), rng.uniform(2, 30, 500)]
    ground = np.c_[rng.uniform(-3, 3, 250), np.full(250, 1.6), rng.uniform(2, 30, 250)]
    far = np.c_[rng.uniform(-15, 15, 250), rng.uniform(-10, 1, 250), rng.uniform(60, 90, 250)]
    pts = np.concatenate([walls, ground, far])
    return _track_work(tmp_path, pts, K, w2c, (W, H), 0.2, rng, np.zeros((T, H, W)), "none", near=0.5), w2c


def _max_turn_error_deg(est: np.ndarray, true: np.ndarray) -> float:
    """Largest angle between the estimated and the true rotation from frame 0 (w2c [T, 4, 4])."""
    rel_est = est[:, :3, :3] @ est[0, :3, :3].T
    rel_true = true[:, :3, :3] @ true[0, :3, :3].T
    cos = (np.trace(rel_est.transpose(0, 2, 1) @ rel_true, axis1=1, axis2=2) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(cos, -1, 1))).max())


def test_camera_walking_forward_without_depth_starts_from_two_views(tmp_path, monkeypatch):
    """Without depth maps the BA starts from an essential matrix between two frames; a
    fronto-parallel plane as depth lets PnP trade rotation for translation on this camera
    (about 19 degrees of turn where it turns 0.3; checked below with the two views taken away)."""
    from dynrec.geometry.sfm import two_view_start

    work, w2c = _street(tmp_path)
    path = float(np.linalg.norm(np.diff(np.linalg.inv(w2c)[:, :3, 3], axis=0), axis=1).sum())
    tracks = Tracks.load(work / "tracks")
    still = tracks.xy.copy()
    still[:] = tracks.xy[:, :1]
    K = np.array([[144.0, 0, 80], [0, 144.0, 60], [0, 0, 1]])
    assert two_view_start(still.astype(np.float64), tracks.visible, K) is None  # nothing moved: no baseline

    info = cameras.run(_ctx(work, tmp_path / "out"), cameras.CamerasParams(backend="ba"))
    cams = Cameras.load(tmp_path / "out")
    assert info["init"] == "two-view" and info["depth_init"] == "none"
    assert ate(cams.w2c, w2c, convention="w2c") < 0.005 * path
    assert _max_turn_error_deg(cams.w2c, w2c) < 0.2

    monkeypatch.setattr(cameras, "two_view_start", lambda *args, **kwargs: None)
    info = cameras.run(_ctx(work, tmp_path / "plane"), cameras.CamerasParams(backend="ba"))
    assert info["init"] == "plane+pnp"
    assert _max_turn_error_deg(Cameras.load(tmp_path / "plane").w2c, w2c) > 5


@pytest.mark.parametrize(("false_turn_deg", "registered"), [(0.0, "all"), (0.5, "all"), (0.5, "three")])
def test_sfm_cameras_that_disagree_with_two_views_are_rejected(tmp_path, monkeypatch, false_turn_deg, registered):
    """SfM cameras that turn where the tracks' essential matrix says the camera did not (a
    wrong minimum COLMAP can settle in on a forward-walking camera) are not used: the BA
    starts from two views instead. SfM here is a stand-in returning the true cameras, turned
    by ``false_turn_deg`` more every frame (0: kept as they are), for every frame or for three
    frames only (4, 20 and 36, not the two-view pair 0-39: the check then takes a pair of those;
    COLMAP registered 3 of HokQQ1U4PI0's 100 frames, 9.6 degrees off)."""
    from dynrec.geometry.colmap import ColmapResult

    work, w2c = _street(tmp_path)
    T = len(w2c)
    a = np.radians(false_turn_deg) * np.arange(T)
    turn = np.tile(np.eye(4), (T, 1, 1))
    turn[:, 0, 0], turn[:, 0, 2], turn[:, 2, 0], turn[:, 2, 2] = np.cos(a), np.sin(a), -np.sin(a), np.cos(a)
    sfm_w2c = turn @ w2c
    seen = np.ones(T, bool) if registered == "all" else np.isin(np.arange(T), [4, 20, 36])

    def fake_colmap(xy, visible, width, height, focal, **kwargs):
        N = len(xy)
        return ColmapResult(seen, sfm_w2c, 144.0, np.full((N, 3), np.nan), np.zeros((N, T), bool), 0.3, 100)

    monkeypatch.setattr(cameras.colmap_sfm, "available", lambda: True)
    monkeypatch.setattr(cameras.colmap_sfm, "run_colmap", fake_colmap)
    info = cameras.run(_ctx(work, tmp_path / "out"), cameras.CamerasParams(backend="learned"))
    cams = Cameras.load(tmp_path / "out")
    assert ("two_view_pair" in info["colmap"]) == (registered == "three")
    if false_turn_deg == 0:
        assert info["method"] == "colmap" and info["colmap"]["two_view_gap_deg"] < 1.5  # two-view noise: 0.7
        np.testing.assert_allclose(cams.w2c, w2c, atol=1e-9)
    else:
        assert info["colmap"]["two_view_gap_deg"] > 5 and "wrong minimum" in info["colmap"]["rejected"]
        assert info["method"] == "ba" and info["init"] == "two-view"
    assert _max_turn_error_deg(cams.w2c, w2c) < 0.2


def test_parallax_and_far_points_pulled_in_along_their_rays():
    """Cameras at x = 0, 0.5, 1 looking along +z: a point midway between the outer two sees
    them under the angle of their rays; points too far to place are pulled in to ``far_ratio`` x the median
    distance of the placed ones, along their rays from the mean centre; the rest are unchanged."""
    from dynrec.geometry.sfm import parallax_deg

    w2c = np.tile(np.eye(4), (3, 1, 1))
    w2c[:, 0, 3] = [0.0, -0.5, -1.0]  # centres at x = 0, 0.5, 1
    near = np.c_[np.full(10, 0.5), np.linspace(-0.2, 0.2, 10), np.linspace(2, 4, 10)]
    far = np.c_[np.full(3, 0.5), [0.0, 1e3, -2e3], [1e5, 2e5, 5e5]]
    points = np.concatenate([near, far, [[0.5, 0.0, 3.0]]])
    seen = np.ones((len(points), 3), bool)
    seen[-1, 1:] = False  # the last point is seen once
    par = parallax_deg(points, seen, w2c)
    a, b = near, near - [1.0, 0.0, 0.0]  # rays from the outer centres
    widest = np.arccos((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1))
    np.testing.assert_allclose(par[:10], np.degrees(widest), rtol=1e-9)
    assert (par[10:13] < 1e-3).all() and par[-1] == 0

    params = cameras.CamerasParams(far_ratio=10.0)
    out, info = cameras._far_plane(points, seen, w2c, cameras._parallax(points, seen, w2c), params)
    centre = np.array([0.5, 0.0, 0.0])
    limit = 10.0 * float(np.median(np.linalg.norm(near - centre, axis=1)))
    np.testing.assert_array_equal(out[:10], near)
    np.testing.assert_allclose(np.linalg.norm(out[10:13] - centre, axis=1), limit, rtol=1e-9)
    before = (far - centre) / np.linalg.norm(far - centre, axis=1, keepdims=True)
    after = (out[10:13] - centre) / limit
    np.testing.assert_allclose(after, before, atol=1e-12)
    assert info == {"undetermined": 4, "pulled_in": 3, "far_distance": round(limit, 6)}
    np.testing.assert_array_equal(out[-1], points[-1])  # seen once: undetermined, but nearer than the limit


def test_camera_held_still_gets_rotations_only_and_plane_depth(tmp_path, monkeypatch):
    """A camera held still that drifts by a pixel and a half (turning 0.5 degrees, moving
    half a millimetre) over a street: too little parallax to place points, so it gets
    rotations chained frame to frame, no translation (method ``still``), and ``align`` a plane.
    When SfM registers every frame (here a stand-in returning the true cameras: a boat that
    moves its far shore as little), its cameras are used instead."""
    import torch

    from dynrec.geometry.colmap import ColmapResult
    from dynrec.geometry.se3 import so3_exp

    T, W, H, f = 40, 160, 120, 144.0
    rng = np.random.default_rng(0)
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])
    t = np.arange(T) / (T - 1)
    w2c = np.tile(np.eye(4), (T, 1, 1))
    w2c[:, :3, :3] = so3_exp(torch.tensor(np.c_[0.003 * t, 0.008 * t, 0.001 * np.sin(6 * t)],
                                          dtype=torch.float64)).numpy()
    w2c[:, 0, 3] = 0.0005 * t
    pts = np.c_[rng.uniform(-8, 8, 800), rng.uniform(-5, 2, 800), rng.uniform(2, 30, 800)]
    work = _track_work(tmp_path, pts, K, w2c, (W, H), 0.1, rng, np.zeros((T, H, W)), "none")
    info = cameras.run(_ctx(work, tmp_path / "out"), cameras.CamerasParams(backend="ba"))
    assert info["method"] == "still" and "still_reason" in info and 0.5 < info["image_motion_px"] < 3
    assert info["undetermined_share"] > 0.9  # the bundle adjustment ran first and placed nothing
    cams = Cameras.load(tmp_path / "out")
    np.testing.assert_array_equal(cams.w2c[:, :3, 3], 0.0)
    assert _max_turn_error_deg(cams.w2c, w2c) < 0.05 and abs(info["turn_deg"] - 0.49) < 0.05
    assert len(SparsePoints.load(tmp_path / "out").xyz) == 0
    ainfo = align.run(_ctx(work, tmp_path / "align", cameras=tmp_path / "out"), align.AlignParams())
    assert ainfo["fast_path"] == "plane" and (Depth.load(tmp_path / "align").depth == 1).all()

    def fake_colmap(xy, visible, width, height, focal, **kwargs):
        return ColmapResult(np.ones(T, bool), w2c, f, np.full((len(xy), 3), np.nan), np.zeros((len(xy), T), bool), 0.2, 90)

    monkeypatch.setattr(cameras.colmap_sfm, "available", lambda: True)
    monkeypatch.setattr(cameras.colmap_sfm, "run_colmap", fake_colmap)
    info = cameras.run(_ctx(work, tmp_path / "sfm"), cameras.CamerasParams(backend="learned"))
    assert info["method"] == "colmap"
    np.testing.assert_allclose(Cameras.load(tmp_path / "sfm").w2c, w2c, atol=1e-6)


def test_densify_reproduces_a_plane_in_inverse_depth() -> None:
    """Samples of a plane (linear in inverse depth over the image) are interpolated exactly
    inside their hull and by the nearest sample outside it."""
    from dynrec.geometry.depthfit import densify

    rng = np.random.default_rng(0)
    W, H = 40, 30
    inv = lambda x, y: 0.2 + 0.003 * x + 0.002 * y
    xy = np.c_[rng.uniform(5, 35, 60), rng.uniform(5, 25, 60)]
    dense = densify(xy, 1.0 / inv(xy[:, 0], xy[:, 1]), W, H)
    ys, xs = np.mgrid[0:H, 0:W] + 0.5
    inside = (xs > 10) & (xs < 30) & (ys > 10) & (ys < 20)
    np.testing.assert_allclose(dense[inside], 1.0 / inv(xs[inside], ys[inside]), rtol=1e-9)
    corner = np.argmin(np.hypot(xy[:, 0], xy[:, 1]))  # pixel (0, 0) takes its nearest sample
    assert dense[0, 0] == pytest.approx(1.0 / inv(*xy[corner]))
    with pytest.raises(ValueError):
        densify(xy[:0], np.zeros(0), W, H)
