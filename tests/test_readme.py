"""The README and docs/ show only commands and options the CLI has (docs/DESIGN.md, the design
contract, is left out: it names commands still to come)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer

from dynrec.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "DESIGN.md")]


def shown_commands(text: str) -> list[str]:
    """Every `dynrec ...` invocation: lines of code blocks and inline code spans."""
    out = []
    for block in re.findall(r"```.*?\n(.*?)```", text, flags=re.DOTALL):
        out += [line.split("#")[0].strip() for line in block.splitlines()]
    out += re.findall(r"`(dynrec [^`]+)`", text)
    return [c for c in out if c.startswith("dynrec ") or c == "dynrec"]


def resolve(command: str) -> tuple[Any, list[str], list[str]]:
    """The click command a shown line runs, the command path, and the options it uses."""
    cmd = typer.main.get_command(app)  # typer's (vendored) click command tree
    path = []
    tokens = command.split()[1:]
    while tokens and hasattr(cmd, "commands") and tokens[0] in cmd.commands:
        path.append(tokens[0])
        cmd = cmd.commands[tokens.pop(0)]
    options = [t.split("=")[0] for t in tokens if re.fullmatch(r"--?[a-zA-Z][\w-]*(=.*)?", t)]
    return cmd, path, options


CASES = [(doc.name, c) for doc in DOCS for c in shown_commands(doc.read_text())]


def test_the_docs_show_commands() -> None:
    assert len([c for name, c in CASES if name == "README.md"]) >= 20


@pytest.mark.parametrize("doc, command", CASES)
def test_shown_command_exists(doc: str, command: str) -> None:
    cmd, path, options = resolve(command)
    assert path or options == ["--version"], f"{doc}: `{command}` names no dynrec command"
    known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
    if not path:
        known |= {"--version"}
    missing = [o for o in options if o not in known]
    assert not missing, f"{doc}: `{command}`: `dynrec {' '.join(path)}` has no option {', '.join(missing)}"


def test_the_check_catches_what_the_old_readme_showed() -> None:
    """`reconstruct --gt` (once in the README) is not an option."""
    cmd, path, options = resolve("dynrec reconstruct work/ --gt scene/")
    assert path == ["reconstruct"] and options == ["--gt"]
    assert "--gt" not in {o for p in cmd.params for o in p.opts}
    assert resolve("dynrec weights fetch --all")[1] == ["weights", "fetch"]
