"""Rotations and rigid transforms in pure torch, batched over any leading dims.

Conventions:

* Quaternions are ``wxyz`` (scalar first), as gsplat. Functions that take a quaternion
  normalise it; ``matrix_to_quat`` returns unit quaternions with ``w >= 0``.
* The continuous 6D rotation representation (Zhou et al., CVPR 2019) stores the first two
  **columns** of the rotation matrix, ``[R[:, 0], R[:, 1]]``; it is turned back into a
  rotation by Gram–Schmidt. HiMoR motion bases are rot6d + translation (HiMoR §3.2.1).
* Rigid transforms are 4x4 matrices ``[[R, t], [0, 1]]`` acting on column vectors:
  ``x' = R x + t``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def normalize_quat(q: Tensor, eps: float = 1e-12) -> Tensor:
    """Unit quaternions. ``q`` [..., 4] -> [..., 4]."""
    return q / q.norm(dim=-1, keepdim=True).clamp_min(eps)


def quat_multiply(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product ``a * b`` of wxyz quaternions. ``a``, ``b`` [..., 4] (broadcast) -> [..., 4]."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )


def quat_conjugate(q: Tensor) -> Tensor:
    """Conjugate ``(w, -x, -y, -z)``. ``q`` [..., 4] -> [..., 4]."""
    return q * q.new_tensor([1.0, -1.0, -1.0, -1.0])


def quat_to_matrix(q: Tensor) -> Tensor:
    """Rotation matrices from wxyz quaternions (normalised first). ``q`` [..., 4] -> [..., 3, 3].

    Same formula as gsplat's ``quat_to_rotmat``.
    """
    w, x, y, z = normalize_quat(q).unbind(-1)
    R = torch.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - w * z),
            2 * (x * z + w * y),
            2 * (x * y + w * z),
            1 - 2 * (x * x + z * z),
            2 * (y * z - w * x),
            2 * (x * z - w * y),
            2 * (y * z + w * x),
            1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    )
    return R.reshape(q.shape[:-1] + (3, 3))


def matrix_to_quat(R: Tensor) -> Tensor:
    """Unit wxyz quaternions (``w >= 0``) from rotation matrices. ``R`` [..., 3, 3] -> [..., 4].

    Shepperd's method: of the four candidate solutions, each row uses the one with the
    largest denominator, so the result is stable for every rotation (including 180°).
    """
    m = R.reshape(R.shape[:-2] + (9,))
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m.unbind(-1)
    # 4 * (w², x², y², z²) from the diagonal.
    sq = torch.stack(
        [
            1 + m00 + m11 + m22,
            1 + m00 - m11 - m22,
            1 - m00 + m11 - m22,
            1 - m00 - m11 + m22,
        ],
        dim=-1,
    )
    # Candidate quaternions scaled by 4*w, 4*x, 4*y, 4*z respectively (rows).
    cands = torch.stack(
        [
            torch.stack([sq[..., 0], m21 - m12, m02 - m20, m10 - m01], dim=-1),
            torch.stack([m21 - m12, sq[..., 1], m10 + m01, m02 + m20], dim=-1),
            torch.stack([m02 - m20, m10 + m01, sq[..., 2], m12 + m21], dim=-1),
            torch.stack([m10 - m01, m20 + m02, m21 + m12, sq[..., 3]], dim=-1),
        ],
        dim=-2,
    )
    # The chosen row has sq >= 1 (the four sum to 4), so the clamp only guards the others.
    cands = cands / (2.0 * torch.sqrt(sq.clamp_min(1e-2)))[..., None]
    best = sq.argmax(dim=-1)
    q = torch.gather(cands, -2, best[..., None, None].expand(best.shape + (1, 4)))[..., 0, :]
    q = normalize_quat(q)
    return torch.where(q[..., :1] < 0, -q, q)


def rot6d_to_matrix(d6: Tensor, eps: float = 1e-12) -> Tensor:
    """Rotation matrices from the 6D representation by Gram–Schmidt (Zhou et al. 2019).

    ``d6`` [..., 6] = two (not necessarily orthonormal) columns ``a1, a2``; returns
    ``R = [b1, b2, b1 x b2]`` [..., 3, 3] with ``b1 = a1/|a1|``,
    ``b2 = normalise(a2 - (b1.a2) b1)``. Used to re-orthonormalise blended motion bases
    (HiMoR Eq. 3).
    """
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = a1 / a1.norm(dim=-1, keepdim=True).clamp_min(eps)
    a2 = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
    b2 = a2 / a2.norm(dim=-1, keepdim=True).clamp_min(eps)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def matrix_to_rot6d(R: Tensor) -> Tensor:
    """The 6D representation: first two columns. ``R`` [..., 3, 3] -> [..., 6]."""
    return torch.cat([R[..., :, 0], R[..., :, 1]], dim=-1)


def make_transform(R: Tensor, t: Tensor) -> Tensor:
    """4x4 rigid transforms ``[[R, t], [0, 1]]``. ``R`` [..., 3, 3], ``t`` [..., 3] -> [..., 4, 4]."""
    batch = torch.broadcast_shapes(R.shape[:-2], t.shape[:-1])
    T = R.new_zeros(batch + (4, 4))
    T[..., :3, :3] = R
    T[..., :3, 3] = t
    T[..., 3, 3] = 1.0
    return T


def rot6d_translation_to_transform(d6: Tensor, t: Tensor) -> Tensor:
    """4x4 transforms from rot6d [..., 6] and translation [..., 3] -> [..., 4, 4]."""
    return make_transform(rot6d_to_matrix(d6), t)


def compose(a: Tensor, b: Tensor) -> Tensor:
    """Composition ``a @ b`` (apply ``b`` first). ``a``, ``b`` [..., 4, 4] (broadcast) -> [..., 4, 4]."""
    return a @ b


def invert(T: Tensor) -> Tensor:
    """Inverse of rigid transforms, ``[[R^T, -R^T t], [0, 1]]``. ``T`` [..., 4, 4] -> [..., 4, 4]."""
    Rt = T[..., :3, :3].transpose(-1, -2)
    t = T[..., :3, 3]
    return make_transform(Rt, -(Rt @ t[..., None])[..., 0])


def transform_points(T: Tensor, points: Tensor) -> Tensor:
    """Apply transforms to points: ``R p + t``.

    ``T`` [..., 4, 4] and ``points`` [..., 3] broadcast against each other over the leading
    dims: one transform per point (``T`` [P, 4, 4], ``points`` [P, 3]), or one transform for
    many points (``T[..., None, :, :]`` with ``points`` [..., P, 3]). Returns [..., 3].
    """
    R = T[..., :3, :3]
    t = T[..., :3, 3]
    return (R @ points[..., None])[..., 0] + t


def _so3_coefficients(theta2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(sin θ/θ, (1 - cos θ)/θ², (θ - sin θ)/θ³)`` of ``θ² = theta2`` [...], Taylor near 0.

    The Taylor branch keeps values and gradients finite at ``θ = 0`` (where ``sqrt`` would
    give an infinite derivative).
    """
    small = theta2 < 1e-6
    t2 = torch.where(small, torch.ones_like(theta2), theta2)
    th = torch.sqrt(t2)
    a = torch.where(small, 1 - theta2 / 6 + theta2**2 / 120, torch.sin(th) / th)
    b = torch.where(small, 0.5 - theta2 / 24 + theta2**2 / 720, (1 - torch.cos(th)) / t2)
    c = torch.where(
        small, 1 / 6 - theta2 / 120 + theta2**2 / 5040, (th - torch.sin(th)) / (t2 * th)
    )
    return a, b, c


def hat(v: Tensor) -> Tensor:
    """Skew-symmetric matrices ``[v]_x`` with ``[v]_x w = v x w``. ``v`` [..., 3] -> [..., 3, 3]."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).reshape(v.shape[:-1] + (3, 3))


def so3_exp(omega: Tensor) -> Tensor:
    """Rotation matrices from rotation vectors (Rodrigues). ``omega`` [..., 3] -> [..., 3, 3].

    ``R = I + (sin θ/θ) [ω]_x + ((1 - cos θ)/θ²) [ω]_x²`` with ``θ = |ω|`` (axis ``ω/θ``,
    angle θ in radians); exact identity and finite gradients at ``ω = 0``.
    """
    a, b, _ = _so3_coefficients(omega.square().sum(dim=-1))
    W = hat(omega)
    eye = torch.eye(3, dtype=omega.dtype, device=omega.device)
    return eye + a[..., None, None] * W + b[..., None, None] * (W @ W)


def so3_log(R: Tensor) -> Tensor:
    """Rotation vectors of rotation matrices (inverse of :func:`so3_exp` for angles < π).

    ``R`` [..., 3, 3] -> [..., 3]. The angle comes from ``atan2(|skew|, (tr R - 1)/2)``
    (accurate near 0); near π the axis is taken from ``R + I``.
    """
    skew = torch.stack(
        [R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]],
        dim=-1,
    )
    cos = ((R[..., 0, 0] + R[..., 1, 1] + R[..., 2, 2] - 1) / 2).clamp(-1, 1)
    sin = skew.norm(dim=-1) / 2
    theta = torch.atan2(sin, cos)
    scale = torch.where(sin > 1e-6, theta / (2 * sin).clamp_min(1e-12), 0.5 + theta**2 / 12)
    omega = scale[..., None] * skew
    # Near pi the skew part loses the axis: take it from the symmetric part,
    # n n^T = ((R + R^T)/2 - cos I) / (1 - cos), signed like the skew part.
    near_pi = cos < -0.9
    if bool(near_pi.any()):
        eye = torch.eye(3, dtype=R.dtype, device=R.device)
        S = (0.5 * (R + R.transpose(-1, -2)) - cos[..., None, None] * eye) / (1 - cos)[
            ..., None, None
        ].clamp_min(1e-12)
        col = torch.diagonal(S, dim1=-2, dim2=-1).argmax(dim=-1)
        axis = torch.gather(S, -1, col[..., None, None].expand(S.shape[:-1] + (1,)))[..., 0]
        axis = axis / axis.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        sign = torch.where((axis * skew).sum(-1, keepdim=True) < 0, -1.0, 1.0).to(R.dtype)
        omega = torch.where(near_pi[..., None], sign * axis * theta[..., None], omega)
    return omega


def se3_exp(xi: Tensor) -> Tensor:
    """SE(3) exponential of twists ``xi = (ω, ρ)`` [..., 6] -> transforms [..., 4, 4].

    Rotation ``so3_exp(ω)``; translation ``V ρ`` with
    ``V = I + ((1 - cos θ)/θ²) [ω]_x + ((θ - sin θ)/θ³) [ω]_x²`` (the screw motion).
    """
    omega, rho = xi[..., :3], xi[..., 3:]
    _, b, c = _so3_coefficients(omega.square().sum(dim=-1))
    W = hat(omega)
    eye = torch.eye(3, dtype=xi.dtype, device=xi.device)
    V = eye + b[..., None, None] * W + c[..., None, None] * (W @ W)
    return make_transform(so3_exp(omega), (V @ rho[..., None])[..., 0])


def rotation_angle(R: Tensor) -> Tensor:
    """Rotation angles in radians of rotation matrices ``R`` [..., 3, 3] -> [...] (in [0, π])."""
    return so3_log(R).norm(dim=-1)
