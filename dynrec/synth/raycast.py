"""Exact ray casting against oriented boxes: the renderer of the synthetic scenes.

Every object is a box in its own frame (a figure part, a crate, or the room, whose inside
faces are seen). Casting a ray is an analytic slab test per box, so depth, the part hit
and the hit point's *local* coordinates (which drive the texture) are exact, there is no
near-plane clipping, and the same code answers "what is seen through pixel (x, y)" for
occlusion tests of ground-truth points at sub-pixel positions.

Rays are built from pixel coordinates with the project's conventions
(:mod:`dynrec.geometry.camera`): the camera-frame direction of pixel ``(x, y)`` is
``((x - cx) / fx, (y - cy) / fy, 1)``, so the ray parameter of a hit *is* its z-depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_EPS = 1e-9


@dataclass(frozen=True)
class Box:
    """An oriented box: local point ``q`` is at ``rot @ q + origin`` in the world.

    ``inside`` boxes (the room) are seen from within: a ray hits their exit face.
    """

    rot: np.ndarray
    origin: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    part: int
    inside: bool = False


@dataclass
class Hits:
    """What rays hit. All arrays have the ray count R first.

    ``depth`` [R] z-depth (inf where nothing is hit); ``part`` [R] int (-1 = nothing);
    ``local`` [R, 3] hit point in the hit box's frame; ``face`` [R] in 0..5, the box face
    (``2 * axis + (1 if on the hi side else 0)``); ``normal`` [R, 3] world normal of the hit
    face, turned towards the camera.
    """

    depth: np.ndarray
    part: np.ndarray
    local: np.ndarray
    face: np.ndarray
    normal: np.ndarray


def pixel_rays(xy: np.ndarray, K: np.ndarray, w2c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rays through pixel positions ``xy`` [R, 2]: ``(origin [3], directions [R, 3])``.

    Directions are scaled so that their camera-frame z is 1 (ray parameter = z-depth) and
    have the dtype of ``xy`` (float32 rays render faster; ground truth uses float64).
    """
    rot, trans = w2c[:3, :3].astype(np.float64), w2c[:3, 3].astype(np.float64)
    cam = np.empty((len(xy), 3), dtype=xy.dtype)
    cam[:, 0] = (xy[:, 0] - K[0, 2]) / K[0, 0]
    cam[:, 1] = (xy[:, 1] - K[1, 2]) / K[1, 1]
    cam[:, 2] = 1.0
    return -rot.T @ trans, cam @ rot.astype(xy.dtype)


def _slabs(
    o_l: np.ndarray, d_l: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Slab test of rays in a box's frame: ``o_l`` [3], ``d_l`` [3, R] (no zero entries),
    corners ``lo``/``hi`` [3]. Returns ``(near [R], far [R], t_in [3, R], t_out [3, R])``."""
    t1 = (lo - o_l)[:, None] / d_l
    t2 = (hi - o_l)[:, None] / d_l
    t_in, t_out = np.minimum(t1, t2), np.maximum(t1, t2)
    near = np.maximum(np.maximum(t_in[0], t_in[1]), t_in[2])
    far = np.minimum(np.minimum(t_out[0], t_out[1]), t_out[2])
    return near, far, t_in, t_out


def _candidates(
    origin: np.ndarray, dirs_t: np.ndarray, inv_len2: np.ndarray, box: Box
) -> np.ndarray:
    """Indices of rays (dirs_t [3, R]) passing within the bounding sphere of ``box``."""
    centre = box.origin + box.rot @ (0.5 * (box.lo + box.hi))
    radius2 = float(np.sum((0.5 * (box.hi - box.lo)) ** 2)) * 1.0001 + 1e-9
    m = (centre - origin).astype(dirs_t.dtype)
    along = m @ dirs_t
    dist2 = float(m @ m) - along * along * inv_len2
    return np.flatnonzero((dist2 <= radius2) & (along > -np.sqrt(radius2 / inv_len2)))


def _in_frame(
    origin: np.ndarray, dirs_t: np.ndarray, box: Box
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ray origin [3], directions [3, R] and corners [3] in the box frame, in the rays' dtype."""
    dt = dirs_t.dtype
    rot_t = box.rot.T.astype(dt)
    o_l = (box.rot.T @ (origin - box.origin)).astype(dt)
    d_l = rot_t @ dirs_t
    d_l[np.abs(d_l) < 1e-12] = 1e-12
    return o_l, d_l, box.lo.astype(dt), box.hi.astype(dt)


def cast(origin: np.ndarray, dirs: np.ndarray, boxes: list[Box]) -> Hits:
    """Nearest hit of rays ``origin + s * dirs`` (s > 0) over ``boxes``; dirs [R, 3].

    Computed in the dtype of ``dirs``.
    """
    n, dt = len(dirs), dirs.dtype
    dirs_t = np.ascontiguousarray(dirs.T)
    inv_len2 = 1.0 / np.einsum("ij,ij->j", dirs_t, dirs_t)
    best = np.full(n, np.inf, dtype=dt)
    which = np.full(n, -1)
    for b, box in enumerate(boxes):
        if box.inside:
            o_l, d_l, lo, hi = _in_frame(origin, dirs_t, box)
            near, far, _, _ = _slabs(o_l, d_l, lo, hi)
            ok = (far > _EPS) & (near <= far) & (far < best)
            best = np.where(ok, far, best)
            which[ok] = b
            continue
        idx = _candidates(origin, dirs_t, inv_len2, box)
        if len(idx) == 0:
            continue
        o_l, d_l, lo, hi = _in_frame(origin, dirs_t[:, idx], box)
        near, far, _, _ = _slabs(o_l, d_l, lo, hi)
        ok = (near > _EPS) & (near <= far) & (near < best[idx])
        best[idx[ok]], which[idx[ok]] = near[ok], b
    local = np.zeros((n, 3), dtype=dt)
    face = np.zeros(n, dtype=np.int64)
    normal = np.zeros((n, 3), dtype=dt)
    part = np.full(n, -1, dtype=np.int64)
    order = np.argsort(which, kind="stable")
    bounds = np.searchsorted(which[order], np.arange(len(boxes) + 1))
    for b, box in enumerate(boxes):
        idx = order[bounds[b] : bounds[b + 1]]
        if len(idx) == 0:
            continue
        o_l, d_l, lo, hi = _in_frame(origin, dirs_t[:, idx], box)
        _, _, t_in, t_out = _slabs(o_l, d_l, lo, hi)
        axis = t_out.argmin(axis=0) if box.inside else t_in.argmax(axis=0)
        cols = np.arange(len(idx))
        q = o_l[:, None] + best[idx] * d_l
        hi_side = q[axis, cols] > (0.5 * (lo + hi))[axis]
        n_l = np.zeros((3, len(idx)), dtype=dt)
        n_l[axis, cols] = -np.sign(d_l[axis, cols])
        local[idx], face[idx], part[idx] = q.T, 2 * axis + hi_side, box.part
        normal[idx] = (box.rot.astype(dt) @ n_l).T
    return Hits(best, part, local, face, normal)
