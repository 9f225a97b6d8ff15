"""A look at the inputs: one contact sheet per preprocessing stage (``dynrec inspect WORK``).

``WORK/inspect/<stage>.png`` for every stage that is done: ``masks`` (masks overlaid in red
on frames spread over the video), ``tracks`` (trails of the last frames, foreground red,
background green), ``cameras`` (camera path from above and from the side with viewing
directions, rotation and travel from frame 0) and ``depth`` (the aligned depth, else the
depth stage's, colour-mapped with its range). Each sheet carries the stage's manifest
summary (backend, what it decided) so a wrong input is seen before the reconstruction.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from dynrec.artifacts import Cameras, Depth, Frames, Masks, Tracks
from dynrec.errors import DynrecError
from dynrec.pipeline.workdir import WorkDir

PICKS = 4


def _picks(T: int) -> np.ndarray:
    return np.unique(np.linspace(0, T - 1, min(PICKS, T)).round().astype(int))


def _summary(manifest: dict[str, Any] | None) -> list[str]:
    """Short ``key: value`` lines of a manifest's info (scalars and short lists only)."""
    info = (manifest or {}).get("info") or {}
    lines = []
    for k, v in info.items():
        if isinstance(v, (int, float, str, bool)) or v is None:
            lines.append(f"{k}: {round(v, 4) if isinstance(v, float) else v}")
        elif isinstance(v, (list, dict)) and len(str(v)) <= 60:
            lines.append(f"{k}: {v}")
    return lines


def _text(ax: Any, lines: list[str]) -> None:
    ax.axis("off")
    wrapped = [part for line in lines for part in (textwrap.wrap(line, 48, subsequent_indent="  ") or [""])]
    ax.text(0, 1, "\n".join(wrapped[:40]), va="top", family="monospace", fontsize=7)


def _frames_row(fig: Figure, grid: Any, images: np.ndarray, picks: np.ndarray) -> list[Any]:
    axes = []
    H, W = images.shape[1:3]
    for k, t in enumerate(picks):
        ax = fig.add_subplot(grid[0, k])
        ax.set_xlim(0, W)
        ax.set_ylim(H, 0)
        ax.axis("off")
        axes.append(ax)
    return axes


def masks_sheet(images: np.ndarray, masks: np.ndarray, lines: list[str]) -> Figure:
    """Frames [T, H, W, 3] uint8 with masks [T, H, W] in red; per-frame share in the titles."""
    fig = Figure(figsize=(4 * (PICKS + 1), 4))
    grid = fig.add_gridspec(1, PICKS + 1)
    picks = _picks(len(masks))
    H, W = masks.shape[1:]
    for ax, t in zip(_frames_row(fig, grid, images, picks), picks, strict=True):
        img = images[t].astype(np.float32) / 255
        img[masks[t]] = 0.5 * img[masks[t]] + 0.5 * np.array([1.0, 0.0, 0.0])
        ax.imshow(img, extent=(0, W, H, 0))
        ax.set_title(f"frame {t}: {100 * masks[t].mean():.1f}% foreground", fontsize=8)
    empty = int((~masks.any(axis=(1, 2))).sum())
    _text(fig.add_subplot(grid[0, PICKS]), [f"{empty} of {len(masks)} frames empty"] + lines)
    return fig


def tracks_sheet(images: np.ndarray, tracks: Tracks, masks: np.ndarray | None, lines: list[str]) -> Figure:
    """Frames with the trails of the last 6 frames: red on the masks, green off them."""
    from dynrec.vision.foreground import in_mask

    fig = Figure(figsize=(4 * (PICKS + 1), 4))
    grid = fig.add_gridspec(1, PICKS + 1)
    picks = _picks(images.shape[0])
    H, W = images.shape[1:3]
    xy, vis = tracks.xy, tracks.visible
    on_fg = in_mask(xy, masks) if masks is not None else np.zeros_like(vis)
    for ax, t in zip(_frames_row(fig, grid, images, picks), picks, strict=True):
        ax.imshow(images[t], extent=(0, W, H, 0))
        shown = np.flatnonzero(vis[:, t])
        lo = max(0, t - 6)
        trails = [xy[n, lo:t + 1][vis[n, lo:t + 1]] for n in shown[:: max(1, len(shown) // 400)]]
        colours = ["red" if on_fg[n, t] else "lime" for n in shown[:: max(1, len(shown) // 400)]]
        ax.add_collection(LineCollection(trails, colors=colours, linewidths=0.7))
        ax.set_title(f"frame {t}: {len(shown)} visible", fontsize=8)
    _text(fig.add_subplot(grid[0, PICKS]), [f"{len(xy)} tracks over {xy.shape[1]} frames"] + lines)
    return fig


def cameras_sheet(w2c: np.ndarray, lines: list[str]) -> Figure:
    """Camera path from above and from the side with viewing directions; rotation and travel."""
    T = len(w2c)
    fig = Figure(figsize=(16, 4))
    grid = fig.add_gridspec(1, 4)
    c2w = np.linalg.inv(w2c.astype(np.float64))
    centres, forward = c2w[:, :3, 3], c2w[:, :3, 2]
    span = max(float(np.ptp(centres, axis=0).max()), 1e-6)
    for k, (i, j, name) in enumerate([(0, 2, "from above (x, z)"), (0, 1, "from the side (x, y; y down)")]):
        ax = fig.add_subplot(grid[0, k])
        ax.plot(centres[:, i], centres[:, j], "-", color="0.6", lw=1)
        sc = ax.scatter(centres[:, i], centres[:, j], c=np.arange(T), cmap="viridis", s=14, zorder=3)
        step = max(1, T // 12)
        ax.quiver(centres[::step, i], centres[::step, j], forward[::step, i], forward[::step, j],
                  angles="xy", scale_units="xy", scale=1 / (0.25 * span), width=0.005, color="tab:orange")
        ax.set_aspect("equal", adjustable="datalim")
        if j == 1:
            ax.invert_yaxis()
        ax.set_title(f"camera path {name}; orange: viewing direction", fontsize=8)
        fig.colorbar(sc, ax=ax, label="frame", fraction=0.046)
    ax = fig.add_subplot(grid[0, 2])
    rel = w2c[:, :3, :3].astype(np.float64) @ w2c[0, :3, :3].astype(np.float64).T
    angle = np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    ax.plot(angle)
    ax2 = ax.twinx()
    ax2.plot(np.linalg.norm(centres - centres[0], axis=1), color="tab:red")
    ax.set_xlabel("frame")
    ax.set_ylabel("rotation from frame 0 (deg)")
    ax2.set_ylabel("distance from frame 0", color="tab:red")
    _text(fig.add_subplot(grid[0, 3]), lines)
    return fig


def depth_sheet(depth: np.ndarray, lines: list[str]) -> Figure:
    """Depth maps [T, H, W] (0 = unknown, shown black) on one colour scale."""
    fig = Figure(figsize=(4 * (PICKS + 1), 4))
    grid = fig.add_gridspec(1, PICKS + 1)
    known = depth[depth > 0]
    lo, hi = (np.percentile(known, [2, 98]) if known.size else (0.0, 1.0))
    H, W = depth.shape[1:]
    picks = _picks(len(depth))
    for k, t in enumerate(picks):
        ax = fig.add_subplot(grid[0, k])
        im = ax.imshow(np.where(depth[t] > 0, depth[t], np.nan), cmap="turbo", vmin=lo, vmax=hi,
                       extent=(0, W, H, 0))
        ax.set_facecolor("black")
        ax.axis("off")
        ax.set_title(f"frame {t}: {100 * (depth[t] > 0).mean():.0f}% known", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046, label="z-depth")
    _text(fig.add_subplot(grid[0, PICKS]), lines)
    return fig


def inspect(root: Path) -> list[Path]:
    """Write ``root/inspect/<stage>.png`` for every done input stage; returns the files."""
    work = WorkDir.open(root, create=False)
    if work.manifest("frames") is None:
        raise DynrecError(f"{root}: no frames yet; run `dynrec preprocess VIDEO -o {root}` first")
    out = root / "inspect"
    out.mkdir(exist_ok=True)
    images = Frames.load(work.stage_dir("frames")).images
    masks = Masks.load(work.stage_dir("masks")).masks if work.manifest("masks") else None
    sheets: dict[str, Figure] = {}
    if masks is not None:
        sheets["masks"] = masks_sheet(images, masks, _summary(work.manifest("masks")))
    if work.manifest("tracks"):
        sheets["tracks"] = tracks_sheet(images, Tracks.load(work.stage_dir("tracks")), masks,
                                        _summary(work.manifest("tracks")))
    if work.manifest("cameras"):
        sheets["cameras"] = cameras_sheet(Cameras.load(work.stage_dir("cameras")).w2c,
                                          _summary(work.manifest("cameras")))
    depth_stage = "align" if work.manifest("align") else "depth" if work.manifest("depth") else None
    depth = None
    if depth_stage is not None and (work.stage_dir(depth_stage) / Depth.FILE).is_file():
        depth = Depth.load(work.stage_dir(depth_stage)).depth
    if depth is not None:
        sheets["depth"] = depth_sheet(depth, [f"from the {depth_stage} stage"] + _summary(work.manifest(depth_stage)))
    files = []
    for name, fig in sheets.items():
        fig.suptitle(f"{root.name}: {name}")
        fig.tight_layout()
        path = out / f"{name}.png"
        fig.savefig(path, dpi=72)
        files.append(path)
    return files
