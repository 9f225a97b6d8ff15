"""Issue 14's defects as regression tests through the CLI: a failed command exits non-zero with
one clear message and no traceback, and leaves dynrec.toml and every earlier artifact
byte-identical; presets touch only their command's stages; config show / reset; inputs are
checked before anything runs."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import av
import numpy as np
import pytest
import tomli_w
from conftest import moving_pattern


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones included) -> sha256 of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def one_error(r) -> str:
    """The single-line error of a failed command (no traceback), whitespace-normalised."""
    assert r.code != 0, r.err
    assert "Traceback" not in r.err and "Traceback" not in r.out
    assert r.err.count("error:") == 1, r.err
    return " ".join(r.err.split())


@pytest.fixture
def work(gt_work: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny scene's ground-truth work dir."""
    dst = tmp_path / "work"
    shutil.copytree(gt_work, dst)
    return dst


@pytest.mark.parametrize("args, message", [
    (["reconstruct", "{w}", "--motion", "foo"], "recon.motion must be one of himor, global-bases, got 'foo'"),
    (["reconstruct", "{w}", "--steps", "-5"], "recon.steps must be >= 1, got -5"),
    (["reconstruct", "{w}", "--steps", "0"], "recon.steps must be >= 1, got 0"),
    (["reconstruct", "{w}", "--set", "recon.levels=3"], "recon.levels must be 1 or 2, got 3"),
    (["reconstruct", "{w}", "--set", "recon.steps=abc"], "cannot read 'abc' as int"),
    (["reconstruct", "{w}", "--set", "recon.batch_frames=0"], "recon.batch_frames must be >= 1"),
    (["reconstruct", "{w}", "--preset", "huge"], "unknown preset 'huge'"),
    (["reconstruct", "{w}", "--device", "tpu"], "run.device must be one of"),
    (["reconstruct", "{w}", "--set", "nosuch.x=1"], "unknown config section 'nosuch'"),
    (["preprocess", "-o", "{w}", "--set", "frames.stride=0"], "frames.stride must be >= 1, got 0"),
    (["preprocess", "-o", "{w}", "--set", "depth.backend=magic"], "depth.backend must be one of"),
    (["preprocess", "-o", "{w}", "--set", "tracks.grid_size=1"], "tracks.grid_size must be >= 2"),
    (["preprocess", "-o", "{w}", "--long-side", "4"], "frames.long_side must be >= 16"),
    (["preprocess", "-o", "{w}", "--from", "bogus"], "unknown stage 'bogus'"),
    (["evaluate", "{w}", "--metrics", "nope"], "unknown metric 'nope'"),
    (["config", "reset", "{w}", "nope"], "unknown stage 'nope'"),
])
def test_failed_command_changes_nothing(work: Path, cli, args: list[str], message: str) -> None:
    before = snapshot(work)
    r = cli(*[a.format(w=work) for a in args])
    assert message in one_error(r)
    assert snapshot(work) == before


def test_reconstruct_preset_touches_only_recon(work: Path, cli) -> None:
    """`reconstruct --preset tiny` once rewrote the input, backends and frame settings; now the
    saved config is the base and the preset sets recon's fields only."""
    before = tomllib.loads((work / "dynrec.toml").read_text())
    r = cli("reconstruct", work, "--preset", "default", "--steps", "2", "--set", "recon.checkpoint_every=1")
    assert r.code == 0, r.err
    after = tomllib.loads((work / "dynrec.toml").read_text())
    assert {k: v for k, v in after.items() if k != "recon"} == {k: v for k, v in before.items() if k != "recon"}
    assert after["recon"]["steps"] == 2 and "lr_scale" not in after["recon"]  # default preset: tiny's 5.0 undone
    assert after["input"]["source"] and after["depth"]["backend"] == "gt"


def test_config_show_and_reset(work: Path, cli) -> None:
    r = cli("config", "show", work)
    assert r.code == 0
    rows = {line.split("│")[1].strip(): line for line in r.out.splitlines() if line.count("│") >= 3}
    assert "dynrec.toml" in rows["frames.long_side"] and "128" in rows["frames.long_side"]
    assert "default" in rows["frames.stride"]
    assert "cpu schedule" in rows["recon.batch_frames"]
    r = cli("config", "reset", work, "frames")
    assert r.code == 0 and "frames.long_side: 128 -> None" in r.out
    saved = tomllib.loads((work / "dynrec.toml").read_text())
    assert "long_side" not in saved["frames"] and saved["lift"]["n_nodes"] == 24  # other stages kept
    assert saved["depth"]["backend"] == "gt" and saved["input"]["gt"]  # backends and input kept
    assert "nothing to reset" in cli("config", "reset", work, "frames").out


def test_older_config_with_unknown_settings_warns_and_runs(work: Path, cli) -> None:
    text = (work / "dynrec.toml").read_text().replace("[recon]\n", "[recon]\nold_knob = 3\n")
    (work / "dynrec.toml").write_text(text + "\n[retired]\nx = 1\n")
    r = cli("status", work)
    assert r.code == 0 and r.out.count("done") == 8
    assert "'old_knob' is not used by this version" in r.err and "[retired]" in r.err


def test_status_and_reconstruct_refuse_folders_that_are_not_work_dirs(tmp_path: Path, cli) -> None:
    images = tmp_path / "jpegs"
    images.mkdir()
    for t in range(3):
        av.VideoFrame.from_ndarray(np.full((16, 16, 3), 40 * t, np.uint8), format="rgb24").to_image().save(
            images / f"{t}.jpg")
    before = snapshot(images)
    assert "is not a dynrec work dir" in one_error(cli("reconstruct", images))
    assert "is not a dynrec work dir" in one_error(cli("status", images))
    assert "is not a dynrec work dir" in one_error(cli("evaluate", images))
    assert snapshot(images) == before


@contextlib.contextmanager
def read_only(folder: Path):
    """``folder`` read-only: chmod for a normal user; a read-only bind mount for root
    (skips the test where neither is possible)."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
        for p, mode in modes.items():
            p.chmod(mode & ~0o222)
        try:
            yield folder
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    mount = folder.with_name(folder.name + "-ro")
    mount.mkdir()
    done = subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(mount)], check=False, capture_output=True)
    if done.returncode:
        pytest.skip("cannot make a read-only folder here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_read_only_work_dir(work: Path, cli) -> None:
    before = snapshot(work)
    with read_only(work) as ro:
        for args in (["reconstruct", ro, "--steps", "2"], ["evaluate", ro, "--metrics", "psnr"],
                     ["config", "reset", ro], ["preprocess", "-o", ro, "--force"]):
            assert "is not writable" in one_error(cli(*args))
        assert cli("status", ro).code == 0
    assert snapshot(work) == before


def test_preprocess_without_input_creates_nothing(tmp_path: Path, cli) -> None:
    assert "no input video" in one_error(cli("preprocess", "-o", tmp_path / "new"))
    assert not (tmp_path / "new").exists()


def test_text_file_is_not_a_video(tmp_path: Path, cli) -> None:
    text = tmp_path / "notes.txt"  # FFmpeg's tty demuxer would "decode" it as a video
    text.write_text("the quick brown fox jumps over the lazy dog\n" * 400)
    msg = one_error(cli("preprocess", text, "-o", tmp_path / "w", "--offline"))
    assert "is not a video" in msg and "text" in msg
    assert not (tmp_path / "w").exists()  # nothing written


def test_image_folder_checks(tmp_path: Path, cli) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24").to_image().save(folder / "a.png")
    assert "holds 1 image(s)" in one_error(cli("preprocess", folder, "-o", tmp_path / "w"))
    av.VideoFrame.from_ndarray(np.zeros((16, 20, 3), np.uint8), format="rgb24").to_image().save(folder / "b.png")
    msg = one_error(cli("preprocess", folder, "-o", tmp_path / "w"))
    assert "differ in size" in msg and "b.png (20x16)" in msg
    assert not (tmp_path / "w").exists()


def test_truncated_video_is_warned_with_both_counts(tmp_path: Path, cli) -> None:
    """A faststart MP4 (index first) cut short still declares every frame: the probe counts
    the frames present and warns with both numbers."""
    from dynrec.stages.frames import probe

    full = tmp_path / "full.mp4"
    with av.open(str(full), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for t in range(40):
            frame = av.VideoFrame.from_ndarray(moving_pattern(t, 64, 48), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    whole = probe(full)
    assert whole.frames == whole.declared == 40
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 2 // 3])
    found = probe(cut)
    assert found.declared == 40 and 2 <= found.frames < 36 and found.short
    r = cli("preprocess", cut, "-o", tmp_path / "w", "--offline", "--only", "frames")
    message = " ".join(r.err.split())
    assert r.code == 0 and f"declares 40 frames but only {found.frames} are present" in message


def test_version(cli) -> None:
    from dynrec import __version__

    r = cli("--version")
    assert r.code == 0 and r.out.strip() == f"dynrec {__version__}"


def test_a_poisoned_saved_config_is_named_and_reset(work: Path, cli) -> None:
    """A dynrec.toml an older dynrec let through (`motion = "foo"`, `steps = -5`): commands that
    run stages say which setting and how to undo it; status still works; reset repairs it."""
    saved = tomllib.loads((work / "dynrec.toml").read_text())
    poisoned = {**saved, "recon": {**saved["recon"], "motion": "foo"}}
    (work / "dynrec.toml").write_text(tomli_w.dumps(poisoned))
    msg = one_error(cli("reconstruct", work))
    assert "recon.motion must be one of" in msg and f"dynrec config reset {work} STAGE" in msg
    assert cli("status", work).code == 0
    assert cli("config", "reset", work, "recon").code == 0
    assert tomllib.loads((work / "dynrec.toml").read_text())["recon"]["motion"] == "himor"
    assert tomllib.loads((work / "dynrec.toml").read_text())["frames"] == saved["frames"]


def test_colmap_log_lines_go_to_the_work_dirs_logs(tmp_path: Path, capfd) -> None:
    """COLMAP's own (glog) error lines land in the logs folder, not on the terminal."""
    pytest.importorskip("pycolmap")
    from dynrec.geometry.colmap import logs_in, run_colmap

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 64, (40, 3, 2))  # no geometry in it: the mapper builds no model
    capfd.readouterr()
    with logs_in(tmp_path / "logs"):
        result = run_colmap(xy, np.ones((40, 3), bool), 64, 48, 60.0)
    assert not result.registered.any()
    err = capfd.readouterr().err
    assert "sfm.cc" not in err and "Failed to create" not in err
    logs = list((tmp_path / "logs").glob("colmap.*"))
    assert logs and "Failed to create any sparse model" in "".join(p.read_text() for p in logs)
