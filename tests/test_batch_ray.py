"""``dynrec batch`` on a local Ray instance (2 CPUs, started once for this module): a failing
video does not stop the others and a rerun executes nothing; a worker killed mid-task is
retried and leaves its work dir whole; the full pipeline gives the metrics of a single run."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest
from rich.console import Console

from dynrec.batch.driver import run_batch
from dynrec.batch.engine import RayEngine
from dynrec.batch.inputs import discover
from dynrec.batch.tasks import BatchOptions, read_record
from dynrec.pipeline.registry import PREPROCESS
from dynrec.pipeline.session import open_runner

pytestmark = [pytest.mark.ray, pytest.mark.slow]
ray = pytest.importorskip("ray")

RECON = ["--steps", "6", "--set", "recon.levels=1", "--set", "recon.node_densify=false",
         "--set", "recon.gaussian_densify=false"]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the kill hook runs in workers
    yield
    ray.shutdown()


def _rows(runs: Path) -> dict[str, dict]:
    return {r["video"]: r for r in json.loads((runs / "summary.json").read_text())["videos"]}


def test_failing_video_and_rerun(local_ray, cli, scene, tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    manifest = tmp_path / "videos.txt"
    manifest.write_text(f"{scene / 'video.mp4'} --gt {scene} --name a\n{scene / 'video.mp4'} --gt {scene} --name b "
                        f"--set frames.max_frames=8\nbroken.mp4\n")
    runs = tmp_path / "runs"
    r = cli("batch", manifest, "-o", runs, "--preset", "tiny", "--until", "preprocess")
    assert r.code == 1 and "1 of 3 videos failed (broken)" in " ".join(r.err.split())
    rows = _rows(runs)
    assert rows["a"]["status"] == rows["b"]["status"] == "done"
    assert rows["broken"]["status"] == "failed" and "broken.mp4 is not a readable video" in rows["broken"]["error"]
    assert read_record(runs / "a")["groups"]["preprocess"]["ran"] == PREPROCESS
    stamps = {p: p.stat().st_mtime_ns for p in runs.glob("*/*/manifest.json")}
    r = cli("batch", manifest, "-o", runs, "--preset", "tiny", "--until", "preprocess")
    assert r.code == 1
    assert {p: p.stat().st_mtime_ns for p in runs.glob("*/*/manifest.json")} == stamps
    assert read_record(runs / "a")["groups"]["preprocess"]["ran"] == read_record(runs / "b")["groups"]["preprocess"]["ran"] == []


def test_resources_beyond_the_cluster_are_refused(local_ray, cli, scene, tmp_path):
    runs = tmp_path / "runs"
    r = cli("batch", scene / "video.mp4", "-o", runs, "--cpus-per-task", "3")
    assert r.code == 1 and "--cpus-per-task 3: the Ray cluster has 2 CPUs" in r.err
    r = cli("batch", scene / "video.mp4", "-o", runs, "--gpus-per-task", "1")
    assert r.code == 1 and "--gpus-per-task 1: the Ray cluster has 0 GPUs" in r.err
    assert not runs.exists() and ray.is_initialized()


def kill_once(work: Path, stage: str) -> None:
    """Kill this worker the first time it is about to run ``tracks``."""
    marker = work.parent / f"killed-{work.name}"
    if stage == "tracks" and not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)


def _preprocess_with(hook, retries: int, scene: Path, runs: Path) -> tuple[list, list[dict]]:
    """Batch-preprocess ``scene`` into ``runs`` with a worker ``hook`` and Ray ``retries``: (jobs, rows)."""
    jobs = discover([scene], runs, scene_gt=True)
    opts = BatchOptions(until="preprocess", preset="tiny", hook=hook)
    return jobs, run_batch(jobs, runs, opts, RayEngine.connect(retries=retries), Console(width=200))


def test_killed_worker_is_retried(local_ray, scene, tmp_path):
    runs = tmp_path / "runs"
    jobs, rows = _preprocess_with(kill_once, 2, scene, runs)
    assert [r["status"] for r in rows] == ["done"]
    work = runs / jobs[0].name
    killed = int((runs / f"killed-{jobs[0].name}").read_text())
    record = read_record(work)["groups"]["preprocess"]
    assert record["pid"] != killed and record["ran"] == ["tracks", "masks", "cameras", "align", "keypoints", "lift"]
    log = (work / ".dynrec" / "logs" / "batch-preprocess.log").read_text()
    assert f"lock taken over: its process {killed} on" in log
    runner = open_runner(work, create=False, save=False)
    assert all(st.state == "done" for st in runner.states()[: len(PREPROCESS)])
    assert not list(work.glob(".*.tmp")) and not (work / ".dynrec" / "lock.json").exists()


def kill_always(work: Path, stage: str) -> None:
    if stage == "depth":
        os.kill(os.getpid(), signal.SIGKILL)


def test_worker_dying_on_every_try_fails_that_video(local_ray, scene, tmp_path):
    runs = tmp_path / "runs"
    jobs, rows = _preprocess_with(kill_always, 0, scene, runs)
    assert rows[0]["status"] == "failed" and rows[0]["group"] == "preprocess"
    assert rows[0]["error"].startswith("worker died (tried 1 time); finished stages are kept")
    assert (runs / jobs[0].name / "frames" / "manifest.json").exists()


def test_full_pipeline_equals_single_run(local_ray, cli, scene, tmp_path):
    runs = tmp_path / "runs"
    metrics = "psnr,mpsnr,ate,epe_3d,pck_t,kp_err,jitter,lpips"  # lpips: weights missing here
    flags = ["--preset", "tiny", *RECON, "--no-video", "--metrics", metrics]
    r = cli("batch", scene, "-o", runs, "--scene-gt", *flags)
    assert r.code == 0, r.err
    single = tmp_path / "single"
    assert cli("preprocess", scene / "video.mp4", "-o", single, "--gt", scene, "--preset", "tiny").code == 0
    assert cli("reconstruct", single, *RECON).code == 0
    assert cli("evaluate", single, "--no-video", "--metrics", metrics).code in (0, 2)
    row = _rows(runs)[scene.name]
    metrics = json.loads((single / "eval" / "metrics.json").read_text())["metrics"]
    expected = {m["metric"]: m["value"] for m in metrics if m["computed"]}
    assert len(expected) >= 7 and {k: row[k] for k in expected} == expected
    assert row["status"] == "done" and row["time_recon"] > 0 and row["time_eval"] > 0
    assert row["not_computed"] == " ".join(m["metric"] for m in metrics if not m["computed"])
    r = cli("batch", scene, "-o", runs, "--scene-gt", *flags)
    assert r.code == 0
    record = read_record(runs / scene.name)["groups"]
    assert [record[g]["ran"] for g in ("preprocess", "reconstruct", "evaluate")] == [[], [], []]
