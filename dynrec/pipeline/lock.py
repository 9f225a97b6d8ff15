"""A work-dir lock that survives crashes: ``WORK/.dynrec/lock.json`` names its owner.

The file holds ``{host, pid, proc_start, started, heartbeat, what, stage, token}``. It is
created atomically (written to a private file, then ``os.link``-ed into place, which fails
if a lock exists: safe on NFS too) and removed on release. While held, a daemon thread
rewrites ``heartbeat`` every ``HEARTBEAT_S`` seconds.

A lock whose owner cannot be running any more is *stale* and is broken by the next taker:

* owner on this host: its pid is gone, or the pid now belongs to a younger process;
* owner on another host: no heartbeat for ``STALE_AFTER_S`` seconds (hosts share a clock,
  e.g. NTP; the owner's own clock writes the heartbeat).

Breaking is guarded by ``lock.json.break`` (created exclusively) and re-reads the lock, so
two takers never both break and both take it. The lock is re-entrant within a process: a
batch task holding it may call the runner, which takes it too.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from dynrec.errors import DynrecError

LOCK_FILE = "lock.json"
HEARTBEAT_S = 10.0
STALE_AFTER_S = 90.0
#: A break guard older than this was left by a taker that died while breaking.
BREAK_GUARD_S = 30.0


class WorkDirBusy(DynrecError):
    """Another live process holds the work dir's lock."""


@dataclass
class LockOwner:
    """Who holds a lock: ``started`` and ``heartbeat`` are Unix times (s); ``what`` the
    command (``preprocess``, ``batch reconstruct``, ...); ``stage`` the stage it runs now."""

    host: str
    pid: int
    proc_start: int | None
    started: float
    heartbeat: float
    what: str
    stage: str
    token: str

    def describe(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        stage = f", stage {self.stage}" if self.stage else ""
        return (f"{self.what}{stage} (pid {self.pid} on {self.host}, started {now - self.started:.0f} s ago, "
                f"last heartbeat {now - self.heartbeat:.0f} s ago)")


def lock_path(root: Path) -> Path:
    return Path(root) / ".dynrec" / LOCK_FILE


def read_owner(root: Path) -> LockOwner | None:
    """The lock's owner, or None when the work dir is not locked (or the file is unreadable)."""
    try:
        data = json.loads(lock_path(root).read_text())
        return LockOwner(**data)
    except (OSError, json.JSONDecodeError, TypeError):
        return None


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (``state`` first, then
    ``ppid``, ... as in proc(5) from field 3 on), or None (no such process, not Linux)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _proc_start(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (Linux ``/proc``, field 22), or None."""
    fields = _proc_stat(pid)
    try:
        return int(fields[19]) if fields else None
    except (IndexError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs on this host (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _proc_stat(pid)
    return not fields or fields[0] != "Z"


def stale_reason(owner: LockOwner, now: float | None = None, stale_after: float = STALE_AFTER_S) -> str | None:
    """Why ``owner`` cannot be running any more, or None if it may be."""
    now = time.time() if now is None else now
    if owner.host == socket.gethostname():
        if not _pid_alive(owner.pid):
            return f"its process {owner.pid} on {owner.host} is gone"
        start = _proc_start(owner.pid)
        if owner.proc_start is not None and start is not None and start != owner.proc_start:
            return f"pid {owner.pid} on {owner.host} now belongs to another process"
        return None
    if now - owner.heartbeat > stale_after:
        return f"no heartbeat from {owner.host} for {now - owner.heartbeat:.0f} s"
    return None


class WorkLock:
    """A held lock; :func:`work_lock` makes one. ``set_stage`` shows the running stage."""

    def __init__(self, root: Path, owner: LockOwner, heartbeat_s: float) -> None:
        self.root, self.owner, self.depth = Path(root), owner, 1
        self.broke: str | None = None  # why a stale lock was broken to take this one
        self._stop = threading.Event()
        self._mutex = threading.Lock()
        self._thread = threading.Thread(target=self._beat, args=(heartbeat_s,), daemon=True,
                                         name=f"dynrec-lock-{root}")
        self._thread.start()

    @property
    def path(self) -> Path:
        return lock_path(self.root)

    def set_stage(self, stage: str) -> None:
        self.owner.stage = stage
        self._write()

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            self._write()

    def _write(self) -> None:
        with self._mutex:
            current = read_owner(self.root)
            if current is None or current.token != self.owner.token:
                return  # lost (broken by someone who judged it stale): never overwrite theirs
            self.owner.heartbeat = time.time()
            _write_json(self.path, asdict(self.owner))

    def release(self) -> None:
        self._stop.set()
        self._thread.join()
        with self._mutex:
            current = read_owner(self.root)
            if current is not None and current.token == self.owner.token:
                self.path.unlink(missing_ok=True)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _try_create(path: Path, owner: LockOwner) -> bool:
    tmp = path.with_name(f".{path.name}.{owner.token}")
    tmp.write_text(json.dumps(asdict(owner), indent=2) + "\n")
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def _break(path: Path, seen: LockOwner | None) -> None:
    """Remove the stale lock ``seen`` unless someone replaced it meanwhile."""
    guard = path.with_name(path.name + ".break")
    try:
        fd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            if time.time() - guard.stat().st_mtime > BREAK_GUARD_S:
                guard.unlink(missing_ok=True)
        except OSError:
            pass
        return
    os.close(fd)
    try:
        current = read_owner(path.parent.parent)
        same = (current is None and seen is None) or (current and seen and current.token == seen.token)
        if same:
            path.unlink(missing_ok=True)
    finally:
        guard.unlink(missing_ok=True)


_HELD: dict[Path, WorkLock] = {}
_HELD_MUTEX = threading.Lock()


def acquire(root: Path, what: str, wait: float = 0.0, stale_after: float = STALE_AFTER_S,
            heartbeat_s: float = HEARTBEAT_S) -> WorkLock:
    """Take the lock of work dir ``root`` for ``what``, waiting up to ``wait`` seconds for a
    live owner to finish (or to go stale); stale locks are broken at once.

    Raises:
        WorkDirBusy: a live owner still holds it after ``wait``; the message names it.
    """
    key = Path(root).resolve()
    with _HELD_MUTEX:
        if key in _HELD:
            _HELD[key].depth += 1
            return _HELD[key]
    path = lock_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait
    broke = None
    while True:
        now = time.time()
        owner = LockOwner(socket.gethostname(), os.getpid(), _proc_start(os.getpid()), now, now, what, "",
                          uuid.uuid4().hex)
        if _try_create(path, owner):
            lock = WorkLock(root, owner, heartbeat_s)
            lock.broke = broke
            with _HELD_MUTEX:
                _HELD[key] = lock
            return lock
        current = read_owner(root)
        if current is None:
            try:  # unreadable: a crash between create and write is impossible (link), so corrupt
                age = now - path.stat().st_mtime
            except FileNotFoundError:
                continue
            reason = f"unreadable lock file, {age:.0f} s old" if age > stale_after else None
        else:
            reason = stale_reason(current, now, stale_after)
        if reason is not None:
            broke = reason
            _break(path, current)
            continue
        if time.monotonic() >= deadline:
            who = current.describe(now) if current else "an unreadable lock"
            raise WorkDirBusy(
                f"work dir {root} is in use by {who}; wait for it to finish. If that process is gone "
                f"on another machine, its lock counts as stale after {stale_after:.0f} s without a "
                f"heartbeat (or delete {path})"
            )
        time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))


def release(lock: WorkLock) -> None:
    key = lock.root.resolve()
    with _HELD_MUTEX:
        lock.depth -= 1
        if lock.depth > 0:
            return
        _HELD.pop(key, None)
    lock.release()


@contextmanager
def work_lock(root: Path, what: str, wait: float = 0.0, stale_after: float = STALE_AFTER_S,
              heartbeat_s: float = HEARTBEAT_S) -> Iterator[WorkLock]:
    """``with work_lock(WORK, "preprocess") as lock: ...``; see :func:`acquire`."""
    lock = acquire(root, what, wait, stale_after, heartbeat_s)
    try:
        yield lock
    finally:
        release(lock)
