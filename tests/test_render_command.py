"""`dynrec render`: a training camera at frame t reproduces the training render of frame t,
generated paths look at the foreground, the files and the camera file read back; bad input."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import av
import numpy as np
import pytest
import tomli_w
from PIL import Image

from dynrec.artifacts import Depth, Frames
from dynrec.evaluate.inputs import EvalInputs
from dynrec.export.render import overlay_colour, plan_shots, render_shot
from dynrec.geometry.camera import look_at, project
from dynrec.metrics import psnr
from dynrec.pipeline.result import load_reconstruction
from dynrec.pipeline.session import open_runner
from dynrec.render.paths import generated_path, load_camera_file, parse_times


@pytest.fixture
def work(trained_work: Path, tmp_path: Path) -> Path:
    out = tmp_path / "work"
    shutil.copytree(trained_work, out)
    return out


def _pngs(folder: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])


def test_training_cameras_reproduce_the_training_renders(cli, work):
    train = Frames.load(work / "recon" / "renders" / "train").images
    train_depth = Depth.load(work / "recon" / "renders" / "train").depth
    r = cli("render", work, "--path", "static", "--time", "5")
    assert r.code == 0, r.err + r.out
    out = work / "renders" / "static"
    np.testing.assert_array_equal(_pngs(out / "rgb")[0], train[5])
    # depth: the recon stage renders 4 frames per rasterizer call, this one frame (float sums
    # in another order)
    np.testing.assert_allclose(np.load(out / "depth.npy")[0], train_depth[5], atol=1e-4)
    r = cli("render", work, "--path", "training")
    assert r.code == 0, r.err + r.out
    out = work / "renders" / "training"
    np.testing.assert_array_equal(_pngs(out / "rgb"), train)
    np.testing.assert_array_equal(np.load(out / "depth.npy"), train_depth)
    alpha = np.load(out / "alpha.npy")
    assert alpha.shape == train_depth.shape and 0 <= alpha.min() and alpha.max() <= 1
    assert _pngs(out / "depth").shape == (*train.shape[:3], 3) and _pngs(out / "alpha").shape == train.shape[:3]
    with av.open(str(out / "rgb.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 16
    # cameras.json is a camera file: --path reads it back
    cams = load_camera_file(out / "cameras.json")
    rec = load_reconstruction(work)
    np.testing.assert_allclose(cams.w2c, rec.w2c, atol=1e-9)
    np.testing.assert_allclose(cams.K, rec.K, atol=1e-9)
    assert cams.times == list(range(16))


def test_orbit_looks_at_the_foreground(work):
    rec = load_reconstruction(work)
    centre = rec.foreground_centre()
    shot = plan_shots(rec, "orbit", [4], frames=8)[0]
    assert shot.times == [4] * 8 and len(shot.cameras) == 8
    W, H = rec.width, rec.height
    eyes = np.linalg.inv(shot.cameras.w2c)[:, :3, 3]
    for K, w2c in zip(shot.cameras.K, shot.cameras.w2c):
        xy, z = project(centre, K, w2c)
        assert z > 0 and xy == pytest.approx([W / 2, H / 2], abs=1e-6)
    # a full turn: the camera half way round is on the other side of the centre
    assert np.dot(eyes[0] - centre, eyes[4] - centre) < 0
    seq = render_shot(rec, shot)
    assert seq.rgb.shape == (8, H, W, 3)
    cy, cx = H // 2, W // 2  # the foreground is drawn around the image centre in every frame
    assert (seq.fg[:, cy - 4:cy + 4, cx - 4:cx + 4].max(axis=(1, 2)) > 0.5).all()


def test_generated_paths_are_sized_from_the_training_cameras():
    """Training cameras on a circle of radius 4 at height 1 around the origin (z up)."""
    angles = np.linspace(0, 1.0, 6)
    w2c = np.stack([look_at(np.array([4 * np.cos(a), 4 * np.sin(a), 1.0]), np.zeros(3)) for a in angles])
    K = np.repeat(np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]])[None], 6, 0)
    centre = np.array([0.0, 0.0, 0.5])
    orbit = generated_path("orbit", K, w2c, centre, 12, 64, 48)
    eyes = np.linalg.inv(orbit.w2c)[:, :3, 3]
    np.testing.assert_allclose(np.linalg.norm(eyes[:, :2], axis=1), 4.0, atol=1e-6)  # the cameras' radius
    np.testing.assert_allclose(eyes[:, 2], 1.0, atol=1e-6)  # and height
    np.testing.assert_allclose(eyes[0, :2], [4.0, 0.0], atol=1e-6)  # starting at the first camera
    for kind in ("orbit", "spiral", "dolly"):
        path = generated_path(kind, K, w2c, centre, 10, 64, 48)
        for k, m in zip(path.K, path.w2c):
            xy, z = project(centre, k, m)
            assert z > 0 and xy == pytest.approx([32, 24], abs=1e-6)
            up = -m[1, :3]  # image up stays world up (+z) side
            assert up[2] > 0


def test_times():
    assert parse_times("all", 4) == [0, 1, 2, 3]
    assert parse_times("2", 4) == [2] and parse_times("-1", 4) == [3]
    assert parse_times("1:3", 4) == [1, 2, 3] and parse_times(":1", 4) == [0, 1]


def test_render_bad_input(cli, gt_work, work, tmp_path):
    r = cli("render", gt_work)
    assert r.code == 1 and "no reconstruction" in r.err and f"dynrec reconstruct {gt_work}" in r.err
    r = cli("render", work, "--time", "16")
    assert r.code == 1 and "outside the video" in r.err and "0..15" in r.err
    r = cli("render", work, "--time", "3:1")
    assert r.code == 1 and "ends before it starts" in r.err
    path = tmp_path / "cams.json"
    good = {"w": 32, "h": 24, "fl_x": 30.0, "frames": [{"transform_matrix": np.eye(4).tolist()},
                                                         {"transform_matrix": [[1, 0, 0], [0, 1, 0]]}]}
    path.write_text(json.dumps(good))
    r = cli("render", work, "--path", path, "--time", "0")
    assert r.code == 1 and "frames[1].transform_matrix" in r.err
    good["frames"][1] = {"transform_matrix": np.eye(4).tolist(), "fl_x": "wide"}
    path.write_text(json.dumps(good))
    r = cli("render", work, "--path", path, "--time", "0")
    assert r.code == 1 and "frames[1].fl_x must be a number" in r.err
    path.write_text("{frames: ")
    r = cli("render", work, "--path", path)
    assert r.code == 1 and "not valid JSON" in r.err
    r = cli("render", work, "--path", tmp_path / "missing.json")
    assert r.code == 1 and "cannot read camera file" in r.err and "No such file" in r.err
    r = cli("render", work, "--path", "helix")
    assert r.code == 1 and "--path must be one of" in r.err
    (work / "renders").write_text("not a folder")
    r = cli("render", work, "--path", "static", "--time", "0")
    assert r.code == 1 and "is a file" in r.err
    assert (work / "renders").read_text() == "not a folder"


def test_bad_overlays_fail_before_anything_is_rendered(cli, work, monkeypatch):
    """A bad --overlay name fails before the model is loaded; an overlay the reconstruction
    cannot draw fails before any frame is rendered; nothing is written either way."""
    import dynrec.export.render as render_mod
    import dynrec.pipeline.result as result_mod

    def forbidden(*args, **kwargs):
        raise AssertionError("work was done before the overlay was checked")

    monkeypatch.setattr(result_mod, "load_reconstruction", forbidden)
    r = cli("render", work, "--path", "static", "--time", "0", "--overlay", "tracks,trails")
    assert r.code == 1 and "Traceback" not in r.err, r.err
    assert "--overlay: unknown overlay 'trails'; known overlays: tracks, skeleton" in r.err
    assert not (work / "renders").exists()
    monkeypatch.undo()
    monkeypatch.setattr(render_mod, "render_shot", forbidden)
    shutil.rmtree(work / "recon" / "keypoints")
    r = cli("render", work, "--path", "static", "--time", "0", "--overlay", "skeleton")
    assert r.code == 1 and "--overlay skeleton" in r.err and "has no keypoints" in r.err, r.err
    assert not (work / "renders").exists()


def test_evaluate_renders_the_heldout_cameras_with_the_render_code(cli, work):
    """The recon stage renders no held-out camera; evaluate renders them from the model with
    `dynrec render --path heldout`'s code, and mPSNR is computed on those pixels."""
    assert not (work / "recon" / "renders" / "heldout").exists()
    r = cli("evaluate", work, "--metrics", "mpsnr", "--no-video")
    assert r.code == 0, r.err + r.out
    row = next(m for m in json.loads((work / "eval" / "metrics.json").read_text())["metrics"] if m["metric"] == "mpsnr")
    assert row["computed"] and row["n"] == 2 * 16
    r = cli("render", work, "--path", "heldout")
    assert r.code == 0, r.err + r.out
    inp = EvalInputs(open_runner(work, create=False, save=False))
    views = inp.heldout()
    assert [v.name for v in views] == ["cam0", "cam1"]
    values = []
    for view in views:
        pngs = _pngs(work / "renders" / f"heldout-{view.name}" / "rgb")
        np.testing.assert_array_equal((view.render * 255).round().astype(np.uint8), pngs)
        values.append(psnr(pngs / 255.0, view.gt, mask=view.covis, reduction="none"))
    assert row["value"] == pytest.approx(float(np.nanmean(np.concatenate(values))), rel=1e-9)


def test_overlays_draw_the_model_keypoints_where_they_project(cli, work):
    r = cli("render", work, "--path", "static", "--time", "2", "--overlay", "tracks,skeleton")
    assert r.code == 0, r.err + r.out
    out = work / "renders" / "static"
    rgb, drawn = _pngs(out / "rgb")[0], _pngs(out / "overlay")[0]
    rec = load_reconstruction(work)
    J = rec.keypoints.xyz.shape[1]
    xy, z = project(rec.keypoints.xyz[2, J - 1].astype(np.float64), rec.K[2], rec.w2c[2])
    x, y = round(xy[0]), round(xy[1])
    assert z > 0 and 0 <= x < rec.width and 0 <= y < rec.height
    assert tuple(drawn[y, x]) == overlay_colour(J - 1) and tuple(rgb[y, x]) != overlay_colour(J - 1)
    with av.open(str(out / "overlay.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 1



def test_a_stale_reconstruction_is_shown_with_a_note(cli, work):
    """Settings changed since the reconstruction: render still works and says so."""
    path = work / "dynrec.toml"
    config = tomllib.loads(path.read_text())
    config["recon"]["seed"] = 12345
    path.write_text(tomli_w.dumps(config))
    r = cli("render", work, "--path", "static", "--time", "0")
    assert r.code == 0, r.err + r.out
    assert "stale" in r.err and "params changed: seed" in r.err and f"dynrec reconstruct {work}" in r.err
