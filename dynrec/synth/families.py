"""Scene families: what moves in a synthetic scene (``dynrec synth --family``).

Each family builds a :class:`~dynrec.synth.figure.Figure` (a forest of rigid boxes) from a
seeded generator, with randomised sizes, speeds, paths and phases, so one family covers
many scenes. World frame as :mod:`dynrec.synth.figure`: z up, floor at z = 0, the room
spans ``[-4, 4]^2``; a figure's front is its -y axis.

- ``sway``: the original humanoid swaying in place, one fast arm (the ``small`` scene);
- ``walk`` / ``run``: a humanoid walking (running) along a curved path across the room;
- ``spin``: a rigid three-blade body spinning fast about a tilted axis while drifting;
- ``arm``: an articulated robot arm on a fixed base;
- ``quadruped``: a four-legged animal trotting along a curved path;
- ``multi``: several independent movers (a walker and a spinning body);
- ``stopgo``: a humanoid that walks, stops and starts again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from dynrec.synth.figure import Dof, Figure, Part, RootPath, build_figure

X_AXIS, Y_AXIS, Z_AXIS = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)


def _hanging(half_x: float, half_y: float, length: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Corners of a limb hanging down from its joint along -z (overlapping it by 0.02)."""
    return (-half_x, -half_y, -length), (half_x, half_y, 0.02)


def _standing(half_x: float, half_y: float, length: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Corners of a link rising from its joint along +z."""
    return (-half_x, -half_y, -0.02), (half_x, half_y, length)


def _centred_path(path: RootPath, frames: int, centre: np.ndarray) -> RootPath:
    """``path`` moved so that its mean position over ``frames`` lies at ``centre`` [2] (x, y)."""
    _, origin = path.transforms(np.arange(frames, dtype=np.float64))
    shift = np.asarray(centre, float) - origin[:, :2].mean(axis=0)
    x, y, z = path.start
    return replace(path, start=(x + shift[0], y + shift[1], z))


def _travel_path(rng: np.random.Generator, frames: int, speed: float, height: float,
                 stop_go: float = 0.0, bob: float = 0.0, bob_omega: float = 0.0) -> RootPath:
    """A curved path of ``speed`` m/frame facing its direction of travel, centred near the origin."""
    length = speed * frames
    turn = rng.uniform(0.5, 1.2) * rng.choice([-1.0, 1.0])  # radians turned over the whole path
    path = RootPath(
        (0.0, 0.0, height),
        heading=float(rng.uniform(0.0, 2.0 * np.pi)),
        speed=speed,
        curvature=float(turn / max(length, 1e-6)),
        stop_go=stop_go,
        period=float(frames / rng.uniform(1.5, 2.5)),
        face_travel=True,
        bob=bob,
        bob_omega=bob_omega,
    )
    return _centred_path(path, frames, rng.uniform(-0.3, 0.3, size=2))


def humanoid_gait(rng: np.random.Generator, frames: int, run: bool = False, stop_go: float = 0.0,
                  centre: tuple[float, float] | None = None) -> list[Part]:
    """A humanoid of 10 boxes with a walking (or running) gait along a curved path.

    Legs swing about the hips' x axis in antiphase (the figure faces -y, the direction of
    travel), knees bend behind, arms swing against the legs. The path is 2.4-3.4 m long
    (3-4 m running) whatever the frame count, and the gait rate follows from the speed (two
    steps of ``2 L sin(A)`` per cycle, clipped to 0.2-0.8 rad/frame), so feet skate little.
    """
    s = rng.uniform(0.85, 1.15)  # overall size
    amp = rng.uniform(0.55, 0.7) if run else rng.uniform(0.35, 0.5)
    leg = 0.84 * s
    length = rng.uniform(3.0, 4.0) if run else rng.uniform(2.4, 3.4)  # the room is 8 m wide
    speed = length / frames
    omega = float(np.clip(speed * 2.0 * np.pi / (4.0 * leg * np.sin(amp)), 0.2, 0.8))  # gait rad/frame
    ph = rng.uniform(0.0, 2.0 * np.pi, size=4)
    hip_h = 0.92 * s
    bob = 0.06 * s if run else 0.025 * s
    path = _travel_path(rng, frames, speed, hip_h, stop_go, bob, omega)
    if centre is not None:
        path = _centred_path(path, frames, np.asarray(centre))
    knee_bias, knee_amp = (0.7, 0.55) if run else (0.35, 0.3)
    arm_amp = amp * (1.1 if run else 0.8)
    elbow = -0.9 if run else -0.3
    p0 = ph[0]

    def limb(hx: float, length: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return _hanging(hx * s, hx * s, length * s)

    return [
        Part("torso", -1, (0.0, 0.0, hip_h), (-0.19 * s, -0.1 * s, -0.04 * s), (0.19 * s, 0.1 * s, 0.58 * s),
             (Dof(Z_AXIS, 0.0, 0.12, omega, p0), Dof(X_AXIS, -0.12 if run else -0.03, 0.04, 2 * omega, ph[1])),
             "pelvis", path=path),
        Part("head", 0, (0.0, 0.0, 0.58 * s), (-0.09 * s, -0.1 * s, 0.03 * s), (0.09 * s, 0.1 * s, 0.28 * s),
             (Dof(Z_AXIS, 0.0, 0.25, 0.5 * omega, ph[2]),), "neck", (0.0, 0.0, 0.28 * s), "head_top"),
        Part("upper_arm_r", 0, (-0.25 * s, 0.0, 0.54 * s), *limb(0.05, 0.3),
             (Dof(X_AXIS, 0.0, arm_amp, omega, p0), Dof(Y_AXIS, 0.12, 0.0, 0.0)), "shoulder_r"),
        Part("forearm_r", 2, (0.0, 0.0, -0.3 * s), *limb(0.04, 0.28),
             (Dof(X_AXIS, elbow, 0.25, omega, p0 + 0.5),), "elbow_r", (0.0, 0.0, -0.28 * s), "hand_r"),
        Part("upper_arm_l", 0, (0.25 * s, 0.0, 0.54 * s), *limb(0.05, 0.3),
             (Dof(X_AXIS, 0.0, arm_amp, omega, p0 + np.pi), Dof(Y_AXIS, -0.12, 0.0, 0.0)), "shoulder_l"),
        Part("forearm_l", 4, (0.0, 0.0, -0.3 * s), *limb(0.04, 0.28),
             (Dof(X_AXIS, elbow, 0.25, omega, p0 + np.pi + 0.5),), "elbow_l", (0.0, 0.0, -0.28 * s), "hand_l"),
        Part("thigh_r", 0, (-0.1 * s, 0.0, 0.0), *limb(0.07, 0.42),
             (Dof(X_AXIS, 0.0, amp, omega, p0 + np.pi),), "hip_r"),
        Part("shin_r", 6, (0.0, 0.0, -0.42 * s), *limb(0.055, 0.42),
             (Dof(X_AXIS, knee_bias, knee_amp, omega, p0 + np.pi - 1.2),), "knee_r", (0.0, 0.0, -0.42 * s),
             "foot_r"),
        Part("thigh_l", 0, (0.1 * s, 0.0, 0.0), *limb(0.07, 0.42),
             (Dof(X_AXIS, 0.0, amp, omega, p0),), "hip_l"),
        Part("shin_l", 8, (0.0, 0.0, -0.42 * s), *limb(0.055, 0.42),
             (Dof(X_AXIS, knee_bias, knee_amp, omega, p0 - 1.2),), "knee_l", (0.0, 0.0, -0.42 * s), "foot_l"),
    ]


def spinner(rng: np.random.Generator, frames: int, centre: tuple[float, float] = (0.0, 0.0)) -> list[Part]:
    """A rigid hub with three blades spinning fast (0.3-0.45 rad/frame) about a tilted axis
    while drifting slowly along a line."""
    a = rng.uniform(0.0, 2.0 * np.pi)
    axis = np.array([np.cos(a), np.sin(a), rng.uniform(0.2, 1.0)])
    axis /= np.linalg.norm(axis)
    tilt = float(np.arccos(axis[2]))
    tilt_axis = np.cross([0.0, 0.0, 1.0], axis)
    tilt_axis = tilt_axis / max(np.linalg.norm(tilt_axis), 1e-9)
    speed = rng.uniform(0.3, 0.8) / frames
    path = RootPath((0.0, 0.0, rng.uniform(0.8, 1.2)), heading=float(rng.uniform(0, 2 * np.pi)), speed=speed,
                    spin_axis=tuple(axis), spin_rate=float(rng.uniform(0.3, 0.45) * rng.choice([-1.0, 1.0])))
    path = _centred_path(path, frames, np.asarray(centre))
    hub = 0.1 * rng.uniform(0.9, 1.2)
    blade = rng.uniform(0.6, 0.8)
    width = rng.uniform(0.1, 0.14)
    parts = [Part("hub", -1, (0.0, 0.0, 0.0), (-hub, -hub, -hub), (hub, hub, hub),
                  (Dof(tuple(tilt_axis), tilt, 0.0, 0.0),), "hub", path=path)]
    for k in range(3):
        a = 2.0 * np.pi * k / 3.0
        parts.append(Part(f"blade{k}", 0, (hub * np.cos(a), hub * np.sin(a), 0.0), (-0.02, -width, -0.02),
                          (blade, width, 0.02), (Dof(Z_AXIS, a, 0.0, 0.0), Dof(X_AXIS, 0.35, 0.0, 0.0)),
                          f"blade{k}_root", (blade, 0.0, 0.0), f"blade{k}_tip"))
    return parts


def robot_arm(rng: np.random.Generator, frames: int) -> list[Part]:
    """A four-joint arm (turret yaw, shoulder, elbow, wrist pitch + roll) on a fixed base."""
    base_xy = rng.uniform(-0.4, 0.4, size=2)
    l1, l2, l3 = rng.uniform(0.45, 0.6), rng.uniform(0.4, 0.55), rng.uniform(0.15, 0.22)
    w = rng.uniform(0.9, 1.4, size=4) * 0.12  # joint speeds rad/frame
    ph = rng.uniform(0.0, 2.0 * np.pi, size=5)
    base = RootPath((float(base_xy[0]), float(base_xy[1]), 0.0))
    return [
        Part("base", -1, (0.0, 0.0, 0.0), (-0.2, -0.2, 0.0), (0.2, 0.2, 0.18), (), "base", path=base),
        Part("turret", 0, (0.0, 0.0, 0.18), (-0.12, -0.12, -0.02), (0.12, 0.12, 0.16),
             (Dof(Z_AXIS, 0.0, rng.uniform(0.8, 1.3), w[0], ph[0]),), "turret"),
        Part("link1", 1, (0.0, 0.0, 0.16), *_standing(0.06, 0.06, l1),
             (Dof(X_AXIS, 0.3, rng.uniform(0.4, 0.6), w[1], ph[1]),), "shoulder"),
        Part("link2", 2, (0.0, 0.0, l1), *_standing(0.05, 0.05, l2),
             (Dof(X_AXIS, 0.9, rng.uniform(0.5, 0.8), w[2], ph[2]),), "elbow"),
        Part("gripper", 3, (0.0, 0.0, l2), *_standing(0.07, 0.035, l3),
             (Dof(X_AXIS, 0.4, rng.uniform(0.5, 0.9), w[3], ph[3]), Dof(Z_AXIS, 0.0, 1.2, 2 * w[3], ph[4])),
             "wrist", (0.0, 0.0, l3), "tool"),
    ]


def quadruped(rng: np.random.Generator, frames: int) -> list[Part]:
    """A four-legged animal (body, head, tail, two-segment legs) trotting along a curved path:
    diagonal legs swing together."""
    s = rng.uniform(0.8, 1.2)
    amp = rng.uniform(0.35, 0.5)
    leg = 0.56 * s
    speed = rng.uniform(1.4, 2.2) / frames
    omega = float(np.clip(speed * 2.0 * np.pi / (4.0 * leg * np.sin(amp)), 0.2, 0.8))
    ph = rng.uniform(0.0, 2.0 * np.pi, size=3)
    height = 0.6 * s
    path = _travel_path(rng, frames, speed, height, bob=0.02 * s, bob_omega=omega)
    hx, hy = 0.15 * s, 0.4 * s
    thigh = _hanging(0.05 * s, 0.05 * s, 0.28 * s)
    shin = _hanging(0.04 * s, 0.04 * s, 0.28 * s)
    parts = [
        Part("body", -1, (0.0, 0.0, height), (-hx, -hy, -0.08 * s), (hx, hy, 0.14 * s),
             (Dof(X_AXIS, 0.0, 0.04, 2 * omega, ph[0]),), "withers", path=path),
        Part("head", 0, (0.0, -hy, 0.1 * s), (-0.08 * s, -0.25 * s, -0.06 * s), (0.08 * s, 0.0, 0.1 * s),
             (Dof(X_AXIS, -0.2, 0.15, omega, ph[1]),), "neck", (0.0, -0.25 * s, 0.0), "nose"),
        Part("tail", 0, (0.0, hy, 0.1 * s), (-0.025, 0.0, -0.025), (0.025, 0.3 * s, 0.025),
             (Dof(Z_AXIS, 0.0, 0.5, 2 * omega, ph[2]), Dof(X_AXIS, 0.4, 0.0, 0.0)), "tail_root",
             (0.0, 0.3 * s, 0.0), "tail_tip"),
    ]
    for name, x, y, phase in (("fl", -1, -1, 0.0), ("fr", 1, -1, np.pi), ("bl", -1, 1, np.pi), ("br", 1, 1, 0.0)):
        parent = len(parts)
        parts.append(Part(f"thigh_{name}", 0, (x * (hx - 0.05 * s), y * (hy - 0.06 * s), -0.04 * s), *thigh,
                          (Dof(X_AXIS, 0.0, amp, omega, ph[0] + phase),), f"hip_{name}"))
        parts.append(Part(f"shin_{name}", parent, (0.0, 0.0, -0.28 * s), *shin,
                          (Dof(X_AXIS, -0.2 * y, 0.3, omega, ph[0] + phase - 1.0),), f"knee_{name}",
                          (0.0, 0.0, -0.28 * s), f"paw_{name}"))
    return parts


def _forest(*trees: list[Part]) -> list[Part]:
    """Concatenate part lists into one forest (parent indices shifted, names made unique)."""
    out: list[Part] = []
    for k, tree in enumerate(trees):
        shift = len(out)
        for p in tree:
            suffix = f"_{k}" if len(trees) > 1 else ""
            out.append(replace(p, parent=p.parent + shift if p.parent >= 0 else -1, name=p.name + suffix,
                               joint=p.joint + suffix, end_name=p.end_name + suffix if p.end_name else ""))
    return out


def _figure(parts: list[Part]) -> Figure:
    return Figure(tuple(parts), ((0.0, 0.0, 0.0), 0.0, 0.0), parts[-1].name)


Builder = Callable[[np.random.Generator, int], Figure]

FAMILIES: dict[str, Builder] = {
    "walk": lambda rng, T: _figure(humanoid_gait(rng, T)),
    "run": lambda rng, T: _figure(humanoid_gait(rng, T, run=True)),
    "stopgo": lambda rng, T: _figure(humanoid_gait(rng, T, stop_go=1.0)),
    "spin": lambda rng, T: _figure(spinner(rng, T)),
    "arm": lambda rng, T: _figure(robot_arm(rng, T)),
    "quadruped": lambda rng, T: _figure(quadruped(rng, T)),
    "multi": lambda rng, T: _figure(_forest(humanoid_gait(rng, T, centre=(-0.7, 0.3)), spinner(rng, T, (0.9, -0.4)))),
}
#: every family name, ``sway`` (the default, built by :func:`dynrec.synth.figure.build_figure`) first.
FAMILY_NAMES = ("sway", *FAMILIES)

__all__ = ["FAMILIES", "FAMILY_NAMES", "build_figure"]
