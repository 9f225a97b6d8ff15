"""frames stage round-trip and the CLI's answers to bad input (one message, exit code != 0)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import write_video

from dynrec import WORKDIR_SCHEMA
from dynrec.artifacts import Frames
from dynrec.stages.frames import FramesParams, read_frames


def test_video_round_trip(tmp_path):
    path = tmp_path / "v.mp4"
    images = write_video(path, 9, 64, 48)
    frames = read_frames(path, FramesParams())
    assert frames.shape == (9, 48, 64) and frames.fps == pytest.approx(10)
    err = np.abs(frames.images.astype(int) - np.stack(images).astype(int)).mean()
    assert err < 3.0, err
    sub = read_frames(path, FramesParams(stride=2, max_frames=3, long_side=32))
    assert sub.shape == (3, 24, 32) and list(sub.source_index) == [0, 2, 4]
    assert sub.fps == pytest.approx(5)


def test_image_folder(tmp_path):
    from PIL import Image

    for t in range(3):
        Image.fromarray(np.full((10, 12, 3), t * 40, np.uint8)).save(tmp_path / f"{t:03d}.png")
    frames = read_frames(tmp_path, FramesParams(fps=24))
    assert frames.shape == (3, 10, 12) and frames.fps == 24
    assert frames.images[2].mean() == 80


def test_preprocess_frames_then_status(cli, video, tmp_path):
    work = tmp_path / "work"
    r = cli("preprocess", video, "-o", work, "--max-frames", 5)  # the learned backends' weights are missing:
    assert r.code != 0 and "depth-anything-v2-small" in r.err and "--offline" in r.err  # named before any stage
    assert not (work / "frames").exists() and (work / "dynrec.toml").is_file()  # the input is remembered
    r = cli("preprocess", "-o", work, "--only", "frames")
    assert r.code == 0 and Frames.load(work / "frames").shape == (5, 48, 64)
    r = cli("preprocess", "-o", work, "--only", "depth", "--set", "depth.batch=0")  # refused before running
    assert r.code != 0 and "depth.batch must be >= 1, got 0" in r.err
    r = cli("status", work)
    assert r.code == 0 and "frames" in r.out and "done" in r.out and "missing" in r.out
    r = cli("preprocess", "-o", work, "--offline")  # resumes with the recorded input and settings
    assert "frames (done" in r.err


def _error(r) -> str:
    assert r.code != 0
    assert "Traceback" not in r.err
    return " ".join(r.err.split())


def test_bad_inputs(cli, tmp_path, video):
    assert "input not found" in _error(cli("preprocess", tmp_path / "nope.mp4", "-o", tmp_path / "w"))
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all")
    assert "is not a readable video" in _error(cli("preprocess", text, "-o", tmp_path / "w1"))
    one = tmp_path / "one.mp4"
    write_video(one, 1)
    assert "1 decodable frame(s)" in _error(cli("preprocess", one, "-o", tmp_path / "w2"))
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert "is a file" in _error(cli("preprocess", video, "-o", afile))
    assert "cannot create work dir" in _error(cli("preprocess", video, "-o", afile / "sub"))
    assert "unknown stage 'bogus'" in _error(cli("preprocess", video, "-o", tmp_path / "w3", "--from", "bogus"))
    assert "unknown setting 'nope'" in _error(cli("preprocess", video, "-o", tmp_path / "w4", "--set", "frames.nope=1"))
    assert "does not exist" in _error(cli("status", tmp_path / "never"))


def test_zero_frame_video(cli, tmp_path):
    full = tmp_path / "full.mkv"
    write_video(full, 4)
    data = full.read_bytes()
    cut = tmp_path / "cut.mkv"  # the header survives, no frame does
    cut.write_bytes(data[: data.index(b"\x1f\x43\xb6\x75") + 8])
    assert "0 decodable frame(s)" in _error(cli("preprocess", cut, "-o", tmp_path / "w"))


def test_audio_only_file(cli, tmp_path):
    import av

    wav = tmp_path / "tone.wav"
    with av.open(str(wav), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    assert "has no video stream" in _error(cli("preprocess", wav, "-o", tmp_path / "w"))


def test_unwritable_output(cli, tmp_path, video):
    import os
    from pathlib import Path

    target = Path("/proc/dynrec-test-work") if os.geteuid() == 0 else tmp_path / "ro" / "w"
    if os.geteuid() != 0:
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro").chmod(0o500)
    assert "cannot create work dir" in _error(cli("preprocess", video, "-o", target))


def test_newer_schema_is_refused(cli, tmp_path, video):
    work = tmp_path / "w"
    (work / ".dynrec").mkdir(parents=True)
    (work / ".dynrec" / "workdir.json").write_text(json.dumps({"schema": WORKDIR_SCHEMA + 1}))
    msg = _error(cli("preprocess", video, "-o", work))
    assert "written by a newer dynrec" in msg
    assert "written by a newer dynrec" in _error(cli("status", work))


def test_cuda_without_cuda(cli, tmp_path, video):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert "no CUDA device" in _error(cli("preprocess", video, "-o", tmp_path / "w", "--device", "cuda"))


def test_dark_and_blurred_frames_are_skipped_and_listed():
    import cv2

    from dynrec.stages.frames import drop_unusable

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 40, 50, 3), dtype=np.uint8)
    images = np.stack([cv2.GaussianBlur(im, (0, 0), 0.7) for im in images])  # texture, slightly soft
    images[2] = images[2] // 40  # nearly black: mean grey ~3
    images[4] = cv2.GaussianBlur(images[4], (0, 0), 4.0)  # heavily blurred
    frames = Frames(images, 30.0, np.arange(10, 16))
    kept, dropped = drop_unusable(frames, FramesParams())
    assert dropped == {"dark": [12], "blurred": [14]}
    np.testing.assert_array_equal(kept.source_index, [10, 11, 13, 15])
    np.testing.assert_array_equal(kept.images, images[[0, 1, 3, 5]])
    kept, dropped = drop_unusable(frames, FramesParams(dark=0, blurred=0))
    assert dropped == {"dark": [], "blurred": []} and len(kept.images) == 6
