"""Ground-truth tracks and keypoints of a synthetic scene, with exact occlusion tests.

A surface point is *visible* in a frame when it projects inside the image in front of the
camera, the ray through its exact projection first hits the point itself (same part,
same depth to 1e-4 relative), and the pixel that contains it shows the same part (so a
visible point always lies on its part's pixels in the part map and, for figure points, in
the mask). Joints lie inside the body, so a keypoint is visible when the ray through it
first hits one of the parts touching the joint no nearer than that part's cross-section
radius in front of it (or hits anything behind it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dynrec.geometry.camera import project
from dynrec.synth.figure import Part, keypoint_layout
from dynrec.synth.scene import Scene

_DEPTH_RTOL = 1e-4


@dataclass
class SurfacePoints:
    """``part`` [N] int and ``local`` [N, 3] coordinates in that part's frame."""

    part: np.ndarray
    local: np.ndarray


@dataclass
class TrackTruth:
    """``xyz`` [N, T, 3] world, ``xy`` [N, T, 2] pixels, ``visible`` [N, T], ``query_frame`` [N],
    ``part`` [N] the part each point lies on."""

    xyz: np.ndarray
    xy: np.ndarray
    visible: np.ndarray
    query_frame: np.ndarray
    part: np.ndarray


@dataclass
class KeypointTruth:
    """``xyz`` [T, J, 3], ``xy`` [T, J, 2], ``visible`` [T, J], ``skeleton`` [E, 2], ``names`` J."""

    xyz: np.ndarray
    xy: np.ndarray
    visible: np.ndarray
    skeleton: np.ndarray
    names: list[str]


def world_points(scene: Scene, points: SurfacePoints) -> np.ndarray:
    """World trajectories [N, T, 3] of points fixed on their parts (static parts do not move)."""
    T = scene.preset.frames
    out = np.empty((len(points.part), T, 3))
    for pid in np.unique(points.part):
        sel = points.part == pid
        if pid < scene.n_figure:
            rot, org = scene.part_rot[pid], scene.part_org[pid]
            out[sel] = np.einsum("tij,nj->nti", rot, points.local[sel]) + org[None]
        else:
            box = scene.static[pid - scene.n_figure]
            out[sel] = (points.local[sel] @ box.rot.T + box.origin)[:, None, :]
    return out


def _in_image(xy: np.ndarray, z: np.ndarray, width: int, height: int) -> np.ndarray:
    return (
        (z > 1e-6)
        & (xy[..., 0] >= 0)
        & (xy[..., 0] < width)
        & (xy[..., 1] >= 0)
        & (xy[..., 1] < height)
    )


def _pixel_lookup(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Values of ``image`` [H, W] at the pixels containing ``xy`` [R, 2] (clamped inside)."""
    H, W = image.shape
    col = np.clip(np.floor(xy[:, 0]).astype(np.int64), 0, W - 1)
    row = np.clip(np.floor(xy[:, 1]).astype(np.int64), 0, H - 1)
    return image[row, col]


def surface_visibility(
    scene: Scene, t: int, w2c: np.ndarray, xyz: np.ndarray, part: np.ndarray, part_map: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Visibility of surface points ``xyz`` [N, 3] on parts ``part`` [N] at frame ``t``.

    ``part_map`` [H, W] is the part map of the same view. Returns ``(xy [N, 2], visible [N])``.
    """
    xy, z = project(xyz, scene.K, w2c)
    inside = _in_image(xy, z, scene.preset.width, scene.preset.height)
    visible = np.zeros(len(xyz), dtype=bool)
    idx = np.flatnonzero(inside)
    if len(idx):
        hits = scene.cast(t, xy[idx], w2c)
        same = (hits.part == part[idx]) & (np.abs(hits.depth - z[idx]) <= _DEPTH_RTOL * z[idx])
        visible[idx] = same & (_pixel_lookup(part_map, xy[idx]) == part[idx])
    return xy, visible


def _draw_candidates(
    scene: Scene,
    part_maps: np.ndarray,
    frames: np.ndarray,
    on_figure: bool,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One random sub-pixel candidate per entry of ``frames`` [B] on figure (or background)
    pixels. Returns ``(ok [B], part [B], local [B, 3])``, in the order of ``frames``."""
    ok = np.zeros(len(frames), dtype=bool)
    part = np.full(len(frames), -1, dtype=np.int64)
    local = np.zeros((len(frames), 3))
    for t in np.unique(frames):
        is_fg = part_maps[t] < scene.n_figure
        rows, cols = np.nonzero(is_fg if on_figure else ~is_fg)
        if len(rows) == 0:
            continue
        idx = np.flatnonzero(frames == t)
        k = rng.integers(0, len(rows), size=len(idx))
        xy = np.stack([cols[k], rows[k]], -1) + rng.uniform(0.0, 1.0, size=(len(k), 2))
        hits = scene.cast(int(t), xy, scene.train_w2c[t])
        good = (hits.part >= 0) & (hits.part == _pixel_lookup(part_maps[t], xy))
        ok[idx] = good & ((hits.part < scene.n_figure) == on_figure)
        part[idx], local[idx] = hits.part, hits.local
    return ok, part, local


def sample_points(scene: Scene, part_maps: np.ndarray, rng: np.random.Generator) -> SurfacePoints:
    """Surface points seen in the training view: ``fg_tracks`` on the figure, ``bg_tracks`` off it.

    Each point is drawn at a uniformly random frame, at a random sub-pixel position of a
    random pixel showing the figure (resp. the background), and kept only if visible there.
    """
    preset = scene.preset
    parts, locals_ = [], []
    for want, on_figure in ((preset.fg_tracks, True), (preset.bg_tracks, False)):
        got = 0
        for _ in range(50):
            frames = rng.integers(0, preset.frames, size=2 * (want - got) + 16)
            ok, part, local = _draw_candidates(scene, part_maps, frames, on_figure, rng)
            take = np.flatnonzero(ok)[: want - got]
            parts.append(part[take])
            locals_.append(local[take])
            got += len(take)
            if got == want:
                break
        else:
            kind = "figure" if on_figure else "background"
            raise RuntimeError(f"could not sample {want} {kind} points")
    return SurfacePoints(np.concatenate(parts), np.concatenate(locals_))


def track_truth(scene: Scene, points: SurfacePoints, part_maps: np.ndarray) -> TrackTruth:
    """Trajectories and visibility of ``points`` in the training view; drops never-seen ones."""
    xyz = world_points(scene, points)
    n, T = xyz.shape[:2]
    xy = np.zeros((n, T, 2))
    visible = np.zeros((n, T), dtype=bool)
    for t in range(T):
        xy[:, t], visible[:, t] = surface_visibility(
            scene, t, scene.train_w2c[t], xyz[:, t], points.part, part_maps[t]
        )
    keep = visible.any(axis=1)
    query = np.argmax(visible[keep], axis=1)
    return TrackTruth(xyz[keep], xy[keep], visible[keep], query, points.part[keep])


def _cross_radius(part: Part) -> float:
    """Half-diagonal of a box's smallest cross-section: how deep a joint can sit inside it."""
    half = np.sort(np.subtract(part.hi, part.lo) / 2.0)
    return float(np.hypot(half[0], half[1]))


def keypoint_truth(scene: Scene, w2c: np.ndarray) -> KeypointTruth:
    """Joints and end effectors of the figure seen from cameras ``w2c`` [T, 4, 4]."""
    names, owner, local, skeleton, adjacent = keypoint_layout(scene.figure)
    xyz = world_points(scene, SurfacePoints(owner, local)).transpose(1, 0, 2)
    T, J = xyz.shape[:2]
    radius = np.array([max(_cross_radius(scene.figure.parts[i]) for i in adj) for adj in adjacent])
    xy = np.zeros((T, J, 2))
    visible = np.zeros((T, J), dtype=bool)
    for t in range(T):
        xy[t], z = project(xyz[t], scene.K, w2c[t])
        inside = _in_image(xy[t], z, scene.preset.width, scene.preset.height)
        hits = scene.cast(t, xy[t], w2c[t])
        touching = np.array([hits.part[j] in adjacent[j] for j in range(J)])
        near_ok = hits.depth >= z - radius * 1.05
        behind = hits.depth >= z * (1 - _DEPTH_RTOL)
        visible[t] = inside & ((touching & near_ok) | behind)
    return KeypointTruth(xyz, xy, visible, skeleton, names)
