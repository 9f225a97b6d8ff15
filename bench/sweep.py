"""One benchmark over the scene families: parse the common options, run one scene per family
and seed (one thread for torch and OpenCV), write the JSON after every scene."""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.bench_families import RIGS

#: run_scene(root, family, rig, seed) -> one row of figures
RunScene = Callable[[Path, str, str, int], dict[str, Any]]


def sweep(name: str, description: str, argv: list[str] | None, output: Path, seeds: tuple[int, ...],
          run_scene: RunScene, summarise: Callable[[list[dict[str, Any]]], dict[str, Any]],
          info: dict[str, Any]) -> None:
    """``python -m bench NAME``: ``--families``, ``--seeds``, ``--rig`` (one rig for every family;
    default ``bench_families.RIGS``) and ``--output``; ``info`` goes into the JSON as it is."""
    import cv2
    import torch

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--families", default=",".join(RIGS))
    parser.add_argument("--seeds", default=",".join(map(str, seeds)))
    parser.add_argument("--rig", default=None, help="one camera rig for every family (default: bench_families.RIGS)")
    parser.add_argument("--output", type=Path, default=output)
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    chosen = [int(s) for s in args.seeds.split(",")]
    rows: list[dict[str, Any]] = []
    result: dict[str, Any] = {
        "benchmark": name,
        "machine": {"cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "opencv": cv2.__version__, "python": platform.python_version()},
        "seeds": chosen, **info,
    }
    with tempfile.TemporaryDirectory(prefix=f"dynrec-{name}-") as tmp:
        for family in args.families.split(","):
            for seed in chosen:
                rows.append(run_scene(Path(tmp), family, args.rig or RIGS[family], seed))
                result.update(runs=rows, **summarise(rows))
                args.output.parent.mkdir(parents=True, exist_ok=True)
                args.output.write_text(json.dumps(result, indent=2) + "\n")
