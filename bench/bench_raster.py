"""Rasterizer speed: CPU reference fwd+bwd per second, and gsplat speed + parity on CUDA.

Run ``python -m bench.bench_raster`` or ``python bench/bench_raster.py`` from the repository
root. Prints nothing; writes ``bench/results/raster.json`` with the machine (cores, torch
version and threads) and, per scene, forward and forward+backward iterations per second
(best and median over rounds). CPU figures are taken with torch's default thread count and
with one thread: on a shared machine, OpenMP threads fighting other processes can make the
default much slower than one thread.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynrec.render import rasterize

RESULTS = Path(__file__).resolve().parent / "results" / "raster.json"
SCENES = [(64, 64, 2000), (160, 120, 10000)]
TARGET_64x64_2K = 5.0


def random_scene(
    n: int, width: int, height: int, seed: int = 0, device: str = "cpu"
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """``n`` Gaussians uniformly in the view frustum at z in [2, 6]; returns (params, w2c, K).

    params = [means [n, 3], quats [n, 4], scales [n, 3], opacities [n], colors [n, 3]],
    float32, with ``requires_grad``. Scales are log-uniform in [0.005, 0.03] * z.
    """
    g = torch.Generator().manual_seed(seed)
    f = 0.9 * width
    z = torch.rand(n, generator=g) * 4 + 2
    x = (torch.rand(n, generator=g) - 0.5) * width / f * z * 1.1
    y = (torch.rand(n, generator=g) - 0.5) * height / f * z * 1.1
    means = torch.stack([x, y, z], dim=-1)
    quats = torch.randn(n, 4, generator=g)
    scales = torch.exp(torch.rand(n, 3, generator=g) * math.log(6.0) + math.log(0.005)) * z[:, None]
    opacities = torch.rand(n, generator=g) * 0.9 + 0.05
    colors = torch.rand(n, 3, generator=g)
    K = torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])
    params = [p.to(device).requires_grad_(True) for p in (means, quats, scales, opacities, colors)]
    return params, torch.eye(4, device=device), K.to(device)


def _rates(
    step: Callable[[], None], rounds: int, per_round: int, sync: Callable[[], None]
) -> dict[str, float]:
    """Iterations per second of ``step``: best and median over ``rounds`` (after one warm-up)."""
    step()
    sync()
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(per_round):
            step()
        sync()
        rates.append(per_round / (time.perf_counter() - start))
    return {"best": max(rates), "median": statistics.median(rates)}


def time_scene(
    width: int, height: int, n: int, device: str, rounds: int, per_round: int
) -> dict[str, Any]:
    """Forward and forward+backward rates of :func:`dynrec.render.rasterize` on one scene."""
    params, viewmat, K = random_scene(n, width, height, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def forward() -> None:
        with torch.no_grad():
            rasterize(*params, viewmat, K, width, height)

    def forward_backward() -> None:
        out = rasterize(*params, viewmat, K, width, height)
        (out.rgb.sum() + out.depth.sum() + out.alpha.sum()).backward()

    probe = rasterize(*params, viewmat, K, width, height)
    return {
        "width": width,
        "height": height,
        "gaussians": n,
        "intersections": int(probe.info["flatten_ids"].numel()),
        "mean_alpha": float(probe.alpha.detach().mean()),
        "fwd_per_s": _rates(forward, rounds, per_round, sync),
        "fwd_bwd_per_s": _rates(forward_backward, rounds, per_round, sync),
    }


def cpu_figures(rounds: int = 3) -> list[dict[str, Any]]:
    """CPU reference timings with the default thread count and with one thread."""
    default_threads = torch.get_num_threads()
    figures = []
    for threads in sorted({default_threads, 1}, reverse=True):
        torch.set_num_threads(threads)
        try:
            for width, height, n in SCENES:
                per_round = 5 if n <= 2000 else 2
                row = time_scene(width, height, n, "cpu", rounds, per_round)
                figures.append({"threads": threads, **row})
        finally:
            torch.set_num_threads(default_threads)
    return figures


def cuda_figures(rounds: int = 5) -> dict[str, Any]:
    """gsplat timings and parity with the CPU reference, on the same scenes."""
    timings = [time_scene(w, h, n, "cuda", rounds, 20) for w, h, n in SCENES]
    parity = []
    for width, height, n in SCENES:
        params, viewmat, K = random_scene(n, width, height, seed=1)
        bg = torch.tensor([0.1, 0.2, 0.3])
        with torch.no_grad():
            ref = rasterize(*params, viewmat, K, width, height, background=bg)
            gpu = rasterize(
                *[p.cuda() for p in params],
                viewmat.cuda(),
                K.cuda(),
                width,
                height,
                background=bg.cuda(),
            )
        solid = ref.alpha[..., 0] > 0.5
        depth_rel = ((gpu.depth.cpu() - ref.depth)[..., 0][solid] / ref.depth[..., 0][solid]).abs()
        parity.append(
            {
                "width": width,
                "height": height,
                "gaussians": n,
                "max_abs_rgb": float((gpu.rgb.cpu() - ref.rgb).abs().max()),
                "max_abs_alpha": float((gpu.alpha.cpu() - ref.alpha).abs().max()),
                "max_rel_depth_where_alpha_gt_0.5": float(depth_rel.max())
                if depth_rel.numel()
                else 0.0,
            }
        )
    return {
        "device": torch.cuda.get_device_name(),
        "timings": timings,
        "parity_vs_cpu_reference": parity,
    }


def main() -> None:
    """Measure and write ``bench/results/raster.json``."""
    result: dict[str, Any] = {
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "target_fwd_bwd_per_s_64x64_2k": TARGET_64x64_2K,
        "cpu": cpu_figures(),
        "cuda": cuda_figures() if torch.cuda.is_available() else None,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
