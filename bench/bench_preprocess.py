"""Offline preprocessing (tracks, masks, depth import, keypoints) against ground truth.

Run ``python -m bench.bench_preprocess`` (or ``python bench/bench_preprocess.py``) from the
repository root; writes ``bench/results/preprocess.json``. One thread for torch and OpenCV.
About 2-3 minutes on one free core (the synth scene alone is ~15 s).

On ``synth --preset small --seed 0`` (48 frames, 160x120, decoded from its H.264 video):

* **tracker**: the offline tracker seeded at the ground-truth query points
  (``track_points(frames, queries)``, CoTracker's ``(t, x, y)`` convention). For the
  foreground tracks: median error (pixels) over the samples visible in the ground truth and
  predicted visible, the same over all ground-truth visible samples, and the *survival*:
  the fraction of tracks predicted visible, within 0.05 max(H, W) = 8 px (DyCheck's PCK-T
  threshold; also reported at 2 px), at the last frame where the ground truth sees them.
  Plain frame-to-frame pyramidal LK (OpenCV) with a forward-backward check is measured the
  same way as a reference.
* **pipeline**: ``dynrec preprocess`` with depth imported from a folder (the ground-truth
  depth written as .npy), offline tracks, offline masks, ground-truth cameras, offline
  keypoints: mask IoU per frame against the ground truth, and each stage's time.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results" / "preprocess.json"
TARGETS = {"fg_median_error_px": 1.0, "fg_survival": 0.7, "mask_iou": 0.8}


def _threads() -> None:
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def track_figures(xy: np.ndarray, visible: np.ndarray, gt_xy: np.ndarray, gt_visible: np.ndarray,
                  threshold: float) -> dict[str, float]:
    """Error and survival of predicted tracks [N, T, 2] / [N, T] against ground truth."""
    err = np.linalg.norm(xy - gt_xy, axis=-1)
    both = gt_visible & visible
    n = np.arange(len(gt_visible))
    last = gt_visible.shape[1] - 1 - np.argmax(gt_visible[:, ::-1], axis=1)
    at_last = visible[n, last]
    return {
        "median_error_px": float(np.median(err[both])),
        "median_error_px_all_gt_visible": float(np.median(err[gt_visible])),
        "p90_error_px": float(np.percentile(err[both], 90)),
        "survival": float((at_last & (err[n, last] < threshold)).mean()),
        "survival_2px": float((at_last & (err[n, last] < 2.0)).mean()),
        "visible_at_last_frame": float(at_last.mean()),
        "recall_visible": float(both.sum() / gt_visible.sum()),
        "false_visible": float((visible & ~gt_visible).sum() / max(visible.sum(), 1)),
    }


def plain_lk(frames: np.ndarray, queries: np.ndarray, fb_px: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Reference: OpenCV pyramidal LK frame to frame (15x15, 3 levels) with a forward-backward check."""
    import cv2

    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])
    T, N = len(gray), len(queries)
    q = queries[:, 0].astype(int)
    xy = np.zeros((N, T, 2), np.float32)
    vis = np.zeros((N, T), bool)
    xy[np.arange(N), q] = queries[:, 1:] - 0.5  # OpenCV pixel centres are at integers
    vis[np.arange(N), q] = True
    lk = {"winSize": (15, 15), "maxLevel": 3,
          "criteria": (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 0.01)}
    for step in (1, -1):
        for t in (range(1, T) if step > 0 else range(T - 2, -1, -1)):
            s = t - step
            idx = np.flatnonzero((q <= s if step > 0 else q >= s) & vis[:, s])
            if len(idx) == 0:
                continue
            p0 = xy[idx, s].reshape(-1, 1, 2)
            p1, st, _ = cv2.calcOpticalFlowPyrLK(gray[s], gray[t], p0, None, **lk)
            back, st2, _ = cv2.calcOpticalFlowPyrLK(gray[t], gray[s], p1, None, **lk)
            ok = (st[:, 0] == 1) & (st2[:, 0] == 1) & (np.linalg.norm(back - p0, axis=-1)[:, 0] < fb_px)
            xy[idx, t] = p1[:, 0]
            vis[idx[ok], t] = True
    return xy + 0.5, vis


def bench_tracker(scene: Path) -> dict[str, Any]:
    from dynrec.artifacts import Tracks
    from dynrec.stages.frames import FramesParams, read_frames
    from dynrec.vision.lk import track_points

    info = json.loads((scene / "scene.json").read_text())
    frames = read_frames(scene / "video.mp4", FramesParams()).images
    H, W = frames.shape[1:3]
    gt = Tracks.load(scene / "gt" / "tracks")
    fg = np.load(scene / "gt" / "track_parts.npz")["track_part"] < len(info["foreground_parts"])
    N = len(gt.xy)
    queries = np.c_[gt.query_frame, gt.xy[np.arange(N), gt.query_frame]]
    threshold = 0.05 * max(H, W)
    t0 = time.perf_counter()
    ours = track_points(frames, queries)
    seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref_xy, ref_vis = plain_lk(frames, queries)
    ref_seconds = time.perf_counter() - t0
    parts = np.load(scene / "gt" / "track_parts.npz")["track_part"]
    per_part = {}
    for p, name in enumerate(info["parts"]):
        sel = parts == p
        if sel.sum() >= 5:
            figs = track_figures(ours.xy[sel], ours.visible[sel], gt.xy[sel], gt.visible[sel], threshold)
            per_part[name] = {"tracks": int(sel.sum()), "median_error_px": round(figs["median_error_px"], 3),
                              "survival": round(figs["survival"], 3)}
    return {
        "queries": {"foreground": int(fg.sum()), "background": int((~fg).sum())},
        "survival_threshold_px": threshold,
        "offline": {"foreground": track_figures(ours.xy[fg], ours.visible[fg], gt.xy[fg], gt.visible[fg], threshold),
                    "background": track_figures(ours.xy[~fg], ours.visible[~fg], gt.xy[~fg], gt.visible[~fg], threshold),
                    "per_part": per_part, "seconds": round(seconds, 2)},
        "plain_lk_fb": {"foreground": track_figures(ref_xy[fg], ref_vis[fg], gt.xy[fg], gt.visible[fg], threshold),
                        "seconds": round(ref_seconds, 2)},
    }


def bench_pipeline(scene: Path, tmp: Path) -> dict[str, Any]:
    from dynrec.artifacts import Depth, Keypoints, Masks, Tracks
    from dynrec.cli import main as cli

    folder = tmp / "depth_maps"
    folder.mkdir()
    for t, m in enumerate(Depth.load(scene / "gt" / "depth").depth):
        np.save(folder / f"{t:04d}.npy", m)
    work = tmp / "work"
    sets = ["depth.backend=offline", f"depth.folder={folder}", "tracks.backend=offline", "masks.backend=offline",
            "keypoints.backend=offline"]
    args = ["preprocess", str(scene / "video.mp4"), "-o", str(work), "--gt", str(scene)]
    for s in sets:
        args += ["--set", s]
    try:
        cli(args)
    except SystemExit as exc:
        if exc.code:
            raise RuntimeError(f"dynrec preprocess failed with exit code {exc.code}") from exc
    seconds = {}
    for stage in ("frames", "depth", "tracks", "masks", "cameras", "align", "keypoints", "lift"):
        manifest = json.loads((work / stage / "manifest.json").read_text())
        seconds[stage] = manifest["duration_s"]
    masks = Masks.load(work / "masks").masks
    truth = Masks.load(scene / "gt" / "masks").masks
    iou = (masks & truth).sum((1, 2)) / np.maximum((masks | truth).sum((1, 2)), 1)
    tracks = Tracks.load(work / "tracks")
    kp = Keypoints.load(work / "keypoints")
    info = json.loads((work / "tracks" / "manifest.json").read_text())["info"]
    return {
        "stages": {"depth": "offline (gt depth imported from .npy files)", "tracks": "offline", "masks": "offline",
                   "cameras": "gt", "align": "align", "keypoints": "offline", "lift": "lift"},
        "mask_iou_mean": float(iou.mean()), "mask_iou_min": float(iou.min()),
        "mask_iou_per_frame": [round(float(v), 3) for v in iou],
        "mask_foreground_fraction": {"predicted": float(masks.mean()), "truth": float(truth.mean())},
        "tracks": {"count": len(tracks.xy), "moving": info.get("moving_tracks"),
                   "visible_fraction": float(tracks.visible.mean())},
        "keypoints": {"count": int(kp.xy.shape[1]), "edges": len(kp.skeleton),
                      "mean_confidence": float(kp.confidence.mean())},
        "seconds": seconds,
    }


def main() -> None:
    """Measure and write ``bench/results/preprocess.json``."""
    import torch

    from dynrec.synth import generate

    _threads()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dynrec-bench-pre-") as tmp_name:
        tmp = Path(tmp_name)
        scene = tmp / "scene"
        generate(scene, preset="small", seed=0)
        tracker = bench_tracker(scene)
        pipeline = bench_pipeline(scene, tmp)
    fg = tracker["offline"]["foreground"]
    result = {
        "cores": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(), "machine": platform.machine(),
        "scene": "synth --preset small --seed 0 (48 frames, 160x120)",
        "targets": TARGETS,
        "met": {"fg_median_error_px": fg["median_error_px"] <= TARGETS["fg_median_error_px"],
                "fg_survival": fg["survival"] >= TARGETS["fg_survival"],
                "mask_iou": pipeline["mask_iou_mean"] >= TARGETS["mask_iou"]},
        "tracker": tracker, "pipeline": pipeline, "total_seconds": round(time.perf_counter() - started, 1),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
