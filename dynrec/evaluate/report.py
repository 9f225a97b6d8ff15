"""The evaluation report: ``eval/metrics.json`` (schema in docs/metrics.md) and the terminal table."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dynrec import __version__
from dynrec.evaluate.compute import MetricResult
from dynrec.evaluate.protocols import Protocol

SCHEMA = 1
METRICS_FILE = "metrics.json"


@dataclass
class EvalReport:
    """Everything ``evaluate`` found: one :class:`MetricResult` per requested metric, the
    metrics left out of the default set with the reason (``skipped``), the stages read
    (``{stage: {"key", "state"}}``), and the files written under ``eval_dir``."""

    work: Path
    eval_dir: Path
    results: list[MetricResult]
    requested: list[str]
    explicit: bool
    skipped: dict[str, str]
    stages: dict[str, dict[str, str]]
    gt: Path | None
    source_index: np.ndarray
    plots: list[str] = field(default_factory=list)
    video: str | None = None
    checks: list[str] = field(default_factory=list)
    protocol: Protocol | None = None
    deviations: list[str] = field(default_factory=list)
    dataset: dict[str, Any] = field(default_factory=dict)

    @property
    def all_computed(self) -> bool:
        return all(r.computed for r in self.results)

    @property
    def not_computed(self) -> list[MetricResult]:
        return [r for r in self.results if not r.computed]


def json_number(x: float | None) -> float | str | None:
    """A JSON-safe number: finite floats as they are, +-inf as ``"inf"`` / ``"-inf"``, NaN
    (undefined) and None as ``null``."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    x = float(x)
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def to_json(report: EvalReport, created: str) -> dict[str, Any]:
    """The content of ``eval/metrics.json`` (schema 1, documented in docs/metrics.md)."""
    rows = []
    for r in report.results:
        info = r.info
        row: dict[str, Any] = {
            "metric": r.metric, "value": json_number(r.value), "unit": info.unit, "split": r.split,
            "n": r.n, "computed": r.computed, "higher_is_better": info.higher_is_better,
            "description": info.description,
        }
        if not r.computed:
            row["reason"] = r.reason
        if r.reference is not None:
            row["reference"] = json_number(r.reference)
        if r.by_camera:
            row["by_camera"] = {k: json_number(v) for k, v in r.by_camera.items()}
        if r.note:
            row["note"] = r.note
        rows.append(row)
    per_frame = {r.metric: {s: [json_number(v) for v in vals] for s, vals in r.per_frame.items()}
                 for r in report.results if r.computed and r.per_frame}
    return {
        "schema": SCHEMA,
        "dynrec": __version__,
        "created": created,
        "work": str(report.work.resolve()),
        "gt": None if report.gt is None else str(report.gt),
        "stages": report.stages,
        "requested": report.requested,
        "default_set": not report.explicit,
        "skipped": report.skipped,
        "all_computed": report.all_computed,
        "check_this": report.checks,
        "protocol": None if report.protocol is None else {**report.protocol.to_json(),
                                                          "deviations": report.deviations},
        "dataset": report.dataset or None,
        "metrics": rows,
        "frames": {"index": list(range(len(report.source_index))),
                   "source_index": [int(i) for i in report.source_index]},
        "per_frame": per_frame,
        "files": {"plots": [f"plots/{p}" for p in report.plots], "video": report.video},
    }


def format_value(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.4g}"


def _footnotes(report: EvalReport) -> dict[str, tuple[int, bool]]:
    """Reasons and notes, each text once: ``{text: (number, is_reason)}`` in order of appearance."""
    texts: dict[str, tuple[int, bool]] = {}
    for r in report.results:
        text = r.note if r.computed else r.reason
        if text and text not in texts:
            texts[text] = (len(texts) + 1, not r.computed)
    return texts


def table(report: EvalReport) -> Table:
    """The rich table: one row per requested metric. Reasons (not computed) and notes are
    footnotes ``[k]``, printed by :func:`print_report`."""
    notes = _footnotes(report)
    protocol = f" (protocol {report.protocol.name})" if report.protocol else ""
    t = Table(title=f"dynrec evaluate{protocol}: {escape(str(report.work))}", box=box.SIMPLE_HEAD, pad_edge=False,
              collapse_padding=True)
    for col in ("metric", "split", "value", "n", "ref"):
        t.add_column(col, justify="left" if col in ("metric", "split") else "right", no_wrap=True)
    t.add_column("detail", overflow="fold")
    for r in report.results:
        arrow = "↑" if r.info.higher_is_better else "↓"
        cams = ", ".join(f"{k} {format_value(v)}" for k, v in r.by_camera.items())
        if r.computed:
            detail = " ".join(d for d in (cams, f"[{notes[r.note][0]}]" if r.note else "") if d)
            unit = f" {r.info.unit}" if r.info.unit else ""
            t.add_row(f"{r.metric} {arrow}", r.split, f"[bold]{format_value(r.value)}[/]{escape(unit)}",
                      str(r.n), "" if r.reference is None else format_value(r.reference), escape(detail))
        else:
            t.add_row(f"{r.metric} {arrow}", r.split, "[red]not computed[/]", "", "",
                      escape(f"[{notes[r.reason][0]}]"))
    return t


def print_report(console: Console, report: EvalReport) -> None:
    """The table, its footnotes, what was left out of the default set, and the files."""
    console.print(table(report))
    if report.protocol is not None:
        p = report.protocol
        console.print(escape(f"protocol {p.name}: {p.defined_by}; masks: {p.masks}; resolution: "
                             f"{p.resolution_note}; frames: {p.frames}; alignment: {p.alignment}; compare with: "
                             f"{p.reference}"), highlight=False)
        for item in report.deviations:
            console.print(f"  [yellow]deviation:[/] {escape(item)}", highlight=False)
    for text, (k, is_reason) in _footnotes(report).items():
        console.print(escape(f"[{k}] {text}"), style="yellow" if is_reason else None, highlight=False)
    if report.checks:
        console.print("[bold yellow]check this:[/]")
        for item in report.checks:
            console.print(f"  [yellow]•[/] {escape(item)}", highlight=False)
    by_reason: dict[str, list[str]] = {}
    for name, reason in report.skipped.items():
        by_reason.setdefault(reason, []).append(name)
    for reason, names in by_reason.items():
        console.print(f"[dim]not evaluated, {escape(reason)}: {', '.join(names)}[/]", highlight=False)
    out = report.eval_dir
    console.print(f"metrics: {escape(str(out / METRICS_FILE))}", highlight=False, soft_wrap=True)
    for p in report.plots:
        console.print(f"plot:    {escape(str(out / 'plots' / p))}", highlight=False, soft_wrap=True)
    if report.video:
        console.print(f"video:   {escape(str(out / report.video))}", highlight=False, soft_wrap=True)
    missing = len(report.not_computed)
    if missing:
        console.print(f"[yellow]{missing} of {len(report.results)} metric(s) not computed[/] (see the table)")
