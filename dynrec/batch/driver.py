"""``dynrec batch``: find the videos, submit their stage groups to the engine, show progress,
write the summary.

Each video runs its groups in order (preprocess → reconstruct → evaluate, up to
``--until``): the next group is submitted when the previous one is done, so a failed video
stops there and the others go on. Nothing is decided by the driver that a rerun could not
decide again: tasks skip what their work dirs say is done, and the summary is rebuilt from the
work dirs, so killing the driver and running the same command continues the batch.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from dynrec.batch.engine import Engine
from dynrec.batch.inputs import Job
from dynrec.batch.summary import gather, print_summary, save_plan, write_summary
from dynrec.batch.tasks import GROUPS, BatchOptions, GroupResult, save_record
from dynrec.errors import DynrecError
from dynrec.pipeline.config import resolve
from dynrec.pipeline.lock import read_owner
from dynrec.pipeline.registry import GT_STAGES, REGISTRY
from dynrec.pipeline.session import input_sets

#: Rows of the live table when there are more videos (the running ones first).
LIVE_ROWS = 25
#: Locks read per refresh (in turn), to learn which queued tasks run and their stage.
POLL_LOCKS = 64


def needs_gpu(job: Job, opts: BatchOptions) -> dict[str, bool]:
    """Which stage groups of ``job`` want a GPU: reconstruct and evaluate, and preprocess when a
    stage uses a learned backend; none when the config says ``run.device = cpu``. Evaluate runs
    on the reconstruction's device: the recon key depends on its device's schedule, so on
    another device evaluate would find the reconstruction stale. Resolving the config here also
    reports a bad ``--set`` (of the batch or of a manifest line) before anything runs."""
    saved = job.work / "dynrec.toml"
    try:
        config = resolve(REGISTRY, saved=saved if saved.is_file() else None, preset=opts.preset,
                         config_file=opts.config_file,
                         sets=input_sets(job.source, job.gt, opts.offline) + opts.sets + job.sets)
    except DynrecError as exc:
        raise DynrecError(f"{job.origin or job.name}: {exc}") from exc
    if config.run.device == "cpu":
        return dict.fromkeys(GROUPS, False)
    learned = any(getattr(config.stages[s], "backend", "") == "learned" for s in GT_STAGES)
    return {"preprocess": learned, "reconstruct": True, "evaluate": True}


@dataclass
class _Video:
    job: Job
    group: str = ""
    state: str = "pending"  # pending | queued | running | done | failed
    stage: str = ""
    since: float = 0.0
    elapsed: float = 0.0
    error: str = ""


class Progress:
    """The live table (video, group, stage, state, elapsed) on a terminal; plain lines on
    every change of state otherwise."""

    def __init__(self, console: Console, videos: list[_Video]) -> None:
        self.console, self.videos = console, videos
        self.live = Live(self.table(), console=console, auto_refresh=False) if console.is_terminal else None

    def __enter__(self) -> Self:
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.update(self.table(), refresh=True)
            self.live.__exit__(*exc)

    def table(self) -> Table:
        now = time.time()
        order = {"running": 0, "queued": 1, "failed": 2, "pending": 3, "done": 4}
        shown = self.videos if len(self.videos) <= LIVE_ROWS else \
            sorted(self.videos, key=lambda v: order[v.state])[:LIVE_ROWS]
        counts = {s: sum(v.state == s for v in self.videos) for s in order}
        t = Table(caption=", ".join(f"{n} {s}" for s, n in counts.items() if n))
        for col in ("video", "group", "stage", "state", "elapsed"):
            t.add_column(col, justify="right" if col == "elapsed" else "left", overflow="fold")
        style = {"running": "cyan", "queued": "dim", "failed": "red", "pending": "dim", "done": "green"}
        for v in shown:
            elapsed = now - v.since if v.state == "running" else v.elapsed
            t.add_row(escape(v.job.name), v.group, v.stage, f"[{style[v.state]}]{v.state}[/]",
                      f"{elapsed:.0f}s" if v.state != "pending" else "")
        return t

    def changed(self, v: _Video) -> None:
        if self.live is not None:
            return
        detail = f" ({v.stage})" if v.stage and v.state in ("running", "done") else ""
        took = f" in {v.elapsed:.1f}s" if v.state in ("done", "failed") else ""
        error = f": {v.error}" if v.error else ""
        self.console.print(f"{v.job.name}: {v.group}{detail} {v.state}{took}{error}", markup=False,
                           highlight=False, soft_wrap=True)

    def refresh(self) -> None:
        if self.live is not None:
            self.live.update(self.table(), refresh=True)


def _poll_running(video: _Video, progress: Progress) -> None:
    """Read the lock of a queued / running video: who runs which stage since when."""
    owner = read_owner(video.job.work)
    if owner is None or owner.what != f"batch {video.group}":
        return
    if video.state != "running" or owner.stage != video.stage:
        video.state, video.stage, video.since = "running", owner.stage, owner.started
        progress.changed(video)


def gpu_plan(jobs: list[Job], opts: BatchOptions) -> dict[str, dict[str, bool]]:
    """:func:`needs_gpu` of every job, by job name (a bad ``--set`` fails here, naming the video)."""
    return {job.name: needs_gpu(job, opts) for job in jobs}


def run_batch(jobs: list[Job], runs: Path, opts: BatchOptions, engine: Engine, console: Console,
              poll_s: float = 0.5, gpu: dict[str, dict[str, bool]] | None = None) -> list[dict[str, Any]]:
    """Run every job's groups on ``engine``; write and print the summary; return its rows.
    ``gpu``: :func:`gpu_plan` of ``jobs`` when the caller has it already."""
    groups = opts.groups
    gpu = gpu_plan(jobs, opts) if gpu is None else gpu
    runs.mkdir(parents=True, exist_ok=True)
    save_plan(runs, [{"name": j.name, "source": str(j.source), "gt": j.gt and str(j.gt), "sets": j.sets,
                      "origin": j.origin} for j in jobs], groups,
              {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(opts).items() if k != "hook"})
    videos = [_Video(job) for job in jobs]
    pending: dict[Any, _Video] = {}
    last: dict[str, GroupResult] = {}
    turn = 0

    def submit(v: _Video, group: str) -> None:
        v.group, v.state, v.stage, v.since = group, "queued", "", time.time()
        pending[engine.submit(v.job, group, opts, gpu[v.job.name][group])] = v

    try:
        with Progress(console, videos) as progress:
            for v in videos:
                submit(v, groups[0])
            while pending:
                for handle, result in engine.wait(list(pending), timeout=poll_s):
                    v = pending.pop(handle)
                    _finished(v, result, progress)
                    last[v.job.name] = dataclasses.replace(result, video=v.job.name, group=v.group)
                    if v.state == "done" and v.group != groups[-1]:
                        submit(v, groups[groups.index(v.group) + 1])
                    elif v.state == "failed" and result.video == "":
                        _record_lost(v, result)
                waiting = list(pending.values())
                for i in range(min(POLL_LOCKS, len(waiting))):
                    _poll_running(waiting[(turn + i) % len(waiting)], progress)
                turn += POLL_LOCKS
                progress.refresh()
    finally:
        engine.close()
        rows, _ = gather(runs)
        for row in rows:  # a failure the work dir could not record (it was locked by another run)
            res = last.get(row["video"])
            if res is not None and res.status == "failed" and row["status"] != "failed":
                row.update(status="failed", group=res.group, error=res.error)
        write_summary(runs, rows)
    print_summary(console, runs, rows)
    return rows


def _finished(v: _Video, result: GroupResult, progress: Progress) -> None:
    v.state = result.status
    v.elapsed = result.elapsed_s or time.time() - v.since
    v.error = result.error
    v.stage = f"ran {' '.join(result.ran)}" if result.ran else ("up to date" if result.status == "done" else v.stage)
    progress.changed(v)


def _record_lost(v: _Video, result: GroupResult) -> None:
    """A task that never returned (its worker died on every try): note it in the work dir's
    record so the summary shows the failure."""
    if v.job.work.is_dir():
        save_record(v.job.work, dataclasses.replace(result, video=v.job.name, group=v.group,
                                                     elapsed_s=round(time.time() - v.since, 3)))
