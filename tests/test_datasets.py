"""Dataset importers on small scenes written in each dataset's real layout (tests/datasets_fixtures.py):
conventions with known answers (DyCheck cameras, keypoint half-pixel, TUM quaternions and depth
scale, DAVIS palette masks), a synth scene round-tripped through the DyCheck layout, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from datasets_fixtures import (
    PAPER_WINDMILL_0,
    PAPER_WINDMILL_1,
    write_davis,
    write_dycheck,
    write_tum,
)
from PIL import Image
from scipy.spatial.transform import Rotation

from dynrec.artifacts import Cameras, Depth, Frames, Keypoints, Masks, Tracks
from dynrec.datasets import convert
from dynrec.datasets.dycheck import read_camera
from dynrec.datasets.scene import load_keypoint_valid_3d
from dynrec.datasets.tum import BONN_T_M, associate, bonn_marker_to_camera, read_trajectory
from dynrec.errors import DynrecError
from dynrec.geometry.camera import project
from dynrec.pipeline.session import open_runner


def dycheck_project(cam: dict, X: np.ndarray, factor: float = 1.0) -> np.ndarray:
    """DyCheck's ``Camera.project`` (no distortion) of world points [N, 3] at 1/``factor``:
    local = orientation @ (X - position), pixels = K @ (local / z)."""
    R, p = np.asarray(cam["orientation"]), np.asarray(cam["position"])
    local = (X - p) @ R.T
    f = cam["focal_length"] / factor
    cx, cy = (v / factor for v in cam["principal_point"])
    return np.stack([f * local[:, 0] / local[:, 2] + cx, f * local[:, 1] / local[:, 2] + cy], -1)


def write_json(path: Path, obj: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


# ----- DyCheck ------------------------------------------------------------------------------
def test_dycheck_real_camera_files_convert_to_opencv_w2c(tmp_path):
    """paper-windmill's camera 0 at frame 0 is ARKit's identity pose already turned to OpenCV
    axes (orientation diag(1, -1, -1)): a point 1 m along ARKit's viewing direction (-z) is 1 m in
    front and lands on the principal point; camera 1 projects like DyCheck's own formula."""
    K, w2c, size = read_camera(write_json(tmp_path / "0_00000.json", PAPER_WINDMILL_0))
    np.testing.assert_allclose(w2c, np.diag([1.0, -1.0, -1.0, 1.0]), atol=1e-9)
    xy, z = project(np.array([0.0, 0.0, -1.0]), K, w2c)
    assert z == pytest.approx(1.0) and xy == pytest.approx([358.8895263671875, 484.92236328125])
    assert size == (720, 960) and K[0, 0] == pytest.approx(719.9471435546875)

    cam = PAPER_WINDMILL_1
    K, w2c, _ = read_camera(write_json(tmp_path / "1_00000.json", cam))
    R, p = np.asarray(cam["orientation"]), np.asarray(cam["position"])
    np.testing.assert_allclose(w2c[:3, :3], R)
    np.testing.assert_allclose(w2c[:3, 3], -R @ p)
    np.testing.assert_allclose(np.linalg.inv(w2c)[:3, 3], p, atol=1e-12)  # the centre is `position`
    X = np.random.default_rng(0).normal([0.0, 0.0, -1.2], 0.2, (20, 3))
    xy, z = project(X, K, w2c)
    assert (z > 0).all()
    np.testing.assert_allclose(xy, dycheck_project(cam, X), atol=1e-9)
    # at 2x (DyCheck's rescale_image_domain(1/2)): same rays, half the pixels
    K2, w2c2, size2 = read_camera(tmp_path / "1_00000.json", 2)
    assert size2 == (360, 480)
    np.testing.assert_allclose(project(X, K2, w2c2)[0], dycheck_project(cam, X, 2.0), atol=1e-9)
    np.testing.assert_allclose(project(X, K2, w2c2)[0], xy / 2, atol=1e-9)


@pytest.fixture(scope="module")
def dycheck_scene(scene, tmp_path_factory):
    """The tiny synth scene in DyCheck's layout (2x) and what was written."""
    out = tmp_path_factory.mktemp("dycheck") / "tiny-iphone"
    return out, write_dycheck(scene, out)


def test_dycheck_round_trip(cli, scene, dycheck_scene, tmp_path):
    """A synth scene written in the DyCheck layout and imported back: the same cameras (a
    point projected with DyCheck's convention lands on the same pixel), depth, keypoint tracks
    (+0.5 restored, xyz lifted from the depth), held-out view and its co-visibility masks."""
    src, written = dycheck_scene
    work = tmp_path / "work"
    r = cli("import", "dycheck", src, "-o", work, "--gt-only")
    assert r.code == 0, r.err + r.out
    manifest = json.loads((work / "dataset" / "manifest.json").read_text())
    assert (manifest["dataset"], manifest["scene"], manifest["split"], manifest["heldout_split"]) == (
        "dycheck", "tiny-iphone", "train", "val")
    assert manifest["modalities"] == ["cameras", "depth", "keypoints"] and manifest["missing"] == []
    info = json.loads((work / "dataset" / "scene.json").read_text())
    assert info["resolution"] == "2x" and info["dycheck_scene"]["scale"] == 0.5 and info["heldout"] == ["cam1"]

    gt_cams = Cameras.load(scene / "gt" / "cameras")
    cams = Cameras.load(work / "dataset" / "gt" / "cameras")
    np.testing.assert_allclose(cams.K, gt_cams.K, atol=1e-4)
    np.testing.assert_allclose(cams.w2c, gt_cams.w2c, atol=1e-5)
    tracks = Tracks.load(scene / "gt" / "tracks")
    cam_json = json.loads((src / "camera" / "0_00007.json").read_text())
    vis = tracks.visible[:, 7]
    X = tracks.xyz[vis, 7].astype(np.float64)
    np.testing.assert_allclose(dycheck_project(cam_json, X, 2.0), project(X, cams.K[7].astype(float),
                                                                          cams.w2c[7].astype(float))[0], atol=1e-3)
    np.testing.assert_allclose(project(X, cams.K[7], cams.w2c[7])[0], tracks.xy[vis, 7], atol=1e-3)

    # depth: the depth stage's gt backend copied it into the work dir
    np.testing.assert_allclose(Depth.load(work / "depth").depth, Depth.load(scene / "gt" / "depth").depth)
    assert Frames.load(work / "frames").shape == (16, 48, 64)

    kp = Keypoints.load(work / "dataset" / "gt" / "keypoints")
    rows, kf = written["rows"], list(written["keypoint_frames"])
    np.testing.assert_allclose(kp.xy[kf], tracks.xy[rows][:, kf].transpose(1, 0, 2), atol=1e-4)
    expected_conf = np.zeros((16, len(rows)))
    expected_conf[kf] = 1.0
    expected_conf[kf[-1], -1] = 0.0
    np.testing.assert_array_equal(kp.confidence, expected_conf)
    assert kp.names[0] == "p0" and kp.skeleton[0].tolist() == [0, 1]
    valid = load_keypoint_valid_3d(work / "dataset")
    assert valid.sum() >= 0.6 * expected_conf.sum()
    err = np.linalg.norm(kp.xyz - tracks.xyz[rows].transpose(1, 0, 2), axis=-1)[valid]
    assert np.median(err) < 0.02  # metres: bilinear depth at a surface point

    held = Frames.load(work / "dataset" / "heldout" / "cam1" / "frames")
    covis = Masks.load(work / "dataset" / "heldout" / "cam1" / "covisible").masks
    assert held.images[3].max() == 0 and not covis[3].any()  # val frame 1_00003 absent
    np.testing.assert_array_equal(covis[5], written["covis"][5])
    np.testing.assert_array_equal(held.images[5], Frames.load(scene / "heldout" / "cam0" / "frames").images[5])
    hcams = Cameras.load(work / "dataset" / "heldout" / "cam1" / "cameras")
    np.testing.assert_allclose(hcams.w2c, Cameras.load(scene / "heldout" / "cam0" / "cameras").w2c, atol=1e-5)
    # the held-out view runs at the scene's frame rate (extra.json: 10 fps), also with a stride
    assert held.fps == Frames.load(work / "dataset" / "gt" / "frames").fps == 10.0
    strided = convert("dycheck", src, frames="1:16:3")
    assert strided.frames.fps == strided.heldout["cam1"].frames.fps == pytest.approx(10.0 / 3)
    np.testing.assert_array_equal(strided.heldout["cam1"].frames.images, held.images[1:16:3])
    np.testing.assert_array_equal(strided.heldout["cam1"].covisible, covis[1:16:3])
    np.testing.assert_allclose(strided.heldout["cam1"].cameras.w2c, hcams.w2c[1:16:3])


def test_dycheck_bad_input(cli, dycheck_scene, tmp_path):
    src, _ = dycheck_scene
    r = cli("import", "dycheck", tmp_path, "-o", tmp_path / "w0")
    assert r.code == 1 and "expected" in r.err and "dataset.json" in r.err
    assert not (tmp_path / "w0").exists()
    r = cli("import", "nerfies", src, "-o", tmp_path / "w0")
    assert r.code == 1 and "unknown dataset format 'nerfies'" in r.err and "dycheck" in r.err
    r = cli("import", "dycheck", src, "-o", tmp_path / "w0", "--resolution", "1x")
    assert r.code == 1 and "rgb/1x" in r.err and "2x" in r.err

    # no val split and a frame without depth: imported, and said
    bad = tmp_path / "bad"
    shutil.copytree(src, bad)
    (bad / "splits" / "val.json").unlink()
    data = json.loads((bad / "dataset.json").read_text())
    data.pop("val_ids")
    write_json(bad / "dataset.json", data)
    (bad / "depth" / "2x" / "0_00004.npy").unlink()
    work = tmp_path / "work"
    r = cli("import", "dycheck", bad, "-o", work, "--gt-only")
    assert r.code == 0, r.err
    out = " ".join(r.out.split())
    assert "no splits/val.json" in out and "1 of 16 frames have no depth/2x/*.npy (0_00004)" in out
    assert Depth.load(work / "depth").depth[4].max() == 0 and Depth.load(work / "depth").depth[5].min() > 0
    assert not (work / "dataset" / "heldout").exists()

    # a train frame without its image: an error naming it; the earlier import is kept
    (bad / "rgb" / "2x" / "0_00009.png").unlink()
    before = (work / "dataset" / "manifest.json").read_text()
    r = cli("import", "dycheck", bad, "-o", work, "--gt-only")
    assert r.code == 1 and "1 of 16 train frames have no image (0_00009)" in " ".join(r.err.split())
    assert (work / "dataset" / "manifest.json").read_text() == before


# ----- DAVIS --------------------------------------------------------------------------------
def test_davis_annotations_become_the_masks_artifact(cli, scene, tmp_path):
    """Palette PNG annotations (objects 1 and 2) become the union mask in WORK/dataset/gt/masks,
    and the masks stage's gt backend copies it into the work dir's masks artifact."""
    frames = Frames.load(scene / "gt" / "frames").images[:6]
    fg = Masks.load(scene / "gt" / "masks").masks[:6]
    labels = np.where(fg, 1, 0)
    labels[:, :, 32:] *= 2  # the right half of the figure is object 2
    root = tmp_path / "DAVIS"
    write_davis(root, "tiny-walk", frames, labels)
    r = cli("import", "davis", root, "-o", tmp_path / "w", "--gt-only")
    assert r.code == 1 and "--scene" in r.err and "tiny-walk" in r.err
    work = tmp_path / "work"
    r = cli("import", "davis", root, "-o", work, "--scene", "tiny-walk", "--gt-only")
    assert r.code == 0, r.err
    manifest = json.loads((work / "dataset" / "manifest.json").read_text())
    assert (manifest["dataset"], manifest["scene"], manifest["split"]) == ("davis", "tiny-walk", "2017/val")
    assert manifest["modalities"] == ["masks"] and manifest["gt_stages"] == ["masks"]
    np.testing.assert_array_equal(Masks.load(work / "dataset" / "gt" / "masks").masks, fg)
    runner = open_runner(work, create=False, sets=["tracks.backend=offline", "depth.backend=offline"])
    runner.run(["masks"])
    np.testing.assert_array_equal(Masks.load(work / "masks").masks, fg)
    jpg = Frames.load(work / "frames").images
    assert np.abs(jpg.astype(int) - frames).mean() < 6  # JPEG at quality 95

    only2 = convert("davis", root, scene="tiny-walk", options={"objects": "2"})  # --option objects=2
    np.testing.assert_array_equal(only2.masks, labels == 2)

    # an annotation missing: frames imported, masks not, and said so
    (root / "Annotations" / "480p" / "tiny-walk" / "00003.png").unlink()
    imported = convert("davis", root, scene="tiny-walk")
    assert imported.masks is None and "1 of 6 frames are not annotated (00003)" in imported.missing[0]


# ----- TUM / Bonn ---------------------------------------------------------------------------
def test_tum_trajectory_depth_scale_and_association(cli, scene, tmp_path):
    """groundtruth.txt quaternions (qx qy qz qw) give the camera-to-world poses, depth PNGs
    divided by 5000 give metres, colour frames take the nearest depth / pose within 20 ms, the
    freiburg3 calibration moves to +0.5 pixel centres."""
    frames = Frames.load(scene / "gt" / "frames").images[:8]
    depth = Depth.load(scene / "gt" / "depth").depth[:8]
    c2w = Cameras.load(scene / "gt" / "cameras").c2w[:8]
    src = tmp_path / "rgbd_dataset_freiburg3_walking_xyz"
    stamps = write_tum(src, frames, depth, c2w)
    # one more colour frame with no depth within 20 ms: dropped
    (src / "rgb.txt").write_text((src / "rgb.txt").read_text() + f"{stamps[-1] + 1.0:.6f} rgb/{stamps[0]:.6f}.png\n")
    work = tmp_path / "work"
    r = cli("import", "tum", src, "-o", work, "--gt-only")
    assert r.code == 0, r.err
    assert "1 of 9 colour frames have no ground-truth pose within 0.02 s: dropped" in " ".join(r.out.split())
    cams = Cameras.load(work / "dataset" / "gt" / "cameras")
    np.testing.assert_allclose(cams.c2w, c2w, atol=1e-5)
    np.testing.assert_allclose(cams.K[0], [[535.4, 0, 320.6], [0, 539.2, 248.1], [0, 0, 1]], atol=1e-4)
    d = Depth.load(work / "depth").depth
    np.testing.assert_allclose(d, np.round(depth * 5000) / 5000, atol=1e-6)
    manifest = json.loads((work / "dataset" / "manifest.json").read_text())
    assert manifest["dataset"] == "tum" and manifest["scene"] == src.name and manifest["frames"] == 8
    scene_json = json.loads((work / "dataset" / "scene.json").read_text())
    assert scene_json["fps"] == pytest.approx(30.0) and scene_json["camera"] == "freiburg3"

    # a benchmark's frame subset (as MonST3R's stride 3 on TUM): cameras, depth and fps follow
    sub = tmp_path / "sub"
    r = cli("import", "tum", src, "-o", sub, "--frames", "1:7:2", "--gt-only")
    assert r.code == 0, r.err
    np.testing.assert_allclose(Cameras.load(sub / "dataset" / "gt" / "cameras").c2w, c2w[1:7:2], atol=1e-5)
    np.testing.assert_allclose(Depth.load(sub / "depth").depth, np.round(depth[1:7:2] * 5000) / 5000, atol=1e-6)
    sub_json = json.loads((sub / "dataset" / "scene.json").read_text())
    assert sub_json["frame_indices"] == [1, 3, 5] and sub_json["fps"] == pytest.approx(15.0)
    assert sub_json["timestamps"] == pytest.approx(list(stamps[1:7:2]))
    assert json.loads((sub / "dataset" / "manifest.json").read_text())["frames_selected"] == "1:7:2"
    r = cli("import", "tum", src, "-o", sub, "--frames", "1:x")
    assert r.code == 1 and "START:STOP:STEP" in r.err
    r = cli("import", "tum", src, "-o", sub, "--frames", "5:6")
    assert r.code == 1 and "keeps 1 of 8 frames" in r.err

    # a quarter turn about z, as written by TUM: qz = qw = sqrt(1/2)
    (tmp_path / "gt.txt").write_text("# t tx ty tz qx qy qz qw\n1.0 1 2 3 0 0 0.70710678 0.70710678\n")
    _, pose = read_trajectory(tmp_path / "gt.txt")
    np.testing.assert_allclose(pose[0], [[0, -1, 0, 1], [1, 0, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1]], atol=1e-7)
    np.testing.assert_array_equal(associate(np.array([0.0, 0.5, 1.0]), np.array([0.01, 0.49, 2.0])), [0, 1, -1])


def test_bonn_marker_poses_become_rigid_camera_poses(tmp_path):
    """Bonn's T_ros @ T @ T_ros @ T_m with the rotation of T_m (a rotation times 1.059)."""
    out = bonn_marker_to_camera(np.eye(4)[None])[0]
    R = out[:3, :3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-9)
    assert np.linalg.det(R) == pytest.approx(1.0)
    np.testing.assert_allclose(R, BONN_T_M[:3, :3] / 1.05929, atol=2e-4)
    np.testing.assert_allclose(out[:3, 3], BONN_T_M[:3, 3])
    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("z", 30, degrees=True).as_matrix()
    T[:3, 3] = [1.0, 2.0, 3.0]
    moved = bonn_marker_to_camera(T[None])[0]
    ros = np.array([[-1.0, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])
    np.testing.assert_allclose(moved, ros @ T @ ros @ out, atol=1e-12)  # out = T_m (T_ros @ T_ros = I)
    with pytest.raises(Exception, match="rgb.txt"):
        convert("bonn", tmp_path)


# ----- Sintel -------------------------------------------------------------------------------
def test_sintel_cam_and_dpt_files(cli, scene, tmp_path):
    """.cam (x = M N X, principal point at (W-1)/2) and .dpt files written as the Sintel SDK does
    come back as the synth scene's cameras (+0.5 pixel centres) and depth."""
    from dynrec.datasets.sintel import write_cam, write_dpt

    frames = Frames.load(scene / "gt" / "frames").images[:5]
    cams = Cameras.load(scene / "gt" / "cameras")
    depth = Depth.load(scene / "gt" / "depth").depth[:5]
    root = tmp_path / "training"
    for sub in ("final/alley_9", "camdata_left/alley_9", "depth/alley_9"):
        (root / sub).mkdir(parents=True)
    for t in range(5):
        name = f"frame_{t + 1:04d}"
        Image.fromarray(frames[t]).save(root / "final" / "alley_9" / f"{name}.png")
        M = cams.K[t].astype(np.float64).copy()
        M[:2, 2] -= 0.5
        write_cam(root / "camdata_left" / "alley_9" / f"{name}.cam", M, cams.w2c[t][:3].astype(np.float64))
        write_dpt(root / "depth" / "alley_9" / f"{name}.dpt", depth[t])
    work = tmp_path / "work"
    r = cli("import", "sintel", root, "-o", work, "--scene", "alley_9", "--gt-only")
    assert r.code == 0, r.err
    got = Cameras.load(work / "dataset" / "gt" / "cameras")
    np.testing.assert_allclose(got.K, cams.K[:5], atol=1e-5)
    np.testing.assert_allclose(got.w2c, cams.w2c[:5], atol=1e-6)
    np.testing.assert_array_equal(Depth.load(work / "depth").depth, depth)
    assert json.loads((work / "dataset" / "manifest.json").read_text())["split"] == "training"
    cam3 = root / "camdata_left" / "alley_9" / "frame_0003.cam"
    cam3.rename(tmp_path / "frame_0003.cam")
    with pytest.raises(DynrecError, match=r"alley_9: 1 of 5 frames have no .cam file \(frame_0003\); the frames "
                                          r"\(.*final/alley_9\) and cameras must match"):
        convert("sintel", root, scene="alley_9")
    (tmp_path / "frame_0003.cam").rename(cam3)
    shutil.move(root / "depth", tmp_path / "depth")
    no_depth = convert("sintel", root, scene="alley_9")
    assert no_depth.depth is None and no_depth.cameras is not None
    assert no_depth.missing == [f"depth: no {root / 'depth' / 'alley_9'}"]
    shutil.move(tmp_path / "depth", root / "depth")
    (root / "depth" / "alley_9" / "frame_0002.dpt").write_bytes(b"PIEH0000")  # the tag, then 4 bytes
    with pytest.raises(Exception, match="frame_0002.dpt: truncated"):
        convert("sintel", root, scene="alley_9")
    (root / "depth" / "alley_9" / "frame_0002.dpt").write_bytes(b"\x00" * 64)
    with pytest.raises(Exception, match="frame_0002.dpt: not a Sintel file"):
        convert("sintel", root, scene="alley_9")
    with pytest.raises(DynrecError, match=r"sintel: name the sequence with --scene \(in .*final: alley_9\)"):
        convert("sintel", root)
    with pytest.raises(DynrecError, match=r"sintel: no sequence 'alley_1' in .*final \(there: alley_9\)"):
        convert("sintel", root, scene="alley_1")
    for f in sorted((root / "final" / "alley_9").glob("*.png"))[1:]:
        f.unlink()
    with pytest.raises(DynrecError, match=r"alley_9: 1 frame\(s\); expected frame_0001.png"):
        convert("sintel", root, scene="alley_9")


# ----- Nvidia -------------------------------------------------------------------------------
def test_nvidia_llff_rig(cli, tmp_path):
    """LLFF rows (down, right, back columns; hwf at another size) of the NSFF layout become the
    static rig's OpenCV cameras; cam04 is the video, --option test= picks the held-out cameras."""
    from datasets_fixtures import write_nvidia

    from dynrec.synth import generate

    synth = tmp_path / "static"
    generate(synth, preset="tiny", seed=1, camera="static")
    src = tmp_path / "Balloon1-2"
    write_nvidia(synth, src)
    work = tmp_path / "work"
    r = cli("import", "nvidia", src, "-o", work, "--scene", "balloon1", "--option", "test=3,5", "--gt-only")
    assert r.code == 0, r.err
    manifest = json.loads((work / "dataset" / "manifest.json").read_text())
    assert (manifest["dataset"], manifest["scene"], manifest["split"]) == ("nvidia", "balloon1", "train cam04")
    assert manifest["modalities"] == ["cameras", "masks"]
    gt = Cameras.load(synth / "gt" / "cameras")
    cams = Cameras.load(work / "dataset" / "gt" / "cameras")
    np.testing.assert_allclose(cams.w2c, gt.w2c, atol=1e-5)
    np.testing.assert_allclose(cams.K[:, 0, 0], gt.K[:, 0, 0], rtol=1e-6)  # hwf at 2x rescaled
    assert cams.K[0, 0, 2] == pytest.approx(32.5) and cams.K[0, 1, 2] == pytest.approx(24.5)  # NeRF's centre
    held = Cameras.load(work / "dataset" / "heldout" / "cam03" / "cameras")
    np.testing.assert_allclose(held.w2c, Cameras.load(synth / "heldout" / "cam0" / "cameras").w2c, atol=1e-5)
    assert sorted(p.name for p in (work / "dataset" / "heldout").iterdir()) == ["cam03", "cam05"]
    np.testing.assert_array_equal(Masks.load(work / "dataset" / "gt" / "masks").masks,
                                  Masks.load(synth / "gt" / "masks").masks)
    r = cli("import", "nvidia", src, "-o", tmp_path / "w2", "--option", "train=13")
    assert r.code == 1 and "camera numbers 1-12" in r.err
    r = cli("import", "nvidia", src, "-o", tmp_path / "w2", "--option", "views=4")
    assert r.code == 1 and "unknown option 'views'" in r.err and "train, test" in r.err
