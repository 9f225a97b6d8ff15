"""The batch summary: one row per video, ``RUNS/summary.json`` + ``RUNS/summary.csv``, tables.

A row holds ``video``, ``status`` (done | failed | running | pending), ``group`` (the stage
group that failed, runs, or was reached last), ``error``, ``device``, ``host``, ``source``,
``gt``, ``work``, ``not_computed`` (metrics evaluate could not compute), ``time_<stage>``
(seconds, from each stage's manifest; ``time_eval`` the last evaluation), ``time_total`` and
every computed metric of ``eval/metrics.json`` under its name. Rows are built from the work
dirs alone (``.dynrec/batch.json``, manifests, the lock), so ``dynrec batch-status`` shows
the same at any time, from any machine that sees ``RUNS/``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dynrec.artifacts.base import save_json
from dynrec.batch.tasks import read_record
from dynrec.errors import DynrecError
from dynrec.pipeline.lock import read_owner, stale_reason
from dynrec.pipeline.registry import REGISTRY
from dynrec.pipeline.workdir import WorkDir

PLAN = "batch.json"
SUMMARY_JSON = "summary.json"
SUMMARY_CSV = "summary.csv"
FIXED = ("video", "status", "group", "error", "device", "host", "source", "gt", "work", "not_computed")
#: Per-video rows are printed up to this many videos (failed ones always).
PRINT_ROWS = 30


def save_plan(runs: Path, jobs: list[dict[str, Any]], groups: list[str], options: dict[str, Any]) -> None:
    """``RUNS/batch.json``: the videos and settings of the last ``dynrec batch`` on RUNS."""
    save_json(runs / PLAN, {"groups": groups, "jobs": jobs, "options": options,
                            "started": datetime.now(UTC).isoformat(timespec="seconds")})


def load_plan(runs: Path) -> dict[str, Any]:
    path = runs / PLAN
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise DynrecError(f"{runs} holds no batch ({PLAN} missing); run `dynrec batch INPUTS -o {runs}` first") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise DynrecError(f"{path} is unreadable ({exc})") from exc


def _number(v: Any) -> float | None:
    if v in ("inf", "-inf"):
        return float(v)
    return None if v is None else float(v)


def video_row(name: str, work: Path, groups: list[str], job: dict[str, Any]) -> dict[str, Any]:
    """The summary row of one video from its work dir (see the module docstring)."""
    record = read_record(work)
    results = record.get("groups", {})
    row: dict[str, Any] = {"video": name, "status": "pending", "group": "", "error": "", "device": "",
                           "host": "", "source": job.get("source", ""), "gt": job.get("gt") or "",
                           "work": str(work), "not_computed": ""}
    for group in groups:
        res = results.get(group)
        if res is None:
            row["group"] = group
            break
        row.update(group=group, device=res.get("device") or row["device"], host=res.get("host", ""))
        if res.get("status") != "done":
            row.update(status="failed", error=res.get("error", ""))
            break
        if group == "evaluate":
            row["not_computed"] = " ".join(res.get("not_computed", []))
    else:
        row["status"] = "done"
    owner = read_owner(work)
    if owner is not None and stale_reason(owner) is None:
        row.update(status="running", group=owner.what.removeprefix("batch "), error="")
    total = 0.0
    for spec in REGISTRY:
        manifest = WorkDir(work).manifest(spec.name) if work.is_dir() else None
        t = None if manifest is None else manifest.get("duration_s")
        row[f"time_{spec.name}"] = t
        total += t or 0.0
    eval_s = record.get("eval_s")
    row["time_eval"] = eval_s
    row["time_total"] = round(total + (eval_s or 0.0), 3)
    try:
        metrics = json.loads((work / "eval" / "metrics.json").read_text())["metrics"]
    except (OSError, json.JSONDecodeError, KeyError):
        metrics = []
    for m in metrics:
        row[m["metric"]] = _number(m.get("value")) if m.get("computed") else None
    return row


def gather(runs: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of every video of the batch in ``runs``, and the plan's stage groups."""
    plan = load_plan(runs)
    rows = [video_row(j["name"], runs / j["name"], plan["groups"], j) for j in plan["jobs"]]
    return rows, plan["groups"]


def metric_names(rows: list[dict[str, Any]]) -> list[str]:
    fixed = set(FIXED) | {k for r in rows for k in r if k.startswith("time_")}
    return list(dict.fromkeys(k for r in rows for k in r if k not in fixed))


def aggregate(rows: list[dict[str, Any]]) -> dict[str, dict[str, float | int | None]]:
    """Mean, median and count over the done videos of each metric and of ``time_total``
    (finite values of videos that have them)."""
    out: dict[str, dict[str, float | int | None]] = {}
    done = [r for r in rows if r["status"] == "done"]
    for name in [*metric_names(rows), "time_total"]:
        values = [float(r[name]) for r in done if isinstance(r.get(name), int | float) and math.isfinite(r[name])]
        out[name] = {"mean": statistics.fmean(values) if values else None,
                     "median": statistics.median(values) if values else None, "n": len(values)}
    return out


def write_summary(runs: Path, rows: list[dict[str, Any]]) -> tuple[Path, Path]:
    """``RUNS/summary.json`` (rows, counts, aggregate) and ``RUNS/summary.csv`` (rows)."""
    counts = {s: sum(r["status"] == s for r in rows) for s in ("done", "failed", "running", "pending")}
    save_json(runs / SUMMARY_JSON, {
        "created": datetime.now(UTC).isoformat(timespec="seconds"), "runs": str(runs.resolve()),
        "counts": counts, "videos": rows, "aggregate": aggregate(rows),
    })
    columns = list(dict.fromkeys([*FIXED, *(k for r in rows for k in r if k.startswith("time_")),
                                  *metric_names(rows)]))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if r.get(k) is None else r.get(k) for k in columns})
    csv_path = runs / SUMMARY_CSV
    tmp = csv_path.with_name(csv_path.name + ".partial")
    tmp.write_text(buf.getvalue())
    tmp.replace(csv_path)
    return runs / SUMMARY_JSON, csv_path


STYLE = {"done": "green", "failed": "red", "running": "cyan", "pending": "dim"}


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.4g}"


def print_summary(console: Console, runs: Path, rows: list[dict[str, Any]]) -> None:
    """Per-video table (all rows up to ``PRINT_ROWS`` videos, else the failed ones), then mean
    and median of every metric over videos, then the counts."""
    shown = rows if len(rows) <= PRINT_ROWS else [r for r in rows if r["status"] == "failed"]
    if shown:
        t = Table(title=f"dynrec batch: {escape(str(runs))}")
        for col in ("video", "status", "group", "device", "time", "error"):
            t.add_column(col, overflow="fold", justify="right" if col == "time" else "left")
        for r in shown:
            t.add_row(escape(r["video"]), f"[{STYLE[r['status']]}]{r['status']}[/]", r["group"], r["device"],
                      f"{r['time_total']:.1f}s", escape(r["error"]))
        console.print(t)
    agg = aggregate(rows)
    if any(v["n"] for v in agg.values()):
        t = Table(title="over videos")
        for col in ("metric", "mean", "median", "n"):
            t.add_column(col, justify="left" if col == "metric" else "right")
        for name, v in agg.items():
            if v["n"]:
                t.add_row(name, _fmt(v["mean"]), _fmt(v["median"]), str(v["n"]))
        console.print(t)
    counts = {s: sum(r["status"] == s for r in rows) for s in STYLE}
    console.print(", ".join(f"[{STYLE[s]}]{n} {s}[/]" for s, n in counts.items() if n) + f" of {len(rows)} videos")
