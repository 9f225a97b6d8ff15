"""Open a work dir with a resolved config: the one place the CLI's options meet the runner."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from dynrec.errors import DynrecError
from dynrec.pipeline.config import resolve
from dynrec.pipeline.device import resolve_device
from dynrec.pipeline.registry import GT_STAGES, REGISTRY
from dynrec.pipeline.runner import Runner
from dynrec.pipeline.workdir import CONFIG_FILE, WorkDir


def open_runner(
    work: Path,
    *,
    create: bool,
    source: Path | None = None,
    gt: Path | None = None,
    preset: str | None = None,
    config_file: Path | None = None,
    sets: list[str] | None = None,
    console: Console | None = None,
    save: bool = True,
    offline: bool = False,
    scope: Sequence[str] | None = None,
    check: bool = True,
    writable: bool | None = None,
) -> Runner:
    """Resolve and check the config (saved / preset on the ``scope`` stages / file / ``--set``,
    :mod:`dynrec.pipeline.config`) and the device, and only then open (with ``create``, make)
    the work dir: a bad setting writes nothing. When ``save``, a new work dir's config is
    written at once (it must remember its input even if a stage then fails); a config that
    changes a saved one is written by :func:`commit_config` once the command has succeeded.

    ``gt`` records a ground-truth scene and switches the stages that have a ``gt`` backend
    to it; ``offline`` switches them to their ``offline`` backends instead (with ``gt``, the
    scene then serves evaluation and held-out renders only). ``check=False`` skips the range
    and choice checks (``dynrec status`` on a work dir whose saved config is out of range);
    ``writable`` (default: ``create or save``) refuses a read-only work dir up front. A
    ``source`` given here is checked (the ``scope`` stages' ``preflight``: the video is probed)
    before the work dir is created or touched."""
    console = console or Console(stderr=True)
    if source is not None and not source.exists():
        raise DynrecError(f"input not found: {source}")
    if gt is not None and not (gt / "scene.json").is_file():
        raise DynrecError(f"--gt {gt} is not a ground-truth scene (no scene.json); make one with `dynrec synth`")
    work = Path(work)
    WorkDir.check(work, create=create)
    saved = work / CONFIG_FILE
    config = resolve(REGISTRY, saved=saved if saved.is_file() else None, preset=preset, config_file=config_file,
                     sets=input_sets(source, gt, offline) + list(sets or []), scope=scope, check=check,
                     warn=lambda message: console.print(f"[yellow]warning:[/] {escape(message)}"))
    device = resolve_device(config.run.device)
    checked = []
    if source is not None:  # a new input: checked before the work dir is made or touched
        for spec in REGISTRY:
            if scope is None or spec.name in scope:
                spec.preflight(spec.for_device(config.stages[spec.name], device), Path(config.input.source),
                               Path(config.input.gt) if config.input.gt else None, console)
                checked.append(spec.name)
    workdir = WorkDir.open(work, create=create, writable=(create or save) if writable is None else writable)
    if save and not workdir.config_file.is_file():
        config.save(workdir.config_file)
    runner = Runner(workdir, REGISTRY, config, device=device, console=console)
    runner.preflighted.update(checked)
    return runner


def input_sets(source: Path | None, gt: Path | None, offline: bool) -> list[str]:
    """The ``--set``s that the input, ``--gt`` and ``--offline`` stand for (applied before the
    user's own)."""
    pre: list[str] = []
    if source is not None:
        pre.append(f"input.source={source.resolve()}")
    if gt is not None:
        pre.append(f"input.gt={gt.resolve()}")
    if offline:
        pre += [f"{s}.backend=offline" for s in GT_STAGES]
    elif gt is not None:
        pre += [f"{s}.backend=gt" for s in GT_STAGES]
    return pre


def commit_config(runner: Runner) -> None:
    """Write the runner's config to ``WORK/dynrec.toml`` (after the command succeeded)."""
    runner.config.save(runner.work.config_file)
