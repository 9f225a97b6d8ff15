"""``dynrec bench-table RUNS/ --protocol P``: dynrec's evaluated work dirs in one table over
scenes, laid out as the paper's table, beside the published numbers (:mod:`dynrec.evaluate.published`).

``RUNS/`` holds work dirs (``RUNS/<name>/eval/metrics.json``, or ``RUNS`` itself) evaluated with
``dynrec evaluate --protocol P``. A run's scene is the imported dataset's scene (``metrics.json``
``dataset.scene``), for ``pose`` its dataset (Sintel, Bonn, ...: SirenPose reports per dataset,
so dynrec's runs of one dataset are averaged). Cells without a number stay empty, and the notes
say why; no number is made up.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dynrec.errors import DynrecError
from dynrec.evaluate.protocols import get_protocol
from dynrec.evaluate.published import GAPS, MEAN, METHODS, published

DYNREC = "dynrec"


@dataclass(frozen=True)
class Layout:
    """Scenes (in the paper's order) and columns ``(metric, label)`` of a protocol's table;
    ``aliases`` map a dataset's own scene names to the table's."""

    scenes: tuple[str, ...]
    columns: tuple[tuple[str, str], ...]
    per: str = "scene"
    aliases: tuple[tuple[str, str], ...] = ()


LAYOUTS: dict[str, Layout] = {
    "dycheck": Layout(("apple", "block", "paper-windmill", "spin", "teddy"),
                      (("clip_i_heldout", "CLIP-I"), ("clip_t_heldout", "CLIP-T"), ("mlpips", "LPIPS"),
                       ("pck_t_kp", "PCK-T"), ("mpsnr", "mPSNR"), ("mssim", "mSSIM"))),
    "som": Layout(("apple", "backpack", "block", "creeper", "handwavy", "haru-sit", "mochi-high-five",
                   "paper-windmill", "pillow", "spin", "sriracha-tree", "teddy"),
                  (("epe_3d_kp", "EPE"), ("pck_3d_10cm", "3D 10cm"), ("pck_3d_5cm", "3D 5cm"), ("apck_kp", "APCK"),
                   ("mpsnr", "mPSNR"), ("mssim", "mSSIM"), ("mlpips", "mLPIPS"))),
    "nvidia": Layout(("balloon1", "balloon2", "jumping", "playground", "skating", "truck", "umbrella"),
                     (("nv_psnr", "PSNR"), ("nv_ssim", "SSIM"), ("nv_lpips", "LPIPS")),
                     aliases=(("balloon1-2", "balloon1"), ("balloon2-2", "balloon2"), ("skating-2", "skating"),
                              ("truck-2", "truck"))),  # NSFF's folder names
    "pose": Layout(("sintel", "bonn", "davis"), (("ate", "ATE"), ("rpe_trans", "RPE-Trans"), ("rpe_rot", "RPE-Rot")),
                   per="dataset"),
}

NOT_COMPUTED = {
    "clip_i_heldout": "dynrec computes CLIP-I / CLIP-T on the training view only (clip_i, tc_clip), not on held-out "
                      "views as HiMoR does",
    "clip_t_heldout": "dynrec computes CLIP-I / CLIP-T on the training view only (clip_i, tc_clip), not on held-out "
                      "views as HiMoR does",
}


@dataclass
class Run:
    """One evaluated work dir: its scene key and ``{metric: value}`` of the computed metrics."""

    path: Path
    scene: str
    values: dict[str, float]


@dataclass
class BenchTable:
    """``cells[method][(scene, metric)] = value``; ``sources`` per method; ``notes`` for the reader."""

    protocol: str
    layout: Layout
    scenes: list[str]
    cells: dict[str, dict[tuple[str, str], float]]
    sources: dict[str, set[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol, "scenes": self.scenes, "columns": [m for m, _ in self.layout.columns],
            "cells": {method: [{"scene": s, "metric": m, "value": v} for (s, m), v in cells.items()]
                      for method, cells in self.cells.items()},
            "sources": {k: sorted(v) for k, v in self.sources.items()}, "notes": self.notes,
            "runs": [{"path": str(r.path), "scene": r.scene} for r in self.runs],
        }


def _number(value: Any) -> float | None:
    if value == "inf":
        return math.inf
    if value == "-inf":
        return -math.inf
    return float(value) if isinstance(value, (int, float)) else None


def collect(runs_dir: Path, protocol: str) -> tuple[list[Run], list[str]]:
    """The runs under ``runs_dir`` evaluated with ``protocol``, and notes on the ones left out."""
    if not runs_dir.is_dir():
        raise DynrecError(f"runs folder not found: {runs_dir}")
    candidates = [runs_dir] + sorted(p for p in runs_dir.iterdir() if p.is_dir())
    runs, notes = [], []
    per = LAYOUTS[protocol].per
    for work in candidates:
        path = work / "eval" / "metrics.json"
        if not path.is_file():
            continue
        try:
            report = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            notes.append(f"{path}: unreadable ({exc}); left out")
            continue
        used = (report.get("protocol") or {}).get("name")
        if used != protocol:
            notes.append(f"{work.name}: evaluated with protocol {used or 'none'}, not {protocol}; run "
                         f"`dynrec evaluate {work} --protocol {protocol}`")
            continue
        dataset = report.get("dataset") or {}
        key = dataset.get("dataset") if per == "dataset" else dataset.get("scene")
        values = {row["metric"]: v for row in report.get("metrics", [])
                  if row.get("computed") and (v := _number(row.get("value"))) is not None}
        scene = str(key or work.name).lower()
        runs.append(Run(work, dict(LAYOUTS[protocol].aliases).get(scene, scene), values))
        for item in (report.get("protocol") or {}).get("deviations", []):
            notes.append(f"{work.name}: {item}")
    return runs, notes


def build(runs_dir: Path, protocol: str) -> BenchTable:
    """The table of ``protocol`` over the runs in ``runs_dir`` and the published numbers."""
    get_protocol(protocol)
    layout = LAYOUTS[protocol]
    runs, notes = collect(runs_dir, protocol)
    cells: dict[str, dict[tuple[str, str], float]] = {m: {} for m in (*METHODS, DYNREC)}
    sources: dict[str, set[str]] = {}
    for p in published(protocol):
        cells[p.method][(p.scene, p.metric)] = p.value
        sources.setdefault(p.method, set()).add(p.source)
    by_scene: dict[str, list[Run]] = {}
    for run in runs:
        by_scene.setdefault(run.scene, []).append(run)
    for scene, group in by_scene.items():
        for metric, _ in layout.columns:
            vals = [r.values[metric] for r in group if metric in r.values]
            if vals:
                cells[DYNREC][(scene, metric)] = sum(vals) / len(vals)
        if len(group) > 1:
            notes.append(f"dynrec {scene}: mean of {len(group)} runs ({', '.join(r.path.name for r in group)})")
    extra = sorted(s for s in by_scene if s not in layout.scenes)
    have = [s for s in layout.scenes if s in by_scene]
    for metric, _ in layout.columns:
        vals = [cells[DYNREC][(s, metric)] for s in have if (s, metric) in cells[DYNREC]]
        if vals:
            cells[DYNREC][(MEAN, metric)] = sum(vals) / len(vals)
    if have and len(have) < len(layout.scenes):
        notes.append(f"dynrec mean over {len(have)} of the table's {len(layout.scenes)} {layout.per}s "
                     f"({', '.join(have)}): not comparable with the published means")
    if not runs:
        notes.append(f"no run under {runs_dir} was evaluated with --protocol {protocol}")
    if extra:
        notes.append(f"dynrec {layout.per}s outside the paper's table: {', '.join(extra)} (not in the mean)")
    for method in METHODS:
        if not cells[method] and (protocol, method) in GAPS:
            notes.append(f"{method}: {GAPS[(protocol, method)]}")
    for metric, label in layout.columns:
        if metric in NOT_COMPUTED and not any(m == metric for _, m in cells[DYNREC]):
            notes.append(f"dynrec {label}: {NOT_COMPUTED[metric]}")
    for method, srcs in sources.items():
        notes.append(f"{method}: {'; '.join(sorted(srcs))}")
    if protocol == "pose":
        notes.append("SirenPose Table II's DAVIS column: DAVIS has no ground-truth cameras and the paper does not say "
                     "what its poses were compared with; dynrec cannot evaluate poses on DAVIS")
    if protocol == "dycheck":
        notes.append("HiMoR Table 1 masks only the background with the co-visibility mask (LPIPS); dynrec's mLPIPS "
                     "masks every non-co-visible pixel as DyCheck does")
    return BenchTable(protocol, layout, [*layout.scenes, *extra, MEAN], cells, sources, notes, runs)


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4g}"


def columns(table: BenchTable) -> list[tuple[str, str, str]]:
    """``(scene, metric, label)`` of the columns that hold at least one number."""
    return [(s, m, label) for s in table.scenes for m, label in table.layout.columns
            if any((s, m) in c for c in table.cells.values())]


def write(table: BenchTable, folder: Path) -> tuple[Path, Path]:
    """``bench-<protocol>.md`` and ``.json`` in ``folder``."""
    md, js = folder / f"bench-{table.protocol}.md", folder / f"bench-{table.protocol}.json"
    md.write_text(to_markdown(table))
    js.write_text(json.dumps(table.to_json(), indent=2) + "\n")
    return md, js


def to_markdown(table: BenchTable) -> str:
    """Rows = methods, columns = scene x metric (the papers' layout), then numbered notes."""
    cols = columns(table)
    head = "| method | " + " | ".join(f"{s} {label}" for s, _, label in cols) + " |"
    lines = [f"# dynrec bench-table: protocol {table.protocol}", "", head, "|---" * (len(cols) + 1) + "|"]
    for method, cells in table.cells.items():
        lines.append(f"| {method} | " + " | ".join(_fmt(cells.get((s, m))) for s, m, _ in cols) + " |")
    lines += ["", "Notes:", ""] + [f"{i}. {n}" for i, n in enumerate(table.notes, 1)]
    return "\n".join(lines) + "\n"
