"""Where to start tracks (the ``offline`` tracker's query points) and the tracking rounds.

:func:`track_video` seeds a grid of query points on the first frame, tracks them, and then,
at every ``query_every``-th frame, re-seeds where no visible track is left (disocclusions,
regions entering the view, lost tracks), plus a grid ``dense_factor`` times finer around
tracks that move on their own (:func:`dynrec.vision.motionseg.motion_scores`), so the
subject is tracked densely. Untextured pixels (weak structure tensor) are never seeded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.spatial import cKDTree

from dynrec.errors import DynrecError
from dynrec.vision.lk import TrackParams, TrackResult, track_points
from dynrec.vision.motionseg import MotionParams, motion_scores

#: ``progress(description, done, total)``.
Progress = Callable[[str, int, int], None]
#: ``tracker(frames [T,H,W,3], queries [N,3] rows (t, x, y), progress(done, total) | None)``.
Tracker = Callable[[np.ndarray, np.ndarray, "Callable[[int, int], None] | None"], TrackResult]


@dataclass(frozen=True)
class SeedParams:
    """``grid_size``: query points along the longer image side; ``query_every``: frames
    between re-seeding rounds; ``dense_factor``: how much finer the grid is around moving
    tracks (1 = not denser); ``min_texture``: smallest eigenvalue of the colour structure
    tensor (RGB in [0, 1], per pixel^2) for a point to be seeded; a track moves on its own
    when it does in ``moving`` of ``min_pairs`` or more compared frame pairs (see
    :class:`MotionParams` for ``motion``)."""

    grid_size: int = 30
    query_every: int = 8
    dense_factor: int = 2
    min_texture: float = 1e-4
    moving: float = 0.5
    min_pairs: int = 20
    motion: MotionParams = field(default_factory=MotionParams)


def texture(frame: np.ndarray, radius: int) -> np.ndarray:
    """Smallest eigenvalue [H, W] of the colour structure tensor of ``frame`` [H, W, 3] uint8,
    averaged over (2r+1)^2 windows (RGB in [0, 1]): 0 on flat colour and on straight edges."""
    x = frame.astype(np.float32) / 255.0
    gx = cv2.Sobel(x, cv2.CV_32F, 1, 0, ksize=3) / 8
    gy = cv2.Sobel(x, cv2.CV_32F, 0, 1, ksize=3) / 8
    win = (2 * radius + 1, 2 * radius + 1)
    a = cv2.blur((gx * gx).sum(-1), win)
    b = cv2.blur((gx * gy).sum(-1), win)
    c = cv2.blur((gy * gy).sum(-1), win)
    return (a + c) / 2 - np.sqrt(((a - c) / 2) ** 2 + b ** 2)


def grid(width: int, height: int, spacing: float) -> np.ndarray:
    """Cell centres [P, 2] of a ``spacing`` grid covering the image (+0.5 pixel convention)."""
    xs = np.arange(spacing / 2, width, spacing)
    ys = np.arange(spacing / 2, height, spacing)
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def far_from(points: np.ndarray, others: np.ndarray, distance: float) -> np.ndarray:
    """Mask [P]: ``points`` [P, 2] with no point of ``others`` [Q, 2] within ``distance``."""
    if len(others) == 0 or len(points) == 0:
        return np.ones(len(points), bool)
    d, _ = cKDTree(others).query(points, k=1)
    return d > distance


def _textured(points: np.ndarray, tex: np.ndarray, threshold: float) -> np.ndarray:
    H, W = tex.shape
    p = np.clip(np.floor(points).astype(int), 0, [W - 1, H - 1])
    return points[tex[p[:, 1], p[:, 0]] >= threshold]


@dataclass
class VideoTracks:
    """Tracks of :func:`track_video`: ``result`` (xy [N, T, 2], visible, confidence),
    ``query_frame`` [N], and ``moving`` [N] whether each track moves on its own."""

    result: TrackResult
    query_frame: np.ndarray
    moving: np.ndarray


def _concat(parts: list[TrackResult]) -> TrackResult:
    return TrackResult(np.concatenate([p.xy for p in parts]), np.concatenate([p.visible for p in parts]),
                       np.concatenate([p.confidence for p in parts]))


def track_video(frames: np.ndarray, depth: np.ndarray | None = None, seeds: SeedParams | None = None,
                params: TrackParams | None = None, progress: Progress | None = None,
                tracker: Tracker | None = None) -> VideoTracks:
    """Seed and track points over a whole video (see the module doc).

    Args:
        frames: [T, H, W, 3] uint8; depth: [T, H, W] z-depth (any scale; 0 = unknown) used
            to find the moving regions, or None (fundamental matrices instead).
        seeds / params: seeding and tracking settings.
        progress: ``progress(description, done, total)`` over the rounds.
        tracker: what tracks each round's queries (default: :func:`track_points` with
            ``params``; the learned backend passes CoTracker). ``params.patch.radius`` still
            sets the texture test of the seeds.

    Raises:
        DynrecError: when no frame has texture to track.
    """
    seeds = seeds or SeedParams()
    params = params or TrackParams()
    run = tracker or (lambda f, rows, prog: track_points(f, rows, params, prog))
    T, H, W = frames.shape[:3]
    spacing = max(W, H) / seeds.grid_size
    fine = spacing / max(seeds.dense_factor, 1)
    rounds = list(range(0, T, max(seeds.query_every, 1)))
    parts: list[TrackResult] = []
    qframes: list[np.ndarray] = []
    strongest = 0.0
    moving = np.zeros(0, bool)
    for k, q in enumerate(rounds):
        tex = texture(frames[q], params.patch.radius)
        strongest = max(strongest, float(tex.max(initial=0.0)))
        have = _concat(parts) if parts else None
        seen = have.xy[have.visible[:, q], q] if have is not None else np.zeros((0, 2))
        new = _textured(grid(W, H, spacing), tex, seeds.min_texture)
        new = new[far_from(new, seen, 0.75 * spacing)]
        queries = [new]
        if have is not None and seeds.dense_factor > 1:
            queries.append(_dense(frames[q], tex, have, moving, q, spacing, fine, seen, new, seeds))
        batch = np.concatenate(queries)
        if len(batch) == 0:
            continue
        rows = np.c_[np.full(len(batch), q), batch]
        parts.append(run(frames, rows, _round_progress(progress, len(batch), q, k, len(rounds))))
        qframes.append(np.full(len(batch), q, np.int64))
        if k == 0 and seeds.dense_factor > 1:  # densify the first frame too, now motion is known
            all_ = _concat(parts)
            moving = _scores(all_, depth, (W, H), seeds)
            seen = all_.xy[all_.visible[:, q], q]
            extra = _dense(frames[q], tex, all_, moving, q, spacing, fine, seen, np.zeros((0, 2)), seeds)
            if len(extra):
                parts.append(run(frames, np.c_[np.full(len(extra), q), extra], None))
                qframes.append(np.full(len(extra), q, np.int64))
        moving = _scores(_concat(parts), depth, (W, H), seeds)
    if not parts:
        raise DynrecError(
            f"tracks: no trackable texture found in the video (strongest texture {strongest:.2g} < "
            f"min_texture {seeds.min_texture:g} in all {len(rounds)} query frames); is it black or a "
            "flat colour? (--set tracks.min_texture=... lowers the bar)")
    return VideoTracks(_concat(parts), np.concatenate(qframes), moving)


def _round_progress(progress: Progress | None, count: int, q: int, k: int, rounds: int
                    ) -> Callable[[int, int], None] | None:
    """Per-frame progress of round ``k`` of ``rounds`` as ``progress(description, done, total)``."""
    if progress is None:
        return None
    return lambda done, total: progress(f"round {k + 1}/{rounds}: {count} points from frame {q}",
                                        k * total + done, rounds * total)


def _scores(tracks: TrackResult, depth: np.ndarray | None, size: tuple[int, int], seeds: SeedParams) -> np.ndarray:
    """Whether each track moves on its own [N], from its verified samples (confidence >= 0.5)."""
    verified = tracks.visible & (tracks.confidence >= 0.5)
    scores = motion_scores(tracks.xy, verified, depth, size, seeds.motion)
    return (scores.track >= seeds.moving) & (scores.pairs >= seeds.min_pairs)


def _dense(frame: np.ndarray, tex: np.ndarray, have: TrackResult, moving: np.ndarray, q: int, spacing: float,
           fine: float, seen: np.ndarray, new: np.ndarray, seeds: SeedParams) -> np.ndarray:
    """Fine-grid points of frame ``q`` near visible moving tracks, away from existing ones."""
    H, W = frame.shape[:2]
    movers = have.xy[have.visible[:, q] & moving, q]
    if len(movers) == 0:
        return np.zeros((0, 2))
    cand = _textured(grid(W, H, fine), tex, seeds.min_texture)
    cand = cand[~far_from(cand, movers, spacing)]
    taken = np.concatenate([seen, new])
    return cand[far_from(cand, taken, 0.5 * fine)]
