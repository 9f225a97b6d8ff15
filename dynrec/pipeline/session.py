"""Open a work dir with a resolved config: the one place the CLI's options meet the runner."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from dynrec.errors import DynrecError
from dynrec.pipeline.config import resolve
from dynrec.pipeline.device import resolve_device
from dynrec.pipeline.registry import GT_STAGES, REGISTRY
from dynrec.pipeline.runner import Runner
from dynrec.pipeline.workdir import WorkDir


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
) -> Runner:
    """Validate the work dir, resolve config (saved / preset / file / ``--set``), resolve the
    device, and, when ``save``, write the resolved config to ``WORK/dynrec.toml`` if the work
    dir has none yet (a new work dir must remember its input even if a stage then fails). A
    config that changes a saved one is written by :func:`commit_config` once the command has
    succeeded: a failed command changes no saved config.

    ``gt`` records a ground-truth scene and switches the stages that have a ``gt`` backend
    to it; ``offline`` switches them to their ``offline`` backends instead (with ``gt``, the
    scene then serves evaluation and held-out renders only)."""
    if source is not None and not source.exists():
        raise DynrecError(f"input not found: {source}")
    if gt is not None and not (gt / "scene.json").is_file():
        raise DynrecError(f"--gt {gt} is not a ground-truth scene (no scene.json); make one with `dynrec synth`")
    workdir = WorkDir.open(work, create=create)
    config = resolve(REGISTRY, saved=workdir.config_file, preset=preset, config_file=config_file,
                     sets=input_sets(source, gt, offline) + list(sets or []))
    device = resolve_device(config.run.device)
    if save and not workdir.config_file.is_file():
        config.save(workdir.config_file)
    return Runner(workdir, REGISTRY, config, device=device, console=console)


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
