"""The ``dynrec batch`` and ``dynrec batch-status`` commands behind the CLI's option parsing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from dynrec.batch.inputs import discover
from dynrec.batch.tasks import BatchOptions
from dynrec.errors import DynrecError


@dataclass
class EngineOptions:
    """Where tasks run: ``address`` None (a local Ray instance), ``auto`` or ``ray://HOST:PORT``;
    the resources each task asks for; ``retries`` of a task whose worker died."""

    address: str | None = None
    cpus_per_task: float = 1.0
    gpus_per_task: float | None = None
    retries: int = 3


def batch(inputs: list[Path], runs: Path, opts: BatchOptions, engine_opts: EngineOptions, scene_gt: bool,
          console: Console) -> None:
    """Find the videos, connect to Ray, run, print the summary; a failed video makes the
    command fail (after every other video has run)."""
    from dynrec.batch.driver import gpu_plan, run_batch
    from dynrec.batch.engine import RayEngine

    if engine_opts.retries < 0:
        raise DynrecError(f"--retries must be 0 or more, got {engine_opts.retries}")
    _ = opts.groups  # checks --until before anything runs
    jobs = discover(inputs, runs, scene_gt=scene_gt)
    gpu = gpu_plan(jobs, opts)  # a bad --set fails here, naming the video, before Ray starts
    engine = RayEngine.connect(engine_opts.address, engine_opts.cpus_per_task, engine_opts.gpus_per_task,
                               engine_opts.retries)
    console.print(f"dynrec batch: {len(jobs)} video(s) on the {engine.description}, up to {opts.until}",
                  highlight=False)
    rows = run_batch(jobs, runs, opts, engine, console, gpu=gpu)
    failed = [r["video"] for r in rows if r["status"] == "failed"]
    if failed:
        raise DynrecError(f"{len(failed)} of {len(rows)} videos failed ({', '.join(failed[:5])}"
                          f"{', ...' if len(failed) > 5 else ''}); see {runs / 'summary.csv'}; the same "
                          "command reruns what is not done")


def batch_status(runs: Path, console: Console) -> None:
    """Print the summary of the batch in ``runs`` as its work dirs are now."""
    from dynrec.batch.summary import gather, print_summary

    rows, _ = gather(runs)
    print_summary(console, runs, rows)
