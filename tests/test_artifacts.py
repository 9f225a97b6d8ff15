"""Artifacts round-trip, and every malformed file is named with its field."""

from __future__ import annotations

import os

import numpy as np
import pytest

from dynrec.artifacts import Cameras, Depth, Frames, Keypoints, Masks, Tracks
from dynrec.errors import ArtifactError


def tracks(n=20, t=6):
    rng = np.random.default_rng(0)
    vis = rng.random((n, t)) > 0.3
    vis[:, 0] = True
    return Tracks(rng.random((n, t, 2)) * 50, vis, vis.astype(np.float32), np.zeros(n, int),
                  rng.random((n, t, 3)))


def test_round_trips(tmp_path):
    tr = tracks()
    tr.save(tmp_path / "t")
    back = Tracks.load(tmp_path / "t")
    np.testing.assert_allclose(back.xy, tr.xy, rtol=1e-6)
    assert back.visible.dtype == bool and back.xyz is not None
    cams = Cameras(np.tile(np.eye(3), (4, 1, 1)), np.tile(np.eye(4), (4, 1, 1)), 64, 48, "static")
    cams.save(tmp_path / "c")
    back = Cameras.load(tmp_path / "c")
    assert (back.width, back.height, back.method) == (64, 48, "static")
    kp = Keypoints(np.ones((4, 3, 2)), np.ones((4, 3)), np.array([[0, 1], [1, 2]]), ["a", "b", "c"])
    kp.save(tmp_path / "k")
    assert Keypoints.load(tmp_path / "k").names == ["a", "b", "c"]
    masks = Masks(np.random.default_rng(1).random((3, 8, 10)) > 0.5)
    masks.save(tmp_path / "m")
    np.testing.assert_array_equal(Masks.load(tmp_path / "m").masks, masks.masks)
    frames = Frames(np.zeros((2, 8, 10, 3), np.uint8), 10.0, np.array([0, 2]), "x.mp4")
    frames.save(tmp_path / "f")
    assert Frames.load(tmp_path / "f").shape == (2, 8, 10)


def test_shape_errors_name_file_and_field(tmp_path):
    tr = tracks()
    tr.visible = tr.visible[:, :-1]
    with pytest.raises(ArtifactError, match=r"tracks.npz, field 'visible'.*T\) has size 5 but other fields say T=6"):
        tr.save(tmp_path)
    with pytest.raises(ArtifactError, match="field 'K'"):
        Cameras(np.eye(3), np.tile(np.eye(4), (4, 1, 1)), 64, 48).save(tmp_path)
    with pytest.raises(ArtifactError, match="NaN"):
        Depth(np.full((2, 3, 3), np.nan)).save(tmp_path)
    with pytest.raises(ArtifactError, match="field 'skeleton'.*indices outside"):
        Keypoints(np.ones((2, 2, 2)), np.ones((2, 2)), np.array([[0, 5]]), ["a", "b"]).save(tmp_path / "k")
        Keypoints.load(tmp_path / "k")


def test_truncated_npz_is_named(tmp_path):
    tracks().save(tmp_path)
    path = tmp_path / Tracks.FILE
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ArtifactError, match="tracks.npz.*(truncated|corrupted)"):
        Tracks.load(tmp_path)


def test_missing_file_and_field(tmp_path):
    with pytest.raises(ArtifactError, match="depth.npz: file is missing"):
        Depth.load(tmp_path)
    np.savez(tmp_path / "depth.npz", other=np.zeros(3))
    with pytest.raises(ArtifactError, match="field 'depth': missing"):
        Depth.load(tmp_path)


def test_select_rescales_points_with_half_pixel_convention():
    tr = tracks(t=4)
    tr.visible[:] = True
    sub = tr.select(np.array([1, 3]), 0.5, 0.5)
    np.testing.assert_allclose(sub.xy, tr.xy[:, [1, 3]] * 0.5, rtol=1e-6)
    cams = Cameras(np.tile(np.array([[50.0, 0, 32], [0, 50, 24], [0, 0, 1]]), (4, 1, 1)),
                   np.tile(np.eye(4), (4, 1, 1)), 64, 48)
    half = cams.select(np.array([0, 1]), 32, 24)
    np.testing.assert_allclose(half.K[0], [[25, 0, 16], [0, 25, 12], [0, 0, 1]])


def test_write_pngs_and_pad_even(tmp_path) -> None:
    """The one PNG writer (artifacts, render, export) and the one yuv420p padding."""
    from PIL import Image

    from dynrec.artifacts.types import write_pngs
    from dynrec.evaluate.video import pad_even

    images = np.arange(2 * 3 * 5 * 3, dtype=np.uint8).reshape(2, 3, 5, 3)
    assert write_pngs(tmp_path / "a" / "b", images, "frame_{:05d}.png") == ["frame_00000.png", "frame_00001.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a" / "b" / "frame_00001.png")), images[1])
    padded = pad_even(images)
    assert padded.shape == (2, 4, 6, 3)
    np.testing.assert_array_equal(padded[:, :3, :5], images)
    assert padded[:, 3].max() == 0 and padded[:, :, 5].max() == 0
    assert pad_even(padded) is padded


def test_replacing_folder_swaps_whole_or_not_at_all(tmp_path) -> None:
    from dynrec.artifacts.base import replacing_folder

    final = tmp_path / "out" / "ply"
    final.mkdir(parents=True)
    (final / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), replacing_folder(final) as tmp:
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("writer failed")
    assert [p.name for p in final.iterdir()] == ["old.txt"] and sorted(os.listdir(tmp_path / "out")) == ["ply"]
    with replacing_folder(final) as tmp:
        assert tmp == tmp_path / "out" / ".ply.partial" and not any(tmp.iterdir())
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in final.iterdir()] == ["new.txt"] and sorted(os.listdir(tmp_path / "out")) == ["ply"]
