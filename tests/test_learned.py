"""The learned backends' wrappers (dynrec.learned) on tiny random-init models built from the
real transformers classes, saved with save_pretrained into a temp weights dir laid out as
``<weights>/<org>/<name>`` and loaded back offline; CoTracker through a local torch.hub repo
holding a stand-in with the hub's call signature."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("transformers")

from dynrec.errors import DynrecError
from dynrec.learned.weights import WeightsMissing, find_file, resolve_model

DEPTH_ID = "depth-anything/Depth-Anything-V2-Small-hf"
SAM_ID = "facebook/sam-vit-base"
POSE_ID = "usyd-community/vitpose-plus-base"
H, W = 37, 53  # odd, non-square


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.delenv("DYNREC_WEIGHTS", raising=False)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny Depth Anything, SAM and ViTPose++ checkpoints with their image processors."""
    # the processors transformers 5 picks without torchvision
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTImageProcessorPil,
        SamConfig,
        SamImageProcessorPil,
        SamModel,
        VitPoseBackboneConfig,
        VitPoseConfig,
        VitPoseForPoseEstimation,
        VitPoseImageProcessorPil,
    )

    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    backbone = Dinov2Config(
        image_size=28, patch_size=14, hidden_size=16, num_hidden_layers=4, num_attention_heads=2,
        intermediate_size=32, out_features=["stage1", "stage2", "stage3", "stage4"],
        reshape_hidden_states=False,
    )  # fmt: skip
    depth = DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=16, neck_hidden_sizes=[8, 8, 8, 8],
        fusion_hidden_size=8, head_hidden_size=8, patch_size=14,
    )  # fmt: skip
    depth_model = DepthAnythingForDepthEstimation(depth)
    with torch.no_grad():  # positive, varying disparity (the head ends in a ReLU), so it can be aligned
        last = [c for c in depth_model.head.modules() if isinstance(c, torch.nn.Conv2d)][-1]
        last.bias.fill_(1.0)
    depth_model.save_pretrained(root / DEPTH_ID)
    DPTImageProcessorPil(
        size={"height": 28, "width": 28}, keep_aspect_ratio=True, ensure_multiple_of=14
    ).save_pretrained(root / DEPTH_ID)

    sam = SamConfig(
        vision_config={
            "hidden_size": 16, "output_channels": 16, "num_hidden_layers": 2,
            "num_attention_heads": 2, "image_size": 64, "patch_size": 16, "window_size": 2,
            "global_attn_indexes": [1], "num_pos_feats": 8, "mlp_dim": 32,
        },
        prompt_encoder_config={
            "hidden_size": 16, "image_size": 64, "patch_size": 16, "mask_input_channels": 4,
        },
        mask_decoder_config={
            "hidden_size": 16, "mlp_dim": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
            "iou_head_hidden_dim": 16,
        },
    )  # fmt: skip
    SamModel(sam).save_pretrained(root / SAM_ID)
    SamImageProcessorPil(
        size={"longest_edge": 64}, pad_size={"height": 64, "width": 64},
        mask_size={"longest_edge": 16}, mask_pad_size={"height": 16, "width": 16},
    ).save_pretrained(root / SAM_ID)  # fmt: skip

    pose_bb = VitPoseBackboneConfig(
        image_size=[32, 24], patch_size=[8, 8], hidden_size=16, num_hidden_layers=2,
        num_attention_heads=2, mlp_ratio=2, num_experts=2, part_features=8, out_indices=[2],
    )  # fmt: skip
    pose = VitPoseConfig(
        backbone_config=pose_bb, num_labels=17, use_simple_decoder=True, scale_factor=4
    )
    VitPoseForPoseEstimation(pose).save_pretrained(root / POSE_ID)
    VitPoseImageProcessorPil(size={"height": 32, "width": 24}).save_pretrained(root / POSE_ID)
    return root


def _frames(t: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, H, W, 3), dtype=np.uint8)


def test_no_torchvision() -> None:
    import importlib.util

    assert importlib.util.find_spec("torchvision") is None


# -- weights lookup ------------------------------------------------------------------


def test_resolve_layouts_and_env(
    weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert resolve_model(DEPTH_ID, weights) == weights / DEPTH_ID
    monkeypatch.setenv("DYNREC_WEIGHTS", str(weights))
    assert resolve_model(DEPTH_ID, None) == weights / DEPTH_ID
    monkeypatch.delenv("DYNREC_WEIGHTS")
    flat = tmp_path / "flat"
    (flat / "Depth-Anything-V2-Small-hf").mkdir(parents=True)
    (flat / "Depth-Anything-V2-Small-hf" / "config.json").write_text("{}")
    assert resolve_model(DEPTH_ID, flat) == flat / "Depth-Anything-V2-Small-hf"


@pytest.mark.parametrize("loader", ["depth", "sam", "vitpose"])
def test_missing_weights_offline(
    loader: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dynrec.learned.depth_anything import load_depth_model
    from dynrec.learned.sam import load_sam
    from dynrec.learned.vitpose import load_vitpose

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    fn = {"depth": load_depth_model, "sam": load_sam, "vitpose": load_vitpose}[loader]
    with pytest.raises(WeightsMissing) as info:
        fn("nobody/no-such-model", tmp_path)
    msg = str(info.value)
    assert isinstance(info.value, DynrecError)
    assert "nobody/no-such-model" in msg and str(tmp_path) in msg
    assert "--offline" in msg and "--weights-dir" in msg and "DYNREC_WEIGHTS" in msg


def test_missing_checkpoint_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    with pytest.raises(WeightsMissing) as info:
        find_file("scaled_offline.pth", tmp_path / "w")
    assert "scaled_offline.pth" in str(info.value) and "--offline" in str(info.value)


# -- Depth Anything -------------------------------------------------------------------


def test_depth_shapes_resize_batching(weights: Path) -> None:
    from dynrec.learned.depth_anything import load_depth_model, predict_depth

    bundle = load_depth_model("small", weights)  # short name -> hub id -> <weights>/<org>/<name>
    frames = _frames()
    d, kind = predict_depth(bundle, frames, batch=2)
    assert kind == "disparity" and d.shape == (5, H, W) and d.dtype == np.float32
    d1, _ = predict_depth(bundle, frames, batch=1)
    np.testing.assert_allclose(d, d1, rtol=1e-4, atol=1e-5)
    # the map is the model's output resized bilinearly to the frame size
    enc = bundle.processor(images=[frames[2]], return_tensors="pt")
    with torch.no_grad():
        raw = bundle.model(pixel_values=enc["pixel_values"]).predicted_depth
    assert raw.shape[-2:] != (H, W)
    ref = F.interpolate(raw[:, None], (H, W), mode="bilinear", align_corners=False)[0, 0].numpy()
    np.testing.assert_allclose(d[2], ref, rtol=1e-4, atol=1e-5)


# -- SAM ------------------------------------------------------------------------------


def test_sam_segment_shapes_batching(weights: Path) -> None:
    from dynrec.learned.sam import load_sam, segment

    bundle = load_sam(SAM_ID, weights)
    frames = _frames()
    pts = [
        np.array([[10.0, 10.0], [20.0, 20.0]]),
        None,
        np.array([[5.0, 30.0]]),
        np.array([[40.0, 3.0]]),
        None,
    ]
    boxes = [None, None, None, None, np.array([3.0, 4.0, 30.0, 20.0])]
    m = segment(bundle, frames, pts, boxes, batch=3)
    assert m.shape == (5, H, W) and m.dtype == bool
    assert not m[1].any()  # no prompt -> empty mask
    np.testing.assert_array_equal(m, segment(bundle, frames, pts, boxes, batch=1))


def test_sam_prompt_outside_image(weights: Path) -> None:
    from dynrec.learned.sam import load_sam, parse_prompt, segment

    assert parse_prompt("10,20.5", W, H).tolist() == [10.0, 20.5]
    for bad in ("60,5", "-1,5", "10,37"):
        with pytest.raises(DynrecError, match=f"{W}x{H}"):
            parse_prompt(bad, W, H)
    with pytest.raises(DynrecError):
        parse_prompt("ten,5", W, H)
    bundle = load_sam(SAM_ID, weights)
    with pytest.raises(DynrecError, match=f"{W}x{H}"):
        segment(bundle, _frames(2), [np.array([[70.0, 5.0]]), None])


def test_prompts_from_tracks() -> None:
    from dynrec.learned.sam import prompts_from_tracks

    rng = np.random.default_rng(1)
    N, T = 30, 4
    xy = rng.uniform(0, 50, (N, T, 2)).astype(np.float32)
    xy[0, :, 0] = 80  # outside the 53-wide frame
    visible = np.ones((N, T), bool)
    visible[:, 1] = False
    moving = np.arange(N) < 20
    per = prompts_from_tracks(xy, visible, moving, max_points=5, image_size=(W, H))
    assert len(per) == T and per[1].shape == (0, 2)
    for t in (0, 2, 3):
        assert per[t].shape == (5, 2)
        inside = xy[1:20, t]
        # every prompt is a visible, moving, in-image track point
        assert all(np.isclose(inside, p).all(1).any() for p in per[t])
    few = prompts_from_tracks(xy, visible, moving, max_points=50)
    assert few[0].shape == (20, 2)


# -- ViTPose++ ------------------------------------------------------------------------


def test_boxes_from_masks() -> None:
    from dynrec.learned.vitpose import boxes_from_masks

    m = np.zeros((5, H, W), bool)
    m[1, 5:20, 10:30] = True
    m[3, 10:30, 20:50] = True
    boxes, valid = boxes_from_masks(m)
    assert valid.tolist() == [False, True, False, True, False]
    np.testing.assert_array_equal(boxes[1], [10, 5, 30, 20])  # pixel edges
    np.testing.assert_array_equal(boxes[0], boxes[1])  # before the first: the next box
    np.testing.assert_array_equal(boxes[2], boxes[1])  # empty: the previous box
    np.testing.assert_array_equal(boxes[4], [20, 10, 50, 30])
    allempty, v = boxes_from_masks(np.zeros((2, H, W), bool))
    assert not v.any() and allempty[0].tolist() == [0, 0, W, H]


def test_vitpose_shapes_batching_experts(weights: Path) -> None:
    from dynrec.learned.vitpose import (
        COCO_NAMES,
        COCO_SKELETON,
        boxes_from_masks,
        detect_keypoints,
        load_vitpose,
    )

    bundle = load_vitpose(POSE_ID, weights)
    assert bundle.names == COCO_NAMES and bundle.skeleton.shape == COCO_SKELETON.shape
    assert COCO_SKELETON.max() < len(COCO_NAMES)
    frames = _frames()
    m = np.zeros((5, H, W), bool)
    m[:, 8:30, 12:40] = True
    m[2] = False
    boxes, valid = boxes_from_masks(m)
    xy, conf = detect_keypoints(bundle, frames, boxes, dataset_index=0, batch=2, valid=valid)
    assert xy.shape == (5, 17, 2) and conf.shape == (5, 17)
    assert np.isfinite(xy).all() and (conf[2] == 0).all() and (conf[valid] >= 0).all()
    xy1, conf1 = detect_keypoints(bundle, frames, boxes, dataset_index=0, batch=1, valid=valid)
    np.testing.assert_allclose(xy, xy1, atol=1e-2)
    np.testing.assert_allclose(conf, conf1, atol=1e-4)
    xy_animal, _ = detect_keypoints(bundle, frames, boxes, dataset_index="ap10k", batch=5)
    assert np.abs(xy_animal - xy).max() > 1e-3  # the MoE expert is selected by dataset_index


# -- X-Pose -----------------------------------------------------------------------------


def test_xpose_missing_paths(tmp_path: Path) -> None:
    from dynrec.learned.xpose import load_xpose

    with pytest.raises(DynrecError, match="X-Pose code folder"):
        load_xpose(tmp_path / "nope", tmp_path / "x.pth")
    with pytest.raises(DynrecError, match="checkpoint"):
        load_xpose(tmp_path, tmp_path / "x.pth")


# -- CoTracker --------------------------------------------------------------------------

HUBCONF = textwrap.dedent(
    '''
    """A CoTracker stand-in with the hub's call signature: every point moves with the
    intensity centroid of the video (pixel-index units, centres at integers, as CoTracker)."""
    import torch

    dependencies = ["torch"]


    class StandIn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(3))

        def forward(self, video, queries=None, grid_size=0, **kw):
            B, T, C, H, W = video.shape
            img = video[:, :, 0]
            ys = torch.arange(H, dtype=img.dtype).view(1, 1, H, 1)
            xs = torch.arange(W, dtype=img.dtype).view(1, 1, 1, W)
            tot = img.sum((2, 3))
            c = torch.stack([(img * xs).sum((2, 3)) / tot, (img * ys).sum((2, 3)) / tot], -1)  # [B,T,2]
            if queries is None:
                g = torch.linspace(0, 1, grid_size)
                gy, gx = torch.meshgrid(g * (H - 1), g * (W - 1), indexing="ij")
                queries = torch.stack([torch.zeros(grid_size**2), gx.flatten(), gy.flatten()], -1)[None]
            t0 = queries[..., 0].long()  # [B,N]
            start = torch.stack([c[b, t0[b]] for b in range(B)])  # [B,N,2]
            tracks = queries[:, None, :, 1:] + c[:, :, None] - start[:, None]
            vis = torch.ones(B, T, queries.shape[1], dtype=torch.bool)
            return tracks, vis


    def cotracker3_offline(pretrained=True, **kw):
        return StandIn()
    '''
)


@pytest.fixture
def hub_repo(tmp_path: Path) -> Path:
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "hubconf.py").write_text(HUBCONF)
    return tmp_path / "repo"


def _blob_video(T: int = 4, h: int = 75, w: int = 101) -> tuple[np.ndarray, np.ndarray]:
    """A Gaussian blob moving by a known flow; centres in dynrec pixels (+0.5)."""
    centres = np.array([[30.0 + 7.3 * t, 25.0 + 4.1 * t] for t in range(T)])
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    frames = np.zeros((T, h, w, 3), np.uint8)
    for t, (cx, cy) in enumerate(centres):
        g = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * 4.0**2))
        frames[t] = np.round(255 * g)[..., None].astype(np.uint8)
    return frames, centres


def test_cotracker_local_hub_known_motion(hub_repo: Path, tmp_path: Path) -> None:
    from dynrec.learned.cotracker import load_cotracker, model_size, track

    model = load_cotracker(repo_dir=hub_repo)
    frames, centres = _blob_video()
    T = len(frames)
    assert model_size(75, 101, 50) == (37, 50)  # runs at half resolution, not a round factor
    queries = np.array(
        [[0, 20.0, 30.0], [1, 50.0, 40.0], [2, 10.5, 60.25], [3, 99.0, 2.0], [0, 0.5, 0.5]]
    )
    xy, vis, conf = track(model, frames, queries=queries, max_side=50)
    assert xy.shape == (5, T, 2) and vis.shape == (5, T) and conf.shape == (5, T)
    assert vis.all() and np.allclose(conf, 1)
    motion = centres - centres[queries[:, 0].astype(int)][:, None]  # [N, T, 2]
    expected = queries[:, None, 1:] + motion
    # exact at each query's own frame, known blob motion elsewhere (a wrong half-pixel
    # convention would be off by 0.5 * (101 / 50 - 1) ~ 0.5 px)
    for n, t in enumerate(queries[:, 0].astype(int)):
        np.testing.assert_allclose(xy[n, t], queries[n, 1:], atol=1e-4)
    np.testing.assert_allclose(xy, expected, atol=0.1)
    # the same at full resolution, and with the queries in chunks
    full, _, _ = track(model, frames, queries=queries, max_side=None)
    np.testing.assert_allclose(full, expected, atol=0.05)
    chunked, vis2, _ = track(model, frames, queries=queries, max_side=50, chunk=2)
    np.testing.assert_allclose(chunked, xy, atol=1e-5)
    assert (vis2 == vis).all()
    grid, gv, _ = track(model, frames, grid_size=3, max_side=50)
    assert grid.shape == (9, T, 2) and gv.shape == (9, T)
    # grid corners are pixel centres of the model video, mapped back inside the frame
    assert grid[:, 0, 0].min() > 0 and grid[:, 0, 0].max() < 101


def test_cotracker_checkpoint_and_missing(hub_repo: Path, tmp_path: Path) -> None:
    from dynrec.learned.cotracker import load_cotracker

    ckpt = tmp_path / "scaled_offline.pth"
    torch.save({"model": {"w": torch.tensor([1.0, 2.0, 3.0])}}, ckpt)
    model = load_cotracker(repo_dir=hub_repo, checkpoint=ckpt)
    assert model.w.tolist() == [1.0, 2.0, 3.0]
    model = load_cotracker(repo_dir=hub_repo, weights_dir=tmp_path)  # found by file name
    assert model.w.tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(DynrecError, match="hubconf.py"):
        load_cotracker(repo_dir=tmp_path / "nope")
    with pytest.raises(WeightsMissing, match="--offline"):
        load_cotracker(repo_dir=hub_repo, checkpoint=tmp_path / "missing.pth")
    with pytest.raises(WeightsMissing, match="no_such_entry"):
        load_cotracker(repo_dir=hub_repo, model="no_such_entry")


# ---- the learned backends inside the preprocessing stages ---------------------------------


def _manifest(work: Path, stage: str) -> dict:
    import json

    return json.loads((work / stage / "manifest.json").read_text())["info"]


def test_stages_run_learned_backends(gt_work: Path, weights: Path, hub_repo: Path, tmp_path: Path, cli) -> None:
    """Each preprocessing stage runs its learned backend (Depth Anything, SAM prompted by the
    gt tracks that move, ViTPose++, CoTracker through a hub stand-in) on the tiny scene's
    work dir, the other stages' artifacts being ground truth (downstream first: a stage
    redone with ``--only`` makes the stages after it stale)."""
    import shutil

    from dynrec.artifacts import Depth, Frames, Keypoints, Masks, Tracks

    work = tmp_path / "work"
    shutil.copytree(gt_work, work)
    frames = Frames.load(work / "frames").images
    T, H, W = frames.shape[:3]

    def only(stage: str, *sets: str) -> None:
        args = ["preprocess", "-o", work, "--only", stage, "--weights-dir", weights,
                "--set", f"{stage}.backend=learned", *[a for s in sets for a in ("--set", s)]]
        r = cli(*args)
        assert r.code == 0, r.err
        assert _manifest(work, stage)["backend"] == "learned"

    only("keypoints", "keypoints.batch=3")
    kp = Keypoints.load(work / "keypoints")
    assert _manifest(work, "keypoints")["keypoints"] == 17 and kp.names[0] == "nose"
    assert kp.xy.shape == (T, 17, 2) and kp.confidence.shape == (T, 17) and len(kp.skeleton) > 0

    only("masks", "masks.sam_points=3")
    masks = _manifest(work, "masks")
    assert masks["prompted_frames"] == T and masks["moving_tracks"] > 0
    assert Masks.load(work / "masks").masks.shape == (T, H, W)

    only("tracks", f"tracks.repo_dir={hub_repo}", "tracks.grid_size=6", "tracks.query_every=8", "tracks.max_side=40")
    tracks = Tracks.load(work / "tracks")
    assert set(np.unique(tracks.query_frame)) <= set(range(0, T, 8))
    assert tracks.xy.shape[1] == T and len(tracks.xy) > 10
    n = np.arange(len(tracks.xy))
    at_query = tracks.xy[n, tracks.query_frame]  # seeded inside the frame
    assert ((at_query >= 0) & (at_query <= [W, H])).all()

    only("depth", "depth.batch=3")
    depth = _manifest(work, "depth")
    assert depth["depth_kind"] == "disparity" and Path(depth["weights"]) == weights / DEPTH_ID
    assert Depth.load(work / "depth").depth.shape == (T, H, W)


def test_learned_keypoints_follow_the_mask_boxes(gt_work: Path, weights: Path, tmp_path: Path) -> None:
    """Frames whose mask is empty get confidence 0; the keypoints lie in the mask's box (the
    stage is called directly, on a copy of the masks with frame 3 emptied)."""
    from dynrec.artifacts import Keypoints, Masks
    from dynrec.stages import keypoints as stage
    from dynrec.stages.base import StageContext

    masks = Masks.load(gt_work / "masks")
    masks.masks[3] = False
    (tmp_path / "masks").mkdir()
    masks.save(tmp_path / "masks")
    out = tmp_path / "keypoints"
    out.mkdir()
    inputs = {name: gt_work / name for name in stage.STAGE.upstream} | {"masks": tmp_path / "masks"}
    ctx = StageContext(work=gt_work, out=out, inputs=inputs, weights_dir=weights)
    info = stage.run(ctx, stage.KeypointsParams(backend="learned", box_margin=0.0))
    assert info["frames_without_subject"] == 1
    work = tmp_path
    kp = Keypoints.load(work / "keypoints")
    assert (kp.confidence[3] == 0).all() and (kp.confidence[2] >= 0).all()
    for t in (0, 5):  # inside ViTPose's crop: the box widened to the model's aspect (24:32),
        # x1.25, plus one cell of its 6x8 heatmap
        ys, xs = np.nonzero(masks.masks[t])
        w0, h0 = xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()
        cx, cy = (xs.max() + 1 + xs.min()) / 2, (ys.max() + 1 + ys.min()) / 2
        w, h = 1.25 * max(w0, 0.75 * h0), 1.25 * max(h0, w0 / 0.75)
        assert (np.abs(kp.xy[t, :, 0] - cx) <= w / 2 + w / 6).all()
        assert (np.abs(kp.xy[t, :, 1] - cy) <= h / 2 + h / 8).all()


def test_learned_stage_without_weights_names_the_model(scene: Path, tmp_path: Path, cli) -> None:
    r = cli("preprocess", scene / "video.mp4", "-o", tmp_path / "w", "--gt", scene, "--preset", "tiny",
            "--set", "depth.backend=learned", "--weights-dir", tmp_path / "empty")
    assert r.code == 1
    assert DEPTH_ID in r.err and "--offline" in r.err and "Traceback" not in r.err
    assert str(tmp_path / "empty" / DEPTH_ID) in r.err  # where it was looked for
    assert not (tmp_path / "w" / "frames").exists()  # checked before any stage ran
