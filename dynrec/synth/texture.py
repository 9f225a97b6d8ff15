"""Procedural, trackable textures: a function of each surface point's local 3D coordinate.

Because the colour depends only on where a point sits on its (rigid) part, a point keeps
its colour as the part moves, which is what trackers and SfM need. The pattern is two
octaves of 3D value noise (hashed lattice values, smoothstep-interpolated), contrast
stretched, between a dark and a light colour per part and face; the floor adds a checker.
A fixed directional light gives mild Lambertian shading so that the geometry reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dynrec.synth.raycast import Hits

_LIGHT = np.array([0.35, -0.55, 0.76]) / np.linalg.norm([0.35, -0.55, 0.76])
_SKEW = np.array([37.13, 11.71, 5.37])
#: :class:`~dynrec.synth.raycast.Hits` face index ``2 * axis + hi_side`` of the room's floor (z = 0).
FLOOR_FACE = 4


@dataclass(frozen=True)
class Material:
    """Look of one part: ``dark``/``light`` [6, 3] colours per box face in [0, 1];
    ``cells`` (fine, coarse) noise lattice sizes in scene units; ``tile`` checker size
    (0 = no checker)."""

    dark: np.ndarray
    light: np.ndarray
    cells: tuple[float, float]
    tile: float = 0.0


def value_noise(p: np.ndarray, table: np.ndarray) -> np.ndarray:
    """3D value noise in [0, 1] at lattice coordinates ``p`` [3, R] (coordinate-major).

    ``table`` [S, S, S] holds the lattice values (S a power of two; the noise repeats
    every S cells); values are smoothstep-interpolated between lattice points.
    """
    size = table.shape[0]
    flat = table.reshape(-1)
    base = np.floor(p)
    u = p - base
    u = u * u * (3.0 - 2.0 * u)
    lo = base.astype(np.int32) & (size - 1)
    hi = (lo + 1) & (size - 1)
    stride = np.array([size * size, size, 1], dtype=np.int32)[:, None]
    lo *= stride
    hi *= stride
    planes = []
    for x in (lo[0], hi[0]):
        rows = []
        for y in (lo[1], hi[1]):
            xy = x + y
            a, b = flat.take(xy + lo[2]), flat.take(xy + hi[2])
            rows.append(a + (b - a) * u[2])
        planes.append(rows[0] + (rows[1] - rows[0]) * u[1])
    return planes[0] + (planes[1] - planes[0]) * u[0]


@dataclass(frozen=True)
class Texturer:
    """Colours hits: ``table`` [S, S, S] the noise lattice values, ``materials`` one per part id."""

    table: np.ndarray
    materials: tuple[Material, ...]
    light: np.ndarray = field(default_factory=lambda: _LIGHT.copy())

    def shade(self, hits: Hits) -> np.ndarray:
        """Linear RGB in [0, 1], [R, 3] float32, of ``hits`` (black where nothing was hit)."""
        rgb = np.zeros((len(hits.depth), 3), dtype=np.float32)
        order = np.argsort(hits.part, kind="stable")
        bounds = np.searchsorted(hits.part[order], np.arange(len(self.materials) + 1))
        light = np.asarray(self.light, dtype=np.float32)
        for pid, mat in enumerate(self.materials):
            idx = order[bounds[pid] : bounds[pid + 1]]
            if len(idx) == 0:
                continue
            local = hits.local[idx].astype(np.float32)
            q = (local + (pid * _SKEW).astype(np.float32)).T
            n = 0.6 * value_noise(q / mat.cells[0], self.table) + 0.4 * value_noise(
                q / mat.cells[1] + 0.5, self.table
            )
            s = np.clip(0.5 + 2.2 * (n - 0.5), 0.0, 1.0)
            face = hits.face[idx]
            dark = mat.dark.astype(np.float32)[face]
            albedo = dark + (mat.light.astype(np.float32)[face] - dark) * s[:, None]
            lambert = np.clip(hits.normal[idx].astype(np.float32) @ light, 0.0, 1.0)
            shading = 0.6 + 0.4 * lambert
            if mat.tile > 0:  # the checker is on the floor face only: the walls lie on tile
                # boundaries (x, y = +-ROOM_HALF), where float rounding of the hit point would
                # flip the parity from frame to frame
                cell = np.floor(local[:, :2] / mat.tile).astype(np.int64).sum(axis=1) & 1
                dim = (cell == 0) & (face == FLOOR_FACE)
                shading *= np.where(dim, 0.62, 1.0).astype(np.float32)
            rgb[idx] = albedo * shading[:, None]
        return np.clip(rgb, 0.0, 1.0)


def random_light(rng: np.random.Generator) -> np.ndarray:
    """A unit light direction [3] from above (elevation 35-75 degrees, any azimuth)."""
    az, el = rng.uniform(0.0, 2.0 * np.pi), np.radians(rng.uniform(35.0, 75.0))
    return np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])


def _faces(colour: np.ndarray) -> np.ndarray:
    return np.repeat(np.asarray(colour, dtype=np.float64)[None], 6, axis=0)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    """One HSV colour (all in [0, 1]) to RGB [3]."""
    k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
    return v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def make_texturer(
    rng: np.random.Generator, n_figure: int, n_crates: int, px_size: float
) -> Texturer:
    """Materials for ``n_figure`` parts, then the room, then ``n_crates`` crates.

    ``px_size`` is the size of one pixel at the figure's distance (scene units), so the
    noise has a few pixels per lattice cell at every resolution.
    """
    table = rng.uniform(0.0, 1.0, size=(64, 64, 64)).astype(np.float32)
    mats = []
    hues = (rng.uniform() + np.arange(n_figure) / n_figure) % 1.0
    rng.shuffle(hues)
    for h in hues:
        mats.append(
            Material(
                _faces(_hsv(h, 0.75, 0.3)),
                _faces(_hsv(h, 0.45, 1.0)),
                (2.5 * px_size, 7.0 * px_size),
            )
        )
    wall_hues = rng.uniform(0.0, 1.0, size=6)
    dark = np.stack([_hsv(h, 0.35, 0.3) for h in wall_hues])
    light = np.stack([_hsv(h, 0.25, 0.95) for h in wall_hues])
    mats.append(Material(dark, light, (5.0 * px_size, 14.0 * px_size), tile=0.5))
    for h in rng.uniform(0.05, 0.12, size=n_crates):
        mats.append(
            Material(
                _faces(_hsv(h, 0.7, 0.25)),
                _faces(_hsv(h, 0.55, 0.9)),
                (3.0 * px_size, 8.0 * px_size),
            )
        )
    return Texturer(table, tuple(mats))
