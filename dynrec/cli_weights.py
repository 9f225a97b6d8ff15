"""``dynrec weights list`` / ``dynrec weights fetch``: what network weights exist, where they
are, and fetching them (thin: :mod:`dynrec.weights` does the work)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dynrec.errors import DynrecError

app = typer.Typer(name="weights", no_args_is_help=True, help="Network weights: list them, fetch them.")
console = Console()
err = Console(stderr=True, soft_wrap=True)

WeightsDirOpt = Annotated[Path | None, typer.Option(
    "--weights-dir", help="Weights folder (default: $DYNREC_WEIGHTS, else ~/.cache/dynrec/weights).")]


@app.command("list")
def list_(weights_dir: WeightsDirOpt = None) -> None:
    """Every weight a learned backend or a metric can use: size, licence, found / missing."""
    from dynrec.weights import CATALOG, locate, network_allowed, target_dir

    table = Table(title="dynrec weights")
    table.add_column("name", no_wrap=True)
    for col in ("used by", "size", "licence", "status"):
        table.add_column(col, overflow="fold")
    found = [locate(w, weights_dir) for w in CATALOG]
    for f in found:
        table.add_row(f.weight.name, escape(f.weight.used_by), f.weight.size, escape(f.weight.licence),
                      "[green]found[/]" if f.path else "[yellow]missing[/]")
    console.print(table)
    for f in found:
        if f.path:
            console.print(f"{f.weight.name}: {escape(str(f.path))}", highlight=False, soft_wrap=True)
    checks = {w.name: w.pinned for w in CATALOG if w.kind == "url"}
    console.print("checked on download (sha256 or the size the server announced): " + ", ".join(f"{n} ({c})" for n, c in checks.items()),
                  highlight=False, soft_wrap=True)
    net = "on" if network_allowed() else "off (DYNREC_OFFLINE / HF_HUB_OFFLINE)"
    console.print(f"downloads go to {escape(str(target_dir(weights_dir)))}; network {net}", highlight=False,
                  soft_wrap=True)


@app.command()
def fetch(
    names: Annotated[list[str] | None, typer.Argument(help="Names from `dynrec weights list`.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every weight in the list.")] = False,
    weights_dir: WeightsDirOpt = None,
    offline: Annotated[bool, typer.Option("--offline", help="Only check; never touch the network.")] = False,
) -> None:
    """Download the named weights (those not found already) with a progress bar; resumable."""
    from dynrec.weights import BY_NAME, CATALOG, ensure, get

    if all_ and names:
        raise DynrecError("give weight names or --all, not both")
    if not all_ and not names:
        raise DynrecError(f"name the weights to fetch, or --all; known: {', '.join(BY_NAME)}")
    wanted = list(CATALOG) if all_ else [get(n) for n in dict.fromkeys(names or [])]
    paths = ensure(wanted, weights_dir, err, offline=offline)
    for w in wanted:
        console.print(f"[green]✓[/] {w.name}: {escape(str(paths[w.name]))}", highlight=False)
