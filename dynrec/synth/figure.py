"""The articulated foreground: a kinematic tree of rigid boxes driven by smooth joint angles.

World frame: z up, the floor is ``z = 0``, the figure stands near the origin facing -y
(towards the training camera). Every part has a local frame whose origin is its joint
(the root's is the pelvis); a part's world transform is its parent's composed with a
translation to the joint and the joint's rotation. Angles are ``bias + amplitude *
sin(omega * t + phase)`` with ``t`` the frame index, so motion is smooth and exact at any t.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Dof:
    """One rotational degree of freedom about ``axis`` (in the parent's frame)."""

    axis: tuple[float, float, float]
    bias: float
    amplitude: float
    omega: float
    phase: float = 0.0

    def angle(self, t: np.ndarray) -> np.ndarray:
        """Angle [T] in radians at frame times ``t`` [T]."""
        return self.bias + self.amplitude * np.sin(self.omega * t + self.phase)


@dataclass(frozen=True)
class RootPath:
    """Where a root part is at frame ``t``: travel along a planar arc, spin, bounce.

    The root's origin starts at ``start`` [3] and travels a distance
    ``s(t) = speed * (t - stop_go * period / (2 pi) * sin(2 pi t / period))`` (metres; the
    speed is ``speed * (1 - stop_go * cos(2 pi t / period))``, so ``stop_go = 1`` stops it
    fully once per period) along a path whose heading (radians about +z, 0 = +x) starts at
    ``heading`` and turns by ``curvature`` radians per metre. With ``face_travel`` the root
    is yawed so that its -y axis (the figure's front) points along the path. It also spins
    about ``spin_axis`` (its own frame) by ``spin_rate`` radians per frame and bobs up by
    ``bob * (1 - cos(2 bob_omega t)) / 2``. Everything is closed-form, so exact at any t.
    """

    start: tuple[float, float, float]
    heading: float = 0.0
    speed: float = 0.0
    curvature: float = 0.0
    stop_go: float = 0.0
    period: float = 24.0
    face_travel: bool = False
    spin_axis: tuple[float, float, float] = (0.0, 0.0, 1.0)
    spin_rate: float = 0.0
    bob: float = 0.0
    bob_omega: float = 0.0

    def distance(self, t: np.ndarray) -> np.ndarray:
        """Distance travelled [T] at frames ``t`` [T]."""
        w = 2.0 * np.pi / self.period
        return self.speed * (t - self.stop_go * np.sin(w * t) / w)

    def transforms(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(R [T, 3, 3], origin [T, 3])`` of the root's frame (before its own DoFs)."""
        s = self.distance(t)
        k = self.curvature
        h = self.heading + k * s
        if abs(k) < 1e-9:
            dx, dy = s * np.cos(self.heading), s * np.sin(self.heading)
        else:
            dx = (np.sin(h) - np.sin(self.heading)) / k
            dy = (np.cos(self.heading) - np.cos(h)) / k
        z = self.bob * (1.0 - np.cos(2.0 * self.bob_omega * t)) / 2.0
        origin = np.asarray(self.start, float)[None] + np.stack([dx, dy, z], -1)
        yaw = h + np.pi / 2 if self.face_travel else np.zeros_like(t)
        rot = rotation(np.array([0.0, 0.0, 1.0]), yaw) @ rotation(
            np.array(self.spin_axis), self.spin_rate * t
        )
        return rot, origin


@dataclass(frozen=True)
class Part:
    """A rigid box of the figure.

    ``offset`` [3] is the joint position in the parent's frame (the root's is its rest
    position in the world); ``lo``/``hi`` [3] the box corners in the part's own frame;
    ``joint`` names the keypoint at the part's origin and ``end`` / ``end_name`` an
    optional end-effector keypoint in the part's frame. A root part (``parent < 0``) moves
    along its ``path``; without one it sways about ``offset`` with the figure's ``sway``.
    """

    name: str
    parent: int
    offset: tuple[float, float, float]
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    dofs: tuple[Dof, ...]
    joint: str
    end: tuple[float, float, float] | None = None
    end_name: str = ""
    path: RootPath | None = None


@dataclass(frozen=True)
class Figure:
    """A kinematic forest (one or more roots); ``parts`` are ordered parents first.

    ``sway`` holds (amplitude [3], omega, phase) of the translation of roots without a path.
    """

    parts: tuple[Part, ...]
    sway: tuple[tuple[float, float, float], float, float]
    fast_part: str

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parts]


def rotation(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rodrigues: rotations [T, 3, 3] about unit-normalised ``axis`` [3] by ``angle`` [T]."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    cross = np.array([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])
    s, c = np.sin(angle)[:, None, None], np.cos(angle)[:, None, None]
    return np.eye(3) + s * cross + (1.0 - c) * (cross @ cross)


def _box(
    half_x: float, half_y: float, length: float
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Corners of a limb hanging down from its joint along -z (overlapping it by 0.02)."""
    return (-half_x, -half_y, -length), (half_x, half_y, 0.02)


def build_figure(
    rng: np.random.Generator, fast_amplitude: float, fast_omega: float, elbow_amplitude: float
) -> Figure:
    """A humanoid of 10 boxes with random phases; the right arm is the fast one.

    The figure's right side is world -x (it faces -y). Arms swing sideways (about the
    y axis), i.e. in the image plane of a camera in front of the figure.
    """
    ph = rng.uniform(0.0, 2.0 * np.pi, size=16)
    slow = rng.uniform(0.14, 0.2, size=6)
    y_axis, x_axis, z_axis = (0.0, 1.0, 0.0), (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)
    arm_lo, arm_hi = _box(0.05, 0.05, 0.3)
    fore_lo, fore_hi = _box(0.04, 0.04, 0.28)
    thigh_lo, thigh_hi = _box(0.07, 0.07, 0.42)
    shin_lo, shin_hi = _box(0.055, 0.055, 0.42)
    parts = (
        Part(
            "torso",
            -1,
            (0.0, 0.0, 0.92),
            (-0.19, -0.1, -0.04),
            (0.19, 0.1, 0.58),
            (Dof(z_axis, 0.0, 0.3, slow[0], ph[0]), Dof(x_axis, 0.0, 0.06, slow[1], ph[1])),
            "pelvis",
        ),
        Part(
            "head",
            0,
            (0.0, 0.0, 0.58),
            (-0.09, -0.1, 0.03),
            (0.09, 0.1, 0.28),
            (Dof(x_axis, 0.0, 0.25, slow[2], ph[2]), Dof(z_axis, 0.0, 0.35, slow[3], ph[3])),
            "neck",
            (0.0, 0.0, 0.28),
            "head_top",
        ),
        Part(
            "upper_arm_r",
            0,
            (-0.25, 0.0, 0.54),
            arm_lo,
            arm_hi,
            (Dof(y_axis, 1.0, fast_amplitude, fast_omega, ph[4]),),
            "shoulder_r",
        ),
        Part(
            "forearm_r",
            2,
            (0.0, 0.0, -0.3),
            fore_lo,
            fore_hi,
            (Dof(y_axis, 0.5, elbow_amplitude, fast_omega, ph[4] + 0.6),),
            "elbow_r",
            (0.0, 0.0, -0.28),
            "hand_r",
        ),
        Part(
            "upper_arm_l",
            0,
            (0.25, 0.0, 0.54),
            arm_lo,
            arm_hi,
            (Dof(y_axis, -0.45, 0.3, slow[4], ph[5]), Dof(x_axis, 0.3, 0.35, slow[4], ph[6])),
            "shoulder_l",
        ),
        Part(
            "forearm_l",
            4,
            (0.0, 0.0, -0.3),
            fore_lo,
            fore_hi,
            (Dof(x_axis, 0.8, 0.5, slow[4], ph[7]),),
            "elbow_l",
            (0.0, 0.0, -0.28),
            "hand_l",
        ),
        Part(
            "thigh_r",
            0,
            (-0.1, 0.0, 0.0),
            thigh_lo,
            thigh_hi,
            (Dof(x_axis, 0.0, 0.35, slow[5], ph[8]), Dof(y_axis, 0.08, 0.06, slow[5], ph[9])),
            "hip_r",
        ),
        Part(
            "shin_r",
            6,
            (0.0, 0.0, -0.42),
            shin_lo,
            shin_hi,
            (Dof(x_axis, -0.45, 0.4, slow[5], ph[8] + 1.2),),
            "knee_r",
            (0.0, 0.0, -0.42),
            "foot_r",
        ),
        Part(
            "thigh_l",
            0,
            (0.1, 0.0, 0.0),
            thigh_lo,
            thigh_hi,
            (
                Dof(x_axis, 0.0, 0.35, slow[5], ph[8] + np.pi),
                Dof(y_axis, -0.08, 0.06, slow[5], ph[10]),
            ),
            "hip_l",
        ),
        Part(
            "shin_l",
            8,
            (0.0, 0.0, -0.42),
            shin_lo,
            shin_hi,
            (Dof(x_axis, -0.45, 0.4, slow[5], ph[8] + np.pi + 1.2),),
            "knee_l",
            (0.0, 0.0, -0.42),
            "foot_l",
        ),
    )
    sway = ((0.15, 0.1, 0.03), float(rng.uniform(0.08, 0.12)), float(ph[11]))
    return Figure(parts, sway, "forearm_r")


def part_transforms(fig: Figure, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World transforms of every part at times ``t`` [T].

    Returns ``(R [P, T, 3, 3], c [P, T, 3])``: a local point ``q`` of part ``p`` is at
    ``R[p, t] @ q + c[p, t]`` in the world.
    """
    t = np.asarray(t, dtype=np.float64)
    n = len(t)
    rots = np.zeros((len(fig.parts), n, 3, 3))
    orgs = np.zeros((len(fig.parts), n, 3))
    amp, omega, phase = fig.sway
    for i, part in enumerate(fig.parts):
        local = np.broadcast_to(np.eye(3), (n, 3, 3))
        for dof in part.dofs:
            local = local @ rotation(np.array(dof.axis), dof.angle(t))
        offset = np.asarray(part.offset, dtype=np.float64)
        if part.parent < 0 and part.path is not None:
            base_rot, base_org = part.path.transforms(t)
            rots[i], orgs[i] = base_rot @ local, base_org
        elif part.parent < 0:
            rates, shifts = np.array([1.0, 0.7, 2.0]), np.array([0.0, 1.3, 2.1])
            sway = np.asarray(amp) * np.sin(omega * rates * t[:, None] + phase + shifts)
            rots[i], orgs[i] = local, offset + sway
        else:
            pr, pc = rots[part.parent], orgs[part.parent]
            rots[i] = pr @ local
            orgs[i] = pc + pr @ offset
    return rots, orgs


def keypoint_layout(
    fig: Figure,
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, list[set[int]]]:
    """Keypoints of the tree: every part's joint, then every end effector.

    Returns ``(names [J], part [J], local [J, 3], skeleton [E, 2], adjacent)`` where
    keypoint ``j`` is the point ``local[j]`` of part ``part[j]`` and ``adjacent[j]`` is
    the set of parts that touch it (used for the occlusion test of points inside the body).
    """
    names, owner, local, edges, adjacent = [], [], [], [], []
    for i, part in enumerate(fig.parts):
        names.append(part.joint)
        owner.append(i)
        local.append((0.0, 0.0, 0.0))
        children = {k for k, q in enumerate(fig.parts) if q.parent == i}
        adjacent.append({i} | children | ({part.parent} if part.parent >= 0 else set()))
        if part.parent >= 0:
            edges.append((part.parent, i))
    for i, part in enumerate(fig.parts):
        if part.end is not None:
            edges.append((i, len(names)))
            names.append(part.end_name)
            owner.append(i)
            local.append(part.end)
            adjacent.append({i})
    return (
        names,
        np.array(owner),
        np.array(local, dtype=np.float64),
        np.array(edges, dtype=np.int64),
        adjacent,
    )
