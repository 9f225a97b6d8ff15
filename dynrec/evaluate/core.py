"""``dynrec evaluate``: choose the metrics, compute them, write ``WORK/eval/`` atomically.

``WORK/eval/`` holds ``metrics.json``, ``plots/*.png``, ``side_by_side.mp4`` and a
``manifest.json`` (written last). It is built in ``WORK/.eval.tmp/`` and swapped into
place like a stage (:meth:`WorkDir.commit`), so a failed evaluate keeps the previous one.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from dynrec.artifacts.base import save_json
from dynrec.choices import parse_choices
from dynrec.datasets.scene import KEYPOINT_DEPTH_FILE
from dynrec.errors import DynrecError
from dynrec.evaluate.checks import checks
from dynrec.evaluate.compute import GT_NEEDS, HELDOUT_NEEDS, Models, compute_metric
from dynrec.evaluate.inputs import NO_GT, EvalInputs, Unavailable
from dynrec.evaluate.plots import write_plots
from dynrec.evaluate.protocols import deviations, get_protocol
from dynrec.evaluate.report import METRICS_FILE, EvalReport, to_json
from dynrec.evaluate.video import side_by_side
from dynrec.metrics import METRICS
from dynrec.pipeline.hashing import hash_json
from dynrec.pipeline.lock import acquire, release
from dynrec.pipeline.session import open_runner
from dynrec.weights import network_allowed

EVAL = "eval"
VIDEO_FILE = "side_by_side.mp4"

#: ``progress(description, done, total)``.
ProgressFn = Callable[[str, int, int], None]


def parse_metrics(spec: str | None) -> list[str] | None:
    """``"fvd,lpips,ate"`` -> names in the given order (duplicates dropped); ``"all"`` -> every
    registered metric; None -> None (the default set). Unknown names are an error listing
    the known ones."""
    return None if spec is None else parse_choices(spec, list(METRICS), "--metrics", "metric")


def unsupported(name: str, inp: EvalInputs) -> str | None:
    """Why this kind of work dir cannot have ``name`` at all (no ground truth, no held-out
    cameras, no prompt), or None. Missing progress (no reconstruction yet, missing weights)
    does not count: those metrics stay in the default set and show as not computed."""
    needs = set(METRICS[name].needs)
    if needs & GT_NEEDS and inp.runner.gt is None:
        return NO_GT
    if "text_prompt" in needs and not inp.prompt:
        return "no text prompt: pass --prompt TEXT"
    if "gt_keypoint_pairs" in needs and not (inp.runner.gt / "gt" / "keypoints").is_dir():
        return "the ground truth has no keypoint annotations"
    if "gt_keypoint_depth" in needs and not (inp.runner.gt / "gt" / KEYPOINT_DEPTH_FILE).is_file():
        return ("the ground-truth keypoints have no depth-lifted 3D positions (an imported dataset's "
                "keypoint_depth.npz; a synth scene's keypoints are joints inside the body)")
    if needs & HELDOUT_NEEDS and (inp.runner.gt / "scene.json").is_file():
        try:
            inp.heldout_names()
        except Unavailable as exc:
            return exc.reason
    return None


#: metrics that only mean something inside their benchmark's protocol: not in the default set
PROTOCOL_ONLY = {name: ("the Nvidia protocol's full-image held-out metric (regions no training view saw count "
                        "too): ask with --protocol nvidia or --metrics " + name)
                 for name in ("nv_psnr", "nv_ssim", "nv_lpips")}


def _no_progress(description: str, done: int, total: int) -> None:
    return None


def evaluate(work: Path, metrics: str | None = None, weights_dir: Path | None = None,
             prompt: str | None = None, video: bool = True, console: Console | None = None,
             progress: ProgressFn = _no_progress, protocol: str | None = None, offline: bool = False
             ) -> EvalReport:
    """Evaluate the work dir ``work`` and write ``work/eval/``.

    Args:
        work: a work dir made by ``dynrec preprocess``.
        metrics: comma-separated metric names, ``"all"``, or None for every metric this
            work dir supports (see :func:`unsupported`).
        weights_dir: folder of metric network weights (then ``$DYNREC_WEIGHTS``).
        prompt: text for ``clip_t``.
        video: write the side-by-side MP4.
        protocol: a benchmark protocol (:mod:`dynrec.evaluate.protocols`) choosing the metrics;
            not together with ``metrics``.
        offline: never download metric weights (also when ``DYNREC_OFFLINE`` /
            ``HF_HUB_OFFLINE`` is set); otherwise missing ones are fetched on first use.

    Raises:
        DynrecError: unknown metric, no work dir / no frames, or artifacts that disagree
            (frame counts, sizes); ``eval/`` is then left as it was.
    """
    if protocol is not None and metrics is not None:
        raise DynrecError("--protocol chooses the metrics itself; give --protocol or --metrics, not both")
    chosen = get_protocol(protocol) if protocol is not None else None
    requested = list(chosen.metrics) if chosen else parse_metrics(metrics)
    runner = open_runner(work, create=False, save=False, console=console, writable=True)
    inp = EvalInputs(runner, prompt)
    inp.frames()  # nothing can be evaluated without frames: fail early with the reason
    skipped: dict[str, str] = {}
    if requested is None:
        requested = []
        for name in METRICS:
            reason = PROTOCOL_ONLY.get(name) or unsupported(name, inp)
            if reason:
                skipped[name] = reason
            else:
                requested.append(name)
    models = Models(weights_dir, runner.device, fetch=not offline and network_allowed(), console=console)
    results = []
    for i, name in enumerate(requested):
        progress(name, i, len(requested))
        results.append(compute_metric(name, inp, models))
    progress("report", len(requested), len(requested))
    report = EvalReport(work=runner.work.root, eval_dir=runner.work.stage_dir(EVAL), results=results,
                        requested=requested, explicit=metrics is not None or chosen is not None, skipped=skipped,
                        stages=dict(sorted(inp.used.items())), gt=runner.gt, source_index=inp.source_index,
                        checks=checks(runner.work, inp.T), protocol=chosen,
                        deviations=deviations(chosen, inp.scene_info(), inp.size) if chosen else [],
                        dataset={k: inp.scene_info().get(k) for k in ("dataset", "scene", "split", "resolution")
                                 if inp.scene_info().get(k) is not None})
    key = hash_json({"metrics": requested, "stages": report.stages, "prompt": prompt, "protocol": protocol})[:16]
    lock = acquire(runner.work.root, "evaluate")  # eval/ is written by one process at a time
    tmp = runner.work.prepare_tmp(EVAL, key)
    try:
        report.plots = write_plots(results, inp.source_index, tmp / "plots")
        if video:
            report.video = _write_video(inp, tmp / VIDEO_FILE)
        created = datetime.now(UTC).isoformat(timespec="seconds")
        save_json(tmp / METRICS_FILE, to_json(report, created))
        runner.work.commit(EVAL, {"stage": EVAL, "key": key, "stages": report.stages, "time": time.time()})
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        release(lock)
    return report


def _write_video(inp: EvalInputs, path: Path) -> str | None:
    """The side-by-side video when there are renders; its file name, or None."""
    try:
        render, depth = inp.renders()
    except Unavailable:
        return None
    try:
        view = inp.heldout()[0]
        heldout = (view.name, view.render)
    except Unavailable:
        heldout = None
    side_by_side(path, inp.images(), render, depth, heldout, inp.frames().fps)
    return path.name
