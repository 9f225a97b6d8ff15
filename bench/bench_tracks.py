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

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_families import RIGS
from bench.bench_preprocess import bench_tracker
from bench.bench_recon import dynrec

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
    import cv2
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(RIGS))
    parser.add_argument("--seeds", default=",".join(map(str, REPORT_SEEDS)))
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows: list[dict[str, Any]] = []
    result: dict[str, Any] = {
        "benchmark": "tracks",
        "machine": {"cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "opencv": cv2.__version__, "python": platform.python_version()},
        "inputs": "ground-truth query points of the synth scene, tracked from the video alone",
        "seeds": seeds, "targets": TARGETS,
        "survival": "visible and within 5% of max(W, H) at the last frame the ground truth sees the point",
    }
    with tempfile.TemporaryDirectory(prefix="dynrec-tracks-") as tmp:
        for family in args.families.split(","):
            for seed in seeds:
                rows.append(run_scene(Path(tmp), family, RIGS[family], seed))
                result.update(runs=rows, **summarise(rows))
                args.output.parent.mkdir(parents=True, exist_ok=True)
                args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
