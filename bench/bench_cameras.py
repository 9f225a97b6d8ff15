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
import textwrap
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


def contact_sheet(path: Path, title: str, images: np.ndarray, masks: np.ndarray, xy: np.ndarray, vis: np.ndarray,
                  bg: np.ndarray, w2c: np.ndarray, lines: list[str]) -> None:
    """Frames (masks in red, background track trails in green, others in red), the camera
    path from above and from the side with viewing directions, rotation / translation over
    time, and a text panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    T, H, W = masks.shape
    picks = np.linspace(0, T - 1, 4).round().astype(int)
    fig = plt.figure(figsize=(18, 10))
    grid = fig.add_gridspec(2, 4, height_ratios=[1.0, 1.1])
    for k, t in enumerate(picks):
        ax = fig.add_subplot(grid[0, k])
        img = images[t].astype(np.float32) / 255
        img[masks[t]] = 0.5 * img[masks[t]] + 0.5 * np.array([1.0, 0.0, 0.0])
        ax.imshow(img, extent=(0, W, H, 0))
        for n in np.flatnonzero(vis[:, t])[::2]:
            lo = max(0, t - 6)
            trail = xy[n, lo:t + 1][vis[n, lo:t + 1]]
            ax.plot(trail[:, 0], trail[:, 1], "-", color="lime" if bg[n, t] else "red", lw=0.7)
        ax.set_xlim(0, W)
        ax.set_ylim(H, 0)
        ax.set_title(f"frame {t}: {int(vis[:, t].sum())} tracks, {int(bg[:, t].sum())} background", fontsize=9)
        ax.axis("off")
    c2w = np.linalg.inv(w2c.astype(np.float64))
    centres = c2w[:, :3, 3]
    forward = c2w[:, :3, 2]
    span = max(float(np.ptp(centres, axis=0).max()), 1e-6)
    for k, (i, j, name) in enumerate([(0, 2, "from above (x, z)"), (0, 1, "from the side (x, y; y down)")]):
        ax = fig.add_subplot(grid[1, k])
        ax.plot(centres[:, i], centres[:, j], "-", color="0.6", lw=1)
        sc = ax.scatter(centres[:, i], centres[:, j], c=np.arange(T), cmap="viridis", s=14, zorder=3)
        step = max(1, T // 12)
        ax.quiver(centres[::step, i], centres[::step, j], forward[::step, i], forward[::step, j],
                  angles="xy", scale_units="xy", scale=1 / (0.25 * span), width=0.005, color="tab:orange")
        ax.set_aspect("equal", adjustable="datalim")
        if j == 1:
            ax.invert_yaxis()
        ax.set_title(f"camera path {name}; orange: viewing direction", fontsize=9)
        fig.colorbar(sc, ax=ax, label="frame", fraction=0.046)
    ax = fig.add_subplot(grid[1, 2])
    rel = w2c[:, :3, :3].astype(np.float64) @ w2c[0, :3, :3].astype(np.float64).T
    angle = np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    ax.plot(angle, label="rotation from frame 0 (deg)")
    ax2 = ax.twinx()
    ax2.plot(np.linalg.norm(centres - centres[0], axis=1), color="tab:red", label="distance from frame 0")
    ax.set_xlabel("frame")
    ax.set_ylabel("rotation (deg)")
    ax2.set_ylabel("distance (scene units)", color="tab:red")
    ax.set_title("camera rotation (blue) and travel (red) from frame 0", fontsize=9)
    ax = fig.add_subplot(grid[1, 3])
    ax.axis("off")
    wrapped = [part for line in lines for part in (textwrap.wrap(line, 52, subsequent_indent="  ") or [""])]
    ax.text(0, 1, "\n".join(wrapped), va="top", family="monospace", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


def bench_video(video: Path, tmp: Path) -> dict[str, Any]:
    """``dynrec preprocess VIDEO -o W --offline --long-side 320``, as a user runs it; the time
    of each stage from its manifest, what the cameras stage did, and the contact sheet."""
    from dynrec.artifacts import Cameras, Frames, Masks, Tracks
    from dynrec.geometry.sfm import background_observations

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
    cams = Cameras.load(work / "cameras")
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
    tr = Tracks.load(work / "tracks")
    mk = Masks.load(work / "masks").masks
    bg = background_observations(tr.xy, tr.visible, mk)
    lines = [f"{video.name}: {T} frames at {W}x{H}", "dynrec preprocess --offline --long-side 320",
             f"cameras: {info['method']}",
             f"registered by SfM: {info['registered_sfm']}/{T}; with a camera: {posed}/{T}",
             f"focal: {info['focal']:.1f} px ({info['focal'] / max(W, H):.2f} x max side)"
             + (" [fixed: not observable]" if info.get("focal_fixed") else "")
             + (" [self-calibrated]" if info.get("focal_self_calibrated") else ""),
             f"reprojection error: {info['reproj_error_px']}",
             (f"tracks: {row['tracks']} ({row['moving_tracks']} moving); mask share {row['foreground_fraction']:.3f} "
              f"(subject by {row['subject']})"),
             f"stage time (s): {seconds}", f"total {wall:.0f} s"]
    contact_sheet(RESULTS / f"cameras_{video.stem}.png", f"dynrec preprocess --offline on {video.name}",
                  frames.images, mk, tr.xy, tr.visible, bg, cams.w2c, lines)
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
