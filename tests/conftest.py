"""Shared fixtures: generated videos, an in-process CLI, tiny synth scenes."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)  # `make test` runs two pytest workers, one thread each
sys.path.insert(0, str(Path(__file__).parent))

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def moving_pattern(t: int, width: int, height: int) -> np.ndarray:
    """A smooth, textured RGB frame [H, W, 3] uint8 that shifts with t."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 127 + 100 * np.sin((xs + 2 * t) / 5.0)
    g = 127 + 100 * np.cos((ys - t) / 7.0)
    b = 127 + 100 * np.sin((xs + ys + 3 * t) / 9.0)
    return np.stack([r, g, b], axis=-1).clip(0, 255).astype(np.uint8)


def write_video(path: Path, frames: int, width: int = 64, height: int = 48, fps: int = 10) -> list[np.ndarray]:
    """Encode ``frames`` moving-pattern frames to ``path`` (H.264, near-lossless); returns them."""
    images = [moving_pattern(t, width, height) for t in range(frames)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv444p"
        stream.options = {"crf": "0"}
        for img in images:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return images


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    """Run ``dynrec ARGS`` in-process; returns exit code and captured output."""
    from dynrec.cli import main

    def run(*args: str | Path) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def video(tmp_path) -> Path:
    path = tmp_path / "clip.mp4"
    write_video(path, 8)
    return path


@pytest.fixture(scope="session")
def scene(tmp_path_factory) -> Path:
    """A `tiny` synth scene (16 frames at 64x48), generated once per test session."""
    from dynrec.synth import generate

    out = tmp_path_factory.mktemp("scene") / "tiny"
    generate(out, preset="tiny", seed=3)
    return out


@pytest.fixture(scope="session")
def gt_work(scene, tmp_path_factory) -> Path:
    """A work dir preprocessed from the tiny scene's ground truth (do not modify it)."""
    from dynrec.cli import main

    work = tmp_path_factory.mktemp("gtwork") / "work"
    try:
        main(["preprocess", str(scene / "video.mp4"), "-o", str(work), "--gt", str(scene), "--preset", "tiny"])
    except SystemExit as exc:
        assert not exc.code, "preprocess --gt failed"
    return work


@pytest.fixture(scope="session")
def trained_work(gt_work, tmp_path_factory) -> Path:
    """The tiny scene's work dir reconstructed briefly (20 steps, level 1; do not modify it)."""
    import shutil

    from dynrec.cli import main

    work = tmp_path_factory.mktemp("trained") / "work"
    shutil.copytree(gt_work, work)
    try:
        main(["reconstruct", str(work), "--steps", "20", "--set", "recon.levels=1"])
    except SystemExit as exc:
        assert not exc.code, "reconstruct failed"
    return work
