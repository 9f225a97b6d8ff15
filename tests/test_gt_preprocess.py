"""`dynrec preprocess --gt` fills every stage from a synth scene; subsampled and resized
artifacts stay consistent with each other (the pixel-centre convention makes rescaling exact)."""

from __future__ import annotations

import numpy as np

from dynrec.artifacts import Cameras, Depth, Frames, Keypoints, Masks, Tracks
from dynrec.geometry.camera import project


def test_gt_preprocess_subsampled_and_resized(cli, scene, tmp_path):
    work = tmp_path / "work"
    r = cli("preprocess", scene / "video.mp4", "-o", work, "--gt", scene, "--stride", "2", "--long-side", "32")
    assert r.code == 0, r.err
    frames = Frames.load(work / "frames")
    T, H, W = frames.shape
    assert (T, H, W) == (8, 24, 32)
    cams, tracks = Cameras.load(work / "cameras"), Tracks.load(work / "tracks")
    depth, masks = Depth.load(work / "depth").depth, Masks.load(work / "masks").masks
    assert (cams.width, cams.height) == (W, H) and cams.K.shape[0] == T and depth.shape == (T, H, W)
    for t in range(T):
        xy, _ = project(tracks.xyz[:, t].astype(np.float64), cams.K[t].astype(np.float64), cams.w2c[t].astype(np.float64))
        vis = tracks.visible[:, t]
        np.testing.assert_allclose(xy[vis], tracks.xy[vis, t], atol=2e-3)
    kp = Keypoints.load(work / "keypoints")
    xy, _ = project(kp.xyz[3].astype(np.float64), cams.K[3].astype(np.float64), cams.w2c[3].astype(np.float64))
    np.testing.assert_allclose(xy, kp.xy[3], atol=2e-3)
    assert masks.any() and not masks.all()
    assert (tracks.query_frame < T).all() and tracks.visible[np.arange(len(tracks.xy)), tracks.query_frame].all()

    assert sorted(p.name for p in (work / "inspect").iterdir()) == ["cameras.png", "depth.png", "masks.png", "tracks.png"]
    assert f"look at: {work / 'inspect' / 'masks.png'}" in r.out.replace("\n", "")

    r = cli("status", work)
    assert r.out.count("done") == 8
    r = cli("preprocess", "-o", work, "--no-sheets")  # nothing to do
    assert r.code == 0 and r.err.count("(done") == 8 and "look at" not in r.out


def test_gt_needs_scene(cli, tmp_path, scene):
    r = cli("preprocess", scene / "video.mp4", "-o", tmp_path / "w", "--gt", tmp_path)
    assert r.code != 0 and "not a ground-truth scene" in r.err


def test_corrupted_artifacts_via_cli(cli, scene, tmp_path):
    work = tmp_path / "work"
    assert cli("preprocess", scene / "video.mp4", "-o", work, "--gt", scene).code == 0
    tracks = work / "tracks" / "tracks.npz"
    tracks.write_bytes(tracks.read_bytes()[:100])  # truncated: seen by its size
    r = cli("status", work)
    assert "stale" in r.out and "tracks.npz" in " ".join(r.out.split())
    meta = work / "frames" / "frames.json"
    meta.write_text("{" + " " * (meta.stat().st_size - 1))  # same size, unreadable: seen on load
    r = cli("preprocess", "-o", work, "--from", "depth")
    message = " ".join(r.err.split())
    assert r.code != 0 and "frames.json" in message and "stage 'frames' is marked stale" in message
    assert "Traceback" not in r.err
    r = cli("preprocess", "-o", work)  # rebuilds frames and tracks, then the rest
    assert r.code == 0, r.err
    assert Tracks.load(work / "tracks").xy.shape[1] == 16


def test_offline_flag_switches_backends_and_keeps_the_scene_for_evaluation(cli, scene, tmp_path):
    import tomllib

    from dynrec.pipeline.registry import GT_STAGES

    work = tmp_path / "w"
    result = cli("preprocess", scene / "video.mp4", "-o", work, "--gt", scene, "--offline", "--only", "frames")
    assert result.code == 0, result.err
    config = tomllib.loads((work / "dynrec.toml").read_text())
    assert config["input"]["gt"] == str(scene.resolve())
    assert {config[s]["backend"] for s in GT_STAGES} == {"offline"}


def test_a_failed_command_changes_no_saved_config(cli, scene, tmp_path):
    work = tmp_path / "w"
    r = cli("preprocess", scene / "video.mp4", "-o", work, "--gt", scene, "--only", "frames")
    assert r.code == 0, r.err
    saved = (work / "dynrec.toml").read_text()
    # cameras needs tracks and masks, which are not done: this fails, and its flags are not kept
    r = cli("preprocess", "-o", work, "--only", "cameras", "--long-side", "32", "--set", "masks.prompt=5,5")
    assert r.code == 1
    assert (work / "dynrec.toml").read_text() == saved
    r = cli("reconstruct", work, "--steps", "7")  # nothing preprocessed: fails, steps not stored
    assert r.code == 1 and (work / "dynrec.toml").read_text() == saved
    r = cli("preprocess", "-o", work, "--only", "frames", "--set", "masks.prompt=5,5")
    assert r.code == 0, r.err  # a command that succeeds keeps its settings
    assert 'prompt = "5,5"' in (work / "dynrec.toml").read_text()
