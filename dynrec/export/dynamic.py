"""The compact dynamic form: the canonical Gaussians once, plus the motion that deforms the
foreground to each frame, as the model deforms it (:mod:`dynrec.model.skinning`,
:mod:`dynrec.model.himor`).

``canonical.ply``: every Gaussian in the 3DGS layout of the per-frame PLYs
(:mod:`dynrec.export.gaussians`), in the same row order, the foreground at its canonical
pose (quaternions normalised). ``motion.npz`` (:class:`CompactMotion`):

* ``time`` [F] the exported frames (0..T-1), ``timestamp`` [F] seconds;
* ``foreground`` [G] bool, the rows of ``canonical.ply`` that move (the others are static);
* ``blend``: ``"dual-quaternion"`` (the HiMoR motion tree) or ``"rot6d"`` (global bases).

``dual-quaternion``: ``node_rotations`` [F, L, 4] (unit wxyz, ``w >= 0``) and
``node_translations`` [F, L, 3], the motion ``x -> R x + t`` of each leaf node of the tree
from the canonical pose to frame ``time[f]`` (the SirenPose residual included);
``skin_index`` [Gf, K] (into L) and ``skin_weights`` [Gf, K] (summing to 1) of the
foreground rows in order (HiMoR Eq. 5). A Gaussian's motion blends its K node motions as
dual quaternions (HiMoR Eq. 4, Kavan et al. 2008): ``dq_k = (q_k, 0.5 (0, t_k) q_k)``; each
``dq_k`` whose ``q_k . q_p < 0`` is negated, ``p`` the node of largest weight;
``b = sum_k w_k dq_k``; ``b_r / |b_r|`` is the rotation ``q`` and
``t = 2 vec(b_d' conj(q))`` with ``b_d' = b_d / |b_r|`` minus its component along ``q``.

``rot6d``: ``basis_rot6d`` [F, M, 6] and ``basis_translations`` [F, M, 3], the M global
motion bases at each frame, and ``coefficients`` [Gf, M]. A Gaussian's motion is
``r = sum_m c_m rot6d_m``, ``t = sum_m c_m trans_m``, ``R = [b1, b2, b1 x b2]`` with
``b1 = r[:3] / |r[:3]|``, ``b2 = normalise(r[3:] - (b1 . r[3:]) b1)`` (Gram-Schmidt), ``q``
the unit quaternion of ``R`` with ``w >= 0``.

Either way the Gaussian at frame ``time[f]`` has mean ``R mu + t`` and rotation
``normalise(q * q_canonical)`` (Hamilton product, wxyz); scale, opacity and colour do not
change. :func:`frame_gaussians` does this with numpy alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from dynrec.artifacts.base import Field, load_npz, save_npz
from dynrec.errors import ArtifactError, DynrecError
from dynrec.export.gaussians import read_ply, write_ply
from dynrec.geometry.se3 import matrix_to_quat
from dynrec.model.scene import DynamicScene, Snapshot
from dynrec.model.sirenpose import leaf_transforms_with_residual

BLENDS = ("dual-quaternion", "rot6d")


@dataclass
class CompactMotion:
    """The motion of ``motion.npz`` (fields and conventions in the module docstring); the
    fields of the other blend are None."""

    time: np.ndarray
    timestamp: np.ndarray
    foreground: np.ndarray
    blend: str
    node_rotations: np.ndarray | None = None
    node_translations: np.ndarray | None = None
    skin_index: np.ndarray | None = None
    skin_weights: np.ndarray | None = None
    basis_rot6d: np.ndarray | None = None
    basis_translations: np.ndarray | None = None
    coefficients: np.ndarray | None = None

    FILE = "motion.npz"
    SPEC: ClassVar[dict[str, Field]] = {
        "time": Field(("F",), "iu"),
        "timestamp": Field(("F",)),
        "foreground": Field(("G",), "b"),
        "blend": Field((), "U"),
        "node_rotations": Field(("F", "L", 4), optional=True),
        "node_translations": Field(("F", "L", 3), optional=True),
        "skin_index": Field(("Gf", "K"), "iu", optional=True),
        "skin_weights": Field(("Gf", "K"), optional=True),
        "basis_rot6d": Field(("F", "M", 6), optional=True),
        "basis_translations": Field(("F", "M", 3), optional=True),
        "coefficients": Field(("Gf", "M"), optional=True),
    }
    NEEDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "dual-quaternion": ("node_rotations", "node_translations", "skin_index", "skin_weights"),
        "rot6d": ("basis_rot6d", "basis_translations", "coefficients"),
    }

    def arrays(self) -> dict[str, np.ndarray | None]:
        return {name: getattr(self, name) for name in self.SPEC}

    def save(self, folder: Path) -> None:
        self._check(folder / self.FILE, {k: v for k, v in self.arrays().items() if v is not None})
        save_npz(folder / self.FILE, {k: None if v is None else np.asarray(v) for k, v in self.arrays().items()},
                 self.SPEC)

    @classmethod
    def load(cls, folder: Path) -> CompactMotion:
        path = folder / cls.FILE
        a, _ = load_npz(path, cls.SPEC)
        cls._check(path, a)
        return cls(**{k: (str(v) if k == "blend" else v) for k, v in a.items()})

    @classmethod
    def _check(cls, path: Path, a: dict) -> None:
        """The blend's fields are there, the foreground count and skin indices agree."""
        blend = str(a["blend"])
        if blend not in BLENDS:
            raise ArtifactError(path, "blend", f"is {blend!r}; expected one of {', '.join(BLENDS)}")
        for name in cls.NEEDS[blend]:
            if a.get(name) is None:
                raise ArtifactError(path, name, f"missing (needed by blend {blend!r})")
        per_gaussian = a["skin_index"] if blend == "dual-quaternion" else a["coefficients"]
        if len(per_gaussian) != int(np.asarray(a["foreground"]).sum()):
            raise ArtifactError(path, "foreground", f"has {int(np.asarray(a['foreground']).sum())} foreground rows "
                                f"but the motion has {len(per_gaussian)}")
        if blend == "dual-quaternion":
            index, nodes = np.asarray(a["skin_index"]), np.asarray(a["node_rotations"]).shape[1]
            if index.size and (index.min() < 0 or index.max() >= nodes):
                raise ArtifactError(path, "skin_index", f"values outside 0..{nodes - 1}")


@torch.no_grad()
def compact_motion(scene: DynamicScene, times: list[int], fps: float) -> CompactMotion:
    """The motion of ``scene``'s foreground at frames ``times`` (module docstring)."""
    g = scene.gaussians
    fg = g.foreground
    t = torch.as_tensor(times, dtype=torch.long, device=g.means.device)
    common = {"time": np.asarray(times, np.int32), "timestamp": (np.asarray(times) / fps).astype(np.float32),
              "foreground": fg.cpu().numpy()}
    f32 = lambda x: x.detach().cpu().numpy().astype(np.float32)
    if scene.is_tree:
        idx, w = scene.motion.skin(g.means[fg].detach())
        leaves = leaf_transforms_with_residual(scene.motion, scene.residual, t)  # [F, L, 4, 4]
        return CompactMotion(**common, blend="dual-quaternion", node_rotations=f32(matrix_to_quat(leaves[..., :3, :3])),
                             node_translations=f32(leaves[..., :3, 3]), skin_index=idx.cpu().numpy().astype(np.int32),
                             skin_weights=f32(w))
    motion = scene.motion
    return CompactMotion(**common, blend="rot6d", basis_rot6d=f32(motion.bases_rot6d[:, t].transpose(0, 1)),
                         basis_translations=f32(motion.bases_trans[:, t].transpose(0, 1)),
                         coefficients=f32(g.motion_coefs[fg]))


def canonical_snapshot(scene: DynamicScene) -> Snapshot:
    """Every Gaussian of ``scene`` at its canonical pose (unit quaternions)."""
    g = scene.gaussians
    quats = g.quats.detach()
    return Snapshot(g.means.detach(), quats / quats.norm(dim=-1, keepdim=True), g.log_scales.detach(),
                    g.opacity_logits.detach(), g.colors.detach(), g.foreground)


def write_dynamic(folder: Path, scene: DynamicScene, times: list[int], fps: float, sh_degree: int = 0) -> list[Path]:
    """Write ``canonical.ply`` and ``motion.npz`` into ``folder``; returns both paths."""
    write_ply(folder / "canonical.ply", canonical_snapshot(scene), sh_degree)
    compact_motion(scene, times, fps).save(folder)
    return [folder / "canonical.ply", folder / CompactMotion.FILE]


# ----- reading: numpy only -----------------------------------------------------------------
def _qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of wxyz quaternions [..., 4]."""
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], axis=-1)


def _quat_matrix(q: np.ndarray) -> np.ndarray:
    """[..., 3, 3] rotation matrices of unit wxyz quaternions [..., 4]."""
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                     2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                     2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=-1).reshape(
        q.shape[:-1] + (3, 3))


def _matrix_quat(R: np.ndarray) -> np.ndarray:
    """[..., 4] unit wxyz quaternions (``w >= 0``) of rotation matrices [..., 3, 3] (Shepperd:
    each from the largest of ``4w², 4x², 4y², 4z²``)."""
    m = R
    sq = np.stack([1 + m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2], 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                   1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], 1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]], -1)
    a, b, c = m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]
    d, e, f = m[..., 1, 0] + m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1]
    cands = np.stack([np.stack([sq[..., 0], a, b, c], -1), np.stack([a, sq[..., 1], d, e], -1),
                      np.stack([b, d, sq[..., 2], f], -1), np.stack([c, e, f, sq[..., 3]], -1)], -2)
    q = np.take_along_axis(cands, sq.argmax(-1)[..., None, None], -2)[..., 0, :]
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0, -q, q)


def _dual_quaternion_motion(motion: CompactMotion, f: int) -> tuple[np.ndarray, np.ndarray]:
    """Per foreground Gaussian: rotation quaternion [Gf, 4] and translation [Gf, 3] at frame row ``f``."""
    assert motion.node_rotations is not None and motion.node_translations is not None
    assert motion.skin_index is not None and motion.skin_weights is not None
    qr = motion.node_rotations[f].astype(np.float64)  # [L, 4]
    tr = motion.node_translations[f].astype(np.float64)
    qd = 0.5 * _qmul(np.concatenate([np.zeros_like(tr[:, :1]), tr], -1), qr)
    idx, w = motion.skin_index, motion.skin_weights.astype(np.float64)  # [Gf, K]
    pivot = qr[np.take_along_axis(idx, w.argmax(-1)[:, None], 1)[:, 0]]  # [Gf, 4]
    sign = np.where((qr[idx] * pivot[:, None]).sum(-1) < 0, -1.0, 1.0)
    br = ((w * sign)[..., None] * qr[idx]).sum(1)
    bd = ((w * sign)[..., None] * qd[idx]).sum(1)
    n = np.linalg.norm(br, axis=-1, keepdims=True)
    q, bd = br / n, bd / n
    bd = bd - (q * bd).sum(-1, keepdims=True) * q
    t = 2 * _qmul(bd, q * np.array([1.0, -1.0, -1.0, -1.0]))[:, 1:]
    return q, t


def _rot6d_motion(motion: CompactMotion, f: int) -> tuple[np.ndarray, np.ndarray]:
    """Per foreground Gaussian: rotation quaternion [Gf, 4] and translation [Gf, 3] at frame row ``f``."""
    assert motion.basis_rot6d is not None and motion.basis_translations is not None
    assert motion.coefficients is not None
    c = motion.coefficients.astype(np.float64)
    r = c @ motion.basis_rot6d[f].astype(np.float64)  # [Gf, 6]
    t = c @ motion.basis_translations[f].astype(np.float64)
    b1 = r[:, :3] / np.linalg.norm(r[:, :3], axis=-1, keepdims=True)
    a2 = r[:, 3:] - (b1 * r[:, 3:]).sum(-1, keepdims=True) * b1
    b2 = a2 / np.linalg.norm(a2, axis=-1, keepdims=True)
    return _matrix_quat(np.stack([b1, b2, np.cross(b1, b2)], -1)), t


def frame_gaussians(motion: CompactMotion, means: np.ndarray, quats: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Means [G, 3] and unit wxyz rotations [G, 4] at frame ``t`` from the canonical ``means``
    [G, 3] and ``quats`` [G, 4] (``canonical.ply``'s rows): the foreground moved by ``motion``,
    the background as it is (module docstring)."""
    rows = np.flatnonzero(motion.time == t)
    if not len(rows):
        raise DynrecError(f"frame {t} is not in the compact export, which has frames "
                          f"{', '.join(map(str, motion.time[:8]))}{' ...' if len(motion.time) > 8 else ''}")
    if len(means) != len(motion.foreground):
        raise DynrecError(f"{len(means)} canonical Gaussians but the motion has {len(motion.foreground)}")
    blend = _dual_quaternion_motion if motion.blend == "dual-quaternion" else _rot6d_motion
    q, tr = blend(motion, int(rows[0]))
    fg = motion.foreground
    means_t, quats_t = np.array(means, np.float64), np.array(quats, np.float64)
    means_t[fg] = (_quat_matrix(q) @ means_t[fg][..., None])[..., 0] + tr
    quats_t[fg] = _qmul(q, quats_t[fg])
    return means_t, quats_t / np.linalg.norm(quats_t, axis=-1, keepdims=True)


def read_dynamic(folder: Path, t: int) -> dict[str, np.ndarray]:
    """Frame ``t`` of a compact export in ``folder``: :func:`~dynrec.export.gaussians.read_ply`'s
    arrays of ``canonical.ply`` with ``means`` and ``quats`` moved to the frame."""
    gaussians = read_ply(folder / "canonical.ply")
    gaussians["means"], gaussians["quats"] = frame_gaussians(CompactMotion.load(folder), gaussians["means"],
                                                             gaussians["quats"], t)
    return gaussians
