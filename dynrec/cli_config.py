"""``dynrec config show`` / ``dynrec config reset``: a work dir's settings and where each came
from; undoing overrides (thin: :mod:`dynrec.pipeline.config` does the work)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dynrec.errors import DynrecError

app = typer.Typer(name="config", no_args_is_help=True, help="A work dir's settings: show them, reset them.")
console = Console()
err = Console(stderr=True, soft_wrap=True)

WorkArg = Annotated[Path, typer.Argument(help="Work directory (default: the current one).")]

#: Settings ``reset`` keeps: the input, and each stage's backend (chosen by --gt / --offline).
KEPT = ("backend",)


def _source(config, section: str, name: str, value: Any, default: Any) -> str:
    source = config.sources.get(f"{section}.{name}")
    if source is None or value == default:
        return "default"
    return source


@app.command()
def show(work: WorkArg = Path("."),
         changed: Annotated[bool, typer.Option("--changed", help="Only settings that differ from the defaults.")] = False,
         ) -> None:
    """Every setting of WORK as the next command would use it, and where it came from
    (default, dynrec.toml, the device's schedule)."""
    from dynrec.pipeline.session import open_runner

    runner = open_runner(work, create=False, save=False, console=err, check=False)
    config = runner.config
    table = Table(title=f"dynrec config: {escape(str(runner.work.config_file))}")
    for col in ("setting", "value", "source"):
        table.add_column(col, overflow="fold")
    for section, obj in config.sections():
        defaults = type(obj)()
        used = runner.params(section) if section in config.stages else obj
        for f in dataclasses.fields(obj):
            value, default = getattr(obj, f.name), getattr(defaults, f.name)
            source = _source(config, section, f.name, value, default)
            shown = getattr(used, f.name)
            if value is None and shown is not None:
                source = f"{runner.device} schedule"
            if changed and source == "default":
                continue
            table.add_row(f"{section}.{f.name}", escape(repr(shown) if isinstance(shown, str) else str(shown)),
                          source if source == "default" else f"[bold]{escape(source)}[/]")
    console.print(table)


@app.command()
def reset(work: WorkArg = Path("."),
          stage: Annotated[str | None, typer.Argument(help="Only this stage's settings (or 'run').")] = None,
          ) -> None:
    """Put WORK's settings (or one STAGE's) back to their defaults; [input] and each stage's
    backend are kept. Affected stages re-run on the next command."""
    from dynrec.pipeline.session import open_runner

    runner = open_runner(work, create=False, save=False, console=err, check=False, writable=True)
    config = runner.config
    names = ["run", *config.stages] if stage is None else [stage]
    if stage is not None and stage not in ("run", *config.stages):
        raise DynrecError(f"unknown stage '{stage}'; stages: run, {', '.join(config.stages)}")
    changes = []
    for section in names:
        obj = config.section(section)
        defaults = type(obj)()
        for f in dataclasses.fields(obj):
            if f.name in KEPT:
                continue
            old, new = getattr(obj, f.name), getattr(defaults, f.name)
            if old != new:
                setattr(obj, f.name, new)
                changes.append(f"{section}.{f.name}: {old!r} -> {new!r}")
    if not changes:
        console.print("nothing to reset: every setting is at its default", highlight=False)
        return
    config.save(runner.work.config_file)
    for line in changes:
        console.print(f"  {escape(line)}", highlight=False)
    console.print(f"[green]✓[/] {len(changes)} setting(s) reset in {escape(str(runner.work.config_file))}")
