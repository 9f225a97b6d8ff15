"""``dynrec batch`` without Ray: finding the videos, manifests, the serial engine (a failing
video, reruns, a locked work dir), the summary, and the errors raised before anything runs.
The Ray engine itself is tested in test_batch_ray.py."""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
from rich.console import Console

from dynrec.artifacts import Frames
from dynrec.batch.driver import needs_gpu, run_batch
from dynrec.batch.engine import SerialEngine
from dynrec.batch.inputs import Job, discover, parse_manifest
from dynrec.batch.tasks import BatchOptions, read_record
from dynrec.errors import DynrecError
from dynrec.pipeline.lock import LockOwner, lock_path
from dynrec.pipeline.registry import PREPROCESS


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_discover_videos_image_folders_scenes_and_names(tmp_path):
    src = tmp_path / "in"
    _touch(src / "a.mp4")
    _touch(src / "b.MOV")
    _touch(src / "notes.txt")  # inside a folder, text files are not manifests
    _touch(src / "seq" / "0001.png")
    _touch(src / "seq" / "0002.png")
    _touch(src / "deep" / "x" / "a.mp4")  # same stem as in/a.mp4
    _touch(src / "scene" / "scene.json")
    _touch(src / "scene" / "video.mp4")
    _touch(src / "scene" / "gt" / "frames" / "000000.png")  # never a sequence of its own
    _touch(src / ".hidden" / "c.mp4")
    _touch(src / "oldwork" / ".dynrec" / "workdir.json")
    _touch(src / "oldwork" / "frames" / "d.mp4")
    runs = src / "runs"
    _touch(runs / "e.mp4")  # the output folder is not searched
    jobs = {j.name: j for j in discover([src], runs)}
    assert sorted(jobs) == ["b", "in-a", "scene", "seq", "x-a"]
    assert jobs["in-a"].source == (src / "a.mp4").resolve()
    assert jobs["x-a"].source == (src / "deep" / "x" / "a.mp4").resolve()
    assert jobs["seq"].source == (src / "seq").resolve()
    assert jobs["scene"].source == (src / "scene" / "video.mp4").resolve() and jobs["scene"].gt is None
    assert jobs["b"].work == runs.resolve() / "b"
    with_gt = {j.name: j for j in discover([src / "scene", src / "a.mp4"], runs, scene_gt=True)}
    assert with_gt["scene"].gt == (src / "scene").resolve() and with_gt["a"].gt is None
    assert [j.name for j in discover([src / "a.mp4", src / "a.mp4"], runs)] == ["a"]


def test_discover_errors_name_what_was_searched(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DynrecError, match=r"no videos found in .*empty \(searched for videos \.mp4.*manifest files"):
        discover([tmp_path / "empty"], tmp_path / "runs")
    with pytest.raises(DynrecError, match="input not found"):
        discover([tmp_path / "nope.mp4"], tmp_path / "runs")
    with pytest.raises(DynrecError, match="neither a video"):
        discover([_touch(tmp_path / "x.json")], tmp_path / "runs")


def test_manifest_lines_with_overrides(tmp_path):
    _touch(tmp_path / "v" / "one.mp4")
    _touch(tmp_path / "v" / "two words.mp4")
    _touch(tmp_path / "scene" / "scene.json")
    manifest = tmp_path / "list.txt"
    manifest.write_text(
        "# videos of the split\n"
        "v/one.mp4 --gt scene --set frames.max_frames=8 --set recon.steps=5\n"
        "\n"
        "'v/two words.mp4' --gt=scene --name second   # trailing comment\n"
        f"{tmp_path / 'v' / 'one.mp4'} --name again\n")
    items = parse_manifest(manifest)
    assert [(i.source, i.gt, i.sets, i.name, i.origin) for i in items] == [
        (tmp_path / "v" / "one.mp4", tmp_path / "scene", ["frames.max_frames=8", "recon.steps=5"], None, f"{manifest}:2"),
        (tmp_path / "v" / "two words.mp4", tmp_path / "scene", [], "second", f"{manifest}:4"),
        (tmp_path / "v" / "one.mp4", None, [], "again", f"{manifest}:5"),
    ]
    assert [j.name for j in discover([manifest], tmp_path / "runs")] == ["one", "second", "again"]


@pytest.mark.parametrize("line, message", [
    ("v.mp4 --set 'frames.stride=2", "does not parse (No closing quotation)"),
    ("v.mp4 --fps 3", "unknown option '--fps'"),
    ("v.mp4 --set stride=2", "--set expects stage.field=value"),
    ("v.mp4 --gt", "--gt needs a value"),
    ("missing.mp4", "input not found"),
])
def test_manifest_errors_give_the_line(tmp_path, line, message):
    _touch(tmp_path / "v.mp4")
    manifest = tmp_path / "m.list"
    manifest.write_text("v.mp4\n" + line + "\n")
    with pytest.raises(DynrecError) as exc:
        parse_manifest(manifest)
    assert f"manifest line {manifest}:2" in str(exc.value) and message in str(exc.value)


def test_gpu_wanted_by_group(tmp_path):
    job = Job("a", _touch(tmp_path / "a.mp4"), tmp_path / "runs" / "a")
    assert needs_gpu(job, BatchOptions()) == {"preprocess": True, "reconstruct": True, "evaluate": True}
    assert needs_gpu(job, BatchOptions(offline=True))["preprocess"] is False
    assert not any(needs_gpu(job, BatchOptions(sets=["run.device=cpu"])).values())
    with pytest.raises(DynrecError, match=r"list.txt:4: --set frames: unknown setting 'bogus'"):
        needs_gpu(Job("a", job.source, job.work, sets=["frames.bogus=1"], origin="list.txt:4"), BatchOptions())


def test_the_gpu_plan_is_made_once_and_each_record_read_once(tmp_path, monkeypatch):
    """``dynrec batch`` resolves each video's config once (the GPU plan that also checks
    --set) and hands it to the engine; the summary reads each video's record once."""
    import dynrec.batch.engine as engine_mod
    from dynrec.batch import driver, summary
    from dynrec.batch.command import EngineOptions, batch
    from dynrec.batch.tasks import GroupResult

    calls: list[str] = []
    real = driver.needs_gpu
    monkeypatch.setattr(driver, "needs_gpu", lambda job, opts: calls.append(job.name) or real(job, opts))

    class Recording:
        description = "recording engine"

        def __init__(self) -> None:
            self.submitted: list[tuple[str, str, bool]] = []

        def submit(self, job, group, opts, gpu):
            self.submitted.append((job.name, group, gpu))
            return len(self.submitted)

        def wait(self, handles, timeout):
            name, group, _ = self.submitted[handles[0] - 1]
            return [(handles[0], GroupResult(name, group, "done"))]

        def close(self):
            return None

    engine = Recording()
    monkeypatch.setattr(engine_mod.RayEngine, "connect", classmethod(lambda cls, *a: engine))
    for name in ("a", "b"):
        _touch(tmp_path / "in" / f"{name}.mp4")
    opts = BatchOptions(until="reconstruct", sets=["run.device=cpu"])
    batch([tmp_path / "in"], tmp_path / "runs", opts, EngineOptions(), False, Console(width=200))
    assert sorted(calls) == ["a", "b"]
    assert sorted(engine.submitted) == [("a", "preprocess", False), ("a", "reconstruct", False),
                                        ("b", "preprocess", False), ("b", "reconstruct", False)]
    reads: list[Path] = []
    real_read = summary.read_record
    monkeypatch.setattr(summary, "read_record", lambda work: reads.append(work) or real_read(work))
    rows, groups = summary.gather(tmp_path / "runs")
    assert [r["video"] for r in rows] == ["a", "b"] and groups == ["preprocess", "reconstruct"]
    assert sorted(p.name for p in reads) == ["a", "b"]


def _manifest(tmp_path: Path, scene: Path, broken: bool = True) -> Path:
    lines = [f"{scene / 'video.mp4'} --gt {scene} --name short --set frames.max_frames=8",
             f"{scene / 'video.mp4'} --gt {scene} --name full"]
    if broken:
        lines.append(f"{_touch(tmp_path / 'broken.mp4')} --gt {scene}")
    path = tmp_path / "videos.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_serial_batch_failure_rerun_and_summary(scene, tmp_path, cli):
    runs = tmp_path / "runs"
    jobs = discover([_manifest(tmp_path, scene)], runs)
    opts = BatchOptions(until="preprocess", preset="tiny")
    console = Console(record=True, width=200)
    rows = {r["video"]: r for r in run_batch(jobs, runs, opts, SerialEngine(), console)}
    assert rows["short"]["status"] == rows["full"]["status"] == "done"
    assert rows["broken"]["status"] == "failed" and rows["broken"]["group"] == "preprocess"
    assert "broken.mp4 is not a readable video" in rows["broken"]["error"]
    # the per-video --set applied to that video only
    assert len(Frames.load(runs / "short" / "frames").images) == 8
    assert len(Frames.load(runs / "full" / "frames").images) == 16
    assert rows["full"]["time_lift"] > 0 and rows["full"]["device"] == "cpu"
    summary = json.loads((runs / "summary.json").read_text())
    assert summary["counts"] == {"done": 2, "failed": 1, "running": 0, "pending": 0}
    with (runs / "summary.csv").open() as fh:
        table = {r["video"]: r for r in csv.DictReader(fh)}
    assert "is not a readable video" in table["broken"]["error"] and table["short"]["status"] == "done"
    assert read_record(runs / "full")["groups"]["preprocess"]["ran"] == PREPROCESS

    stamps = {p: p.stat().st_mtime_ns for p in runs.glob("*/*/manifest.json")}
    rows = {r["video"]: r for r in run_batch(jobs, runs, opts, SerialEngine(), console)}
    assert {p: p.stat().st_mtime_ns for p in runs.glob("*/*/manifest.json")} == stamps
    assert read_record(runs / "full")["groups"]["preprocess"]["ran"] == []
    assert rows["broken"]["status"] == "failed" and rows["full"]["status"] == "done"

    r = cli("batch-status", runs)
    assert r.code == 0 and "2 done, 1 failed of 3 videos" in r.out and "│ broken │ failed" in r.out
    assert "2 done, 1 failed of 3 videos" in cli("status", runs).out


def test_a_work_dir_in_use_fails_that_video_only(scene, tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        runs = tmp_path / "runs"
        jobs = discover([_manifest(tmp_path, scene, broken=False)], runs)
        now = time.time()
        owner = LockOwner(socket.gethostname(), sleeper.pid, None, now, now, "reconstruct", "recon", "t")
        lock_path(runs / "short").parent.mkdir(parents=True)
        lock_path(runs / "short").write_text(json.dumps(asdict(owner)))
        opts = BatchOptions(until="preprocess", preset="tiny", lock_wait=0.2)
        rows = {r["video"]: r for r in run_batch(jobs, runs, opts, SerialEngine(), Console(width=200))}
        assert rows["full"]["status"] == "done"
        assert rows["short"]["status"] == "failed"
        assert f"is in use by reconstruct, stage recon (pid {sleeper.pid}" in rows["short"]["error"]
        assert not (runs / "short" / "frames").exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_errors_before_anything_runs(tmp_path, cli, monkeypatch, scene):
    runs = tmp_path / "runs"
    video = _touch(tmp_path / "a.mp4")
    manifest = tmp_path / "m.txt"
    manifest.write_text(f"{video}\n{video} --name b --set frames.bogus=1\n")
    r = cli("batch", manifest, "-o", runs)
    assert r.code == 1 and f"{manifest}:2: --set frames: unknown setting 'bogus'" in " ".join(r.err.split())
    r = cli("batch", video, "-o", runs, "--until", "render")
    assert r.code == 1 and "--until must be one of preprocess, reconstruct, evaluate" in r.err
    r = cli("batch", video, "-o", runs, "--address", "127.0.0.1:9")
    assert r.code == 1 and "cannot reach the Ray cluster at 127.0.0.1:9" in " ".join(r.err.split())
    r = cli("batch-status", runs)
    assert r.code == 1 and "holds no batch (batch.json missing)" in " ".join(r.err.split())
    monkeypatch.setitem(sys.modules, "ray", None)
    r = cli("batch", video, "-o", runs)
    assert r.code == 1 and "pip install 'dynrec[batch]'" in " ".join(r.err.split())
    assert not runs.exists()


def test_live_table_on_a_terminal(tmp_path):
    """On a terminal the progress is a live table (no per-change lines); its last frame shows
    each video's group, state and elapsed time."""
    import io

    runs = tmp_path / "runs"
    jobs = discover([_touch(tmp_path / "bad.mp4"), _touch(tmp_path / "worse.mp4")], runs)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    rows = run_batch(jobs, runs, BatchOptions(until="preprocess", preset="tiny"), SerialEngine(), console)
    assert [r["status"] for r in rows] == ["failed", "failed"]
    text = out.getvalue()
    assert "bad: preprocess failed" not in text  # the plain lines are for logs only
    assert "│ bad   │ preprocess │       │ failed │" in text and "2 failed" in text
