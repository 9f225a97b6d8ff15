"""The whole synthetic scene: room, crates, figure, cameras, and rendering of one view.

Part ids: ``0..P-1`` the figure's parts (in :class:`~dynrec.synth.figure.Figure` order),
``P`` the room (floor, walls, ceiling), ``P+1..`` the static crates.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from dynrec.geometry.camera import intrinsics, look_at, pixel_centers
from dynrec.synth.families import FAMILIES, FAMILY_NAMES
from dynrec.synth.figure import Figure, build_figure, part_transforms, rotation
from dynrec.synth.presets import SynthPreset
from dynrec.synth.raycast import Box, Hits, cast, pixel_rays
from dynrec.synth.texture import Texturer, make_texturer, random_light

ROOM_HALF = 4.0
ROOM_HEIGHT = 3.0
LOOK_AT = np.array([0.0, 0.0, 0.95])


@dataclass(frozen=True)
class View:
    """A rendered image: ``rgb`` [H, W, 3] uint8, ``depth`` [H, W] z-depth, ``part`` [H, W] int."""

    rgb: np.ndarray
    depth: np.ndarray
    part: np.ndarray


@dataclass
class Scene:
    """Everything needed to render the scene at any frame from any camera.

    ``part_rot`` [P, T, 3, 3] / ``part_org`` [P, T, 3] are the figure's part transforms per
    frame; ``static`` the boxes that never move; ``K`` [3, 3] shared by all cameras;
    ``train_w2c`` [T, 4, 4]; ``heldout_w2c`` [C, 4, 4] (static cameras).
    """

    preset: SynthPreset
    figure: Figure
    texturer: Texturer
    static: list[Box]
    part_rot: np.ndarray
    part_org: np.ndarray
    K: np.ndarray
    train_w2c: np.ndarray
    heldout_w2c: np.ndarray

    @property
    def part_names(self) -> list[str]:
        crates = [f"crate{i}" for i in range(len(self.static) - 1)]
        return self.figure.names + ["room"] + crates

    @property
    def n_figure(self) -> int:
        return len(self.figure.parts)

    def boxes_at(self, t: int) -> list[Box]:
        """All boxes at frame ``t``: the figure's parts, then the static ones."""
        moving = [
            Box(
                self.part_rot[i, t],
                self.part_org[i, t],
                np.asarray(p.lo, float),
                np.asarray(p.hi, float),
                i,
            )
            for i, p in enumerate(self.figure.parts)
        ]
        return moving + self.static

    def cast(self, t: int, xy: np.ndarray, w2c: np.ndarray) -> Hits:
        """What is seen at pixel positions ``xy`` [R, 2] at frame ``t`` by camera ``w2c``."""
        origin, dirs = pixel_rays(xy, self.K, w2c)
        return cast(origin, dirs, self.boxes_at(t))

    def render(self, t: int, w2c: np.ndarray) -> View:
        """Render frame ``t`` from ``w2c``: colour supersampled, depth and part at pixel centres."""
        H, W, s = self.preset.height, self.preset.width, self.preset.supersample
        centres = pixel_centers(H, W).reshape(-1, 2).astype(np.float32)
        hits = self.cast(t, centres, w2c)
        if s > 1:
            offs = (np.arange(s) + 0.5) / s - 0.5
            sub = (
                np.stack(np.meshgrid(offs, offs, indexing="ij"), -1)
                .reshape(-1, 2)
                .astype(np.float32)
            )
            samples = (centres[:, None, :] + sub[None]).reshape(-1, 2)
            colour = (
                self.texturer.shade(self.cast(t, samples, w2c))
                .reshape(H * W, s * s, 3)
                .mean(axis=1)
            )
        else:
            colour = self.texturer.shade(hits)
        rgb = np.round(np.clip(colour, 0.0, 1.0) ** (1 / 1.4) * 255.0).astype(np.uint8)
        depth = np.where(np.isfinite(hits.depth), hits.depth, 0.0)
        return View(
            rgb.reshape(H, W, 3), depth.reshape(H, W).astype(np.float32), hits.part.reshape(H, W)
        )


def _static_boxes(rng: np.random.Generator, first_id: int) -> list[Box]:
    """The room (seen from inside) and two crates standing on the floor."""
    eye = np.eye(3)
    room = Box(
        eye,
        np.zeros(3),
        np.array([-ROOM_HALF, -ROOM_HALF, 0.0]),
        np.array([ROOM_HALF, ROOM_HALF, ROOM_HEIGHT]),
        first_id,
        inside=True,
    )
    boxes = [room]
    for k, (x, y, size) in enumerate([(1.5, 1.3, 0.35), (-1.7, 0.8, 0.25)]):
        yaw = rng.uniform(-0.6, 0.6)
        rot = rotation(np.array([0.0, 0.0, 1.0]), np.array([yaw]))[0]
        half = np.array([size, size * 1.3, size])
        boxes.append(Box(rot, np.array([x, y, size]), -half, half, first_id + 1 + k))
    return boxes


def _orbit_eye(azimuth: np.ndarray, radius: np.ndarray, height: np.ndarray) -> np.ndarray:
    """Camera centres [T, 3] on a circle around the figure (azimuth 0 = in front, at -y)."""
    return np.stack([radius * np.sin(azimuth), -radius * np.cos(azimuth), height], axis=-1)


def training_cameras(rng: np.random.Generator, frames: int) -> np.ndarray:
    """A smooth orbit-and-dolly of the monocular camera: w2c [T, 4, 4]."""
    u = np.linspace(0.0, 1.0, frames)
    sweep = rng.uniform(0.6, 0.8) * rng.choice([-1.0, 1.0])
    az = (
        rng.uniform(-0.1, 0.1)
        + sweep * (u - 0.5)
        + 0.05 * np.sin(2 * np.pi * u + rng.uniform(0, 6.3))
    )
    radius = 3.3 + 0.25 * np.sin(np.pi * u + rng.uniform(0, 6.3))
    height = 1.55 + 0.15 * np.sin(1.5 * np.pi * u + rng.uniform(0, 6.3))
    eyes = _orbit_eye(az, radius, height)
    wobble = 0.05 * np.stack(
        [np.sin(2.1 * np.pi * u), np.zeros_like(u), np.cos(1.7 * np.pi * u)], -1
    )
    return np.stack([look_at(e, LOOK_AT + w) for e, w in zip(eyes, wobble, strict=True)])


def heldout_cameras(rng: np.random.Generator, count: int) -> np.ndarray:
    """Static held-out cameras to both sides of the training orbit: w2c [C, 4, 4]."""
    out = []
    for k in range(count):
        side = -1.0 if k % 2 == 0 else 1.0
        az = side * (0.95 + 0.25 * (k // 2) + rng.uniform(0.0, 0.1))
        eye = _orbit_eye(np.array(az), np.array(3.1), np.array(1.25 + 0.5 * (k % 2)))
        out.append(look_at(eye, LOOK_AT))
    return np.stack(out)


def subject_centres(fig: Figure, rot: np.ndarray, org: np.ndarray) -> np.ndarray:
    """Mean world position [T, 3] of the centres of the figure's boxes (what cameras look at).

    ``rot`` [P, T, 3, 3], ``org`` [P, T, 3] from :func:`~dynrec.synth.figure.part_transforms`.
    """
    mid = np.array([(np.add(p.lo, p.hi) / 2.0) for p in fig.parts])  # [P, 3]
    return (np.einsum("ptij,pj->pti", rot, mid) + org).mean(axis=0)


def _smooth(x: np.ndarray, width: float) -> np.ndarray:
    """Gaussian smoothing [T, D] along time with std ``width`` frames (edges reflected)."""
    if width <= 0:
        return x
    r = int(np.ceil(3 * width))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / width) ** 2)
    k /= k.sum()
    padded = np.pad(x, ((r, r), (0, 0)), mode="reflect")
    return np.stack([np.convolve(padded[:, d], k, mode="valid") for d in range(x.shape[1])], -1)


def _inside_room(eyes: np.ndarray) -> np.ndarray:
    """Camera centres [T, 3] kept 0.3 m inside the room's walls, floor and ceiling."""
    lim = ROOM_HALF - 0.3
    return np.stack([np.clip(eyes[:, 0], -lim, lim), np.clip(eyes[:, 1], -lim, lim),
                     np.clip(eyes[:, 2], 0.4, ROOM_HEIGHT - 0.3)], -1)


def _distance_for(centres: np.ndarray, focal: float) -> float:
    """A camera distance at which the subject's whole path (centres [T, 3]) stays in view."""
    spread = np.linalg.norm(centres[:, :2] - centres[:, :2].mean(axis=0), axis=1).max()
    return float(max(3.0, (spread + 0.9) * 2.0 * focal))


def rig_cameras(rig: str, rng: np.random.Generator, centres: np.ndarray, focal: float) -> np.ndarray:
    """Training cameras w2c [T, 4, 4] of camera family ``rig`` looking at the subject.

    ``centres`` [T, 3] the subject's centre per frame (:func:`subject_centres`), ``focal`` in
    image widths. ``orbit``: an arc around the path's middle, following the subject;
    ``follow``: a camera that keeps a fixed offset to the subject, smoothed like an operator;
    ``pan``: a fixed centre that only turns; ``static``: fixed and still; ``shake``: the
    orbit with hand-held jitter (a few cm, about 1 degree, changing every frame).
    """
    T = len(centres)
    u = np.linspace(0.0, 1.0, T)
    target = _smooth(centres, 2.0)
    mid = centres.mean(axis=0)
    dist = _distance_for(centres, focal)
    az0 = rng.uniform(0.0, 2.0 * np.pi)
    height = rng.uniform(1.3, 1.8)
    if rig in ("orbit", "shake"):
        sweep = rng.uniform(0.6, 0.8) * rng.choice([-1.0, 1.0])
        az = az0 + sweep * (u - 0.5)
        radius = dist + 0.25 * np.sin(np.pi * u + rng.uniform(0, 6.3))
        eyes = mid + _orbit_eye(az, radius, np.zeros(T)) + np.array([0.0, 0.0, height - mid[2]])
        eyes[:, 2] = height + 0.15 * np.sin(1.5 * np.pi * u + rng.uniform(0, 6.3))
    elif rig == "follow":
        offset = _orbit_eye(np.array(az0), np.array(min(dist, 3.2)), np.array(0.0))
        eyes = _smooth(centres + offset, 3.0)
        eyes[:, 2] = height
    elif rig in ("pan", "static"):
        eyes = np.repeat((mid + _orbit_eye(np.array(az0), np.array(dist), np.array(0.0)))[None], T, 0)
        eyes[:, 2] = height
        if rig == "static":
            target = np.repeat(mid[None], T, 0)
    else:
        raise ValueError(f"unknown camera rig {rig!r}; known: {', '.join(RIGS)}")
    eyes = _inside_room(eyes)
    if rig == "shake":
        eyes = eyes + _smooth(rng.normal(0.0, 0.03, size=(T, 3)), 0.7)
        target = target + rng.normal(0.0, 0.05, size=(T, 3))
    return np.stack([look_at(e, c) for e, c in zip(eyes, target, strict=True)])


def rig_heldout(rng: np.random.Generator, count: int, centres: np.ndarray, train_w2c: np.ndarray,
                focal: float) -> np.ndarray:
    """Static held-out cameras [C, 4, 4] to both sides of the training cameras' mean direction,
    looking at the middle of the subject's path."""
    mid = centres.mean(axis=0)
    eyes = np.stack([np.linalg.inv(w)[:3, 3] for w in train_w2c])
    d = eyes.mean(axis=0)[:2] - mid[:2]
    base = float(np.arctan2(d[0], -d[1]))  # azimuth convention of _orbit_eye
    dist = _distance_for(centres, focal)
    out = []
    for k in range(count):
        side = -1.0 if k % 2 == 0 else 1.0
        az = base + side * (0.95 + 0.25 * (k // 2) + rng.uniform(0.0, 0.1))
        eye = mid + _orbit_eye(np.array(az), np.array(dist), np.array(0.0))
        eye[2] = 1.25 + 0.5 * (k % 2)
        out.append(look_at(_inside_room(eye[None])[0], mid))
    return np.stack(out)


RIGS = ("orbit", "follow", "pan", "static", "shake")


def build_scene(preset: SynthPreset, seed: int, family: str = "sway", rig: str = "orbit") -> Scene:
    """The full deterministic scene for ``preset``, ``seed``, scene ``family`` and camera ``rig``.

    ``sway`` with ``orbit`` is the original scene (identical for a given seed); every other
    family also draws the light direction per seed.
    """
    rng = np.random.default_rng(seed)
    if family == "sway":
        fig = build_figure(rng, preset.fast_amplitude, preset.fast_omega, preset.elbow_amplitude)
    elif family in FAMILIES:
        fig = FAMILIES[family](rng, preset.frames)
    else:
        raise ValueError(f"unknown scene family {family!r}; known: {', '.join(FAMILY_NAMES)}")
    rot, org = part_transforms(fig, np.arange(preset.frames))
    static = _static_boxes(rng, len(fig.parts))
    K = intrinsics(preset.focal_px, preset.focal_px, preset.width / 2, preset.height / 2)
    texturer = make_texturer(rng, len(fig.parts), len(static) - 1, 3.3 / preset.focal_px)
    if family == "sway" and rig == "orbit":
        train, heldout = training_cameras(rng, preset.frames), heldout_cameras(rng, preset.heldout)
    else:
        texturer = replace(texturer, light=random_light(rng))
        centres = subject_centres(fig, rot, org)
        train = rig_cameras(rig, rng, centres, preset.focal)
        heldout = rig_heldout(rng, preset.heldout, centres, train, preset.focal)
    return Scene(preset, fig, texturer, static, rot, org, K, train, heldout)
