"""Gaussians as files other tools open: the 3DGS PLY and antimatter15's ``.splat``.

**PLY** (binary little-endian, written with ``plyfile``): one ``vertex`` element with float
properties ``x y z nx ny nz f_dc_0..2 f_rest_0..(3K-1) opacity scale_0..2 rot_0..3``, the
layout of the original 3D Gaussian Splatting code (``save_ply``) and of gsplat's
``export_splats(format="ply")`` (which leaves out the unused normals):

* ``x y z``: world position; ``nx ny nz``: 0 (unused by every viewer);
* ``f_dc_c = (rgb_c - 0.5) / C0`` with ``C0 = 0.28209479177387814``: the degree-0 spherical
  harmonic whose colour ``0.5 + C0 * f_dc`` is the model's RGB (dynrec has view-independent
  colour); ``f_rest_*``: ``3 * ((degree + 1)**2 - 1)`` zeros, channel-major as 3DGS writes
  them (all R coefficients, then G, then B), only with ``sh_degree > 0``;
* ``opacity``: the logit (viewers apply a sigmoid); ``scale_i``: log standard deviations
  (viewers apply exp); ``rot_0..3``: the unit quaternion **w, x, y, z**.

**.splat** (antimatter15/splat): 32 bytes per Gaussian, little-endian, no header:
``x y z`` float32, ``sx sy sz`` float32 linear standard deviations, ``r g b a`` uint8
(colour and opacity times 255), ``q`` 4 x uint8 with ``q_i = clip(w|x|y|z * 128 + 128)``
(the quaternion normalised, wxyz). Rows are sorted as that viewer's converter sorts them:
by ``-exp(scale_0 + scale_1 + scale_2) * sigmoid(opacity)``, big opaque Gaussians first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from plyfile import PlyData, PlyElement

from dynrec.errors import DynrecError
from dynrec.model.scene import Snapshot

#: The degree-0 real spherical harmonic, Y_0^0 = 1 / (2 sqrt(pi)).
SH_C0 = 0.28209479177387814

SPLAT_DTYPE = np.dtype([("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])
assert SPLAT_DTYPE.itemsize == 32


def ply_properties(sh_degree: int = 0) -> list[str]:
    """The vertex property names of a 3DGS PLY with spherical harmonics up to ``sh_degree``."""
    rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def _numpy(snap: Snapshot) -> dict[str, np.ndarray]:
    return {k: getattr(snap, k).detach().cpu().numpy() for k in
            ("means", "quats", "log_scales", "opacity_logits", "colors")}


def check_sh_degree(sh_degree: int) -> None:
    """``--sh-degree`` must be 0, 1, 2 or 3 (the degrees 3DGS viewers read).

    Raises:
        DynrecError: any other value.
    """
    if sh_degree not in (0, 1, 2, 3):
        raise DynrecError(f"--sh-degree must be 0, 1, 2 or 3, got {sh_degree}")


def ply_array(snap: Snapshot, sh_degree: int = 0) -> np.ndarray:
    """The PLY rows [G] (structured float32, :func:`ply_properties` order) of a snapshot."""
    check_sh_degree(sh_degree)
    a = _numpy(snap)
    names = ply_properties(sh_degree)
    rows = np.zeros(len(a["means"]), dtype=[(n, "<f4") for n in names])
    for i, axis in enumerate("xyz"):
        rows[axis] = a["means"][:, i]
    for c in range(3):
        rows[f"f_dc_{c}"] = (a["colors"][:, c] - 0.5) / SH_C0
        rows[f"scale_{c}"] = a["log_scales"][:, c]
    rows["opacity"] = a["opacity_logits"]
    for i in range(4):
        rows[f"rot_{i}"] = a["quats"][:, i]
    return rows


def write_ply(path: Path, snap: Snapshot, sh_degree: int = 0) -> None:
    """Write ``snap`` as a binary 3DGS PLY (see the module docstring)."""
    element = PlyElement.describe(ply_array(snap, sh_degree), "vertex")
    PlyData([element], text=False, byte_order="<").write(str(path))


def read_ply(path: Path) -> dict[str, np.ndarray]:
    """A 3DGS PLY back as activated arrays: ``means`` [G, 3], ``colors`` [G, 3] (``0.5 + C0 f_dc``),
    ``opacities`` [G] (sigmoid), ``scales`` [G, 3] (exp), ``quats`` [G, 4] wxyz as stored."""
    try:
        v = PlyData.read(str(path))["vertex"]
    except (OSError, KeyError, ValueError) as exc:
        raise DynrecError(f"{path}: not a readable 3DGS PLY ({exc})") from exc
    get = lambda *names: np.stack([np.asarray(v[n], np.float64) for n in names], axis=-1)
    return {"means": get("x", "y", "z"), "colors": 0.5 + SH_C0 * get("f_dc_0", "f_dc_1", "f_dc_2"),
            "opacities": 1 / (1 + np.exp(-np.asarray(v["opacity"], np.float64))),
            "scales": np.exp(get("scale_0", "scale_1", "scale_2")), "quats": get("rot_0", "rot_1", "rot_2", "rot_3")}


def splat_order(log_scales: np.ndarray, opacity_logits: np.ndarray) -> np.ndarray:
    """Row order [G] of antimatter15's converter: ascending ``-exp(sum log scales) * sigmoid(opacity)``."""
    size = np.exp(log_scales.astype(np.float64).sum(-1)) / (1 + np.exp(-opacity_logits.astype(np.float64)))
    return np.argsort(-size, kind="stable")


def splat_array(snap: Snapshot) -> np.ndarray:
    """The ``.splat`` rows [G] (:data:`SPLAT_DTYPE`) of a snapshot, sorted (module docstring)."""
    a = _numpy(snap)
    order = splat_order(a["log_scales"], a["opacity_logits"])
    rows = np.zeros(len(order), SPLAT_DTYPE)
    rows["position"] = a["means"][order]
    rows["scale"] = np.exp(a["log_scales"][order])
    opacity = 1 / (1 + np.exp(-a["opacity_logits"][order].astype(np.float64)))
    rgba = np.concatenate([a["colors"][order], opacity[:, None]], axis=1)
    rows["rgba"] = np.clip(rgba * 255, 0, 255).astype(np.uint8)
    q = a["quats"][order].astype(np.float64)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    rows["rot"] = np.clip(q * 128 + 128, 0, 255).astype(np.uint8)
    return rows


def write_splat(path: Path, snap: Snapshot) -> None:
    """Write ``snap`` as an antimatter15 ``.splat`` file (see the module docstring)."""
    Path(path).write_bytes(splat_array(snap).tobytes())


def read_splat(path: Path) -> np.ndarray:
    """The rows of a ``.splat`` file (:data:`SPLAT_DTYPE`)."""
    data = Path(path).read_bytes()
    if len(data) % SPLAT_DTYPE.itemsize:
        raise DynrecError(f"{path}: {len(data)} bytes is not a whole number of 32-byte splats")
    return np.frombuffer(data, SPLAT_DTYPE)
