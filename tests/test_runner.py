"""Runner semantics on toy stages a -> b -> c: skip, re-run on change, failure, resume, atomicity."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import toystages
from toystages import SPECS

from dynrec.artifacts.base import load_npz
from dynrec.errors import DynrecError, StageFailed
from dynrec.pipeline.config import resolve
from dynrec.pipeline.runner import Runner
from dynrec.pipeline.workdir import WorkDir

TARGETS = ["a", "b", "c"]


@pytest.fixture(autouse=True)
def _reset():
    toystages.CALLS.clear()
    toystages.HOOKS.clear()


def make_runner(root: Path, *sets: str) -> Runner:
    work = WorkDir.open(root, create=True)
    return Runner(work, SPECS, resolve(SPECS, sets=list(sets)))


def states(runner: Runner) -> dict[str, str]:
    return {s.name: s.state for s in runner.states()}


def test_second_run_skips_everything(tmp_path):
    assert make_runner(tmp_path).run(TARGETS) == TARGETS
    assert make_runner(tmp_path).run(TARGETS) == []
    assert toystages.CALLS == {"a": 1, "b": 1, "c": 1}
    assert states(make_runner(tmp_path)) == {"a": "done", "b": "done", "c": "done"}


def test_param_change_reruns_that_stage_and_downstream_only(tmp_path):
    make_runner(tmp_path).run(TARGETS)
    runner = make_runner(tmp_path, "b.offset=5")
    assert states(runner) == {"a": "done", "b": "stale", "c": "stale"}
    assert "offset" in runner.state("b").detail and "upstream" in runner.state("c").detail
    assert runner.run(TARGETS) == ["b", "c"]
    value, _ = load_npz(tmp_path / "c" / "c.npz", toystages.SPEC)
    np.testing.assert_allclose(value["value"], np.arange(100) + 5.0)


def test_exception_keeps_previous_artifacts_marks_failed_and_resumes(tmp_path):
    make_runner(tmp_path).run(TARGETS)
    before = (tmp_path / "b" / "b.npz").read_bytes()
    toystages.HOOKS["b"] = "raise"
    runner = make_runner(tmp_path, "b.offset=1")
    with pytest.raises(StageFailed, match="boom in b"):
        runner.run(TARGETS)
    assert (tmp_path / "b" / "b.npz").read_bytes() == before  # old artifact intact
    assert (tmp_path / "a" / "manifest.json").exists()
    assert states(make_runner(tmp_path, "b.offset=1")) == {"a": "done", "b": "failed", "c": "stale"}
    assert "boom in b" in (tmp_path / ".dynrec" / "logs" / "b.log").read_text()
    toystages.HOOKS.clear()
    toystages.CALLS.clear()
    assert make_runner(tmp_path, "b.offset=1").run(TARGETS) == ["b", "c"]
    assert "a" not in toystages.CALLS
    assert not (tmp_path / ".dynrec" / "failed" / "b.json").exists()


def test_from_only_force(tmp_path):
    make_runner(tmp_path).run(TARGETS)
    assert make_runner(tmp_path).run(TARGETS, from_="b") == ["b", "c"]
    assert make_runner(tmp_path).run(TARGETS, only="b") == ["b"]
    assert make_runner(tmp_path).run(TARGETS, force=True) == TARGETS
    with pytest.raises(DynrecError, match="unknown stage 'nope'.*a, b, c"):
        make_runner(tmp_path).run(TARGETS, from_="nope")


def test_only_requires_done_upstream(tmp_path):
    with pytest.raises(DynrecError, match="needs 'a', which is missing"):
        make_runner(tmp_path).run(TARGETS, only="b")


def test_checkpoint_folder_survives_failure_with_same_key(tmp_path):
    toystages.HOOKS["a"] = "raise"
    runner = make_runner(tmp_path)
    with pytest.raises(StageFailed):
        runner.run(TARGETS)
    tmp = tmp_path / ".a.tmp"
    assert tmp.is_dir() and not (tmp_path / "a").exists()
    (tmp / ".checkpoints").mkdir()
    (tmp / ".checkpoints" / "step.txt").write_text("7")
    assert runner.work.prepare_tmp("a", runner.key("a")) == tmp
    assert (tmp / ".checkpoints" / "step.txt").read_text() == "7"
    runner.work.prepare_tmp("a", "another-key")
    assert not (tmp / ".checkpoints").exists()


def test_truncated_artifact_makes_stage_stale_and_it_reruns(tmp_path):
    make_runner(tmp_path).run(TARGETS)
    path = tmp_path / "a" / "a.npz"
    path.write_bytes(path.read_bytes()[:50])
    runner = make_runner(tmp_path)
    st = runner.state("a")
    assert st.state == "stale" and "a.npz" in st.detail
    toystages.CALLS.clear()
    assert runner.run(TARGETS) == ["a"]  # same key again, so b and c stay done


def test_corrupted_artifact_named_on_load_and_owner_marked_stale(tmp_path):
    make_runner(tmp_path).run(TARGETS)
    path = tmp_path / "a" / "a.npz"
    size = path.stat().st_size
    path.write_bytes(b"\0" * size)  # same size: only loading can tell
    with pytest.raises(DynrecError) as info:
        make_runner(tmp_path).run(TARGETS, from_="b")
    message = str(info.value)
    assert "a.npz" in message and "stage 'a' is marked stale" in message
    assert states(make_runner(tmp_path))["a"] == "stale"
    assert make_runner(tmp_path).run(TARGETS) == ["a"]  # same key: b and c are still done


def test_kill_9_mid_stage_leaves_no_stage_that_looks_done(tmp_path):
    make_runner(tmp_path).run(["a"])
    started = tmp_path / "started.txt"
    script = (
        "import toystages\n"
        "from dynrec.pipeline.config import resolve\n"
        "from dynrec.pipeline.runner import Runner\n"
        "from dynrec.pipeline.workdir import WorkDir\n"
        f"w = WorkDir.open(__import__('pathlib').Path({str(tmp_path)!r}), create=True)\n"
        "Runner(w, toystages.SPECS, resolve(toystages.SPECS)).run(['a', 'b', 'c'])\n"
    )
    env = {**os.environ, "TOY_HOOK_B": "hang", "TOY_STARTED": str(started),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    deadline = time.time() + 60
    while not started.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert started.exists(), "the hanging stage never started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (tmp_path / ".b.tmp" / "partial.npz").exists()
    assert not (tmp_path / "b").exists()
    assert states(make_runner(tmp_path)) == {"a": "done", "b": "missing", "c": "missing"}
    assert make_runner(tmp_path).run(TARGETS) == ["b", "c"]
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert "partial.npz" not in manifest["files"]


def test_interrupted_commit_is_recovered(tmp_path):
    make_runner(tmp_path).run(["a"])
    os.replace(tmp_path / "a", tmp_path / ".a.old")  # crash between the two renames
    assert states(make_runner(tmp_path))["a"] == "done"


def test_manifest_records_peak_memory_of_the_stage(tmp_path):
    from dynrec.pipeline import memory

    make_runner(tmp_path).run(TARGETS)
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["memory"]["peak_rss_mb"] > 0
    big = np.ones(256 * 2**20 // 8)  # 256 MiB, touched
    before = memory.peak()["peak_rss_mb"]
    assert before >= 256
    del big
    if memory.reset():  # Linux: the high-water mark restarts from the current RSS
        assert memory.peak()["peak_rss_mb"] < before - 128


def test_progress_is_printed_as_plain_lines_when_the_console_is_no_terminal(tmp_path):
    import io

    from rich.console import Console

    from dynrec.pipeline.runner import PlainProgress

    out = io.StringIO()
    work = WorkDir.open(tmp_path, create=True)
    runner = Runner(work, SPECS, resolve(SPECS), console=Console(file=out, force_terminal=False, width=200))
    toystages.HOOKS["a"] = "progress"
    runner.run(["a"])
    lines = [line.strip() for line in out.getvalue().splitlines() if line.strip().startswith("a:")]
    # a line when each phase starts; within 30 s no more (the steps come faster than that)
    assert lines[0] == "a: setting up"
    assert lines[1].startswith("a: training 0/10 (0%)") and len(lines) == 2
    # with a clock: a line at most every 30 s, with the time left at the phase's rate
    t = [0.0]
    buffer = io.StringIO()
    plain = PlainProgress(Console(file=buffer, force_terminal=False, width=200), "recon", clock=lambda: t[0])
    for step, now in ((0, 0.0), (10, 10.0), (40, 40.0), (50, 50.0), (100, 100.0)):
        t[0] = now
        plain.update(f"loss {5 - step / 100:.2f}", step, 100)  # numbers in the text: still one phase
    t[0] = 120.0
    plain.update("setup: building", 1, 3)  # a new phase's first line: no rate yet, so no time left
    assert buffer.getvalue().splitlines() == [
        "  recon: loss 5.00 0/100 (0%), 0 s",
        "  recon: loss 4.60 40/100 (40%), 40 s, about 60 s left",
        "  recon: loss 4.00 100/100 (100%), 100 s",
        "  recon: setup: building 1/3 (33%), 0 s",
    ]
