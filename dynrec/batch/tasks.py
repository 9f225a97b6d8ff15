"""One task of a batch: a stage group (preprocess, reconstruct or evaluate) of one video.

A task runs where the engine puts it (a Ray worker, or this process); it reads and writes
only the video's work dir, under its lock, and returns a :class:`GroupResult`. It skips
what is done (the runner's stage keys; ``eval/`` when its recorded stage keys are current),
so a rerun of a finished batch executes nothing. Errors a stage raises become the result's
``error``; only a dying worker escapes (and the engine retries it). The console output of
the stages goes to ``WORK/.dynrec/logs/batch-<group>.log``; the last result of each group is
kept in ``WORK/.dynrec/batch.json`` (what ``dynrec batch-status`` reads).
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from dynrec.artifacts.base import save_json
from dynrec.batch.inputs import Job
from dynrec.errors import DynrecError
from dynrec.pipeline.lock import HEARTBEAT_S, STALE_AFTER_S, WorkDirBusy, work_lock
from dynrec.pipeline.registry import PREPROCESS, RECONSTRUCT
from dynrec.pipeline.runner import Runner
from dynrec.pipeline.session import commit_config, open_runner

#: Stage groups in order; a task runs one group of one video.
GROUPS: dict[str, list[str]] = {"preprocess": PREPROCESS, "reconstruct": RECONSTRUCT, "evaluate": ["eval"]}
RECORD = "batch.json"


@dataclass
class BatchOptions:
    """Settings every task of a batch shares: the single-video commands' config flags
    (``preset``, ``config_file``, ``sets`` with the shortcuts already turned into
    ``--set``s, ``offline``), evaluation options, and ``lock_wait``: how long a task waits
    for a work dir locked by another live process (then it fails with the owner's name).
    ``threads``: torch's thread count in the task (``--cpus-per-task``; None leaves it).
    ``hook(work, stage)`` is called before each stage executes (tests use it to kill a worker)."""

    until: str = "evaluate"
    preset: str | None = None
    config_file: Path | None = None
    sets: list[str] = field(default_factory=list)
    offline: bool = False
    metrics: str | None = None
    video: bool = True
    weights_dir: Path | None = None
    lock_wait: float = STALE_AFTER_S + HEARTBEAT_S
    threads: int | None = None
    hook: Callable[[Path, str], None] | None = None

    @property
    def groups(self) -> list[str]:
        names = list(GROUPS)
        if self.until not in names:
            raise DynrecError(f"--until must be one of {', '.join(names)}, got '{self.until}'")
        return names[: names.index(self.until) + 1]


@dataclass
class GroupResult:
    """What one task did: ``status`` done | failed; ``ran`` the stages it executed (empty:
    everything was up to date); ``not_computed`` metrics evaluate could not compute."""

    video: str
    group: str
    status: str = "failed"
    ran: list[str] = field(default_factory=list)
    error: str = ""
    device: str = ""
    host: str = ""
    pid: int = 0
    elapsed_s: float = 0.0
    finished: str = ""
    not_computed: list[str] = field(default_factory=list)


def open_job(job: Job, group: str, opts: BatchOptions, console: Console) -> Runner:
    """The job's runner with the batch's flags, as ``dynrec preprocess VIDEO -o WORK`` (and
    ``reconstruct``) open it: a preset applies to the group's own stages once the work dir has
    a saved config (evaluate: to none)."""
    return open_runner(job.work, create=True, source=job.source, gt=job.gt, preset=opts.preset,
                       config_file=opts.config_file, sets=opts.sets + job.sets, console=console,
                       offline=opts.offline, scope=GROUPS[group] if group != "evaluate" else ())


def run_group(job: Job, group: str, opts: BatchOptions) -> GroupResult:
    """Run stage group ``group`` of ``job`` (see the module docstring)."""
    started = time.time()
    result = GroupResult(job.name, group, host=socket.gethostname(), pid=os.getpid())
    if opts.threads is not None:  # a reused worker keeps the thread count of its first task
        torch.set_num_threads(opts.threads)
    try:
        with work_lock(job.work, f"batch {group}", wait=opts.lock_wait) as lock:
            log = job.work / ".dynrec" / "logs" / f"batch-{group}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("a") as fh:
                console = Console(file=fh, width=120, color_system=None, force_terminal=False)
                console.print(f"--- {group} of {job.source} on {result.host} (pid {result.pid}) at "
                              f"{datetime.now(UTC).isoformat(timespec='seconds')}"
                              + (f"; lock taken over: {lock.broke}" if lock.broke else ""))
                try:
                    _run(job, group, opts, console, lock.set_stage, result)
                    result.status = "done"
                except DynrecError as exc:
                    result.error = str(exc)
                except Exception as exc:  # noqa: BLE001 - one video's bug must not stop the batch
                    result.error = f"{type(exc).__name__}: {exc}"
                    console.print(traceback.format_exc(), markup=False, highlight=False)
                _finish(result, started)
                console.print(f"--- {group}: {result.status} in {result.elapsed_s:.1f} s"
                              + (f": {result.error}" if result.error else ""), markup=False)
                save_record(job.work, result)
    except (WorkDirBusy, OSError) as exc:
        result.error = str(exc)
        _finish(result, started)
    return result


def _finish(result: GroupResult, started: float) -> None:
    result.elapsed_s = round(time.time() - started, 3)
    result.finished = datetime.now(UTC).isoformat(timespec="seconds")


def _run(job: Job, group: str, opts: BatchOptions, console: Console, show: Callable[[str], None],
         result: GroupResult) -> None:
    runner = open_job(job, group, opts, console)
    result.device = runner.device

    def before(stage: str) -> None:
        show(stage)
        if opts.hook is not None:
            opts.hook(job.work, stage)

    if group != "evaluate":
        runner.before_stage = before
        result.ran = runner.run(GROUPS[group])
        commit_config(runner)
        return
    if eval_is_current(runner, opts.metrics, opts.video):
        console.print("[green]✓[/] eval (done: its stages are current)")
        return
    from dynrec.evaluate import evaluate

    before("eval")
    report = evaluate(job.work, metrics=opts.metrics, weights_dir=opts.weights_dir, video=opts.video,
                      console=console)
    result.ran = ["eval"]
    result.not_computed = [r.metric for r in report.not_computed]


def eval_is_current(runner: Runner, metrics: str | None, video: bool) -> bool:
    """Whether ``WORK/eval/`` was computed from the stages as they are now (same keys, all
    done), for the same metric selection, with a side-by-side video if one is wanted."""
    from dynrec.evaluate.core import parse_metrics

    manifest = runner.work.manifest("eval")
    if manifest is None or runner.work.changed_files("eval", manifest):
        return False
    for stage, seen in manifest.get("stages", {}).items():
        if stage not in runner.specs:
            return False
        now = runner.state(stage)
        if seen.get("state") != "done" or now.state != "done" or seen.get("key") != now.key:
            return False
    try:
        report = json.loads((runner.work.stage_dir("eval") / "metrics.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if video and not report.get("files", {}).get("video"):
        return False
    requested = parse_metrics(metrics)
    if requested is None:
        return report.get("default_set") is True
    return report.get("default_set") is False and report.get("requested") == requested


def record_path(work: Path) -> Path:
    return work / ".dynrec" / RECORD


def read_record(work: Path) -> dict[str, Any]:
    """``{"groups": {group: GroupResult as a dict}, "eval_s": seconds}`` or ``{}``."""
    try:
        return json.loads(record_path(work).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def save_record(work: Path, result: GroupResult) -> None:
    record = read_record(work)
    record.setdefault("groups", {})[result.group] = dataclasses.asdict(result)
    if result.group == "evaluate" and result.ran:
        record["eval_s"] = result.elapsed_s
    save_json(record_path(work), record)
