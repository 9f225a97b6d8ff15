"""SirenPose ablations (Table III rows) and camera refinement on ``dynrec synth --preset fast``.

Run ``python -m bench.bench_sirenpose`` from the repository root (``--help`` for the knobs).
For each seed it makes a ``fast`` scene (a joint at >= 10 px/frame) and a work dir
preprocessed from its ground truth, then runs the ``recon`` stage in this process for

* every ablation row (``recon.sirenpose`` = off | geo | siren | full) with the ground-truth
  keypoints and with noisy keypoints (Gaussian pixel noise, 10 % of the visible samples
  dropped);
* noisy input cameras (rotation 1° RMS, translation 2 % of the scene scale RMS; the ``lift``
  stage is re-run on them): ``full`` with camera refinement, ATE / RPE of the input cameras
  and of the refined ones;

Rows without the keypoint loss (``off``, ``siren``) train exactly as with ground-truth
keypoints (keypoints only place their evaluation anchors), so their noisy-keypoint entries
reuse that training and only re-initialise the anchors from the noisy keypoints
(``shared_training``). Each run is evaluated with ``dynrec evaluate``'s own metric code (keypoint 2D error and PCK,
3D track EPE, PCK-T, held-out mPSNR, training PSNR, ATE / RPE). The variants' inputs (noisy
keypoints, noisy cameras, re-lifted tracks) and outputs live in ``WORK/.bench/``; the
evaluation reads them in place of the work dir's stages. Writes
``bench/results/sirenpose.json`` with every run, mean ± std per row, the machine (cores,
torch version and threads) and the settings. One torch thread (a shared 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console

from dynrec.artifacts import Cameras, Keypoints
from dynrec.evaluate.compute import Models, compute_metric
from dynrec.evaluate.inputs import EvalInputs
from dynrec.geometry.se3 import so3_exp
from dynrec.pipeline.config import _apply
from dynrec.pipeline.registry import PREPROCESS
from dynrec.pipeline.runner import Runner
from dynrec.pipeline.session import open_runner
from dynrec.stages import lift as lift_stage
from dynrec.stages import recon as recon_stage
from dynrec.stages.base import StageContext
from dynrec.synth import generate

RESULTS = Path(__file__).resolve().parent / "results" / "sirenpose.json"
ROWS = ("off", "geo", "siren", "full")
METRICS = ("kp_err", "kp_pck", "epe_3d", "pck_t", "mpsnr", "psnr")
CAMERA_METRICS = ("ate", "rpe_trans", "rpe_rot")
QUIET = Console(file=open(os.devnull, "w"))  # noqa: SIM115 (lives as long as the process)


class BenchInputs(EvalInputs):
    """``EvalInputs`` that read some stages (``recon``, and a variant's ``cameras`` / ``lift``)
    from the benchmark's folders instead of the work dir's committed stages."""

    def __init__(self, runner: Runner, folders: dict[str, Path]):
        super().__init__(runner)
        self.folders = folders

    def stage(self, name: str) -> Path:
        if name in self.folders:
            self.used[name] = {"key": "bench", "state": "done"}
            return self.folders[name]
        return super().stage(name)


def prepare(base: Path, seed: int, preset: str, sets: list[str]) -> tuple[Path, Path, Runner]:
    """A ``preset`` scene of ``seed`` and its work dir preprocessed from the ground truth."""
    scene, work = base / f"scene-{seed}", base / f"work-{seed}"
    generate(scene, preset=preset, seed=seed)
    runner = open_runner(work, create=True, source=scene / "video.mp4", gt=scene, sets=sets, console=QUIET)
    runner.run(PREPROCESS)
    return scene, work, runner


def noisy_keypoints(folder: Path, out: Path, sigma_px: float, drop: float, seed: int) -> Keypoints:
    """Keypoints with N(0, sigma_px²) pixel noise on every visible sample and a fraction
    ``drop`` of the visible samples removed (confidence 0)."""
    kp = Keypoints.load(folder)
    rng = np.random.default_rng(seed)
    vis = kp.confidence > 0
    xy = kp.xy + rng.normal(0.0, sigma_px, kp.xy.shape).astype(np.float32) * vis[..., None]
    dropped = vis & (rng.random(vis.shape) < drop)
    noisy = Keypoints(xy, np.where(dropped, 0.0, kp.confidence).astype(np.float32), kp.skeleton, kp.names)
    noisy.save(out)
    return noisy


def noisy_cameras(folder: Path, out: Path, rot_deg: float, trans_frac: float, scale: float, seed: int) -> Cameras:
    """Cameras with a random rotation (RMS angle ``rot_deg``) about each camera centre and a
    random shift of the centre (RMS ``trans_frac * scale``), independent per frame."""
    cams = Cameras.load(folder)
    rng = np.random.default_rng(seed)
    T = len(cams.w2c)
    omega = rng.normal(0.0, math.radians(rot_deg) / math.sqrt(3), (T, 3))
    shift = rng.normal(0.0, trans_frac * scale / math.sqrt(3), (T, 3))
    c2w = cams.c2w.copy()
    R = so3_exp(torch.from_numpy(omega)).numpy()
    c2w[:, :3, :3] = c2w[:, :3, :3] @ R
    c2w[:, :3, 3] += shift
    noisy = Cameras(cams.K, np.linalg.inv(c2w).astype(np.float32), cams.width, cams.height, "noisy")
    noisy.save(out)
    return noisy


def camera_scale(cams: Cameras, lift_folder: Path) -> float:
    """Median distance between the cameras and the lifted points (as recon's scene scale)."""
    from dynrec.artifacts import Lift

    lift = Lift.load(lift_folder)
    pts = np.concatenate([lift.bg_points, lift.fg_points])[::50]
    centres = cams.c2w[:, :3, 3]
    return float(np.median(np.linalg.norm(pts[:, None] - centres[None], axis=-1)))


def evaluate(runner: Runner, folders: dict[str, Path], names: tuple[str, ...]) -> dict[str, float | None]:
    inp = BenchInputs(runner, folders)
    models = Models(None)
    out: dict[str, float | None] = {}
    for name in names:
        r = compute_metric(name, inp, models)
        out[name] = r.value if r.computed else None
        if not r.computed:
            out[f"{name}_reason"] = r.reason  # type: ignore[assignment]
    return out


def run_recon(work: Path, scene: Path, out: Path, params: recon_stage.ReconParams,
              inputs: dict[str, Path]) -> tuple[dict[str, Any], float]:
    upstream = recon_stage.STAGE.upstream
    ctx = StageContext(work=work, out=out, inputs={k: inputs.get(k, work / k) for k in upstream}, gt=scene,
                       console=QUIET)
    out.mkdir(parents=True, exist_ok=True)
    start = time.process_time()
    info = recon_stage.run(ctx, params)
    return info, time.process_time() - start


def reanchor(work: Path, scene: Path, trained: Path, out: Path, params: recon_stage.ReconParams,
             inputs: dict[str, Path]) -> dict[str, Any]:
    """``out`` = the finished run ``trained`` with its keypoint anchors initialised from
    ``inputs["keypoints"]`` (exactly what training with them would give when no loss reads
    the keypoints: the anchors are built on the initial scene, as ``recon.run`` does)."""
    shutil.copytree(trained, out)
    shutil.rmtree(out / "keypoints")
    ctx = StageContext(work=work, out=out, inputs={k: inputs.get(k, work / k) for k in recon_stage.STAGE.upstream},
                       gt=scene, console=QUIET)
    data = recon_stage.load_data(ctx)
    torch.manual_seed(params.seed)
    trainer = recon_stage.Trainer(recon_stage.build_scene(data.lift, params), data, params, out / "unused.pt")
    trainer.scene = recon_stage.restore_scene(torch.load(trained / "model.pt", weights_only=True)["scene"], params)
    return recon_stage.write_keypoints(trainer, out / "keypoints")


def summarise(runs: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, dict[str, float | int]]:
    """mean, std (population, over seeds) and n of each metric."""
    out = {}
    for k in keys:
        vals = [r["metrics"][k] for r in runs if r["metrics"].get(k) is not None]
        if vals:
            out[k] = {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "n": len(vals)}
    return out


def fmt(stat: dict[str, float | int] | None, digits: int = 3) -> str:
    return "-" if not stat else f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1,2", help="scene and optimisation seeds")
    ap.add_argument("--rows", default=",".join(ROWS), help="recon.sirenpose values")
    ap.add_argument("--keypoints", default="gt,noisy", help="keypoint inputs: gt, noisy")
    ap.add_argument("--cameras", default="full", help="rows run on noisy cameras with refinement ('' = none)")
    ap.add_argument("--camera-fixed", action="store_true", help="also run those rows without refinement")
    ap.add_argument("--steps", type=int, default=270)
    ap.add_argument("--levels", type=int, default=1,
                    help="recon.levels (1: on this short schedule the level-2 switch costs more than it gives)")
    ap.add_argument("--long-side", type=int, default=80, help="frames.long_side of the work dirs")
    ap.add_argument("--bg-points", type=int, default=2000, help="lift.max_bg_points")
    ap.add_argument("--kp-sigma", type=float, default=1.0, help="keypoint noise, px at the work dir's size")
    ap.add_argument("--kp-drop", type=float, default=0.1)
    ap.add_argument("--cam-rot-deg", type=float, default=1.0)
    ap.add_argument("--cam-trans", type=float, default=0.02, help="fraction of the scene scale")
    ap.add_argument("--set", action="append", default=[], help="recon field=value for every run")
    ap.add_argument("--base", type=Path, default=None, help="folder for scenes / work dirs (default: temp)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    seeds = [int(s) for s in args.seeds.split(",") if s]
    rows = [r for r in args.rows.split(",") if r]
    kp_modes = [k for k in args.keypoints.split(",") if k]
    cam_rows = [r for r in args.cameras.split(",") if r]
    base = args.base or Path(tempfile.mkdtemp(prefix="bench-sirenpose-"))
    pre_sets = [f"frames.long_side={args.long_side}", f"lift.max_bg_points={args.bg_points}"]
    # the settings of the figures in bench/results/sirenpose.json (before recon had schedules)
    params0 = recon_stage.ReconParams(steps=args.steps, lr_scale=5.0, lr_final=1.0, batch_frames=2,
                                      gaussian_densify=True, levels=args.levels, checkpoint_every=10 ** 9)
    for item in args.set:
        key, value = item.removeprefix("recon.").split("=", 1)
        _apply(params0, {key: value}, "--set recon")

    runs: list[dict[str, Any]] = []
    started = time.time()
    for seed in seeds:
        scene, work, runner = prepare(base, seed, "fast", pre_sets)
        bench = work / ".bench"
        kp_folders = {"gt": work / "keypoints"}
        if "noisy" in kp_modes:
            kp_folders["noisy"] = bench / "kp-noisy"
            noisy_keypoints(work / "keypoints", kp_folders["noisy"], args.kp_sigma, args.kp_drop, seed)
        for kp_mode in kp_modes:
            for row in rows:
                params = replace(params0, sirenpose=row, seed=seed)
                out = bench / f"{kp_mode}-{row}" / "recon"
                inputs = {"keypoints": kp_folders[kp_mode]}
                shared = kp_mode != "gt" and "gt" in kp_modes and not params.keypoint_loss
                if shared:
                    start = time.process_time()
                    info = {"kp_input_error_px": reanchor(work, scene, bench / f"gt-{row}" / "recon", out, params,
                                                          inputs)["kp_input_error_px"], "final_losses": None}
                    cpu = time.process_time() - start
                else:
                    info, cpu = run_recon(work, scene, out, params, inputs)
                metrics = evaluate(runner, {"recon": out}, METRICS)
                runs.append({"seed": seed, "keypoints": kp_mode, "row": row, "cameras": "gt", "cpu_s": cpu,
                             "shared_training": "gt" if shared else None, "metrics": metrics,
                             "kp_input_error_px": info.get("kp_input_error_px"), "final_losses": info["final_losses"]})
                print(f"seed {seed} {kp_mode:5s} {row:5s} {cpu:6.1f}s "
                      + " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float)), flush=True)
        if cam_rows:
            cams_folder, lift_folder = bench / "cam-noisy" / "cameras", bench / "cam-noisy" / "lift"
            scale = camera_scale(Cameras.load(work / "cameras"), work / "lift")
            noisy_cameras(work / "cameras", cams_folder, args.cam_rot_deg, args.cam_trans, scale, seed)
            lift_folder.mkdir(parents=True, exist_ok=True)
            lift_inputs = {k: work / k for k in lift_stage.STAGE.upstream} | {"cameras": cams_folder}
            lctx = StageContext(work=work, out=lift_folder, inputs=lift_inputs, gt=scene, console=QUIET)
            lift_stage.run(lctx, runner.config.stages["lift"])
            before = evaluate(runner, {"cameras": cams_folder, "lift": lift_folder}, CAMERA_METRICS)
            for row in cam_rows:
                for refine in (False, True) if args.camera_fixed else (True,):
                    params = replace(params0, sirenpose=row, seed=seed, camera_refine=refine)
                    out = bench / f"cam-{row}-{'refine' if refine else 'fixed'}" / "recon"
                    info, cpu = run_recon(work, scene, out, params, {"cameras": cams_folder, "lift": lift_folder})
                    folders = {"recon": out, "cameras": cams_folder, "lift": lift_folder}
                    metrics = evaluate(runner, folders, METRICS + CAMERA_METRICS)
                    runs.append({"seed": seed, "keypoints": "gt", "row": row, "cameras": "noisy",
                                 "camera_refine": refine, "cpu_s": cpu, "metrics": metrics,
                                 "input_cameras": before, "final_losses": info["final_losses"]})
                    print(f"seed {seed} noisy-cam {row} refine={refine} {cpu:6.1f}s input ATE "
                          f"{before['ate']:.4g} -> " + " ".join(f"{k}={v:.4g}" for k, v in metrics.items()
                                                                  if isinstance(v, float)), flush=True)

    summary: dict[str, Any] = {}
    for kp_mode in kp_modes:
        for row in rows:
            sel = [r for r in runs if r["cameras"] == "gt" and r["keypoints"] == kp_mode and r["row"] == row]
            summary[f"{kp_mode}/{row}"] = summarise(sel, METRICS)
    for row in cam_rows:
        for refine in (False, True):
            sel = [r for r in runs if r["cameras"] == "noisy" and r["row"] == row and r["camera_refine"] == refine]
            if not sel:
                continue
            name = f"noisy-cameras/{row}/{'refined' if refine else 'fixed'}"
            summary[name] = summarise(sel, METRICS + CAMERA_METRICS)
            summary[name]["input"] = summarise([{"metrics": r["input_cameras"]} for r in sel], CAMERA_METRICS)
    result = {
        "benchmark": "sirenpose",
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "wall_s": time.time() - started,
        "cpu_s": sum(r["cpu_s"] for r in runs),
        "settings": {
            "preset": "fast", "seeds": seeds, "rows": rows, "keypoints": kp_modes, "camera_rows": cam_rows,
            "preprocess_sets": pre_sets, "kp_noise_px": args.kp_sigma, "kp_drop": args.kp_drop,
            "camera_noise": {"rot_deg_rms": args.cam_rot_deg, "trans_rms_of_scene_scale": args.cam_trans},
            "recon": {k: v for k, v in asdict(params0).items() if k not in ("seed", "sirenpose", "camera_refine")},
            "command": "python -m bench.bench_sirenpose " + " ".join(argv if argv is not None else sys.argv[1:]),
        },
        "summary": summary,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\nmean ± std over seeds {seeds} ({args.steps} steps, {args.out}):")
    print(f"{'row':34s} " + " ".join(f"{m:>17s}" for m in METRICS + CAMERA_METRICS))
    for name, stats in summary.items():
        print(f"{name:34s} " + " ".join(f"{fmt(stats.get(m)):>17s}" for m in METRICS + CAMERA_METRICS))
        if "input" in stats:
            print(f"{'  (input cameras)':34s} " + " ".join(f"{'':>17s}" for _ in METRICS)
                  + " ".join(f"{fmt(stats['input'].get(m), 4):>17s}" for m in CAMERA_METRICS))
    return result


if __name__ == "__main__":
    main()
