"""The offline tracker across scene families and camera rigs, on seeds never tuned on.

``python -m bench.bench_tracks`` (or ``python -m bench tracks``) makes, for every scene family
of ``dynrec synth`` with the camera rig ``bench_families.RIGS`` gives it, the ``small`` scene
of each report seed and tracks its ground-truth query points with the offline tracker
(:func:`dynrec.vision.lk.track_points`) and with plain OpenCV LK (forward-backward checked),
as ``bench_preprocess`` does for one scene. Per scene and per family mean, for the
foreground tracks: median error over samples visible in both, survival (visible and within
5% of max(W, H) at the last frame the ground truth sees the point), recall of visible
samples. It writes ``bench/results/tracks.json`` after every scene. One thread.

The tracker was developed on the ``small`` sway scene (seed 0); report seed 100 of the other
families was not looked at before this benchmark ran. Targets (issue 11): foreground
survival >= 0.7 and median error <= 1 px in every family.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_preprocess import bench_tracker
from bench.bench_recon import dynrec
from bench.sweep import sweep

RESULTS = Path(__file__).resolve().parent / "results" / "tracks.json"
REPORT_SEEDS = (100,)
TARGETS = {"survival": 0.7, "median_error_px": 1.0}
KEYS = ("median_error_px", "survival", "recall_visible", "false_visible")


def run_scene(root: Path, family: str, rig: str, seed: int) -> dict[str, Any]:
    """Tracker figures of one synth scene's foreground against its ground truth."""
    scene = root / f"{family}_{rig}_{seed}"
    dynrec("synth", str(scene), "--preset", "small", "--family", family, "--camera", rig, "--seed", str(seed))
    figures = bench_tracker(scene)
    shutil.rmtree(scene)
    ours, lk = figures["offline"]["foreground"], figures["plain_lk_fb"]["foreground"]
    return {"family": family, "rig": rig, "seed": seed, "queries": figures["queries"],
            "offline": {k: round(ours[k], 4) for k in KEYS}, "plain_lk": {k: round(lk[k], 4) for k in KEYS},
            "per_part": figures["offline"]["per_part"], "seconds": figures["offline"]["seconds"]}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-family and overall means of the offline tracker's and plain LK's figures; targets met."""
    def mean(group: list[dict[str, Any]], who: str) -> dict[str, float]:
        return {k: round(float(np.mean([r[who][k] for r in group])), 4) for k in KEYS}

    fams = {f: [r for r in rows if r["family"] == f] for f in dict.fromkeys(r["family"] for r in rows)}
    per = {f: {"offline": mean(g, "offline"), "plain_lk": mean(g, "plain_lk")} for f, g in fams.items()}
    met = {f: {"survival": m["offline"]["survival"] >= TARGETS["survival"],
               "median_error_px": m["offline"]["median_error_px"] <= TARGETS["median_error_px"]}
           for f, m in per.items()}
    return {"per_family": per, "overall": {"offline": mean(rows, "offline"), "plain_lk": mean(rows, "plain_lk")},
            "targets_met": met}


def main(argv: list[str] | None = None) -> None:
    sweep("tracks", __doc__.splitlines()[0], argv, RESULTS, REPORT_SEEDS, run_scene, summarise,
          {"inputs": "ground-truth query points of the synth scene, tracked from the video alone", "targets": TARGETS,
           "survival": "visible and within 5% of max(W, H) at the last frame the ground truth sees the point"})


if __name__ == "__main__":
    main()
