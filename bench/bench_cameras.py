"""Camera estimation: ATE on `synth --preset small`, and every frame posed on real videos.

Run ``python -m bench.bench_cameras`` (or ``python bench/bench_cameras.py``) from the
repository root; writes ``bench/results/cameras.json`` and one contact sheet per real video,
``bench/results/cameras_<video>.png`` (frames with masks and background tracks, the camera
path seen from above and from the side). One thread for torch and OpenCV.

Synthetic part (ground-truth frames, masks and depth; cameras estimated): ATE after Sim(3)
alignment as a percentage of the camera path length, for exact tracks, tracks with noise and
outliers, the bundle-adjustment path from disparity-like depth, and the project's offline
tracker when the tracks stage has one. Real part (`../shared/videos/*.mp4` at long side
320, through ``dynrec preprocess VIDEO -o W --offline --long-side 320``): frames registered by
SfM, frames with a camera, method, time per stage, and a contact sheet of masks, tracks and
the camera path. No depth maps are imported, so ``align`` interpolates the sparse points.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results"
VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "videos"
TARGET_ATE_PCT = 0.3


def _threads() -> None:
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def _cli(*args: Any) -> None:
    from dynrec.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        if exc.code:
            raise RuntimeError(f"dynrec {' '.join(map(str, args))} failed ({exc.code})") from None


def _run_stage(module: Any, work: Path, name: str, inputs: dict[str, Path], **params: Any) -> tuple[dict, float]:
    """Run stage ``module`` into ``work/name`` with the given params; (info, seconds)."""
    from dynrec.stages.base import StageContext

    out = work / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    ctx = StageContext(work=work, out=out, inputs=inputs)
    t0 = time.perf_counter()
    info = module.run(ctx, module.STAGE.params(**params))
    seconds = time.perf_counter() - t0
    (out / "manifest.json").write_text(json.dumps({"info": info}, default=str))
    shutil.rmtree(out / ".checkpoints", ignore_errors=True)
    return info, seconds


def _pose_errors(est: Any, truth: Any) -> dict[str, float]:
    from dynrec.metrics.pose import trajectory_errors

    path = float(np.linalg.norm(np.diff(truth.c2w[:, :3, 3], axis=0), axis=1).sum())
    err = trajectory_errors(est.w2c, truth.w2c, convention="w2c")
    return {"ate": err.ate, "ate_pct_path": 100 * err.ate / path, "rpe_trans": err.rpe_trans,
            "rpe_rot_deg": err.rpe_rot, "path_length": path, "sim3_scale": float(err.alignment.scale)}


def bench_synth(tmp: Path) -> dict[str, Any]:
    from dynrec.artifacts import Cameras, Depth, Tracks
    from dynrec.stages import align, cameras, tracks
    from dynrec.synth import generate

    scene = tmp / "scene"
    generate(scene, preset="small", seed=0)
    work = tmp / "work"
    _cli("preprocess", scene / "video.mp4", "-o", work, "--gt", scene)
    truth = Cameras.load(work / "cameras")
    z = Depth.load(work / "depth").depth.astype(np.float64)
    T = len(z)
    rng = np.random.default_rng(0)
    gt_tracks = Tracks.load(work / "tracks")

    noisy = tmp / "noisy_tracks"
    xy = gt_tracks.xy + rng.normal(0, 0.5, gt_tracks.xy.shape).astype(np.float32)
    bad = rng.random(gt_tracks.visible.shape) < 0.02
    xy[bad] += rng.uniform(-8, 8, (int(bad.sum()), 2)).astype(np.float32)
    Tracks(xy, gt_tracks.visible, gt_tracks.confidence, gt_tracks.query_frame).save(noisy)

    disp = tmp / "disparity"
    s, b = rng.uniform(0.5, 2, T), rng.uniform(0, 0.3, T)
    from dynrec.artifacts import Depth as DepthArtifact

    DepthArtifact((s[:, None, None] / z + b[:, None, None]) * np.exp(rng.normal(0, 0.05, z.shape))).save(disp)
    (disp / "manifest.json").write_text(json.dumps({"info": {"depth_kind": "disparity", "backend": "bench"}}))

    base = {k: work / k for k in ("frames", "tracks", "masks", "depth")}
    cases: list[tuple[str, dict[str, Path], dict[str, Any]]] = [
        ("gt tracks, default (pycolmap)", base, {"backend": "learned"}),
        ("gt tracks, focal prior 1.2 (pycolmap)", base, {"backend": "learned", "focal_prior": 1.2}),
        ("noisy tracks 0.5 px + 2% outliers (pycolmap)", {**base, "tracks": noisy}, {"backend": "learned"}),
        ("noisy tracks 0.5 px + 2% outliers, BA only", {**base, "tracks": noisy}, {"backend": "ba", "focal_prior": 1.2}),
        ("noisy tracks, BA only, disparity depth", {**base, "tracks": noisy, "depth": disp},
         {"backend": "ba", "focal_prior": 1.2}),
    ]
    info, secs = _run_stage(tracks, work, "tracks_offline", {"frames": work / "frames"}, backend="offline")
    cases.append(("offline tracks (pycolmap)", {**base, "tracks": work / "tracks_offline"}, {"backend": "learned"}))
    offline = f"tracks offline backend ({secs:.1f} s)"
    rows = []
    for name, inputs, params in cases:
        info, secs = _run_stage(cameras, work, "cameras_bench", inputs, **params)
        est = Cameras.load(work / "cameras_bench")
        row = {"case": name, "params": params, "method": info["method"], "registered_sfm": info["registered_sfm"],
               "frames": T, "focal": info["focal"], "focal_rel_err": info["focal"] / float(truth.K[0, 0, 0]) - 1,
               "reproj_error_px": info["reproj_error_px"], "seconds": round(secs, 2), **_pose_errors(est, truth)}
        ainfo, asecs = _run_stage(align, work, "align_bench", {**inputs, "cameras": work / "cameras_bench"})
        aligned = Depth.load(work / "align_bench").depth
        ok = aligned > 0
        row["align"] = {"seconds": round(asecs, 2), "frames_fitted": ainfo.get("frames_fitted"),
                        "median_rel_err_vs_gt_depth": float(np.median(np.abs(aligned[ok] * row["sim3_scale"] / z[ok] - 1))),
                        "valid_fraction": float(ok.mean())}
        rows.append(row)
        print(f"synth small | {name}: {row['method']}, ATE {row['ate_pct_path']:.3f}% of path, "
              f"focal err {100 * row['focal_rel_err']:.2f}%, {secs:.1f} s", file=sys.stderr)
    return {"scene": "synth --preset small --seed 0 (48 frames, 160x120)", "target_ate_pct": TARGET_ATE_PCT,
            "offline_tracks": offline, "cases": rows}


def bench_video(video: Path, tmp: Path) -> dict[str, Any]:
    """``dynrec preprocess VIDEO -o W --offline --long-side 320``, as a user runs it; the time
    of each stage from its manifest, what the cameras stage did, and the contact sheet."""
    from dynrec.artifacts import Frames
    from dynrec.evaluate.inspect import inspect

    work = tmp / video.stem
    t0 = time.perf_counter()
    _cli("preprocess", video, "-o", work, "--offline", "--long-side", 320)
    wall = time.perf_counter() - t0
    manifests = {d.name: json.loads((d / "manifest.json").read_text()) for d in sorted(work.iterdir())
                 if (d / "manifest.json").is_file()}
    seconds = {name: m["duration_s"] for name, m in manifests.items()}
    info = manifests["cameras"]["info"]
    frames = Frames.load(work / "frames")
    T, H, W = frames.shape
    posed = T - len(info.get("unposed_frames", [])) if info["method"] != "static" else T
    used = {name: f"{m['info'].get('backend', '-')}" + (f" ({m['info']['depth_kind']})" if "depth_kind" in m["info"]
                                                         and name == "depth" else "")
            for name, m in manifests.items() if name != "frames"}
    row = {"video": video.name, "command": f"dynrec preprocess {video.name} -o W --offline --long-side 320",
           "frames": T, "size": [W, H], "backends": used, "method": info["method"],
           "registered_sfm": info["registered_sfm"], "frames_with_camera": posed,
           "colmap": info.get("colmap"), "focal": info["focal"], "focal_fixed": info.get("focal_fixed"),
           "reproj_error_px": info["reproj_error_px"], "ba": info.get("ba"), "image_motion_px": info["image_motion_px"],
           "wall_s": round(wall, 1), "seconds": seconds, "cameras_timings": info.get("timings"),
           "tracks": manifests["tracks"]["info"].get("tracks"),
           "moving_tracks": manifests["masks"]["info"].get("moving_tracks"),
           "foreground_fraction": manifests["masks"]["info"].get("foreground_fraction"),
           "subject": manifests["masks"]["info"].get("subject"),
           "align": {k: manifests["align"]["info"].get(k) for k in ("densified", "frames_fitted", "fast_path")}}
    for sheet in inspect(work):  # the product's contact sheets (dynrec inspect)
        shutil.copy(sheet, RESULTS / f"cameras_{video.stem}_{sheet.stem}.png")
    print(f"{video.name}: {info['method']}, SfM {info['registered_sfm']}/{T}, cameras {posed}/{T}, {seconds}",
          file=sys.stderr)
    return row


def main() -> None:
    _threads()
    import torch

    RESULTS.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads()},
    }
    with tempfile.TemporaryDirectory() as tmp:
        out["synth"] = bench_synth(Path(tmp) / "synth")
        videos = sorted(VIDEOS.glob("*.mp4")) if VIDEOS.is_dir() else []
        out["videos"] = [bench_video(v, Path(tmp) / "videos") for v in videos]
        if not videos:
            out["videos_note"] = f"no videos found in {VIDEOS}"
    (RESULTS / "cameras.json").write_text(json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()
