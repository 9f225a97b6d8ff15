"""Dataset importers: ``dynrec import FORMAT SRC -o WORK``.

Each format module has ``convert(src, resolution=, scene=, ...) -> ImportedScene`` that reads
the dataset with its reference loader's conventions and returns it in the project's
(docs/datasets.md states every conversion and the loader it follows). :func:`import_dataset`
writes it into ``WORK/dataset/`` in the synth layout (a ``gt`` scene), records it in
``WORK/dataset/manifest.json`` and points the work dir's config at it: the frames come from
``WORK/dataset/gt/frames``, and the stages the dataset has ground truth for use their ``gt``
backend.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from dynrec.datasets import davis, dycheck, nvidia, sintel, tum
from dynrec.datasets.scene import ImportedScene, write_scene
from dynrec.errors import DynrecError
from dynrec.pipeline.hashing import hash_json
from dynrec.pipeline.registry import GT_STAGES, PREPROCESS
from dynrec.pipeline.runner import Runner
from dynrec.pipeline.workdir import WorkDir

DATASET = "dataset"

Converter = Callable[..., ImportedScene]
FORMATS: dict[str, Converter] = {
    "dycheck": dycheck.convert,
    "davis": davis.convert,
    "sintel": sintel.convert,
    "tum": tum.convert,
    "bonn": partial(tum.convert, bonn=True),
    "nvidia": nvidia.convert,
}


def parse_frames(spec: str, count: int) -> np.ndarray:
    """``START:STOP:STEP`` (Python slice syntax, each part optional) -> frame indices of ``count``."""
    parts = spec.split(":")
    try:
        if len(parts) > 3:
            raise ValueError(spec)
        values = [int(p) if p.strip() else None for p in parts] + [None] * (3 - len(parts))
    except ValueError:
        raise DynrecError(f"--frames expects START:STOP:STEP (e.g. 30:140 or ::3), got {spec!r}") from None
    if values[2] is not None and values[2] <= 0:
        raise DynrecError(f"--frames: the step must be positive, got {values[2]}")
    return np.arange(count)[slice(*values)]


def format_options(fmt: str) -> list[str]:
    """The ``--option`` names a format's converter takes (``camera`` for TUM, ``train`` for Nvidia)."""
    params = inspect.signature(FORMATS[fmt]).parameters
    return [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY and n not in ("resolution", "scene", "bonn")]


def parse_options(items: list[str]) -> dict[str, str]:
    """``["train=4", "test=3,5,6"]`` -> ``{"train": "4", "test": "3,5,6"}``."""
    out = {}
    for item in items:
        if "=" not in item:
            raise DynrecError(f"--option expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def convert(fmt: str, src: Path, resolution: str | None = None, scene: str | None = None,
            frames: str | None = None, options: dict[str, str] | None = None) -> ImportedScene:
    """Read ``src`` as ``fmt`` with the format's ``options`` (and keep the frames ``frames``, a
    ``START:STOP:STEP`` slice of the dataset's frames); unknown formats, options and missing
    folders are errors that say so."""
    if fmt not in FORMATS:
        raise DynrecError(f"unknown dataset format {fmt!r}; known: {', '.join(FORMATS)}")
    if not src.is_dir():
        raise DynrecError(f"{fmt} dataset not found: {src} is not a folder")
    options = dict(options or {})
    known = format_options(fmt)
    unknown = [k for k in options if k not in known]
    if unknown:
        raise DynrecError(f"{fmt}: unknown option {', '.join(map(repr, unknown))}; known: {', '.join(known) or 'none'}")
    imported = FORMATS[fmt](src, resolution=resolution, scene=scene, **options)
    if frames is not None:
        imported = imported.take(parse_frames(frames, imported.T))
        imported.info["frames_selected"] = frames
    return imported


def config_sets(scene: ImportedScene, folder: Path, offline: bool) -> list[str]:
    """``--set`` items that point a work dir at the imported scene in ``folder``: source frames,
    ground truth, ``gt`` backends where the dataset has them (``offline`` ones elsewhere when
    asked), the dataset's frame rate, and every frame kept (no dark / blurred dropping)."""
    gt = set(scene.gt_stages())
    sets = [f"input.source={(folder / 'gt' / 'frames').resolve()}", f"input.gt={folder.resolve()}",
            f"frames.fps={scene.frames.fps}", "frames.dark=0", "frames.blurred=0"]
    for stage in GT_STAGES:
        if stage in gt:
            sets.append(f"{stage}.backend=gt")
        elif offline:
            sets.append(f"{stage}.backend=offline")
    return sets


def write_dataset(work: WorkDir, fmt: str, src: Path, scene: ImportedScene) -> dict[str, Any]:
    """Write ``scene`` to ``WORK/dataset/`` atomically (built in ``WORK/.dataset.tmp``); its
    manifest records the dataset, scene, split, source and what is missing."""
    key = hash_json({"format": fmt, "source": str(src.resolve()), "scene": scene.scene, "info": scene.info})[:16]
    tmp = work.prepare_tmp(DATASET, key)
    info = write_scene(scene, tmp)
    manifest = {"stage": DATASET, "key": key, "format": fmt, "dataset": scene.dataset, "scene": scene.scene,
                "split": scene.split, "heldout_split": info.get("heldout_split"), "source": str(src.resolve()),
                "modalities": info["modalities"], "gt_stages": info["gt_stages"], "missing": scene.missing,
                "frames": scene.T, "frames_selected": scene.info.get("frames_selected"), "time": time.time()}
    work.commit(DATASET, manifest)
    return manifest


def ready_stages(runner: Runner, targets: list[str]) -> list[str]:
    """The ``targets`` that can run with no learned or estimated input: those whose backend is
    ``gt`` (or that have none, like ``frames``) and whose upstream stages are all such."""
    ok: list[str] = []
    for name in runner.order:
        if name not in targets:
            continue
        backend = getattr(runner.config.stages[name], "backend", None)
        if backend in (None, "gt") and all(u in ok for u in runner.specs[name].upstream):
            ok.append(name)
    return ok


def import_dataset(fmt: str, src: Path, work: Path, *, resolution: str | None = None, scene: str | None = None,
                   frames: str | None = None, options: dict[str, str] | None = None, offline: bool = False, preprocess: bool = True, preset: str | None = None,
                   sets: list[str] | None = None, console: Console | None = None) -> tuple[Runner, dict[str, Any]]:
    """Convert, write ``WORK/dataset/``, configure ``WORK`` and run the preprocessing stages
    (all of them with ``preprocess``, else only the ground-truth ones that need nothing else).

    Returns the runner and the dataset manifest. A failed conversion leaves ``WORK`` as it was.
    """
    from dynrec.pipeline.session import commit_config, open_runner

    imported = convert(fmt, src, resolution, scene, frames, options)
    workdir = WorkDir.open(work, create=True)
    manifest = write_dataset(workdir, fmt, src, imported)
    folder = workdir.stage_dir(DATASET)
    runner = open_runner(work, create=True, preset=preset, console=console,
                         sets=config_sets(imported, folder, offline) + list(sets or []))
    targets = PREPROCESS if preprocess else ready_stages(runner, PREPROCESS)
    runner.run(targets)
    commit_config(runner)
    return runner, manifest
