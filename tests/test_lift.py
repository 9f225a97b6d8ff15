"""geometry/lift.py: lifting 2D tracks and HiMoR's level-1 initialisation, with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dynrec.geometry.camera import intrinsics, look_at, project, unproject
from dynrec.geometry.lift import (
    canonical_frame,
    complete_tracks,
    farthest_point_sampling,
    fill_gaps,
    fit_coefficients,
    idw_coefficients,
    init_nodes,
    lift_tracks,
    mean_knn_distance,
    motion_bases,
    project_points,
    unproject_points,
)
from dynrec.geometry.se3 import make_transform

D = torch.float64


def _rotation(axis: list[float], angle: float) -> torch.Tensor:
    """Rodrigues rotation [3, 3] (float64)."""
    a = torch.tensor(axis, dtype=D)
    a = a / a.norm()
    Kx = torch.tensor([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]], dtype=D)
    return torch.eye(3, dtype=D) + math.sin(angle) * Kx + (1 - math.cos(angle)) * Kx @ Kx


def _cameras(T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """T look-at cameras around the origin: K [T, 3, 3], w2c [T, 4, 4] (float64)."""
    K = np.stack([intrinsics(60 + t, 55, 32 + 0.3 * t, 24) for t in range(T)])
    w2c = np.stack([look_at(np.array([0.5 * t, -5.0, 1.0]), np.zeros(3)) for t in range(T)])
    return torch.from_numpy(K), torch.from_numpy(w2c)


def test_project_unproject_match_numpy_camera():
    K, w2c = _cameras(1)
    pts = torch.randn(20, 3, dtype=D, generator=torch.Generator().manual_seed(0))
    xy, z = project_points(pts, K[0], w2c[0])
    xy_np, z_np = project(pts.numpy(), K[0].numpy(), w2c[0].numpy())
    np.testing.assert_allclose(xy.numpy(), xy_np, atol=1e-10)
    np.testing.assert_allclose(z.numpy(), z_np, atol=1e-12)
    back = unproject_points(xy, z, K[0], w2c[0])
    np.testing.assert_allclose(back.numpy(), pts.numpy(), atol=1e-10)
    np.testing.assert_allclose(
        back.numpy(), unproject(xy_np, z_np, K[0].numpy(), w2c[0].numpy()), atol=1e-10
    )


def test_lift_tracks_round_trip_at_pixel_centres():
    T, H, W, N = 3, 48, 64, 30
    K, w2c = _cameras(T)
    gen = torch.Generator().manual_seed(1)
    # N points, one per distinct pixel per frame, at pixel centres with known depth.
    depth = torch.zeros(T, H, W, dtype=D)
    world = torch.empty(N, T, 3, dtype=D)
    for t in range(T):
        flat = torch.randperm(H * W, generator=gen)[:N]
        i, j = flat // W, flat % W
        z = 2.0 + 3.0 * torch.rand(N, dtype=D, generator=gen)
        xy = torch.stack([j + 0.5, i + 0.5], dim=-1).to(D)
        depth[t, i, j] = z
        world[:, t] = unproject_points(xy, z, K[t], w2c[t])
    xy, z = project_points(world, K[None], w2c[None])  # the tracks a tracker would report
    visible = torch.ones(N, T, dtype=torch.bool)
    xyz, valid = lift_tracks(xy, visible, depth, K, w2c)
    assert valid.all()
    torch.testing.assert_close(xyz, world, atol=1e-9, rtol=0)


def test_lift_tracks_bilinear_on_a_plane_and_invalid_cases():
    T, H, W = 1, 48, 64
    K = torch.from_numpy(intrinsics(50, 50, 32, 24))[None]
    w2c = torch.eye(4, dtype=D)[None]
    depth = torch.full((T, H, W), 3.0, dtype=D)
    depth[0, :, 40:] = 0.0  # unknown on the right
    xy = torch.tensor(
        [
            [[10.3, 20.7]],
            [[32.0, 24.0]],
            [[50.0, 10.0]],
            [[-1.0, 5.0]],
            [[5.0, 48.5]],
            [[12.0, 12.0]],
        ],
        dtype=D,
    )
    visible = torch.tensor([[True], [True], [True], [True], [True], [False]])
    xyz, valid = lift_tracks(xy, visible, depth, K, w2c)
    assert valid[:, 0].tolist() == [True, True, False, False, False, False]
    torch.testing.assert_close(
        xyz[0, 0], torch.tensor([(10.3 - 32) / 50 * 3, (20.7 - 24) / 50 * 3, 3.0], dtype=D)
    )
    torch.testing.assert_close(xyz[1, 0], torch.tensor([0.0, 0.0, 3.0], dtype=D))
    assert (xyz[~valid] == 0).all()
    # next to the unknown region: a neighbour with weight > 0 is unknown -> invalid
    _, v = lift_tracks(
        torch.tensor([[[40.2, 10.5]], [[39.5, 10.5]]], dtype=D),
        torch.ones(2, 1, dtype=torch.bool),
        depth,
        K,
        w2c,
    )
    assert v[:, 0].tolist() == [False, True]


def test_fill_gaps_interpolates_and_extrapolates():
    valid = torch.tensor([[False, True, True, False, True, False], [False] * 6])
    xyz = torch.zeros(2, 6, 3, dtype=D)
    xyz[0, 1], xyz[0, 2], xyz[0, 4] = 1.0, 2.0, 4.0
    xyz[1] = 7.0
    out = fill_gaps(xyz, valid)
    assert out[0, :, 0].tolist() == [1.0, 1.0, 2.0, 3.0, 4.0, 4.0]
    assert (out[1] == 7.0).all()  # no valid sample: unchanged


def test_canonical_frame_has_most_valid_tracks():
    valid = torch.tensor([[1, 1, 0, 1], [0, 1, 1, 1], [0, 1, 0, 0]], dtype=torch.bool)
    assert canonical_frame(valid) == 1


def _two_rigid_clusters(
    T: int = 6, canonical: int = 2
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Two far-apart clusters, each moving rigidly with known transforms (identity at ``canonical``)."""
    gen = torch.Generator().manual_seed(3)
    centres = [torch.tensor([0.0, 0.0, 0.0], dtype=D), torch.tensor([20.0, 0.0, 0.0], dtype=D)]
    xyz, truth = [], []
    for m, c in enumerate(centres):
        P = c + torch.randn(25, 3, dtype=D, generator=gen)
        Ts = []
        for t in range(T):
            s = t - canonical
            R = _rotation([1.0, 0.5 * m, 0.2], 0.15 * s * (1 + m))
            tr = torch.tensor([0.1 * s, -0.2 * s * m, 0.05 * s * s], dtype=D)
            tr = tr + c - R @ c  # rotate about the cluster's own centre, then translate
            Ts.append(make_transform(R, tr))
        Tm = torch.stack(Ts)
        xyz.append((Tm[None, :, :3, :3] @ P[:, None, :, None])[..., 0] + Tm[None, :, :3, 3])
        truth.append(Tm)
    xyz = torch.cat(xyz)
    valid = torch.rand(xyz.shape[:2], generator=gen) > 0.2
    valid[:, canonical] = True
    return xyz, valid, truth


def test_motion_bases_recover_rigid_clusters():
    canonical = 2
    xyz, valid, truth = _two_rigid_clusters(canonical=canonical)
    observed = torch.where(valid[..., None], xyz, torch.zeros_like(xyz))
    filled = fill_gaps(observed, valid)
    bases, labels, centres = motion_bases(filled, valid, 2, canonical, seed=0)
    assert bases.shape == (2, 6, 4, 4) and labels.shape == (50,) and centres.shape == (2, 3)
    assert len(set(labels[:25].tolist())) == 1 and len(set(labels[25:].tolist())) == 1
    for m, members in enumerate([slice(0, 25), slice(25, 50)]):
        b = int(labels[members][0])
        torch.testing.assert_close(bases[b], truth[m], atol=1e-5, rtol=0)
        torch.testing.assert_close(centres[b], xyz[members, canonical].mean(0), atol=1e-9, rtol=0)
    assert torch.equal(bases[:, canonical], torch.eye(4, dtype=D).expand(2, 4, 4))


def test_motion_bases_rejects_more_clusters_than_tracks():
    with pytest.raises(ValueError, match="M"):
        motion_bases(torch.zeros(2, 3, 3), torch.ones(2, 3, dtype=torch.bool), 3, 0)


def test_init_nodes_on_a_line():
    pts = torch.tensor([[float(i), 0.0, 0.0] for i in range(5)], dtype=D)
    centres = torch.tensor([[0.0, 0.0, 0.0], [4.0, 0.0, 0.0]], dtype=D)
    positions, coefficients, radii = init_nodes(pts, centres, 5, seed=0)
    order = positions[:, 0].argsort()
    torch.testing.assert_close(positions[order], pts)
    torch.testing.assert_close(radii[order], torch.tensor([2.0, 4 / 3, 4 / 3, 4 / 3, 2.0], dtype=D))
    torch.testing.assert_close(coefficients.sum(1), torch.ones(5, dtype=D))
    c = coefficients[order]
    assert c[0, 0] > 0.99 and c[4, 1] > 0.99
    torch.testing.assert_close(c[2], torch.tensor([0.5, 0.5], dtype=D))


def test_fps_idw_and_knn_distance_helpers():
    pts = torch.tensor([[0.0, 0, 0], [0.1, 0, 0], [10.0, 0, 0], [0.0, 10, 0]], dtype=D)
    idx = farthest_point_sampling(pts, 3, seed=0)
    assert len(set(idx.tolist())) == 3 and {2, 3} <= set(idx.tolist())
    w = idw_coefficients(
        torch.tensor([[1.0, 0, 0]], dtype=D),
        torch.tensor([[0.0, 0, 0], [3.0, 0, 0]], dtype=D),
        eps=0,
    )
    torch.testing.assert_close(w, torch.tensor([[0.8, 0.2]], dtype=D))  # 1/1 : 1/4
    torch.testing.assert_close(mean_knn_distance(pts[:2], 3), torch.tensor([0.1, 0.1], dtype=D))


def test_to_canonical_undoes_the_basis_of_the_nearest_track():
    from dynrec.geometry.lift import to_canonical
    from dynrec.geometry.se3 import make_transform, so3_exp, transform_points

    gen = torch.Generator().manual_seed(0)
    T = 3
    # two clusters far apart, each moving rigidly with its own basis (identity at t = 0)
    bases = torch.eye(4, dtype=torch.float64).repeat(2, T, 1, 1)
    for m, (axis, shift) in enumerate([((0.0, 0.0, 0.4), (0.3, 0.0, 0.0)), ((0.2, -0.3, 0.0), (0.0, 0.5, 0.1))]):
        for t in range(1, T):
            R = so3_exp(torch.tensor(axis, dtype=torch.float64) * t)
            bases[m, t] = make_transform(R, torch.tensor(shift, dtype=torch.float64) * t)
    centres = torch.tensor([[0.0, 0.0, 0.0], [5.0, 5.0, 0.0]], dtype=torch.float64)
    canon_tracks = torch.cat([c + 0.2 * torch.randn(10, 3, generator=gen, dtype=torch.float64) for c in centres])
    labels = torch.tensor([0] * 10 + [1] * 10)
    xyz = torch.stack([transform_points(bases[labels, t], canon_tracks) for t in range(T)], dim=1)
    valid = torch.ones(20, T, dtype=torch.bool)
    canon_points = torch.cat([c + 0.2 * torch.randn(30, 3, generator=gen, dtype=torch.float64) for c in centres])
    point_labels = torch.tensor([0] * 30 + [1] * 30)
    seen_at_2 = transform_points(bases[point_labels, 2], canon_points)
    back = to_canonical(seen_at_2, 2, xyz, valid, labels, bases)
    torch.testing.assert_close(back, canon_points)


def test_complete_tracks_carries_unseen_samples_with_their_basis():
    canonical = 2
    xyz, valid, truth = _two_rigid_clusters(canonical=canonical)
    valid[:5, canonical] = False  # hidden at the canonical frame: its position there is unknown
    observed = torch.where(valid[..., None], xyz, torch.zeros_like(xyz))
    labels = torch.cat([torch.zeros(25, dtype=torch.long), torch.ones(25, dtype=torch.long)])
    bases = torch.stack(truth)
    done = complete_tracks(fill_gaps(observed, valid), valid, labels, bases)
    torch.testing.assert_close(done, xyz, atol=1e-9, rtol=0)  # exact for rigid clusters
    assert torch.equal(done[valid], observed[valid])  # observed samples are kept
    linear = fill_gaps(observed, valid)
    assert (linear[~valid] - xyz[~valid]).norm(dim=-1).max() > 0.1  # what the linear fill got wrong
    # the refit with every track trusted still recovers the bases
    refit, lab, _ = motion_bases(done, valid, 2, canonical, seed=0, known=torch.ones(50, dtype=torch.bool))
    torch.testing.assert_close(refit[int(lab[0])], truth[0], atol=1e-6, rtol=0)


def test_fit_coefficients_pick_the_basis_of_the_nearby_tracks():
    canonical = 2
    xyz, valid, truth = _two_rigid_clusters(canonical=canonical)
    bases = torch.stack(truth)
    # a node between the clusters but nearer the second: IDW would blend, the fit picks basis 1
    positions = torch.tensor([[1.0, 0.0, 0.0], [12.0, 0.0, 0.0], [19.0, 1.0, 0.0]], dtype=D)
    coef = fit_coefficients(positions, xyz, valid, bases, canonical, k=5)
    torch.testing.assert_close(coef, torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], dtype=D))


def test_motion_bases_fall_back_to_the_whole_body_where_a_cluster_is_unseen():
    """One rigid body in two far-apart parts; part A is hidden at frames 3-4: its basis there
    is the fit of every track (exact for a rigid body), not of gap-filled positions."""
    canonical, T = 1, 6
    gen = torch.Generator().manual_seed(5)
    pts = torch.cat([torch.randn(20, 3, dtype=D, generator=gen),
                     torch.randn(20, 3, dtype=D, generator=gen) + torch.tensor([20.0, 0, 0], dtype=D)])
    motion = torch.stack([make_transform(_rotation([0.2, 1.0, 0.3], 0.4 * (t - canonical)),
                                         torch.tensor([0.3 * (t - canonical), 0.0, 0.0], dtype=D)) for t in range(T)])
    xyz = (motion[None, :, :3, :3] @ pts[:, None, :, None])[..., 0] + motion[None, :, :3, 3]
    valid = torch.ones(40, T, dtype=torch.bool)
    valid[:20, 3:5] = False
    observed = torch.where(valid[..., None], xyz, torch.zeros_like(xyz))
    bases, labels, _ = motion_bases(fill_gaps(observed, valid), valid, 2, canonical, seed=0)
    assert len(set(labels[:20].tolist())) == 1 and labels[0] != labels[20]
    torch.testing.assert_close(bases[int(labels[0])], motion, atol=1e-6, rtol=0)
