"""Three toy stages a -> b -> c for runner tests. ``CALLS`` counts runs; ``HOOKS`` lets a test
make a stage raise or hang; files written are tiny npz artifacts that downstream stages load."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dynrec.artifacts.base import Field, load_npz, save_npz
from dynrec.stages.base import StageContext, StageSpec

CALLS: dict[str, int] = {}
HOOKS: dict[str, str] = {}
SPEC = {"value": Field(("N",))}


@dataclass
class AParams:
    scale: float = 1.0
    n: int = 100


@dataclass
class BParams:
    offset: float = 0.0


@dataclass
class CParams:
    power: int = 1


def _hook(name: str, ctx: StageContext) -> None:
    CALLS[name] = CALLS.get(name, 0) + 1
    hook = HOOKS.get(name) or os.environ.get(f"TOY_HOOK_{name.upper()}")
    if hook == "raise":
        raise RuntimeError(f"boom in {name}")
    if hook == "progress":  # two phases, the second with ten steps
        ctx.progress("setting up", 0, 0)
        for done in range(11):
            ctx.progress("training", done, 10)
    if hook == "hang":
        (ctx.out / "partial.npz").write_bytes(b"half")
        Path(os.environ["TOY_STARTED"]).write_text("started")
        time.sleep(60)


def run_a(ctx: StageContext, p: AParams) -> dict:
    _hook("a", ctx)
    save_npz(ctx.out / "a.npz", {"value": np.arange(p.n, dtype=np.float32) * p.scale}, SPEC)
    return {}


def run_b(ctx: StageContext, p: BParams) -> dict:
    arrays, _ = load_npz(ctx.inputs["a"] / "a.npz", SPEC)
    _hook("b", ctx)
    save_npz(ctx.out / "b.npz", {"value": arrays["value"] + p.offset}, SPEC)
    return {}


def run_c(ctx: StageContext, p: CParams) -> dict:
    arrays, _ = load_npz(ctx.inputs["b"] / "b.npz", SPEC)
    _hook("c", ctx)
    save_npz(ctx.out / "c.npz", {"value": arrays["value"] ** p.power}, SPEC)
    return {}


SPECS = [
    StageSpec("a", 1, (), AParams, run_a),
    StageSpec("b", 1, ("a",), BParams, run_b),
    StageSpec("c", 1, ("b",), CParams, run_c),
]
