"""The work-dir lock: held while a command runs, refused while its owner lives, broken when
the owner is gone (dead pid here, silent heartbeat elsewhere), re-entrant in one process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict

import pytest

from dynrec.pipeline.lock import (
    LockOwner,
    WorkDirBusy,
    acquire,
    lock_path,
    read_owner,
    release,
    work_lock,
)


def _plant(root, host: str, pid: int, heartbeat_age: float = 0.0) -> LockOwner:
    """Write a lock owned by someone else."""
    now = time.time()
    owner = LockOwner(host, pid, None, now - heartbeat_age, now - heartbeat_age, "preprocess", "tracks", "theirs")
    lock_path(root).parent.mkdir(parents=True, exist_ok=True)
    lock_path(root).write_text(json.dumps(asdict(owner)))
    return owner


@pytest.fixture
def sleeper():
    """A live process on this host that is not us."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_held_while_inside_and_gone_after(tmp_path):
    with work_lock(tmp_path, "reconstruct") as lock:
        owner = read_owner(tmp_path)
        assert owner is not None and owner.pid == os.getpid() and owner.host == socket.gethostname()
        assert owner.what == "reconstruct" and owner.token == lock.owner.token
        lock.set_stage("recon")
        assert read_owner(tmp_path).stage == "recon"
    assert not lock_path(tmp_path).exists()


def test_live_owner_is_refused_and_dead_owner_is_taken_over(tmp_path, sleeper):
    _plant(tmp_path, socket.gethostname(), sleeper.pid)
    with pytest.raises(WorkDirBusy, match=rf"in use by preprocess, stage tracks \(pid {sleeper.pid} on"):
        acquire(tmp_path, "batch preprocess")
    assert read_owner(tmp_path).token == "theirs"  # refused: their lock is untouched
    sleeper.kill()
    sleeper.wait()
    with work_lock(tmp_path, "batch preprocess") as lock:
        assert lock.broke == f"its process {sleeper.pid} on {socket.gethostname()} is gone"
        assert read_owner(tmp_path).pid == os.getpid()


def test_other_host_goes_stale_by_heartbeat(tmp_path):
    _plant(tmp_path, "node-7", 1, heartbeat_age=5)
    with pytest.raises(WorkDirBusy, match="pid 1 on node-7"):
        acquire(tmp_path, "evaluate", stale_after=60)
    _plant(tmp_path, "node-7", 1, heartbeat_age=120)
    with work_lock(tmp_path, "evaluate", stale_after=60) as lock:
        assert lock.broke.startswith("no heartbeat from node-7 for 12")


def test_waits_for_the_owner_to_finish(tmp_path, sleeper):
    _plant(tmp_path, socket.gethostname(), sleeper.pid)
    threading.Timer(0.5, sleeper.kill).start()
    start = time.monotonic()
    with work_lock(tmp_path, "batch reconstruct", wait=20):
        waited = time.monotonic() - start
    assert 0.4 < waited < 10


def test_reentrant_and_heartbeat(tmp_path):
    outer = acquire(tmp_path, "batch preprocess", heartbeat_s=0.05)
    inner = acquire(tmp_path, "preprocess")
    assert inner is outer
    first = read_owner(tmp_path).heartbeat
    time.sleep(0.3)
    assert read_owner(tmp_path).heartbeat > first
    release(inner)
    assert lock_path(tmp_path).exists()
    release(outer)
    assert not lock_path(tmp_path).exists()


def test_a_lost_lock_is_not_overwritten(tmp_path):
    """Someone judged ours stale and took it: our heartbeat and release leave theirs alone."""
    lock = acquire(tmp_path, "preprocess", heartbeat_s=0.05)
    _plant(tmp_path, "node-2", 5)
    time.sleep(0.2)
    assert read_owner(tmp_path).token == "theirs"
    release(lock)
    assert read_owner(tmp_path).token == "theirs"


def test_commands_refuse_a_work_dir_in_use(cli, scene, tmp_path, sleeper):
    work = tmp_path / "work"
    work.mkdir()
    _plant(work, socket.gethostname(), sleeper.pid)
    r = cli("preprocess", scene / "video.mp4", "-o", work, "--gt", scene, "--preset", "tiny")
    assert r.code == 1
    assert f"is in use by preprocess, stage tracks (pid {sleeper.pid}" in " ".join(r.err.split())
    assert not (work / "frames").exists()


def test_proc_stat_gives_start_times_and_zombies(sleeper):
    """/proc/PID/stat read once per question: a later process has a later start time, a reused
    pid (another start time) is stale, a zombie is not alive, an unknown pid has no start."""
    from dynrec.pipeline.lock import _pid_alive, _proc_start, stale_reason

    ours, theirs = _proc_start(os.getpid()), _proc_start(sleeper.pid)
    assert ours is not None and theirs is not None and theirs >= ours
    host = socket.gethostname()
    same = LockOwner(host, sleeper.pid, theirs, 0.0, time.time(), "preprocess", "", "t")
    assert stale_reason(same) is None
    reused = LockOwner(host, sleeper.pid, theirs - 1, 0.0, time.time(), "preprocess", "", "t")
    assert stale_reason(reused) == f"pid {sleeper.pid} on {host} now belongs to another process"
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.time() + 20
    while _pid_alive(zombie.pid) and time.time() < deadline:  # exited, not reaped: a zombie
        time.sleep(0.05)
    assert not _pid_alive(zombie.pid) and zombie.poll() == 0
    assert _proc_start(zombie.pid) is None and _proc_start(2**22 + 1) is None
