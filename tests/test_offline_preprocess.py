"""Offline preprocessing backends (dynrec.vision): LK tracking, motion segmentation, depth
import, clustered keypoints, and the errors bad input gets."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from dynrec.errors import DynrecError
from dynrec.geometry.camera import intrinsics, look_at, project
from dynrec.vision.depth_io import import_depth
from dynrec.vision.keypoints import cluster_keypoints, spanning_tree
from dynrec.vision.lk import TrackParams, track_points
from dynrec.vision.motionseg import motion_scores, parse_prompt, prompt_tracks, segment
from dynrec.vision.queries import SeedParams, grid, track_video

cv2.setNumThreads(1)


def texture(width: int, height: int, seed: int = 0, cell: float = 3.0) -> np.ndarray:
    """A smooth random colour texture [H, W, 3] float32 in [0, 1] (blurred noise, features ~cell px)."""
    rng = np.random.default_rng(seed)
    noise = rng.random((height, width, 3)).astype(np.float32)
    img = cv2.GaussianBlur(noise, (0, 0), cell / 2)
    lo, hi = img.min((0, 1)), img.max((0, 1))
    return (img - lo) / (hi - lo)


def shifted(img: np.ndarray, dx: float, dy: float, size: tuple[int, int]) -> np.ndarray:
    """``img`` moved by (dx, dy) pixels (bilinear), cropped to ``size`` = (W, H), as uint8."""
    M = np.float32([[1, 0, dx], [0, 1, dy]])
    out = cv2.warpAffine(img, M, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return (out * 255).round().astype(np.uint8)


def test_tracker_follows_a_translating_texture():
    W, H, T = 64, 48, 6
    tex = texture(W + 20, H + 20, seed=1)
    motion = np.array([[0.7 * t, -0.45 * t] for t in range(T)])
    frames = np.stack([shifted(tex, dx, dy, (W, H)) for dx, dy in motion])
    pts = grid(W, H, 8.0)
    pts = pts[(pts[:, 0] > 8) & (pts[:, 0] < W - 8) & (pts[:, 1] > 8) & (pts[:, 1] < H - 8)]
    queries = np.c_[np.zeros(len(pts)), pts]
    queries = np.r_[queries, np.c_[np.full(len(pts), 3), pts]]  # and backwards from frame 3
    result = track_points(frames, queries)
    truth = queries[:, None, 1:] + motion[None] - motion[queries[:, 0].astype(int)][:, None]
    err = np.linalg.norm(result.xy - truth, axis=-1)
    assert result.visible.all()
    assert np.median(err) < 0.2 and err.max() < 0.5
    assert (result.confidence > 0.5).all()


def test_patch_alignment_recovers_an_affine_warp():
    """A texture rotated by 8 degrees, scaled by 1.05 and shifted: the affine alignment finds
    the warp of every patch centre, also of those that leave the working set early, and ``warp`` /
    ``_inverse_2x2`` agree with the matrix forms they replace."""
    from dynrec.vision.patches import (
        AlignParams,
        Pyramid,
        _inverse_2x2,
        align,
        extract,
        offsets,
        warp,
    )

    W, H = 96, 80
    tex = texture(W, H, seed=4)
    c, s = 1.05 * np.cos(0.14), 1.05 * np.sin(0.14)
    L = np.array([[c, -s], [s, c]], np.float32)
    shift = np.array([1.4, -0.9], np.float32)
    centre = np.array([W / 2, H / 2], np.float32)
    # x' = centre + L (x - centre) + shift in +0.5-centred pixels; warpAffine uses integer centres
    M = np.c_[L, centre + shift - L @ centre + (L @ [0.5, 0.5] - 0.5)].astype(np.float32)
    moved = cv2.warpAffine(tex, M, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    frames = (np.stack([tex, moved]) * 255).round().astype(np.uint8)
    params = AlignParams(radius=5, levels=1, iters=(15,), affine_prior=0.0)
    pyr = Pyramid(frames, params.levels)
    pts = torch.tensor([[x, y] for x in (30.0, 48.0, 66.0) for y in (28.0, 40.0, 52.0)])
    truth = torch.from_numpy(centre + shift) + (pts - torch.from_numpy(centre)) @ torch.from_numpy(L).T
    # half the patches start at the answer: they stop early and leave the working set
    start, A0 = pts.clone(), torch.eye(2).repeat(len(pts), 1, 1)
    start[::2], A0[::2] = truth[::2], torch.from_numpy(L)
    xy, A, residual = align(pyr, 1, extract(pyr, 0, pts, params), start, A0, params)
    assert (xy - truth).norm(dim=1).max() < 0.1
    assert (A - torch.from_numpy(L)).abs().max() < 0.02
    assert (residual < 0.03).all()

    u = offsets(3)
    R = torch.randn(4, 2, 2) + 2 * torch.eye(2)
    p = torch.randn(4, 2)
    assert torch.allclose(warp(p, R, u), p[:, None] + u[None] @ R.transpose(1, 2), atol=1e-5)
    assert torch.allclose(_inverse_2x2(R), torch.linalg.inv(R), atol=1e-4)


def test_tracker_follows_camera_shake_from_the_dense_flow():
    """Jumps of 6-10 px in random directions each frame (a shaking camera) are beyond the
    patch alignment's reach from constant velocity; the DIS flow start keeps every point."""
    W, H, T = 96, 72, 8
    tex = texture(W + 60, H + 60, seed=5)
    rng = np.random.default_rng(0)
    angle = rng.uniform(0, 2 * np.pi, T)
    jumps = rng.uniform(6, 10, T)[:, None] * np.c_[np.cos(angle), np.sin(angle)]
    motion = np.cumsum(np.r_[[[0.0, 0.0]], jumps[1:]], axis=0)
    motion -= motion.mean(0)
    frames = np.stack([shifted(tex, dx, dy, (W, H)) for dx, dy in motion])
    pts = grid(W, H, 8.0)
    pts = pts[(pts[:, 0] > 30) & (pts[:, 0] < W - 30) & (pts[:, 1] > 30) & (pts[:, 1] < H - 30)]
    queries = np.c_[np.zeros(len(pts)), pts - motion[0]]
    truth = queries[:, None, 1:] + motion[None] - motion[0]
    flow = track_points(frames, queries)
    err = np.linalg.norm(flow.xy - truth, axis=-1)
    assert flow.visible.all() and np.median(err) < 0.2
    plain = track_points(frames, queries, TrackParams(flow_start=False))
    assert plain.visible.mean() < 0.5


def test_forward_backward_check_marks_a_covered_point_occluded():
    W, H, T = 64, 48, 8
    tex = texture(W, H, seed=2)
    occluder = texture(20, 20, seed=9)
    frames = []
    for t in range(T):
        img = tex.copy()
        if t >= 4:  # a differently textured square covers the middle from frame 4 on
            img[14:34, 22:42] = occluder
        frames.append((img * 255).round().astype(np.uint8))
    queries = np.array([[0, 32.0, 24.0], [0, 10.0, 10.0]])
    result = track_points(np.stack(frames), queries)
    assert result.visible[0, :4].all() and not result.visible[0, 4:].any()
    assert (result.confidence[0, 4:] == 0).all()
    assert result.visible[1].all()  # the uncovered point stays visible
    np.testing.assert_allclose(result.xy[1], np.tile([10.0, 10.0], (T, 1)), atol=0.1)


def _moving_square(T: int = 12, W: int = 64, H: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """Frames [T, H, W, 3] of a textured square moving over a static textured background, and its masks."""
    bg = texture(W, H, seed=3, cell=3.0) * 0.5  # darker background, so colour separates them too
    sq = 0.5 + 0.5 * texture(16, 16, seed=4, cell=3.0)
    frames, masks = [], []
    for t in range(T):
        img = bg.copy()
        m = np.zeros((H, W), bool)
        x0, y0 = 10 + round(2 * t), 14 + round(0.5 * t)
        img[y0:y0 + 16, x0:x0 + 16] = sq
        m[y0:y0 + 16, x0:x0 + 16] = True
        frames.append((img * 255).round().astype(np.uint8))
        masks.append(m)
    return np.stack(frames), np.stack(masks)


def test_motion_segmentation_finds_a_moving_square():
    frames, truth = _moving_square()
    found = track_video(frames, None, SeedParams(grid_size=24, query_every=4))
    res = found.result
    scores = motion_scores(res.xy, res.visible & (res.confidence >= 0.5), None, (64, 48))
    masks = segment(frames, res.xy, res.visible, scores)
    iou = (masks & truth).sum((1, 2)) / (masks | truth).sum((1, 2))
    assert iou.mean() > 0.8 and iou.min() > 0.6


def test_majority_vote_follows_the_flow_of_a_moving_block():
    """A textured block moves 3 px a frame over a still texture; its masks are exact except
    frame 3's, which misses a 6x6 piece of its leading edge. The plain 3-frame majority fills
    only the part that the block covered one frame earlier too; carried along the flow, the
    neighbours' masks fill most of the rest and keep the edges."""
    from dynrec.vision.motionseg import temporal_majority

    W, H, T = 80, 48, 6
    back, block = texture(W, H, seed=2), texture(20, 20, seed=3, cell=2.0)
    frames, masks = [], np.zeros((T, H, W), bool)
    for t in range(T):
        img = back.copy()
        x0 = 15 + 3 * t
        img[14:34, x0:x0 + 20] = block
        frames.append((img * 255).round().astype(np.uint8))
        masks[t, 14:34, x0:x0 + 20] = True
    truth = masks.copy()
    masks[3, 14:20, 38:44] = False  # frame 3's block spans x 24..43, frame 2's 21..40
    plain = temporal_majority(masks)
    carried = temporal_majority(masks, np.stack(frames))
    assert plain[3, 14:20, 38:41].all() and not plain[3, 14:20, 41:44].any()
    # DIS blends the flow over the last pixel or two of the edge: most of the rest is filled
    assert carried[3, 14:20, 38:42].all() and carried[3, 14:20, 38:44].mean() >= 0.7
    inner = slice(1, T - 1)  # the ends have a single neighbour
    assert (carried[inner] & truth[inner]).sum() / (carried[inner] | truth[inner]).sum() > 0.97


def _spinning_bar(T: int = 10, W: int = 96, H: int = 72) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A panning camera (the background texture moves 1.5 px a frame) and a thin bright bar
    spinning half a radian a frame, too fast to track: (frames [T, H, W, 3], bar masks
    [T, H, W], exact tracks of a background grid [N, T, 2])."""
    back, paint = texture(W + 40, H, seed=5) * 0.5, 0.5 + 0.5 * texture(W, H, seed=6, cell=2.0)
    frames, masks = [], []
    for t in range(T):
        img = shifted(back, -1.5 * t, 0.0, (W, H)).astype(np.float32) / 255
        bar = np.zeros((H, W), np.uint8)
        a = 0.5 * t
        tip = 22 * np.array([np.cos(a), np.sin(a)])
        cv2.line(bar, tuple(np.round([48, 36] - tip).astype(int)), tuple(np.round([48, 36] + tip).astype(int)), 1, 3)
        img[bar > 0] = paint[bar > 0]
        frames.append((img * 255).round().astype(np.uint8))
        masks.append(bar > 0)
    gx, gy = np.meshgrid(np.arange(4, W, 6) + 0.5, np.arange(4, H, 6) + 0.5)
    start = np.c_[gx.ravel(), gy.ravel()]
    xy = np.stack([start - [1.5 * t, 0.0] for t in range(T)], axis=1)
    return np.stack(frames), np.stack(masks), xy


def test_a_part_too_fast_to_track_is_found_by_the_change_the_background_cannot_explain():
    """No track lies on the bar (all are still background), so the tracks alone find nothing;
    the colour the background's motion cannot explain in the neighbouring frames finds the
    bar and nothing else, and the masks grown from it cover it."""
    from dataclasses import replace

    from dynrec.vision.motionseg import MaskParams, MotionScores, changed_pixels, unexplained_change

    frames, truth, xy = _spinning_bar()
    T, _, W = truth.shape
    visible = (xy[..., 0] >= 0) & (xy[..., 0] < W)
    still = np.ones(len(xy), bool)
    blurred = [cv2.GaussianBlur(f.astype(np.float32) / 255, (0, 0), 1.0) for f in frames]
    params = MaskParams()
    near = np.stack([cv2.dilate(m.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0 for m in truth])
    for t in range(2, T - 2):
        hit = changed_pixels(unexplained_change(blurred, xy, visible, still, t, params.unexplained_gaps), params)
        assert near[t][hit].mean() > 0.97  # nothing of the background
        assert (hit & truth[t]).sum() > 0.6 * truth[t].sum()
    scores = MotionScores(np.zeros(len(xy)), np.full(len(xy), 40.0), np.zeros(visible.shape))
    masks = segment(frames, xy, visible, scores, params=params)
    inner = slice(1, T - 1)
    iou = (masks[inner] & truth[inner]).sum((1, 2)) / (masks[inner] | truth[inner]).sum((1, 2))
    assert iou.mean() > 0.7, iou
    assert not segment(frames, xy, visible, scores, params=replace(params, unexplained_gaps=())).any()


def test_prompt_keeps_only_the_named_subject():
    frames, first = _moving_square()
    second = np.zeros_like(first)
    for t in range(len(frames)):  # a second square, moving the other way, 2 px above the first
        x0 = 44 - round(1.5 * t)  # (objects that touch in the image are one mask component)
        img = frames[t].astype(np.float32) / 255
        img[2:12, x0:x0 + 10] = 0.5 + 0.5 * texture(10, 10, seed=6)
        frames[t] = (img * 255).round().astype(np.uint8)
        second[t, 2:12, x0:x0 + 10] = True
        first[t, 2:12, x0:x0 + 10] = False
    found = track_video(frames, None, SeedParams(grid_size=24, query_every=4))
    res = found.result
    scores = motion_scores(res.xy, res.visible & (res.confidence >= 0.5), None, (64, 48))
    both = segment(frames, res.xy, res.visible, scores)
    assert (both & second).sum() > 0.5 * second.sum()
    subject = prompt_tracks(res.xy, res.visible, (0, 18.0, 22.0), 4.0)  # inside the first square
    one = segment(frames, res.xy, res.visible, scores, subject=subject)
    iou = (one & first).sum() / (one | first).sum()
    assert iou > 0.7 and (one & second).sum() < 0.05 * second.sum()


def test_depth_import_round_trips_npy_and_16bit_png(tmp_path):
    rng = np.random.default_rng(0)
    maps = rng.uniform(0.5, 10.0, (5, 12, 16)).astype(np.float32)
    maps[0, 0, 0] = 0.0  # unknown stays unknown
    npy, png = tmp_path / "npy", tmp_path / "png"
    npy.mkdir()
    png.mkdir()
    for t, m in enumerate(maps):
        np.save(npy / f"{t:04d}.npy", m)
        Image.fromarray(np.round(m * 1000).astype(np.uint16)).save(png / f"{t:04d}.png")
    index = np.array([0, 2, 4])  # the frames stage kept every other frame
    np.testing.assert_array_equal(import_depth(npy, index, 16, 12), maps[index])
    got = import_depth(png, index, 16, 12, scale=0.001)
    np.testing.assert_allclose(got, maps[index], atol=6e-4)
    assert got[0, 0, 0] == 0
    half = import_depth(npy, index, 8, 6)  # resized by nearest neighbour
    assert half.shape == (3, 6, 8) and np.isin(half, maps).all()
    with pytest.raises(DynrecError, match="has 5 maps"):
        import_depth(npy, np.arange(7)[::3], 16, 12)


def test_spanning_tree_connects_every_keypoint():
    rng = np.random.default_rng(1)
    for J in (2, 5, 12):
        pts = rng.normal(size=(J, 3))
        pts[-1] = pts[0]  # coincident points are still joined
        edges = spanning_tree(pts)
        assert edges.shape == (J - 1, 2)
        graph = coo_matrix((np.ones(J - 1), (edges[:, 0], edges[:, 1])), shape=(J, J))
        assert connected_components(graph, directed=False)[0] == 1


def test_cluster_keypoints_on_two_moving_blobs():
    T, W, H = 6, 64, 48
    K = np.tile(intrinsics(50, 50, W / 2, H / 2), (T, 1, 1))
    w2c = np.stack([look_at(np.array([0.1 * t, -5.0, 0.0]), np.zeros(3)) for t in range(T)])
    rng = np.random.default_rng(2)
    centres = np.array([[-0.6, 0.0, 0.0], [0.6, 0.0, 0.3]])
    pts = np.concatenate([c + 0.05 * rng.normal(size=(20, 3)) for c in centres])  # [40, 3]
    world = pts[:, None] + np.array([[0.0, 0.0, 0.05 * t] for t in range(T)])[None]  # both rise
    world[20:] += np.array([[0.04 * t, 0.0, 0.0] for t in range(T)])[None]  # the second also slides
    xy = np.zeros((40, T, 2))
    depth = np.zeros((T, H, W))
    for t in range(T):
        xy[:, t], z = project(world[:, t], K[t], w2c[t])
        depth[t] = 5.0  # a fronto-parallel depth map consistent with the points' z
        px = np.floor(xy[:, t]).astype(int)
        for (i, j), zz in zip(px[:, ::-1], z):
            depth[t, max(i - 1, 0):i + 2, max(j - 1, 0):j + 2] = zz
    found = cluster_keypoints(xy, np.ones((40, T), bool), depth, K, w2c, count=2)
    assert set(found.labels[:20]) != set(found.labels[20:])
    assert found.skeleton.tolist() == [[0, 1]]
    assert found.xy.shape == (T, 2, 2) and np.allclose(found.confidence, 1.0)
    for t in range(T):
        expect, _ = project(world[:, t].reshape(2, 20, 3).mean(1), K[t], w2c[t])
        got = found.xy[t][np.argsort([found.labels[:20][0], found.labels[20:][0]])]
        np.testing.assert_allclose(got, expect, atol=0.5)


def test_black_video_has_no_trackable_texture():
    frames = np.zeros((4, 48, 64, 3), np.uint8)
    with pytest.raises(DynrecError, match="tracks: no trackable texture found in the video"):
        track_video(frames)


def test_points_on_independent_noise_are_lost():
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, (4, 48, 64, 3), dtype=np.uint8)  # nothing persists between frames
    queries = np.c_[np.zeros(20), rng.uniform(10, 50, (20, 2))]
    result = track_points(frames, queries, TrackParams())
    assert not result.visible[:, 1:].any()


def test_mask_prompt_outside_the_image():
    with pytest.raises(DynrecError, match=r"outside the image, which is 640x480 pixels"):
        parse_prompt("700,10", 0, 16, 64, 48, (0.1, 0.1))
    with pytest.raises(DynrecError, match="expects 'x,y'"):
        parse_prompt("12;7", 0, 16, 64, 48, (1.0, 1.0))
    assert parse_prompt("320,240", 3, 16, 64, 48, (0.1, 0.1)) == (3, 32.0, 24.0)


def test_offline_stages_via_cli(cli, scene, tmp_path):
    """Depth imported from a folder, offline tracks and masks on the tiny scene; bad inputs."""
    from dynrec.artifacts import Depth, Keypoints, Masks, Tracks

    torch.set_num_threads(1)
    folder = tmp_path / "depth"
    folder.mkdir()
    for t, m in enumerate(Depth.load(scene / "gt" / "depth").depth):
        np.save(folder / f"{t:03d}.npy", m)
    work = tmp_path / "work"
    r = cli("preprocess", scene / "video.mp4", "-o", work, "--only", "frames")
    assert r.code == 0, r.err
    r = cli("preprocess", "-o", work, "--set", "depth.backend=offline", "--only", "depth")
    assert r.code == 0 and "--set depth.folder=DIR" in r.err  # no maps: a warning, depth_kind none
    assert not Depth.load(work / "depth").depth.any()
    assert json.loads((work / "depth" / "manifest.json").read_text())["info"]["depth_kind"] == "none"
    r = cli("preprocess", "-o", work, "--set", f"depth.folder={folder}", "--only", "depth")
    assert r.code == 0, r.err
    np.testing.assert_array_equal(Depth.load(work / "depth").depth, Depth.load(scene / "gt" / "depth").depth)
    r = cli("preprocess", "-o", work, "--set", "tracks.backend=offline", "--only", "tracks")
    assert r.code == 0, r.err
    tracks = Tracks.load(work / "tracks")
    assert tracks.xy.shape[1] == 16 and len(tracks.xy) > 100 and tracks.visible.mean() > 0.5
    r = cli("preprocess", "-o", work, "--set", "masks.backend=offline", "--set", "masks.prompt=1000,5",
            "--only", "masks")
    assert r.code != 0 and "outside the image, which is 64x48 pixels" in " ".join(r.err.split())
    # at 64x48 the figure's own motion is under a pixel: nothing moves, so without a prompt the
    # subject is what the camera keeps centred, and without that nothing is segmented
    r = cli("preprocess", "-o", work, "--set", "masks.backend=offline", "--set", "masks.prompt=", "--only", "masks")
    assert r.code == 0 and "keeps centred" in " ".join(r.err.split())  # the failed command above saved nothing
    assert json.loads((work / "masks" / "manifest.json").read_text())["info"]["subject"] == "fixation"
    r = cli("preprocess", "-o", work, "--set", "masks.fixation=false", "--only", "masks")
    assert r.code != 0 and "--prompt x,y or --prompt-box x0,y0,x1,y1" in " ".join(r.err.split())
    truth = Masks.load(scene / "gt" / "masks").masks
    ys, xs = np.nonzero(truth[0])
    x, y = xs.mean() + 0.5, ys.mean() + 0.5  # on the torso, in pixels of the (64x48) video
    r = cli("preprocess", "-o", work, "--set", f"masks.prompt={x:.1f},{y:.1f}", "--only", "masks")
    assert r.code == 0, r.err
    masks = Masks.load(work / "masks").masks
    assert masks.shape == (16, 48, 64) and masks[0, int(y), int(x)] and masks.mean() < 0.2
    assert (masks & truth).sum() > 0.5 * masks.sum()
    r = cli("preprocess", "-o", work, "--set", "masks.prompt=3,3", "--only", "masks")  # on the wall
    assert r.code == 0 and "may lie on the background" in " ".join(r.err.split())
    r = cli("preprocess", "-o", work, "--set", "masks.prompt=", "--prompt-box", "3,4,2", "--only", "masks")
    assert r.code != 0 and "--prompt-box expects 'x0,y0,x1,y1'" in " ".join(r.err.split())
    box = f"{xs.min() - 1},{ys.min() - 1},{xs.max() + 2},{ys.max() + 2}"  # around the figure in frame 0
    r = cli("preprocess", "-o", work, "--set", "masks.prompt=", "--prompt-box", box, "--only", "masks")
    assert r.code == 0, r.err
    boxed = Masks.load(work / "masks").masks
    assert json.loads((work / "masks" / "manifest.json").read_text())["info"]["subject"] == "prompt"
    # the 64x48 figure is too thin for GrabCut's colour model in the box: every track in the box
    # is the subject's, so the mask holds the figure and some of its surroundings
    assert (boxed & truth).sum() > 0.7 * truth.sum() and boxed.mean() < 0.2
    r = cli("preprocess", "-o", work, "--set", "masks.prompt_box=", "--set", f"masks.prompt={x:.1f},{y:.1f}",
            "--only", "masks")
    assert r.code == 0, r.err
    np.testing.assert_array_equal(Masks.load(work / "masks").masks, masks)  # the point prompt's masks again
    offline = [f"{stage}.backend=offline" for stage in ("depth", "tracks", "masks", "keypoints")]
    r = cli("preprocess", "-o", work, "--gt", scene, *[a for s in offline for a in ("--set", s)])
    assert r.code == 0, r.err
    assert r.err.count("(done") >= 4  # frames, depth, tracks, masks were not redone
    kp = Keypoints.load(work / "keypoints")
    J = kp.xy.shape[1]
    assert 2 <= J <= 12 and kp.skeleton.shape == (J - 1, 2) and kp.confidence.max() > 0


def test_all_tracks_lost_stops_the_tracks_stage(cli, tmp_path):
    rng = np.random.default_rng(7)
    video, depth = tmp_path / "noise", tmp_path / "depth"
    video.mkdir()
    depth.mkdir()
    for t in range(6):  # fresh noise every frame: textured, but nothing can be followed
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(video / f"{t:02d}.png")
        np.save(depth / f"{t:02d}.npy", np.ones((48, 64), np.float32))
    work = tmp_path / "work"
    r = cli("preprocess", video, "-o", work, "--set", "depth.backend=offline", "--set", f"depth.folder={depth}",
            "--set", "tracks.backend=offline", "--only", "frames")
    assert r.code == 0, r.err
    assert cli("preprocess", "-o", work, "--only", "depth").code == 0
    r = cli("preprocess", "-o", work, "--only", "tracks")
    assert r.code != 0 and "tracks: all" in r.err and "were lost right after their query frames" in " ".join(r.err.split())
    assert "Traceback" not in r.err


def test_preprocess_offline_without_depth(scene, tmp_path, cli):
    """`preprocess --offline` with no depth maps completes: cameras from SfM or the bundle
    adjustment started from two views, depth interpolated from the sparse points, close to the truth on the
    background up to the reconstruction's scale."""
    from dynrec.artifacts import Depth, Masks

    torch.set_num_threads(1)
    work = tmp_path / "work"
    # without depth the orbiting camera hides the subject's motion from the fundamental
    # matrices (docs/offline-preprocess.md): name it with --prompt, a point on it in frame 0
    ys, xs = np.nonzero(Masks.load(scene / "gt" / "masks").masks[0])
    k = np.argmin(np.hypot(xs - xs.mean(), ys - ys.mean()))
    r = cli("preprocess", scene / "video.mp4", "-o", work, "--offline", "--preset", "tiny",
            "--prompt", f"{xs[k] + 0.5},{ys[k] + 0.5}")
    assert r.code == 0, r.err
    info = lambda s: json.loads((work / s / "manifest.json").read_text())["info"]
    assert info("depth")["depth_kind"] == "none"
    assert info("align")["densified"] and info("cameras")["method"] in ("colmap", "colmap+ba", "ba")
    aligned = Depth.load(work / "align").depth
    truth = Depth.load(scene / "gt" / "depth").depth
    bg = ~Masks.load(scene / "gt" / "masks").masks & (aligned > 0)
    ratio = aligned[bg] / truth[bg]
    rel = np.abs(ratio / np.median(ratio) - 1)
    assert bg.mean() > 0.5 and np.median(rel) < 0.15


def test_static_camera_video_preprocesses_offline(cli, tmp_path):
    """A static camera filming a moving square, no depth maps: `preprocess --offline` detects
    the static camera, segments the square, and gives the depth a plane (nothing measures it)."""
    from dynrec.artifacts import Depth, Masks

    torch.set_num_threads(1)
    frames, truth = _moving_square(T=12)
    video = tmp_path / "static"
    video.mkdir()
    for t, img in enumerate(frames):
        Image.fromarray(img).save(video / f"{t:02d}.png")
    work = tmp_path / "work"
    r = cli("preprocess", video, "-o", work, "--offline", "--preset", "tiny")
    assert r.code == 0, r.err
    info = lambda s: json.loads((work / s / "manifest.json").read_text())["info"]
    assert info("cameras")["method"] == "static" and info("align")["fast_path"] == "plane"
    assert (Depth.load(work / "align").depth == 1).all()
    masks = Masks.load(work / "masks").masks
    iou = (masks & truth).sum() / (masks | truth).sum()
    assert iou > 0.6


def test_black_video_stops_at_frames_and_a_flat_one_at_tracks(cli, tmp_path):
    for name, level in (("black", 0), ("grey", 128)):
        video = tmp_path / name
        video.mkdir()
        for t in range(5):
            Image.fromarray(np.full((48, 64, 3), level, np.uint8)).save(video / f"{t:02d}.png")
        work = tmp_path / f"work_{name}"
        r = cli("preprocess", video, "-o", work, "--offline")
        err = " ".join(r.err.split())
        assert r.code == 1 and "Traceback" not in r.err
        if name == "black":
            assert "frames: 5 of 5 frames are too dark" in err and "--set frames.dark=0" in err
        else:  # a flat grey video is not dark: it stops where texture is needed, earlier stages kept
            assert "tracks: no trackable texture found" in err
            assert (work / "depth" / "manifest.json").is_file()


def test_offline_keypoints_without_foreground_are_empty(gt_work, tmp_path):
    """Nothing on the masks (a still scene): an empty keypoints artifact and a warning, not a failure."""
    from dynrec.artifacts import Keypoints, Masks
    from dynrec.stages import keypoints as stage
    from dynrec.stages.base import StageContext

    masks = Masks.load(gt_work / "masks")
    (tmp_path / "masks").mkdir()
    Masks(np.zeros_like(masks.masks)).save(tmp_path / "masks")
    out = tmp_path / "keypoints"
    out.mkdir()
    inputs = {name: gt_work / name for name in stage.STAGE.upstream} | {"masks": tmp_path / "masks"}
    info = stage.run(StageContext(work=gt_work, out=out, inputs=inputs), stage.KeypointsParams(backend="offline"))
    kp = Keypoints.load(out)
    assert info["keypoints"] == 0 and kp.xy.shape == (len(masks.masks), 0, 2) and kp.names == []


def test_fixated_tracks_find_what_the_camera_keeps_centred():
    """Background tracks sweep across the image; a cluster near the centre barely moves."""
    from dynrec.vision.motionseg import fixated_tracks

    rng = np.random.default_rng(0)
    T, W, H = 20, 160, 120
    t = np.arange(T)[None, :, None]
    bg = rng.uniform([0, 0], [W, H], (60, 2))[:, None] + t * np.array([3.0, 0.5])  # panning past
    subj = np.array([84.0, 58.0]) + rng.uniform(-5, 5, (12, 2))
    subj = subj[:, None] + rng.normal(0, 0.3, (12, T, 2)) + np.sin(t / 3.0)  # sways a little
    other = np.array([20.0, 20.0])[None, None] + np.zeros((5, T, 2))  # still, but far from the centre
    xy = np.concatenate([bg, subj, other]).astype(np.float32)
    visible = (xy[..., 0] >= 0) & (xy[..., 0] < W) & (xy[..., 1] >= 0) & (xy[..., 1] < H)
    found = fixated_tracks(xy, visible, (W, H))
    assert set(found.tolist()) == set(range(60, 72))
    assert len(fixated_tracks(xy[:60] + [[[-200.0, 0.0]]], visible[:60], (W, H))) == 0  # nothing central
