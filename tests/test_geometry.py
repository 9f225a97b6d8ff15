"""Known-answer tests of the geometry maths: rotations, SE(3), dual quaternions, Procrustes, K-Means."""

from __future__ import annotations

import math

import pytest
import torch

from dynrec.geometry.dualquat import (
    blend,
    blend_dualquat,
    dualquat_to_se3,
    rt_to_dualquat,
    se3_to_dualquat,
)
from dynrec.geometry.kmeans import kmeans
from dynrec.geometry.procrustes import procrustes
from dynrec.geometry.se3 import (
    compose,
    invert,
    make_transform,
    matrix_to_quat,
    matrix_to_rot6d,
    quat_multiply,
    quat_to_matrix,
    rot6d_to_matrix,
    transform_points,
)

F64 = torch.float64


def random_rotations(n: int, seed: int = 0, dtype: torch.dtype = F64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return quat_to_matrix(torch.randn(n, 4, generator=g, dtype=dtype))


def random_transforms(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 100)
    return make_transform(random_rotations(n, seed), torch.randn(n, 3, generator=g, dtype=F64))


def axis_angle(axis: tuple[float, float, float], angle: float) -> torch.Tensor:
    """wxyz quaternion of a rotation by ``angle`` about ``axis``."""
    a = torch.tensor(axis, dtype=F64)
    a = a / a.norm()
    return torch.cat([torch.tensor([math.cos(angle / 2)], dtype=F64), math.sin(angle / 2) * a])


def assert_rotation(R: torch.Tensor, atol: float = 1e-10) -> None:
    eye = torch.eye(3, dtype=R.dtype).expand_as(R)
    torch.testing.assert_close(R.transpose(-1, -2) @ R, eye, rtol=0, atol=atol)
    torch.testing.assert_close(
        torch.linalg.det(R), torch.ones(R.shape[:-2], dtype=R.dtype), rtol=0, atol=atol
    )


# ---------------------------------------------------------------- rotations / SE(3)


def test_quat_to_matrix_known_answer() -> None:
    R = quat_to_matrix(axis_angle((0, 0, 1), math.pi / 2) * 3.0)  # unnormalised input is fine
    expected = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=F64)
    torch.testing.assert_close(R, expected, rtol=0, atol=1e-12)


def test_quaternion_round_trip_including_half_turns() -> None:
    g = torch.Generator().manual_seed(1)
    q = torch.randn(500, 4, generator=g, dtype=F64)
    special = torch.stack(
        [
            axis_angle((1, 0, 0), math.pi),
            axis_angle((0, 1, 1), math.pi),
            axis_angle((1, 2, 3), 1e-9),
            axis_angle((0, 0, 1), math.pi - 1e-7),
            torch.tensor([1.0, 0, 0, 0], dtype=F64),
        ]
    )
    q = torch.cat([q, special])
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[:, :1] < 0, -q, q)
    back = matrix_to_quat(quat_to_matrix(q))
    same = torch.minimum(
        (back - q).abs().amax(-1), (back + q).abs().amax(-1)
    )  # w = 0: sign is free
    assert same.max() < 1e-9
    torch.testing.assert_close(quat_to_matrix(back), quat_to_matrix(q), rtol=0, atol=1e-12)
    assert (back[:, 0] >= 0).all()


def test_quat_multiply_composes_rotations() -> None:
    a, b = axis_angle((1, 2, 0), 0.7), axis_angle((0, 1, -1), -1.3)
    torch.testing.assert_close(
        quat_to_matrix(quat_multiply(a, b)),
        quat_to_matrix(a) @ quat_to_matrix(b),
        rtol=0,
        atol=1e-12,
    )


def test_rot6d_round_trip_and_gram_schmidt() -> None:
    R = random_rotations(100)
    torch.testing.assert_close(rot6d_to_matrix(matrix_to_rot6d(R)), R, rtol=0, atol=1e-12)
    g = torch.Generator().manual_seed(2)
    d6 = torch.randn(7, 5, 6, generator=g, dtype=F64)
    R2 = rot6d_to_matrix(d6)
    assert R2.shape == (7, 5, 3, 3)
    assert_rotation(R2)
    # Gram-Schmidt keeps the direction of the first column and the plane of the first two.
    torch.testing.assert_close(R2[..., :, 0], d6[..., :3] / d6[..., :3].norm(dim=-1, keepdim=True))
    assert (torch.linalg.cross(R2[..., :, 0], R2[..., :, 1], dim=-1) * d6[..., 3:]).sum(
        -1
    ).abs().max() < 1e-9


def test_rot6d_works_in_float32() -> None:
    R = rot6d_to_matrix(torch.randn(10, 6))
    assert R.dtype == torch.float32
    assert_rotation(R, atol=1e-5)


def test_compose_invert_transform_points() -> None:
    T = random_transforms(20)
    torch.testing.assert_close(
        compose(T, invert(T)), torch.eye(4, dtype=F64).expand(20, 4, 4), rtol=0, atol=1e-12
    )
    g = torch.Generator().manual_seed(3)
    p = torch.randn(20, 3, generator=g, dtype=F64)
    homog = torch.cat([p, torch.ones(20, 1, dtype=F64)], dim=-1)
    torch.testing.assert_close(transform_points(T, p), (T @ homog[..., None])[..., :3, 0])
    # one transform, many points
    many = torch.randn(4, 9, 3, generator=g, dtype=F64)
    out = transform_points(T[:4, None], many)
    assert out.shape == (4, 9, 3)
    torch.testing.assert_close(out[2, 5], transform_points(T[2], many[2, 5]))
    torch.testing.assert_close(transform_points(invert(T), transform_points(T, p)), p)


# ---------------------------------------------------------------- dual quaternions


def test_dualquat_round_trip() -> None:
    T = random_transforms(50, seed=4)
    dq = se3_to_dualquat(T)
    torch.testing.assert_close(
        (dq[:, :4] * dq[:, 4:]).sum(-1), torch.zeros(50, dtype=F64), rtol=0, atol=1e-12
    )
    torch.testing.assert_close(dualquat_to_se3(dq), T, rtol=0, atol=1e-12)
    torch.testing.assert_close(
        dualquat_to_se3(-dq), T, rtol=0, atol=1e-12
    )  # antipodal: same transform
    q = axis_angle((0, 1, 0), 0.4)
    t = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    torch.testing.assert_close(
        dualquat_to_se3(rt_to_dualquat(q, t)), make_transform(quat_to_matrix(q), t)
    )


def test_blend_of_identical_transforms_is_that_transform() -> None:
    T = random_transforms(6, seed=5)
    stacked = T[:, None].expand(6, 4, 4, 4)  # [6, K=4, 4, 4]
    w = torch.rand(6, 4, dtype=F64, generator=torch.Generator().manual_seed(0)) + 0.1
    torch.testing.assert_close(blend(stacked, w), T, rtol=0, atol=1e-12)
    # same with half of the dual quaternions negated (antipodality)
    dq = se3_to_dualquat(stacked)
    sign = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=F64)[None, :, None]
    torch.testing.assert_close(blend(dq * sign, w), T, rtol=0, atol=1e-12)


def test_blend_of_two_rotations_is_rigid_and_halfway() -> None:
    qa, qb = axis_angle((0, 0, 1), 0.3), axis_angle((0, 0, 1), 1.1)
    Ta = make_transform(quat_to_matrix(qa), torch.zeros(3, dtype=F64))
    Tb = make_transform(quat_to_matrix(qb), torch.zeros(3, dtype=F64))
    out = blend(torch.stack([Ta, Tb]), torch.tensor([0.5, 0.5], dtype=F64))
    torch.testing.assert_close(
        out[:3, :3], quat_to_matrix(axis_angle((0, 0, 1), 0.7)), rtol=0, atol=1e-12
    )
    # arbitrary rotations + translations, random weights: always rigid
    T = random_transforms(2 * 64, seed=6).reshape(64, 2, 4, 4)
    w = torch.rand(64, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    B = blend(T, w)
    assert_rotation(B[:, :3, :3])
    torch.testing.assert_close(B[:, 3], torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=F64).expand(64, 4))
    # a one-hot weight picks that transform
    torch.testing.assert_close(
        blend(T, torch.tensor([0.0, 1.0], dtype=F64).expand(64, 2)), T[:, 1], rtol=0, atol=1e-12
    )


def test_blend_is_invariant_to_sign_of_inputs() -> None:
    T = random_transforms(3 * 10, seed=7).reshape(10, 3, 4, 4)
    w = torch.rand(10, 3, dtype=F64, generator=torch.Generator().manual_seed(2))
    dq = se3_to_dualquat(T)
    flipped = dq * torch.tensor([1.0, -1.0, -1.0], dtype=F64)[None, :, None]
    torch.testing.assert_close(
        blend_dualquat(dq, w)[..., :4].abs(), blend_dualquat(flipped, w)[..., :4].abs()
    )
    torch.testing.assert_close(blend(dq, w), blend(flipped, w), rtol=0, atol=1e-12)


# ---------------------------------------------------------------- Procrustes


def test_procrustes_recovers_rigid_motion_with_noise() -> None:
    g = torch.Generator().manual_seed(8)
    T = random_transforms(5, seed=8)  # 5 "frames"
    src = torch.randn(5, 200, 3, generator=g, dtype=F64)
    dst = transform_points(T[:, None], src) + 1e-3 * torch.randn(5, 200, 3, generator=g, dtype=F64)
    R, t, s = procrustes(src, dst)
    torch.testing.assert_close(R, T[:, :3, :3], rtol=0, atol=5e-4)
    torch.testing.assert_close(t, T[:, :3, 3], rtol=0, atol=5e-4)
    assert (s == 1).all()
    assert_rotation(R)


def test_procrustes_recovers_similarity_exactly_without_noise() -> None:
    g = torch.Generator().manual_seed(9)
    T = random_transforms(1, seed=9)[0]
    src = torch.randn(30, 3, generator=g, dtype=F64)
    dst = 2.5 * (src @ T[:3, :3].T) + T[:3, 3]
    res = procrustes(src, dst, with_scale=True)
    torch.testing.assert_close(res.R, T[:3, :3])
    torch.testing.assert_close(res.t, T[:3, 3])
    assert float(res.s) == pytest.approx(2.5, rel=1e-12)
    torch.testing.assert_close(transform_points(res.matrix(), src), dst)


def test_procrustes_weights_ignore_outliers_and_avoid_reflections() -> None:
    g = torch.Generator().manual_seed(10)
    T = random_transforms(1, seed=10)[0]
    src = torch.randn(40, 3, generator=g, dtype=F64)
    dst = transform_points(T, src)
    dst[:10] += 5 * torch.randn(10, 3, generator=g, dtype=F64)  # outliers ...
    w = torch.ones(40, dtype=F64)
    w[:10] = 0  # ... with zero weight (e.g. invisible tracks)
    R, t, _ = procrustes(src, dst, w)
    torch.testing.assert_close(R, T[:3, :3])
    torch.testing.assert_close(t, T[:3, 3])
    # mirrored target: the best proper rotation, never a reflection
    R_m, _, _ = procrustes(src, src * torch.tensor([-1.0, 1.0, 1.0], dtype=F64))
    assert_rotation(R_m)


# ---------------------------------------------------------------- K-Means


def three_blobs(n: int = 60, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 5.0]], dtype=F64)
    truth = torch.arange(3).repeat_interleave(n)
    x = centres[truth] + 0.3 * torch.randn(3 * n, 3, generator=g, dtype=F64)
    perm = torch.randperm(3 * n, generator=g)
    return x[perm], truth[perm]


def test_kmeans_recovers_separable_clusters() -> None:
    x, truth = three_blobs()
    res = kmeans(x, 3, seed=0)
    assert res.centers.shape == (3, 3) and res.labels.shape == (180,)
    # same partition up to relabelling
    mapping = {int(t): int(res.labels[truth == t][0]) for t in range(3)}
    assert len(set(mapping.values())) == 3
    assert all((res.labels[truth == t] == mapping[t]).all() for t in range(3))
    for t in range(3):
        torch.testing.assert_close(res.centers[mapping[t]], x[truth == t].mean(0))


def test_kmeans_is_deterministic_given_seed() -> None:
    x, _ = three_blobs(seed=1)
    a = kmeans(x, 5, seed=123)
    b = kmeans(x, 5, seed=torch.Generator().manual_seed(123))
    torch.testing.assert_close(a.centers, b.centers, rtol=0, atol=0)
    assert torch.equal(a.labels, b.labels)


def test_kmeans_handles_empty_clusters_and_bad_k() -> None:
    x = torch.tensor(
        [[0.0, 0.0]] * 4 + [[1.0, 1.0]] * 3 + [[5.0, 5.0]], dtype=F64
    )  # 3 distinct points
    res = kmeans(x, 4, seed=0)
    counts = torch.bincount(res.labels, minlength=4)
    assert (counts > 0).all()
    assert res.inertia.item() == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError):
        kmeans(x, 9)
    with pytest.raises(ValueError):
        kmeans(x[0], 1)
