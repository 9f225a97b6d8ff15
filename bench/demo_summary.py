"""The last words of ``make demo``: each number of the two reconstructions (HiMoR alone and with
SirenPose), what it means, and whether it meets the project's targets (those of
``bench/bench_families.py``: PCK-T >= 0.9 and 3D track EPE <= 3 % of the subject's size).

    python -m bench.demo_summary DEMO_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.bench_families import TARGETS, foreground_extent
from dynrec.metrics import METRICS

ROWS = ("psnr", "mpsnr", "epe_3d", "pck_t", "kp_err", "kp_pck")


def values(work: Path) -> dict[str, float | None]:
    path = work / "eval" / "metrics.json"
    if not path.is_file():
        return {}
    return {r["metric"]: r["value"] for r in json.loads(path.read_text())["metrics"]}


def fmt(value: float | str | None) -> str:
    if value is None:
        return "n/a"
    return value if isinstance(value, str) else f"{value:.3f}"


def verdict(name: str, value: float | None, extent: float) -> str:
    if value is None or isinstance(value, str):
        return ""
    if name == "pck_t":
        return f"target >= {TARGETS['pck_t']}: {'met' if value >= TARGETS['pck_t'] else 'NOT met'}"
    if name == "epe_3d":
        pct = 100 * value / extent
        ok = pct <= TARGETS["epe_pct"]
        return f"{pct:.1f} % of the subject's size; target <= {TARGETS['epe_pct']} %: {'met' if ok else 'NOT met'}"
    return ""


def main(demo: Path) -> None:
    base, siren = values(demo / "work"), values(demo / "work-sirenpose")
    extent = foreground_extent(demo / "scene")
    print(f"\nwhat the demo measured (subject size {extent:.2f} scene units; n/a: not computed, see the tables)")
    for name in ROWS:
        info = METRICS[name]
        better = "higher" if info.higher_is_better else "lower"
        line = (f"  {name:7s} baseline {fmt(base.get(name)):>7s}  SirenPose {fmt(siren.get(name)):>7s}  "
                f"[{info.unit}, {better} is better] {info.description}")
        print(line)
        for label, v in (("baseline", base.get(name)), ("SirenPose", siren.get(name))):
            if text := verdict(name, v, extent):
                print(f"          {label}: {text}")
    print("  ate, rpe: 0 here because the cameras are the scene's ground truth (--gt); no trajectory plot is drawn")
    print("  the CPU schedule of the demo is short (300 steps): `make bench` runs the full one")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "demo"))
