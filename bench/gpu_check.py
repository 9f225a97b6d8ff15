"""GPU check: one command that tells whether reconstruction works on this CUDA machine, and how fast.

Run ``make gpu-check`` (or ``python3 bench/gpu_check.py [--wheel FILE ...]``) from the
repository root on a machine with one CUDA GPU; no internet is needed when the missing
packages come as wheel files (``--wheel``, any number: gsplat 1.5.3's wheel and, where the
machine lacks them, dynrec's own needs such as ``av`` and ``tomli-w``). In order, each
phase timed and written to ``bench/results/gpu.json`` as soon as it ends (a run cut short
keeps what it measured):

1. ``install``: ``pip install --no-index --no-deps --target`` of the wheels into a temporary
   folder put first on the import path (of this process and the commands it runs);
2. ``prerequisites``: the modules dynrec and gsplat need, named when missing;
3. ``kernels``: gsplat's CUDA kernels loaded, JIT-compiled with nvcc on first use for this
   GPU's architecture only (``TORCH_CUDA_ARCH_LIST``), which takes minutes;
4. ``tests``: the rasterizer and density-control tests, the CUDA ones among them (gsplat
   parity with the reference for one and C cameras, screen-space statistics against gsplat's
   ``DefaultStrategy``, the Gaussians' layout against its ops);
5. ``raster``: forward + backward time of ``rasterize`` at 854x480 with 100k Gaussians,
   1 and 4 cameras in one call (4 with per-camera means, as in training);
6. ``recon``: ``dynrec synth --preset small`` -> ``preprocess --gt`` -> ``reconstruct --device
   cuda`` (the GPU schedule) -> ``evaluate``: wall times, the step's time per part
   (deform / rasterize / losses / backward / optimiser), training PSNR, held-out mPSNR,
   EPE, peak CUDA memory.

Without CUDA it writes nothing and exits with status 2 and a message saying so.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results" / "gpu.json"
#: Modules a GPU reconstruction imports (module name -> pip name), beyond torch.
NEEDS = {"gsplat": "gsplat==1.5.3", "av": "av", "tomli_w": "tomli-w", "typer": "typer", "rich": "rich",
         "numpy": "numpy", "scipy": "scipy", "cv2": "opencv-python-headless", "PIL": "pillow",
         "matplotlib": "matplotlib", "jaxtyping": "jaxtyping", "ninja": "ninja", "packaging": "packaging"}
EVAL_METRICS = "psnr,mpsnr,epe_3d,pck_t"
console = Console(stderr=True)


class Report:
    """The JSON result, rewritten after every phase."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=2, default=str) + "\n")


def run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """Run ``cmd`` in the repository root; (wall seconds, return code, last 4000 characters of output)."""
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env, check=False)
        code, out = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        code = 124
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        out += f"\n[timed out after {timeout:.0f} s]"
    return time.perf_counter() - start, code, out[-4000:]


SITE = Path(tempfile.gettempdir()) / "dynrec-gpu-site"


def install(wheels: list[Path]) -> dict[str, Any]:
    """``pip install --no-index --no-deps --target SITE`` the wheel files, and put SITE first on
    this process's and its children's import path (the interpreter's own environment may be
    read-only, as on a shared GPU image)."""
    missing = [str(w) for w in wheels if not w.is_file()]
    if missing:
        return {"ok": False, "error": f"wheel files not found: {', '.join(missing)}"}
    wall, code, out = run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--no-compile",
                           "--quiet", "--upgrade", "--target", str(SITE), *map(str, wheels)], timeout=300)
    if code == 0:
        sys.path.insert(0, str(SITE))
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(SITE), str(ROOT), os.environ.get("PYTHONPATH")) if p)
    importlib.invalidate_caches()
    return {"ok": code == 0, "wheels": [w.name for w in wheels], "site": str(SITE), "wall_s": round(wall, 1),
            **({} if code == 0 else {"output": out})}


def missing_modules() -> list[str]:
    """pip names of the needed modules this interpreter cannot import."""
    return [pip for module, pip in NEEDS.items() if importlib.util.find_spec(module) is None]


def load_kernels() -> dict[str, Any]:
    """Load (compile on first use) gsplat's CUDA kernels for this GPU's architecture."""
    major, minor = torch.cuda.get_device_capability()
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", f"{major}.{minor}")
    os.environ.setdefault("MAX_JOBS", str(os.cpu_count() or 4))
    from dynrec.errors import DynrecError
    from dynrec.render.gsplat_backend import check_gsplat

    start = time.perf_counter()
    try:
        check_gsplat()
    except DynrecError as exc:
        return {"ok": False, "error": str(exc), "wall_s": round(time.perf_counter() - start, 1)}
    return {"ok": True, "arch": os.environ["TORCH_CUDA_ARCH_LIST"], "wall_s": round(time.perf_counter() - start, 1)}


def run_tests(timeout: float) -> dict[str, Any]:
    """The CUDA-marked tests (parity, density control)."""
    wall, code, out = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_render.py",
                           "tests/test_density.py", "tests/test_model.py::test_gaussians_follow_gsplat_default_strategy_ops"],
                          timeout)
    summary = [line for line in out.splitlines() if " passed" in line or " failed" in line or "error" in line]
    return {"ok": code == 0, "wall_s": round(wall, 1), "summary": summary[-1] if summary else "",
            **({} if code == 0 else {"output": out})}


def time_raster(width: int = 854, height: int = 480, n: int = 100_000, rounds: int = 20) -> dict[str, Any]:
    """Milliseconds per forward + backward of ``rasterize`` with 1 and 4 cameras in one call."""
    from bench.bench_raster import random_scene
    from dynrec.render import rasterize

    params, viewmat, K = random_scene(n, width, height, device="cuda")
    means, quats, scales, opacities, colors = params
    out: dict[str, Any] = {"width": width, "height": height, "gaussians": n}
    for cams in (1, 4):
        if cams == 1:
            args = (means, quats, scales, opacities, colors, viewmat, K)
        else:  # per-camera means and rotations, as a foreground deformed to each frame
            shift = torch.linspace(-0.05, 0.05, cams, device="cuda")[:, None, None]
            args = (means[None] + shift, quats.expand(cams, n, 4), scales, opacities, colors,
                    viewmat.expand(cams, 4, 4), K.expand(cams, 3, 3))

        def step(args: tuple = args) -> None:
            r = rasterize(*args, width, height)
            r.info["means2d"].retain_grad()
            (r.rgb.sum() + r.depth.mean() + r.alpha.sum()).backward()

        for _ in range(3):
            step()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(rounds):
            step()
        torch.cuda.synchronize()
        ms = (time.perf_counter() - start) / rounds * 1000
        out[f"fwd_bwd_ms_batch{cams}"] = round(ms, 3)
        out[f"images_per_s_batch{cams}"] = round(cams / ms * 1000, 1)
    return out


def metric(report: dict[str, Any], name: str) -> float | None:
    for row in report.get("metrics", []):
        if row["metric"] == name and row["computed"] and isinstance(row["value"], float):
            return row["value"]
    return None


def reconstruct(sets: list[str], timeout: float) -> dict[str, Any]:
    """synth small -> preprocess --gt -> reconstruct --device cuda -> evaluate, in a temporary folder."""
    dynrec = [sys.executable, "-m", "dynrec"]
    out: dict[str, Any] = {"sets": sets}
    with tempfile.TemporaryDirectory(prefix="dynrec-gpu-check-") as tmp:
        scene, work = Path(tmp) / "scene", Path(tmp) / "work"
        steps = {
            "synth": [*dynrec, "synth", str(scene), "--preset", "small", "--seed", "0"],
            "preprocess": [*dynrec, "preprocess", str(scene / "video.mp4"), "-o", str(work), "--gt", str(scene)],
            "reconstruct": [*dynrec, "reconstruct", str(work), "--device", "cuda",
                            *[a for s in sets for a in ("--set", s)]],
            "evaluate": [*dynrec, "evaluate", str(work), "--metrics", EVAL_METRICS, "--no-video"],
        }
        deadline = time.perf_counter() + timeout
        for name, cmd in steps.items():
            wall, code, log = run(cmd, max(deadline - time.perf_counter(), 10))
            out[f"{name}_s"] = round(wall, 1)
            if code not in (0, 2):
                out.update(ok=False, failed=name, command=" ".join(cmd), output=log)
                return out
        manifest = json.loads((work / "recon" / "manifest.json").read_text())
        info = manifest["info"]
        report = json.loads((work / "eval" / "metrics.json").read_text())
        out.update(
            ok=True, schedule=info["params"].get("schedule"), steps=info["params"]["steps"],
            batch_frames=info["params"]["batch_frames"], gaussians=info["gaussians"],
            step_time_ms=info.get("step_time_ms"), cuda_peak_mb=manifest.get("memory", {}).get("cuda_peak_mb"),
            peak_rss_mb=manifest.get("memory", {}).get("peak_rss_mb"),
            train_psnr=info.get("train_psnr"), eval_train_psnr=metric(report, "psnr"),
            heldout_mpsnr=metric(report, "mpsnr"), epe_3d=metric(report, "epe_3d"), pck_t=metric(report, "pck_t"),
            gsplat=info.get("gsplat"),
        )
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the phases; 0 when all passed, 1 when one failed, 2 without CUDA."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, action="append", default=[],
                        help="a wheel file to install first (gsplat, av, tomli-w...); repeat for several")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON file to write")
    parser.add_argument("--set", dest="sets", action="append", default=[],
                        help="extra recon setting for the reconstruction (e.g. recon.steps=1000)")
    parser.add_argument("--skip-tests", action="store_true", help="skip the CUDA tests")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        console.print(f"[red]gpu-check needs a CUDA GPU, and torch {torch.__version__} sees none[/] "
                      "(CPU-only build or no driver). Nothing was run; on a CPU use `make bench`.")
        return 2
    started = time.perf_counter()
    report = Report(args.output)
    props = torch.cuda.get_device_properties(0)
    report.set("machine", {"gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                           "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
                           "cores": os.cpu_count()})
    ok = True
    if args.wheel:
        console.print(f"gpu-check: installing {len(args.wheel)} wheel(s)")
        report.set("install", install(args.wheel))
        ok &= report.data["install"]["ok"]
    missing = missing_modules()
    report.set("prerequisites", {"missing": missing})
    if missing:
        console.print(f"[red]gpu-check: missing {', '.join(missing)}[/]: pass their wheel files with --wheel "
                      "(pip download --no-deps --only-binary=:all: NAME on a machine with internet)")
        return 1
    console.print("gpu-check: loading gsplat's CUDA kernels (compiled with nvcc on first use: minutes)")
    report.set("kernels", load_kernels())
    if not report.data["kernels"]["ok"]:
        console.print(f"[red]gpu-check: {report.data['kernels']['error']}[/]")
        return 1
    if not args.skip_tests:
        console.print("gpu-check: CUDA tests")
        report.set("tests", run_tests(timeout=240))
        ok &= report.data["tests"]["ok"]
    console.print("gpu-check: rasterizer fwd+bwd at 480p, 100k Gaussians")
    try:
        report.set("raster", time_raster())
    except Exception as exc:  # noqa: BLE001 - a crash here must not hide the reconstruction's figures
        report.set("raster", {"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        ok = False
    torch.cuda.empty_cache()
    console.print("gpu-check: synth small -> reconstruct --device cuda (GPU schedule)")
    report.set("recon", reconstruct(args.sets, timeout=max(600 - (time.perf_counter() - started) - 20, 60)))
    ok &= bool(report.data["recon"].get("ok"))
    report.set("wall_s", round(time.perf_counter() - started, 1))
    recon = report.data["recon"]
    if recon.get("ok"):
        step = recon.get("step_time_ms") or {}
        non_raster = (step.get("deform", 0) + step.get("losses", 0) + step.get("optimiser", 0)) / max(step.get("step", 1), 1e-9)
        report.set("summary", {
            "reconstruct_s": recon["reconstruct_s"], "steps": recon["steps"], "step_ms": step.get("step"),
            "deform_losses_optimiser_share": round(non_raster, 3), "train_psnr": recon["train_psnr"],
            "heldout_mpsnr": recon["heldout_mpsnr"], "epe_3d": recon["epe_3d"], "cuda_peak_mb": recon["cuda_peak_mb"],
            "fwd_bwd_ms_480p_100k_batch4": report.data.get("raster", {}).get("fwd_bwd_ms_batch4"),
        })
    console.print_json(json.dumps(report.data.get("summary", {k: v for k, v in report.data.items() if k != "machine"}),
                                  default=str))
    console.print(f"gpu-check: {'[green]passed' if ok else '[red]failed'}[/] in {time.perf_counter() - started:.0f} s; "
                  f"{args.output}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
