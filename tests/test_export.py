"""`dynrec export`: 3DGS PLY and .splat files read back and compared with the model, a single
Gaussian with a known motion, the .splat bytes of known Gaussians, cameras as nerfstudio
JSON and a TUM trajectory read by evo, 3D tracks as npz and CSV; bad input."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
import torch
from evo.tools import file_interface
from plyfile import PlyData

from dynrec.artifacts import Cameras, Tracks
from dynrec.errors import DynrecError
from dynrec.export.dynamic import CompactMotion, frame_gaussians, read_dynamic, write_dynamic
from dynrec.export.gaussians import (
    SH_C0,
    ply_properties,
    read_ply,
    read_splat,
    write_ply,
    write_splat,
)
from dynrec.geometry.camera import CV_TO_GL, project
from dynrec.geometry.se3 import matrix_to_rot6d, quat_to_matrix
from dynrec.model.gaussians import Gaussians
from dynrec.model.himor import GlobalBases
from dynrec.model.restore import load_scene
from dynrec.model.scene import DynamicScene
from dynrec.model.sirenpose import SirenResidual
from dynrec.model.skinning import deform as skin_deform


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def known_scene(T: int = 5) -> DynamicScene:
    """Gaussian 0: static background at (0, 0, 5); Gaussian 1: foreground at (1, 2, 3) that
    turns by 0.1 t rad about z and moves by (0.1 t, 0, 0) at frame t (one global basis)."""
    means = torch.tensor([[0.0, 0.0, 5.0], [1.0, 2.0, 3.0]])
    log_scales = torch.log(torch.tensor([[0.3, 0.2, 0.1], [0.05, 0.05, 0.05]]))
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    opacity = torch.tensor([_logit(0.7), _logit(0.9)])
    colors = torch.logit(torch.tensor([[0.25, 0.5, 0.75], [0.9, 0.1, 0.3]]))
    fg = torch.tensor([0.0, 1.0])
    ang = 0.1 * torch.arange(T, dtype=torch.float32)
    R = torch.zeros(T, 3, 3)
    R[:, 0, 0], R[:, 0, 1], R[:, 1, 0], R[:, 1, 1], R[:, 2, 2] = ang.cos(), -ang.sin(), ang.sin(), ang.cos(), 1
    trans = torch.zeros(T, 3)
    trans[:, 0] = 0.1 * torch.arange(T)
    motion = GlobalBases(matrix_to_rot6d(R)[None], trans[None])
    g = Gaussians(means, log_scales, quats, opacity, colors, fg, motion_coefs=torch.ones(2, 1))
    return DynamicScene(g, motion).eval()


def test_ply_round_trip_matches_the_model(cli, trained_work, tmp_path):
    out = tmp_path / "exp"
    r = cli("export", trained_work, "--format", "ply", "--time", "3", "-o", out)
    assert r.code == 0, r.err + r.out
    assert sorted(p.name for p in (out / "ply").iterdir()) == ["frame_00003.ply"]
    ply = PlyData.read(str(out / "ply" / "frame_00003.ply"))
    v = ply["vertex"]
    assert [p.name for p in v.properties] == ply_properties(0)
    assert all(p.val_dtype in ("f4", "float32") for p in v.properties)
    scene = load_scene(trained_work / "recon")
    g = scene.gaussians
    fg = g.foreground.numpy()
    with torch.no_grad():
        fg_means, fg_quats = scene.deform_foreground(torch.tensor([3]))
    means = g.means.detach().numpy().copy()
    means[fg] = fg_means[0].numpy()
    quats = g.quats.detach().numpy().copy()
    quats[fg] = fg_quats[0].numpy()
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    col = lambda *names: np.stack([np.asarray(v[n]) for n in names], axis=-1)
    assert len(v) == len(g)
    np.testing.assert_array_equal(col("x", "y", "z"), means.astype(np.float32))
    assert not np.allclose(means[fg], g.means.detach().numpy()[fg])  # the foreground did move
    np.testing.assert_array_equal(col("nx", "ny", "nz"), 0)
    # raw values are the model's parameters (no re-inverted activations)
    np.testing.assert_array_equal(np.asarray(v["opacity"]), g.opacity_logits.detach().numpy())
    np.testing.assert_array_equal(col("scale_0", "scale_1", "scale_2"), g.log_scales.detach().numpy())
    np.testing.assert_allclose(col("rot_0", "rot_1", "rot_2", "rot_3"), quats, atol=1e-7)
    # and the activations a 3DGS viewer applies give the model's rendered values
    back = read_ply(out / "ply" / "frame_00003.ply")
    np.testing.assert_allclose(back["colors"], g.colors.detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(back["opacities"], g.opacities.detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(back["scales"], g.scales.detach().numpy(), rtol=1e-6)


def test_a_known_gaussian_lands_where_computed_by_hand(tmp_path):
    scene = known_scene()
    t = 3
    write_ply(tmp_path / "k.ply", scene.snapshot(t), sh_degree=3)
    v = PlyData.read(str(tmp_path / "k.ply"))["vertex"]
    assert [p.name for p in v.properties] == ply_properties(3) and len(ply_properties(3)) == 62
    a = 0.3  # 0.1 t rad about z, then + (0.1 t, 0, 0)
    x, y = math.cos(a) * 1 - math.sin(a) * 2 + 0.3, math.sin(a) * 1 + math.cos(a) * 2
    row = v.data[1]
    assert (row["x"], row["y"], row["z"]) == pytest.approx((x, y, 3.0), abs=1e-6)
    assert (row["rot_0"], row["rot_1"], row["rot_2"], row["rot_3"]) == pytest.approx(
        (math.cos(a / 2), 0, 0, math.sin(a / 2)), abs=1e-6)
    assert (row["f_dc_0"], row["f_dc_1"], row["f_dc_2"]) == pytest.approx(
        ((0.9 - 0.5) / SH_C0, (0.1 - 0.5) / SH_C0, (0.3 - 0.5) / SH_C0), abs=1e-5)
    assert row["opacity"] == pytest.approx(_logit(0.9), abs=1e-6)
    assert row["scale_0"] == pytest.approx(math.log(0.05), abs=1e-6)
    assert all(row[f"f_rest_{i}"] == 0 for i in range(45))
    bg = v.data[0]  # the background does not move
    assert (bg["x"], bg["y"], bg["z"]) == (0.0, 0.0, 5.0)


def test_splat_bytes_of_known_gaussians(tmp_path):
    write_splat(tmp_path / "k.splat", known_scene().snapshot(2))
    data = (tmp_path / "k.splat").read_bytes()
    assert len(data) == 2 * 32
    # sorted by -exp(sum log scales) * sigmoid(opacity): 0.006 * 0.7 (background) before 1.25e-4 * 0.9
    x, y, z, sx, sy, sz, r, g, b, a, *q = struct.unpack("<3f3f4B4B", data[:32])
    assert (x, y, z) == (0.0, 0.0, 5.0)
    assert (sx, sy, sz) == pytest.approx((0.3, 0.2, 0.1), rel=1e-6)
    assert (r, g, b, a) == (63, 127, 191, 178)  # floor(255 * (0.25, 0.5, 0.75, 0.7))
    assert q == [255, 128, 128, 128]  # identity wxyz: 1 * 128 + 128 clipped to 255
    x, y, z, sx, sy, sz, r, g, b, a, *q = struct.unpack("<3f3f4B4B", data[32:])
    ang = 0.2
    assert (x, y, z) == pytest.approx((math.cos(ang) - 2 * math.sin(ang) + 0.2, math.sin(ang) + 2 * math.cos(ang), 3),
                                      abs=1e-6)
    assert (r, g, b, a) == (229, 25, 76, 229)  # floor(255 * (0.9, 0.1, 0.3, 0.9))
    assert q == [int(math.cos(ang / 2) * 128 + 128), 128, 128, int(math.sin(ang / 2) * 128 + 128)]
    rows = read_splat(tmp_path / "k.splat")
    assert rows["position"][1] == pytest.approx([x, y, z])


def test_cameras_and_tracks_read_back(cli, trained_work, tmp_path):
    out = tmp_path / "exp"
    r = cli("export", trained_work, "--format", "cameras,tracks", "-o", out)
    assert r.code == 0, r.err + r.out
    cams = Cameras.load(trained_work / "cameras")
    T = len(cams.w2c)
    c2w = cams.c2w
    # TUM trajectory through evo: timestamps, camera centres and orientations
    traj = file_interface.read_tum_trajectory_file(str(out / "cameras" / "trajectory.tum.txt"))
    assert traj.num_poses == T
    np.testing.assert_allclose(traj.timestamps, np.arange(T) / 10.0)  # the tiny scene has 10 fps
    np.testing.assert_allclose(traj.positions_xyz, c2w[:, :3, 3], atol=1e-6)
    np.testing.assert_allclose(np.array(traj.poses_se3)[:, :3, :3], c2w[:, :3, :3], atol=1e-6)
    # transforms.json: OpenGL c2w; a world point in front of camera t projects to the same
    # pixel with OpenGL axes (camera looks down -z, y up) as with dynrec's OpenCV camera
    meta = json.loads((out / "cameras" / "transforms.json").read_text())
    assert meta["camera_model"] == "OPENCV" and (meta["w"], meta["h"]) == (cams.width, cams.height)
    assert len(meta["frames"]) == T and meta["frames"][5]["time"] == 5
    f = meta["frames"][5]
    point = c2w[5, :3, :3] @ np.array([0.3, -0.2, 4.0]) + c2w[5, :3, 3]
    gl = np.linalg.inv(np.array(f["transform_matrix"])) @ np.append(point, 1.0)
    assert gl[2] < 0
    u = f["fl_x"] * gl[0] / -gl[2] + f["cx"]
    v = -f["fl_y"] * gl[1] / -gl[2] + f["cy"]
    xy, _ = project(point, cams.K[5].astype(np.float64), cams.w2c[5].astype(np.float64))
    assert (u, v) == pytest.approx(tuple(xy), abs=1e-4)
    np.testing.assert_allclose(np.array(f["transform_matrix"]) @ CV_TO_GL, c2w[5], atol=1e-6)
    assert (out / "cameras" / f["file_path"]).is_file()
    # tracks: the model's trajectories, npz and CSV
    ours = Tracks.load(trained_work / "recon" / "tracks")
    npz = np.load(out / "tracks" / "tracks.npz")
    np.testing.assert_array_equal(npz["xyz"], ours.xyz)
    table = np.loadtxt(out / "tracks" / "tracks.csv", delimiter=",", skiprows=1)
    N = ours.xyz.shape[0]
    assert table.shape == (N * T, 7)
    row = table[7 * T + 4]
    assert row[:2].tolist() == [7, 4] and row[2] == pytest.approx(0.4)
    np.testing.assert_allclose(row[3:6], ours.xyz[7, 4], rtol=1e-6)
    assert row[6] == ours.visible[7, 4]
    assert npz["keypoints_xyz"].shape[0] == T and (out / "tracks" / "keypoints.csv").is_file()


def test_dynamic_export_gives_the_per_frame_plys(cli, trained_work, tmp_path):
    out = tmp_path / "exp"
    r = cli("export", trained_work, "--format", "ply,dynamic", "-o", out)
    assert r.code == 0, r.err + r.out
    folder = out / "dynamic"
    assert sorted(p.name for p in folder.iterdir()) == ["canonical.ply", "motion.npz"]
    motion = CompactMotion.load(folder)
    scene = load_scene(trained_work / "recon")
    T = scene.motion.num_frames
    assert motion.blend == "dual-quaternion" and motion.time.tolist() == list(range(T))
    assert motion.node_rotations.shape == (T, scene.motion.num_leaves, 4)
    for t in (0, 6, T - 1):
        ply, ours = read_ply(out / "ply" / f"frame_{t:05d}.ply"), read_dynamic(folder, t)
        np.testing.assert_allclose(ours["means"], ply["means"], atol=1e-5)
        np.testing.assert_allclose(ours["quats"], ply["quats"], atol=1e-5)
        for name in ("scales", "opacities", "colors"):
            np.testing.assert_array_equal(ours[name], ply[name])
    assert np.abs(read_dynamic(folder, T - 1)["means"] - read_dynamic(folder, 0)["means"]).max() > 1e-2
    size = lambda d: sum(f.stat().st_size for f in d.iterdir())
    assert size(folder) * 5 < size(out / "ply")  # 16 frames of the tiny scene: about 14x smaller
    # --time: only those frames' motion; another frame is an error that lists the frames
    r = cli("export", trained_work, "--format", "dynamic", "--time", "3:5", "-o", out)
    assert r.code == 0 and CompactMotion.load(folder).time.tolist() == [3, 4, 5]
    with pytest.raises(DynrecError, match="frame 7 is not in the compact export, which has frames 3, 4, 5"):
        read_dynamic(folder, 7)


def test_dynamic_export_includes_the_siren_residual(trained_work, tmp_path):
    scene = load_scene(trained_work / "recon")
    before = scene.snapshot(4).means
    fg = scene.gaussians.foreground
    scene.residual = SirenResidual(scene.motion.num_frames, scene.gaussians.means[fg].mean(0).detach(), 1.0,
                                   out_scale=0.3)
    scene.refresh_skinning()
    assert (scene.snapshot(4).means - before).abs().max() > 1e-2  # the residual moves the foreground
    write_dynamic(tmp_path, scene, [0, 4, 9], fps=10.0)
    for t in (0, 4, 9):
        snap, ours = scene.snapshot(t), read_dynamic(tmp_path, t)
        np.testing.assert_allclose(ours["means"], snap.means.numpy(), atol=1e-5)
        np.testing.assert_allclose(ours["quats"], snap.quats.numpy(), atol=1e-5)


def test_dynamic_export_of_global_bases_lands_where_computed_by_hand(tmp_path):
    scene = known_scene()
    write_dynamic(tmp_path, scene, [0, 3], fps=10.0)
    motion = CompactMotion.load(tmp_path)
    assert motion.blend == "rot6d" and motion.foreground.tolist() == [False, True]
    canonical = read_ply(tmp_path / "canonical.ply")
    np.testing.assert_allclose(canonical["means"], [[0, 0, 5], [1, 2, 3]], atol=1e-7)
    means, quats = frame_gaussians(motion, canonical["means"], canonical["quats"], 3)
    a = 0.3  # 0.1 t rad about z, then + (0.1 t, 0, 0)
    np.testing.assert_allclose(means, [[0, 0, 5], [math.cos(a) - 2 * math.sin(a) + 0.3, math.sin(a) + 2 * math.cos(a), 3]],
                               atol=1e-6)
    np.testing.assert_allclose(quats, [[1, 0, 0, 0], [math.cos(a / 2), 0, 0, math.sin(a / 2)]], atol=1e-6)


def test_numpy_blend_equals_the_models_on_random_and_opposite_node_rotations():
    """``frame_gaussians``' dual-quaternion blend against :func:`dynrec.model.skinning.deform`,
    with node rotations of +-170 degrees about z (w >= 0 yet q1 . q2 < 0: the hemisphere flip)."""
    gen = torch.Generator().manual_seed(0)
    L, G, K = 6, 40, 3
    q = torch.nn.functional.normalize(torch.randn(L, 4, generator=gen), dim=-1)
    q[:2] = torch.tensor([[math.cos(math.radians(85)), 0, 0, math.sin(math.radians(85))],
                          [math.cos(math.radians(85)), 0, 0, -math.sin(math.radians(85))]])
    q = torch.where(q[:, :1] < 0, -q, q)
    trans = torch.randn(L, 3, generator=gen)
    leaves = torch.eye(4).repeat(1, L, 1, 1)
    leaves[0, :, :3, :3], leaves[0, :, :3, 3] = quat_to_matrix(q), trans
    idx = torch.stack([torch.randperm(L, generator=gen)[:K] for _ in range(G)])
    idx[0] = torch.tensor([0, 1, 2])
    w = torch.softmax(torch.randn(G, K, generator=gen), -1)
    means, quats = torch.randn(G, 3, generator=gen), torch.nn.functional.normalize(torch.randn(G, 4, generator=gen), dim=-1)
    want_means, want_quats = skin_deform(means, quats, idx, w, leaves)
    motion = CompactMotion(np.array([0]), np.array([0.0]), np.ones(G, bool), "dual-quaternion",
                           node_rotations=q[None].numpy(), node_translations=trans[None].numpy(),
                           skin_index=idx.numpy(), skin_weights=w.numpy())
    got_means, got_quats = frame_gaussians(motion, means.numpy(), quats.numpy(), 0)
    np.testing.assert_allclose(got_means, want_means[0].numpy(), atol=1e-5)
    want_quats = torch.nn.functional.normalize(want_quats[0], dim=-1).numpy()
    np.testing.assert_allclose(got_quats, want_quats, atol=1e-5)


def test_compact_motion_names_a_bad_field(tmp_path):
    write_dynamic(tmp_path, known_scene(), [0, 1], fps=10.0)
    good = dict(np.load(tmp_path / "motion.npz"))
    np.savez(tmp_path / "motion.npz", **{**good, "coefficients": good["coefficients"][:, :0]})
    with pytest.raises(DynrecError, match="motion.npz.*coefficients"):
        CompactMotion.load(tmp_path)
    np.savez(tmp_path / "motion.npz", **{k: v for k, v in good.items() if k != "basis_rot6d"})
    with pytest.raises(DynrecError, match="motion.npz.*basis_rot6d.*missing"):
        CompactMotion.load(tmp_path)


def test_export_bad_input(cli, gt_work, trained_work, tmp_path):
    r = cli("export", gt_work, "-o", tmp_path / "x")
    assert r.code == 1 and "no reconstruction" in r.err and "dynrec reconstruct" in r.err
    (tmp_path / "file").write_text("x")
    r = cli("export", trained_work, "--format", "cameras", "-o", tmp_path / "file")
    assert r.code == 1 and "is a file" in r.err
    r = cli("export", trained_work, "--format", "ply", "--time", "16", "-o", tmp_path / "y")
    assert r.code == 1 and "outside the video" in r.err and "0..15" in r.err
    r = cli("export", trained_work, "--format", "gltf", "-o", tmp_path / "y")
    assert r.code == 1 and "unknown format" in r.err
    assert not (tmp_path / "y").exists()


def test_a_bad_sh_degree_fails_before_anything_is_done(cli, trained_work, tmp_path, monkeypatch):
    """--sh-degree 4 fails before the model is loaded, and an earlier export is kept as it was
    (formats before ply used to be rewritten first)."""
    import dynrec.pipeline.result as result_mod

    out = tmp_path / "out"
    r = cli("export", trained_work, "--format", "cameras", "-o", out)
    assert r.code == 0, r.err
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}

    def forbidden(*args, **kwargs):
        raise AssertionError("the model was loaded before --sh-degree was checked")

    monkeypatch.setattr(result_mod, "load_reconstruction", forbidden)
    r = cli("export", trained_work, "--format", "cameras,ply", "--sh-degree", "4", "-o", out)
    assert r.code == 1 and "--sh-degree must be 0, 1, 2 or 3, got 4" in r.err and "Traceback" not in r.err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    monkeypatch.undo()
    from dynrec.export.core import export
    from dynrec.pipeline.result import load_reconstruction

    with pytest.raises(DynrecError, match="--sh-degree"):
        export(load_reconstruction(trained_work), ["cameras", "ply"], tmp_path / "api", [0], sh_degree=-1)
    assert not (tmp_path / "api").exists()
