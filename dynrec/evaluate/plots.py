"""Per-frame error plots (PNG, matplotlib's Agg canvas; no pyplot global state).

* ``trajectory.png``: ATE per frame and RPE (translation, rotation) per frame pair, as in
  SirenPose Fig. 4;
* ``psnr.png``: PSNR per frame at the training cameras and masked PSNR per held-out camera;
* ``tracks.png``: 3D end-point error and PCK-T per frame.

The x axis is the frame number in the input video (``source_index``); a pair (t, t+1) is
drawn at t. Infinite values (identical images) are not drawn and said in the legend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from dynrec.evaluate.compute import GT_CAMERAS_NOTE, MetricResult
from dynrec.evaluate.report import format_value


def _draw(ax: Axes, x: np.ndarray, values: np.ndarray, label: str, **style) -> None:
    v = np.asarray(values, dtype=np.float64)
    x = x[: len(v)]
    if np.isposinf(v).any():
        label += f" ({int(np.isposinf(v).sum())} frame(s) = inf, not drawn)"
    ax.plot(x, np.where(np.isfinite(v), v, np.nan), marker=".", label=label, **style)
    if len(x):
        ax.set_xlim(x[0] - 0.5, x[-1] + 0.5)


def _figure(rows: int) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(8, 2.6 * rows), layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    return fig, list(axes)


def _ylabel(r: MetricResult) -> str:
    return f"{r.metric} [{r.info.unit}]" if r.info.unit else r.metric


def trajectory_plot(results: dict[str, MetricResult], x: np.ndarray, path: Path) -> bool:
    """ATE / RPE-trans / RPE-rot per frame; False (nothing written) when none was computed or
    the cameras are the ground truth (the errors are then float round-off: nothing to see)."""
    rows = [results[m] for m in ("ate", "rpe_trans", "rpe_rot")
            if m in results and results[m].computed and GT_CAMERAS_NOTE not in results[m].note]
    if not rows:
        return False
    fig, axes = _figure(len(rows))
    for ax, r in zip(axes, rows):
        _draw(ax, x, r.per_frame["train"], f"{r.metric} (RMSE {format_value(r.value)})")
        ax.set_ylim(bottom=0)
        ax.set_ylabel(_ylabel(r))
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize="small")
    axes[0].set_title("camera trajectory errors after Sim(3) alignment")
    axes[-1].set_xlabel("frame (pairs at their first frame)")
    fig.savefig(path, dpi=110)
    return True


def psnr_plot(results: dict[str, MetricResult], x: np.ndarray, path: Path) -> bool:
    """Training-view PSNR and per-camera held-out masked PSNR per frame."""
    series = []
    if "psnr" in results and results["psnr"].computed:
        series.append(("training cameras (psnr)", results["psnr"].per_frame["train"], "--"))
    if "mpsnr" in results and results["mpsnr"].computed:
        series += [(f"held-out {cam} (mpsnr)", v, "-") for cam, v in results["mpsnr"].per_frame.items()]
    if not series:
        return False
    fig, (ax,) = _figure(1)
    for label, values, style in series:
        _draw(ax, x, values, label, linestyle=style)
    ax.set_ylabel("PSNR [dB]")
    ax.set_xlabel("frame")
    ax.set_title("PSNR per frame (held-out: co-visible pixels)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.savefig(path, dpi=110)
    return True


def tracks_plot(results: dict[str, MetricResult], x: np.ndarray, path: Path) -> bool:
    """3D end-point error and PCK-T per frame."""
    rows = [results[m] for m in ("epe_3d", "pck_t") if m in results and results[m].computed]
    if not rows:
        return False
    fig, axes = _figure(len(rows))
    for ax, r in zip(axes, rows):
        _draw(ax, x, r.per_frame["train"], f"{r.metric} (mean {format_value(r.value)})")
        ax.set_ylabel(_ylabel(r))
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    axes[0].set_title("tracked points vs ground truth")
    axes[-1].set_xlabel("frame")
    fig.savefig(path, dpi=110)
    return True


def write_plots(results: list[MetricResult], source_index: np.ndarray, folder: Path) -> list[str]:
    """Write every plot the results allow into ``folder``; returns the file names."""
    folder.mkdir(parents=True, exist_ok=True)
    by_name = {r.metric: r for r in results}
    x = np.asarray(source_index)
    written = []
    for name, fn in (("trajectory.png", trajectory_plot), ("psnr.png", psnr_plot), ("tracks.png", tracks_plot)):
        if fn(by_name, x, folder / name):
            written.append(name)
    return written
