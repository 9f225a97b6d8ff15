"""`dynrec evaluate` on the tiny synth scene with hand-made reconstructions whose metrics are
known: renders equal to the ground truth, renders off by a fixed amount, cameras moved by a
similarity or perturbed, tracks shifted. Bad input: unknown metrics, no reconstruction, no
or missing ground truth, weights missing, frame counts that disagree."""

from __future__ import annotations

import json
import math
import shutil
import tomllib
from pathlib import Path

import av
import numpy as np
import pytest
import tomli_w
import torch

from dynrec.artifacts import Cameras, Depth, Frames, Keypoints, Lift, Tracks
from dynrec.errors import DynrecError
from dynrec.evaluate.core import parse_metrics
from dynrec.evaluate.covis import covisible_masks
from dynrec.evaluate.report import json_number
from dynrec.metrics import METRICS, ate
from dynrec.metrics.lpips import ALEXNET_FILE, AlexNetFeatures
from dynrec.pipeline.session import open_runner

GT_METRICS = "psnr,ssim,mpsnr,mssim,ate,rpe_trans,rpe_rot,pck_t,epe_3d,tc_warp,jitter"


@pytest.fixture
def work(gt_work: Path, tmp_path: Path) -> Path:
    """A private copy of the preprocessed tiny scene."""
    out = tmp_path / "work"
    shutil.copytree(gt_work, out)
    return out


def write_recon(work: Path, scene: Path, *, renders: np.ndarray | None = None,
                heldout: dict[str, np.ndarray] | None = None, cameras: Cameras | None = None,
                xy_shift: tuple[float, float] = (0.0, 0.0),
                xyz_shift: tuple[float, float, float] = (0.0, 0.0, 0.0), keypoints: Keypoints | None = None) -> None:
    """Commit a fake, *done* recon stage: renders (default: the input frames), held-out
    renders (default: the ground-truth held-out frames), optional refined cameras, and the
    ground-truth trajectories of the lifted tracks shifted by ``xy_shift`` / ``xyz_shift``."""
    runner = open_runner(work, create=False, save=False)
    key = runner.key("recon")
    tmp = runner.work.prepare_tmp("recon", key)
    frames = Frames.load(work / "frames")
    si = frames.source_index
    Frames(frames.images if renders is None else renders, frames.fps, si).save(tmp / "renders" / "train")
    Depth(Depth.load(work / "depth").depth).save(tmp / "renders" / "train")
    rows = Lift.load(work / "lift").track_index
    tr = Tracks.load(work / "tracks")
    Tracks(tr.xy[rows] + np.float32(xy_shift), tr.visible[rows], tr.confidence[rows], tr.query_frame[rows],
           tr.xyz[rows] + np.float32(xyz_shift)).save(tmp / "tracks")
    if heldout is None:
        heldout = {cam: Frames.load(scene / "heldout" / cam / "frames").images[si] for cam in ("cam0", "cam1")}
    for cam, images in heldout.items():
        Frames(images, frames.fps, si[: len(images)]).save(tmp / "renders" / "heldout" / cam)
        Depth(Depth.load(scene / "heldout" / cam / "depth").depth[si][: len(images)]).save(
            tmp / "renders" / "heldout" / cam)
    if cameras is not None:
        cameras.save(tmp / "cameras")
    if keypoints is not None:
        keypoints.save(tmp / "keypoints")
    runner.work.commit("recon", {"stage": "recon", "key": key})


def load_report(work: Path) -> tuple[dict, dict[str, dict]]:
    report = json.loads((work / "eval" / "metrics.json").read_text())
    return report, {row["metric"]: row for row in report["metrics"]}


def edit_config(work: Path, **sections: dict) -> None:
    path = work / "dynrec.toml"
    config = tomllib.loads(path.read_text())
    for name, values in sections.items():
        for key, value in values.items():
            if value is None:
                config[name].pop(key, None)
            else:
                config[name][key] = value
    path.write_text(tomli_w.dumps(config))


def test_perfect_reconstruction(cli, work, scene):
    write_recon(work, scene)
    r = cli("evaluate", work, "--metrics", GT_METRICS)
    assert r.code == 0, r.err + r.out
    report, rows = load_report(work)
    assert report["schema"] == 1 and report["all_computed"] and not report["default_set"]
    assert report["requested"] == GT_METRICS.split(",")
    T = 16
    assert rows["psnr"]["value"] == "inf" and rows["psnr"]["n"] == T and rows["psnr"]["unit"] == "dB"
    assert rows["ssim"]["value"] == pytest.approx(1.0, abs=1e-9)
    assert rows["mpsnr"]["value"] == "inf" and rows["mpsnr"]["split"] == "heldout" and rows["mpsnr"]["n"] == 2 * T
    assert set(rows["mssim"]["by_camera"]) == {"cam0", "cam1"}
    assert rows["mssim"]["value"] == pytest.approx(1.0, abs=1e-9)
    assert rows["ate"]["value"] < 1e-6 and rows["rpe_rot"]["value"] < 1e-6 and rows["rpe_trans"]["n"] == T - 1
    assert "0 by construction" in rows["ate"]["note"]
    assert rows["pck_t"]["value"] == 1.0 and rows["epe_3d"]["value"] < 1e-6
    assert rows["tc_warp"]["value"] == pytest.approx(rows["tc_warp"]["reference"], abs=1e-12)
    assert all(row["computed"] and row["split"] in ("train", "heldout") for row in rows.values())
    # per-frame series: T values per frame metric, T-1 per frame pair
    assert report["per_frame"]["psnr"]["train"] == ["inf"] * T
    assert len(report["per_frame"]["rpe_trans"]["train"]) == T - 1
    assert set(report["per_frame"]["mpsnr"]) == {"cam0", "cam1"}
    assert report["frames"]["source_index"] == list(range(T))
    # which upstream artifacts were evaluated
    runner = open_runner(work, create=False, save=False)
    assert {k: v["key"] for k, v in report["stages"].items()} == {
        s: runner.key(s) for s in ("frames", "recon", "cameras", "tracks", "lift")}
    # plots and side-by-side video
    # no trajectory plot: the cameras are the ground truth, their errors round-off
    assert report["files"]["plots"] == ["plots/psnr.png", "plots/tracks.png"]
    for p in report["files"]["plots"]:
        assert (work / "eval" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with av.open(str(work / "eval" / report["files"]["video"])) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == T and frames[0].shape == (240, 4 * 320, 3)  # 4 panels of 64x48 enlarged 5x
    assert (work / "eval" / "manifest.json").is_file() and not (work / ".eval.tmp").exists()
    out = " ".join(r.out.split())
    assert "psnr ↑ train inf dB 16" in out and "side_by_side.mp4" in out


def test_known_errors(cli, work, scene):
    frames = Frames.load(work / "frames").images
    off_by_4 = np.where(frames < 128, frames + 4, frames - 4).astype(np.uint8)
    gt_cams = Cameras.load(work / "cameras")
    moved = gt_cams.c2w.copy()  # the same trajectory in another world: scale 2, turned, shifted
    c, s = math.cos(0.5), math.sin(0.5)
    S = np.array([[c, -s, 0, 1.0], [s, c, 0, -2.0], [0, 0, 1, 0.5], [0, 0, 0, 1]])
    moved = S @ moved
    moved[:, :3, 3] *= 2.0
    w2c = np.linalg.inv(moved)
    write_recon(work, scene, renders=off_by_4, cameras=Cameras(gt_cams.K, w2c, gt_cams.width, gt_cams.height, "ba"),
                xy_shift=(3.0, 4.0), xyz_shift=(0.03, 0.04, 0.0))
    r = cli("evaluate", work, "--metrics", "psnr,ate,rpe_trans,rpe_rot,pck_t,epe_3d", "--no-video")
    assert r.code == 0, r.err + r.out
    report, rows = load_report(work)
    assert rows["psnr"]["value"] == pytest.approx(20 * math.log10(255 / 4), abs=1e-5)
    assert rows["ate"]["value"] < 1e-5 and rows["rpe_trans"]["value"] < 1e-5 and rows["rpe_rot"]["value"] < 1e-3
    assert "recon/cameras" in rows["ate"]["note"]  # refined cameras are the ones evaluated
    assert rows["pck_t"]["value"] == 0.0  # 5 px off, threshold 0.05 * 64 = 3.2 px
    assert rows["epe_3d"]["value"] == pytest.approx(0.05, abs=1e-5)
    assert report["files"]["video"] is None


def test_keypoints_of_another_layout_are_paired_with_the_joints(cli, work, scene):
    """Unnamed keypoints (shuffled joints, 1 px off) pair with the joints they follow: the
    error is the offset; keypoints named in words (``left_knee``) pair by name."""
    gt = Keypoints.load(work / "keypoints")
    seen = np.flatnonzero((gt.confidence > 0).any(0))  # a keypoint following an unseen joint pairs elsewhere
    order = np.random.default_rng(0).permutation(seen)[:10]
    unnamed = Keypoints(gt.xy[:, order] + np.float32([0.6, 0.8]), np.ones_like(gt.confidence[:, order]),
                        np.zeros((0, 2), np.int32), [f"k{j}" for j in range(10)])
    write_recon(work, scene, keypoints=unnamed)
    assert cli("evaluate", work, "--metrics", "kp_err", "--no-video").code == 0
    _, rows = load_report(work)
    assert rows["kp_err"]["value"] == pytest.approx(1.0, abs=1e-4)
    assert "not joint identity" in rows["kp_err"]["note"]
    words = [n.replace("_l", "").replace("_r", "") for n in gt.names]
    words = [("left_" if n.endswith("_l") else "right_" if n.endswith("_r") else "") + w
             for n, w in zip(gt.names, words, strict=True)]
    named = Keypoints(gt.xy[:, ::-1].copy(), gt.confidence[:, ::-1].copy(), np.zeros((0, 2), np.int32), words[::-1])
    write_recon(work, scene, keypoints=named)
    assert cli("evaluate", work, "--metrics", "kp_err", "--no-video").code == 0
    _, rows = load_report(work)
    assert rows["kp_err"]["value"] == pytest.approx(0.0, abs=1e-6) and "by name" in rows["kp_err"]["note"]


def test_subject_psnr_sees_errors_a_static_background_hides(cli, work, scene):
    """Renders off by 4 levels inside the foreground masks only: ``psnr_fg`` is exactly
    20 log10(255 / 4) and the whole-image ``psnr`` is far higher."""
    from dynrec.artifacts import Masks

    frames = Frames.load(work / "frames").images
    masks = Masks.load(work / "masks").masks
    off = np.where(frames < 128, frames + 4, frames - 4).astype(np.uint8)
    write_recon(work, scene, renders=np.where(masks[..., None], off, frames))
    assert cli("evaluate", work, "--metrics", "psnr,psnr_fg", "--no-video").code == 0
    _, rows = load_report(work)
    assert rows["psnr_fg"]["value"] == pytest.approx(20 * math.log10(255 / 4), abs=1e-5)
    assert rows["psnr"]["value"] > rows["psnr_fg"]["value"] + 6


def test_perturbed_camera(cli, work, scene):
    gt_cams = Cameras.load(work / "cameras")
    w2c = gt_cams.w2c.astype(np.float64).copy()
    w2c[5, :3, 3] += [0.2, 0.0, 0.0]
    write_recon(work, scene, cameras=Cameras(gt_cams.K, w2c, gt_cams.width, gt_cams.height, "ba"))
    assert cli("evaluate", work, "--metrics", "ate,rpe_trans", "--no-video").code == 0
    report, rows = load_report(work)
    expected = ate(w2c, gt_cams.w2c, convention="w2c")
    assert rows["ate"]["value"] == pytest.approx(expected, rel=1e-6) and expected > 0.01
    per_frame = np.array(report["per_frame"]["ate"]["train"])
    assert per_frame.argmax() == 5
    rpe = np.array(report["per_frame"]["rpe_trans"]["train"])
    assert set(np.argsort(rpe)[-2:]) == {4, 5}  # the pairs (4, 5) and (5, 6)


def test_no_reconstruction_evaluates_what_it_can(cli, work):
    r = cli("evaluate", work)
    assert r.code == 2, r.err + r.out
    report, rows = load_report(work)
    assert not report["all_computed"] and report["default_set"]
    assert rows["ate"]["computed"] and rows["ate"]["value"] < 1e-6  # cameras need no reconstruction
    for name in ("psnr", "mpsnr", "pck_t", "jitter", "lpips"):
        assert not rows[name]["computed"] and rows[name]["value"] is None
        assert "no reconstruction" in rows[name]["reason"] and "dynrec reconstruct" in rows[name]["reason"]
    no_depth = {k for k, v in report["skipped"].items() if "no depth-lifted 3D positions" in v}
    assert no_depth == {"epe_3d_kp", "pck_3d_5cm", "pck_3d_10cm"}  # synth keypoints are joints inside the body
    protocol_only = {k for k, v in report["skipped"].items() if "--protocol nvidia" in v}
    assert protocol_only == {"nv_psnr", "nv_ssim", "nv_lpips"}  # full-image held-out metrics: asked for only
    assert {k: v for k, v in report["skipped"].items() if k not in no_depth | protocol_only} == {
        "clip_t": "no text prompt: pass --prompt TEXT"}
    assert set(rows) | set(report["skipped"]) == set(METRICS)  # nothing silently dropped
    assert report["files"]["video"] is None and report["files"]["plots"] == []  # ground-truth cameras: no plot
    out = " ".join(r.out.split())
    assert "not computed" in out and "no reconstruction" in out


def test_stale_reconstruction_is_not_evaluated(cli, work, scene):
    write_recon(work, scene)
    edit_config(work, recon={"steps": 7})
    assert cli("evaluate", work, "--metrics", "psnr", "--no-video").code == 2
    _, rows = load_report(work)
    assert "stale" in rows["psnr"]["reason"] and "steps" in rows["psnr"]["reason"]


def test_unknown_metric_lists_known_ones(cli, gt_work):
    r = cli("evaluate", gt_work, "--metrics", "psnr,fvdd")
    err = " ".join(r.err.split())
    assert r.code == 1 and "unknown metric 'fvdd'" in err
    assert all(name in err for name in METRICS) and "Traceback" not in r.err
    assert not (gt_work / "eval").exists()
    r = cli("evaluate", gt_work / "nope")
    assert r.code == 1 and "does not exist" in r.err


def test_parse_metrics_and_json_numbers():
    assert parse_metrics(None) is None
    assert parse_metrics("all") == list(METRICS)
    assert parse_metrics(" ate, PSNR,ate ") == ["ate", "psnr"]
    with pytest.raises(DynrecError, match="empty"):
        parse_metrics(",")
    with pytest.raises(DynrecError, match=r"--metrics: unknown metrics 'x', 'y'; known metrics: .*psnr.*\(or 'all'\)"):
        parse_metrics("psnr,x,y")
    assert [json_number(x) for x in (1.5, math.inf, -math.inf, math.nan, None)] == [1.5, "inf", "-inf", None, None]


def test_weights_missing_then_found(cli, work, scene, tmp_path, monkeypatch):
    monkeypatch.delenv("DYNREC_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    weights = tmp_path / "weights"
    weights.mkdir()
    write_recon(work, scene)
    r = cli("evaluate", work, "--metrics", "lpips,mlpips,psnr", "--weights-dir", weights, "--no-video")
    assert r.code == 2
    _, rows = load_report(work)
    assert rows["psnr"]["computed"]
    for name in ("lpips", "mlpips"):
        reason = rows[name]["reason"]
        assert reason.startswith("weights missing") and ALEXNET_FILE in reason and str(weights) in reason
    # any AlexNet-shaped backbone makes LPIPS computable; identical images are at distance 0
    torch.manual_seed(0)
    torch.save(AlexNetFeatures().state_dict(), weights / ALEXNET_FILE)
    r = cli("evaluate", work, "--metrics", "lpips,mlpips", "--weights-dir", weights, "--no-video")
    assert r.code == 0, r.out
    _, rows = load_report(work)
    assert rows["lpips"]["value"] == pytest.approx(0.0, abs=1e-7)
    assert rows["mlpips"]["value"] == pytest.approx(0.0, abs=1e-7)


def test_no_ground_truth(cli, work):
    edit_config(work, input={"gt": None})
    r = cli("evaluate", work, "--metrics", "ate,mpsnr,pck_t")
    assert r.code == 2
    _, rows = load_report(work)
    assert all("no ground truth" in row["reason"] and "--gt" in row["reason"] for row in rows.values())
    cli("evaluate", work)
    report, rows = load_report(work)
    gt_metrics = {"mpsnr", "mssim", "mlpips", "ate", "rpe_trans", "rpe_rot", "pck_t", "epe_3d"}
    assert gt_metrics <= set(report["skipped"]) and not gt_metrics & set(rows)


def test_ground_truth_missing(cli, work, scene, tmp_path):
    copy = tmp_path / "scene"
    shutil.copytree(scene, copy)
    shutil.rmtree(copy / "gt" / "cameras")
    edit_config(work, input={"gt": str(copy)})
    assert cli("evaluate", work, "--metrics", "ate").code == 2
    _, rows = load_report(work)
    assert rows["ate"]["reason"] == f"ground truth missing: {copy / 'gt' / 'cameras'} not found"


def test_mismatched_frame_counts_keep_the_previous_eval(cli, work, scene):
    write_recon(work, scene)
    assert cli("evaluate", work, "--metrics", "psnr", "--no-video").code == 0
    before = (work / "eval" / "metrics.json").read_text()
    si = Frames.load(work / "frames").source_index
    short = Frames.load(scene / "heldout" / "cam0" / "frames").images[si][:12]
    write_recon(work, scene, heldout={"cam0": short, "cam1": short})
    r = cli("evaluate", work, "--metrics", "psnr,mpsnr")
    err = " ".join(r.err.split())
    assert r.code == 1 and "renders/heldout/cam0" in err and "12 frames" in err and "16" in err
    assert (work / "eval" / "metrics.json").read_text() == before and not (work / ".eval.tmp").exists()


def test_covisibility_known_cases():
    K = np.array([[50.0, 0, 16], [0, 50.0, 12], [0, 0, 1]])[None].repeat(2, 0)
    w2c = np.eye(4)[None].repeat(2, 0)
    plane = np.full((2, 24, 32), 5.0)
    fg = np.zeros((2, 24, 32), bool)
    fg[:, 8:16, 8:16] = True
    assert covisible_masks(plane, K, w2c, fg, plane, K, w2c).all()  # a view sees itself
    occluder = plane.copy()
    occluder[:, :, :16] = 2.0  # something in front of the left half in the training view
    covis = covisible_masks(plane, K, w2c, fg, occluder, K, w2c)
    assert not covis[:, :, :15].any() and covis[:, :, 17:].all()
    moved = w2c.copy()
    moved[1, 0, 3] = 100.0  # at frame 1 the training camera looks elsewhere
    covis = covisible_masks(plane, K, w2c, fg, plane, K, moved)
    assert covis[0].all() and not covis[1][fg[1]].any() and covis[1][~fg[1]].all()  # background seen at frame 0


def test_check_this_list_names_signs_of_failure(tmp_path):
    from dynrec.evaluate.checks import checks
    from dynrec.pipeline.workdir import WorkDir

    work = WorkDir.open(tmp_path / "w", create=True)
    for stage, info in {
        "masks": {"empty_frames": 9, "foreground_fraction": 0.002, "subject": "motion"},
        "cameras": {"method": "ba", "reproj_error_px": {"mean": 4.0, "median": 3.1}},
        "recon": {"train_psnr": 16.0, "train_psnr_fg": 18.0, "kp_input_error_px": {"init": 1.05, "final": 3.69}},
    }.items():
        folder = work.stage_dir(stage)
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text(json.dumps({"stage": stage, "info": info}))
    found = checks(work, 82)
    assert len(found) == 5
    assert "9 of 82 frames" in found[0] and "0.20%" in found[1] and "3.10 px" in found[2]
    assert "16.0 dB" in found[3] and "1.05 -> 3.69" in found[4]
    healthy = WorkDir.open(tmp_path / "ok", create=True)
    folder = healthy.stage_dir("recon")
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"info": {"train_psnr": 31.0, "train_psnr_fg": 26.0}}))
    assert checks(healthy, 48) == []
    (folder / "manifest.json").write_text(json.dumps({"info": {"train_psnr": 29.5, "train_psnr_fg": 23.6}}))
    assert checks(healthy, 48) == [("recon: the subject (inside the masks) is fitted to 23.6 dB only, against 29.5 dB "
                                    "for the whole image: it may render as a ghost; look at the side-by-side video "
                                    "(masks, tracks and depth of the subject are the usual suspects)")]


def test_inspect_writes_a_sheet_per_input_stage(gt_work, tmp_path):
    from PIL import Image

    from dynrec.cli import main

    work = tmp_path / "work"
    shutil.copytree(gt_work, work)
    try:
        main(["inspect", str(work)])
    except SystemExit as exc:
        assert not exc.code
    names = sorted(p.name for p in (work / "inspect").iterdir())
    assert names == ["cameras.png", "depth.png", "masks.png", "tracks.png"]
    with Image.open(work / "inspect" / "masks.png") as im:
        assert im.width > 600 and im.height > 200
    with pytest.raises(SystemExit) as exc:
        main(["inspect", str(tmp_path / "nowhere")])
    assert exc.value.code != 0


def test_track_metrics_for_offline_inputs_follow_gt_queries(cli, scene, tmp_path):
    """Offline tracks have no ground-truth rows: EPE / PCK-T come from ground-truth queries
    lifted with the model's rendered depth and carried by its motion (Shape of Motion's
    protocol), after the cameras' Sim(3)."""
    torch.set_num_threads(1)
    work = tmp_path / "work"
    r = cli("preprocess", scene / "video.mp4", "-o", work, "--gt", scene, "--preset", "tiny",
            "--set", "tracks.backend=offline")
    assert r.code == 0, r.err
    r = cli("reconstruct", work, "--steps", "20", "--set", "recon.levels=1", "--set", "recon.node_densify=false",
            "--set", "recon.gaussian_densify=false")
    assert r.code == 0, r.err
    r = cli("evaluate", work, "--metrics", "epe_3d,pck_t", "--no-video")
    assert r.code == 0, r.err + r.out
    rows = {m["metric"]: m for m in json.loads((work / "eval" / "metrics.json").read_text())["metrics"]}
    for name in ("epe_3d", "pck_t"):
        assert rows[name]["computed"] and "lifted with the model's rendered depth" in rows[name]["note"]
    assert rows["epe_3d"]["value"] < 0.5  # metres, on a 1.8 m figure after 20 steps
    assert rows["pck_t"]["value"] > 0.3
