"""dynrec.model: Gaussians, the HiMoR tree, skinning and losses, with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from dynrec.geometry.se3 import (
    make_transform,
    matrix_to_quat,
    matrix_to_rot6d,
    quat_multiply,
    transform_points,
)
from dynrec.model import GaussianLRs, Gaussians, GlobalBases, MotionLRs, MotionTree, TreeConfig
from dynrec.model import losses as L
from dynrec.model.himor import curve_distance, knn_curve
from dynrec.model.skinning import curve_neighbours, deform, skin_weights

D = torch.float64


def _rotation(axis: list[float], angle: float) -> torch.Tensor:
    """Rodrigues rotation [3, 3] (float64)."""
    a = torch.tensor(axis, dtype=D)
    a = a / a.norm()
    Kx = torch.tensor([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]], dtype=D)
    return torch.eye(3, dtype=D) + math.sin(angle) * Kx + (1 - math.cos(angle)) * Kx @ Kx


def _motion(T: int, axis: list[float], speed: float, shift: list[float]) -> torch.Tensor:
    """A smooth SE(3) sequence [T, 4, 4] (identity at t = 0)."""
    return torch.stack(
        [
            make_transform(_rotation(axis, speed * t), torch.tensor(shift, dtype=D) * t)
            for t in range(T)
        ]
    )


def _rot6d_trans(T: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return matrix_to_rot6d(T[..., :3, :3]), T[..., :3, 3]


def _tree(
    bases: torch.Tensor, positions: torch.Tensor, coefficients: torch.Tensor, radii=None, **cfg
) -> MotionTree:
    radii = torch.full((positions.shape[0],), 0.5, dtype=D) if radii is None else radii
    return MotionTree.from_bases(bases, positions, coefficients, radii, TreeConfig(**cfg))


# --- tree ------------------------------------------------------------------------------


def test_one_hot_coefficients_reproduce_the_basis():
    T = 5
    bases = torch.stack(
        [_motion(T, [0, 0, 1], 0.3, [1, 0, 0]), _motion(T, [1, 1, 0], -0.2, [0, 0.5, 0.1])]
    )
    tree = _tree(bases, torch.zeros(2, 3, dtype=D), torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=D))
    G = tree.leaf_transforms(torch.arange(T))
    assert G.shape == (T, 2, 4, 4)
    torch.testing.assert_close(G[:, 0], bases[1], atol=1e-12, rtol=0)
    torch.testing.assert_close(G[:, 1], bases[0], atol=1e-12, rtol=0)


def test_eq3_blends_rot6d_and_translation_linearly():
    T = 3
    bases = torch.stack(
        [_motion(T, [0, 0, 1], 0.4, [1, 0, 0]), _motion(T, [0, 0, 1], -0.4, [0, 2, 0])]
    )
    tree = _tree(bases, torch.zeros(1, 3, dtype=D), torch.tensor([[0.5, 0.5]], dtype=D))
    G = tree.leaf_transforms([2])[0, 0]
    torch.testing.assert_close(
        G[:3, :3], torch.eye(3, dtype=D), atol=1e-12, rtol=0
    )  # ±0.8 rad average
    torch.testing.assert_close(G[:3, 3], torch.tensor([1.0, 2.0, 0.0], dtype=D))


def test_child_global_motion_composes_parent_and_relative():
    T = 4
    a = torch.tensor([1.0, 0.0, 0.0], dtype=D)
    b = torch.tensor([0.0, 0.0, 2.0], dtype=D)
    parent_basis = torch.stack(
        [make_transform(_rotation([0, 0, 1], 0.3 * t), a * t) for t in range(T)]
    )
    child_basis = torch.stack(
        [make_transform(_rotation([1, 0, 0], 0.2 * t), b * t) for t in range(T)]
    )
    tree = _tree(parent_basis[None], torch.zeros(1, 3, dtype=D), torch.ones(1, 1, dtype=D))
    r6, tr = _rot6d_trans(child_basis[None, None])  # [P=1, M=1, T, ·]
    x_child = torch.tensor([[0.3, -0.2, 0.5]], dtype=D)
    tree.add_level(
        r6,
        tr,
        x_child,
        torch.ones(1, 1, dtype=D),
        torch.ones(1, dtype=D),
        torch.zeros(1, dtype=torch.long),
    )
    levels = tree.level_transforms(torch.arange(T))
    assert [g.shape for g in levels] == [(T, 1, 4, 4), (T, 1, 4, 4)]
    torch.testing.assert_close(levels[1][:, 0], parent_basis @ child_basis, atol=1e-12, rtol=0)
    # pure translations: parent by a, child by b relative => child by a + b
    pure = _tree(
        torch.stack([make_transform(torch.eye(3, dtype=D), a * t) for t in range(T)])[None],
        torch.zeros(1, 3, dtype=D),
        torch.ones(1, 1, dtype=D),
    )
    r6, tr = _rot6d_trans(
        torch.stack([make_transform(torch.eye(3, dtype=D), b * t) for t in range(T)])[None, None]
    )
    pure.add_level(
        r6,
        tr,
        x_child,
        torch.ones(1, 1, dtype=D),
        torch.ones(1, dtype=D),
        torch.zeros(1, dtype=torch.long),
    )
    traj = pure.node_trajectories(-1)
    torch.testing.assert_close(traj[0], x_child + (a + b) * torch.arange(T, dtype=D)[:, None])


def test_tree_param_groups_and_state_dict_round_trip():
    T = 4
    bases = torch.stack(
        [_motion(T, [0, 0, 1], 0.1, [0.1, 0, 0]), _motion(T, [0, 1, 0], 0.2, [0, 0.1, 0])]
    )
    gen = torch.Generator().manual_seed(0)
    pos = torch.randn(6, 3, dtype=D, generator=gen)
    tree = _tree(
        bases,
        pos,
        torch.softmax(torch.randn(6, 2, dtype=D, generator=gen), 1),
        n_children=2,
        n_bases_level2=2,
    )
    tree.enable_level2(pos + 0.05 * torch.randn(6, 3, dtype=D, generator=gen), seed=0)
    groups = {g["name"]: g for g in tree.param_groups()}
    lrs = MotionLRs()
    assert groups["bases"]["lr"] == lrs.bases == 1.6e-4
    assert groups["node_positions"]["lr"] == 1.6e-5 and groups["node_radii"]["lr"] == 5e-4
    assert groups["node_coefficients"]["lr"] == 1e-2
    assert sum(len(g["params"]) for g in groups.values()) == len(list(tree.parameters()))
    again = MotionTree.from_state_dict(tree.state_dict(), tree.config)
    t = torch.arange(T)
    torch.testing.assert_close(again.leaf_transforms(t), tree.leaf_transforms(t))


def test_enable_level2_keeps_the_deformation():
    T = 5
    bases = torch.stack(
        [_motion(T, [0, 0, 1], 0.2, [0.3, 0, 0]), _motion(T, [1, 0, 0], -0.3, [0, 0, 0.4])]
    )
    nodes = torch.tensor([[0.0, 0, 0], [10.0, 0, 0]], dtype=D)
    tree = _tree(bases, nodes, torch.eye(2, dtype=D), radii=torch.ones(2, dtype=D), skin_k=2)
    gen = torch.Generator().manual_seed(1)
    means = torch.cat(
        [
            nodes[0] + 0.5 * torch.randn(40, 3, dtype=D, generator=gen),
            nodes[1] + 0.5 * torch.randn(40, 3, dtype=D, generator=gen),
        ]
    )
    quats = torch.tensor([1.0, 0, 0, 0], dtype=D).expand(80, 4)
    t = torch.arange(T)
    before, _ = tree.deform(means, quats, t)
    tree.enable_level2(means, n_children=4, n_bases=3, seed=0)
    assert tree.num_levels == 2 and tree.num_leaves == 8
    assert tree.levels[1].bases_rot6d.shape == (2, 3, T, 6)
    assert tree.levels[1].parent.tolist() == [0] * 4 + [1] * 4
    torch.testing.assert_close(tree.levels[1].coefficients.sum(1), torch.ones(8, dtype=D))
    after, _ = tree.deform(means, quats, t)
    torch.testing.assert_close(after, before, atol=1e-6, rtol=0)
    with pytest.raises(RuntimeError):
        tree.enable_level2(means)


def test_deform_sends_gradients_to_every_tree_parameter():
    T = 3
    bases = torch.stack(
        [_motion(T, [0, 0, 1], 0.2, [0.3, 0, 0]), _motion(T, [1, 0, 0], -0.3, [0, 0, 0.4])]
    )
    gen = torch.Generator().manual_seed(2)
    tree = _tree(
        bases,
        torch.randn(4, 3, dtype=D, generator=gen),
        torch.softmax(torch.randn(4, 2, dtype=D, generator=gen), 1),
        skin_k=3,
    )
    means = torch.randn(10, 3, dtype=D, generator=gen)
    quats = torch.tensor([1.0, 0, 0, 0], dtype=D).expand(10, 4)
    m, q = tree.deform(means, quats, [1, 2])
    (m.square().sum() + q[..., 1:].sum()).backward()
    for name, p in tree.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


# --- skinning ----------------------------------------------------------------------------


def test_skin_weights_match_eq5_by_hand():
    means = torch.zeros(1, 3, dtype=D)
    nodes = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 5.0]], dtype=D)
    radii = torch.tensor([0.5, 2.0, 1.0], dtype=D)
    idx, w = skin_weights(means, nodes, radii, k=2)
    assert idx.tolist() == [[0, 1]] or idx.tolist() == [[1, 0]]
    e = {0: math.exp(-1.0 / (2 * 0.5)), 1: math.exp(-1.0 / (2 * 2.0))}
    z = e[0] + e[1]
    torch.testing.assert_close(w[0], torch.tensor([e[int(i)] / z for i in idx[0]], dtype=D))


def test_dual_quaternion_skinning_with_identical_transforms_is_that_transform():
    T = make_transform(_rotation([1, 2, 3], 0.7), torch.tensor([0.5, -1.0, 2.0], dtype=D))
    nodes = torch.tensor([[0.0, 0, 0], [2.0, 0, 0]], dtype=D)
    means = torch.tensor([[1.0, 0.3, 0.0]], dtype=D)
    quats = torch.tensor([[0.9, 0.1, -0.3, 0.2]], dtype=D)
    quats = quats / quats.norm()
    idx, w = skin_weights(means, nodes, torch.ones(2, dtype=D), k=2)
    torch.testing.assert_close(w, torch.full((1, 2), 0.5, dtype=D))
    m, q = deform(means, quats, idx, w, T.expand(1, 2, 4, 4))
    torch.testing.assert_close(m[0], transform_points(T, means), atol=1e-12, rtol=0)
    expected = quat_multiply(matrix_to_quat(T[:3, :3]), quats)
    assert torch.allclose(q[0], expected, atol=1e-12) or torch.allclose(q[0], -expected, atol=1e-12)


def test_skinning_between_two_translations_blends_them():
    nodes = torch.tensor([[0.0, 0, 0], [2.0, 0, 0]], dtype=D)
    Ts = torch.stack(
        [
            make_transform(torch.eye(3, dtype=D), torch.tensor(v, dtype=D))
            for v in ([0, 0, 0], [0, 0, 2.0])
        ]
    )
    means = torch.tensor([[1.0, 0, 0]], dtype=D)
    idx, w = skin_weights(means, nodes, torch.ones(2, dtype=D), k=2)
    m, _ = deform(means, torch.tensor([[1.0, 0, 0, 0]], dtype=D), idx, w, Ts[None])
    torch.testing.assert_close(m[0, 0], torch.tensor([1.0, 0.0, 1.0], dtype=D))


# --- densification / curve distance ----------------------------------------------------------


def test_curve_distance_is_the_max_over_time():
    a = torch.zeros(2, 4, 3, dtype=D)
    b = torch.zeros(2, 4, 3, dtype=D)
    b[0, 2] = torch.tensor([3.0, 4.0, 0.0], dtype=D)
    b[1, :, 0] = torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=D)
    torch.testing.assert_close(curve_distance(a, b), torch.tensor([5.0, 2.0], dtype=D))


def test_knn_curve_excludes_self_and_uses_trajectories():
    traj = torch.zeros(3, 2, 3, dtype=D)
    traj[1, 1, 0] = 1.0  # close to 0 at t=0, 1 away at t=1
    traj[2, :, 0] = 0.5  # 0.5 away at every t
    nbr = knn_curve(traj, 1)[:, 0].tolist()
    assert nbr[0] == 2 and nbr[1] == 2 and nbr[2] in (0, 1)
    assert knn_curve(traj, 5).shape == (3, 2)


def _static_tree(nodes: torch.Tensor, T: int = 4) -> MotionTree:
    bases = torch.eye(4, dtype=D).expand(1, T, 4, 4)
    return _tree(bases, nodes, torch.ones(nodes.shape[0], 1, dtype=D), densify_k=2)


def test_densify_adds_nodes_only_where_trajectories_are_far():
    T = 4
    nodes = torch.tensor([[0.0, 0, 0], [1.0, 0, 0]], dtype=D)
    tree = _static_tree(nodes, T)
    canon = torch.tensor([[0.1, 0, 0], [0.9, 0.1, 0], [5.0, 0, 0], [0.5, 0.05, 0]], dtype=D)
    traj = canon[:, None].expand(4, T, 3).clone()
    traj[3, 2] += torch.tensor([0.0, 3.0, 0.0], dtype=D)  # near canonically, but moves away at t=2
    added = tree.densify(traj, canon, threshold=1.0, max_new=10, min_spacing=0.1)
    assert added == 2 and tree.num_leaves == 4
    new = tree.leaf_positions()[2:].detach()
    assert {tuple(p) for p in new.tolist()} == {(5.0, 0.0, 0.0), (0.5, 0.05, 0.0)}
    torch.testing.assert_close(tree.leaf_positions()[:2].detach(), nodes)
    assert tree.levels[0].parent.tolist() == [0, 0, 0, 0]
    # coefficients/radius copied from the nearest node; nothing far any more
    torch.testing.assert_close(tree.levels[0].coefficients[2:].detach(), torch.ones(2, 1, dtype=D))
    assert tree.densify(traj, canon, threshold=1.0, max_new=10, min_spacing=0.1) == 0


def test_densify_respects_max_new_and_spacing():
    tree = _static_tree(torch.tensor([[0.0, 0, 0], [1.0, 0, 0]], dtype=D))
    far = torch.tensor([[5.0, 0, 0], [5.01, 0, 0], [9.0, 0, 0]], dtype=D)
    traj = far[:, None].expand(3, 4, 3)
    assert tree.densify(traj, far, threshold=1.0, max_new=1) == 1
    assert tree.leaf_positions()[-1, 0].item() == 9.0  # farthest first
    assert tree.densify(traj, far, threshold=1.0, max_new=5) == 1  # 5.01 is too close to 5.0


# --- global bases ------------------------------------------------------------------------


def test_global_bases_one_hot_and_coefficients_required():
    T = 4
    bases = torch.stack(
        [_motion(T, [0, 0, 1], 0.3, [1, 0, 0]), _motion(T, [0, 1, 0], 0.1, [0, 0, 1])]
    )
    model = GlobalBases.from_bases(bases)
    means = torch.tensor([[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]], dtype=D)
    quats = torch.tensor([[1.0, 0, 0, 0]], dtype=D).expand(2, 4)
    m, q = model.deform(means, quats, torch.arange(T), coefs=torch.eye(2, dtype=D))
    torch.testing.assert_close(m[:, 0], transform_points(bases[0], means[0][None].expand(T, 3)))
    torch.testing.assert_close(m[:, 1], transform_points(bases[1], means[1][None].expand(T, 3)))
    q_expected = matrix_to_quat(bases[1][:, :3, :3])
    assert torch.allclose(q[:, 1].abs(), q_expected.abs(), atol=1e-12)
    with pytest.raises(ValueError):
        model.deform(means, quats, [0])
    coefs = GlobalBases.init_coefficients(
        means, torch.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]], dtype=D)
    )
    assert coefs.shape == (2, 2) and coefs[0, 0] > 0.99
    assert model.param_groups()[0]["lr"] == 1.6e-4


# --- Gaussians -------------------------------------------------------------------------


def test_gaussians_from_points_layout_and_activations():
    pts = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    cols = torch.tensor([[0.2, 0.5, 0.8]]).expand(4, 3)
    fg = torch.tensor([True, False, True, False])
    g = Gaussians.from_points(pts, cols, fg, scale=0.05)
    assert len(g) == 4
    assert set(g.params.keys()) == {"means", "scales", "quats", "opacities", "colors", "foreground"}
    torch.testing.assert_close(g.scales, torch.full((4, 3), 0.05))
    torch.testing.assert_close(g.colors, cols, atol=1e-6, rtol=0)
    torch.testing.assert_close(g.opacities, torch.full((4,), 0.1))
    assert g.foreground.tolist() == fg.tolist() and not g.params["foreground"].requires_grad
    assert g.log_scales is g.params["scales"] and g.opacity_logits is g.params["opacities"]
    groups = {x["name"]: x["lr"] for x in g.param_groups()}
    assert groups == {
        "means": 1.6e-4,
        "scales": 5e-3,
        "quats": 1e-3,
        "opacities": 1e-2,
        "colors": 1e-2,
    }
    opts = g.make_optimizers(GaussianLRs())
    assert set(opts) == set(groups) and all(len(o.param_groups) == 1 for o in opts.values())
    auto = Gaussians.from_points(pts, cols, fg, motion_coefs=torch.ones(4, 2) / 2)
    torch.testing.assert_close(auto.scales[0], torch.full((3,), (1 + 1 + 1) / 3.0))
    assert "motion_coefs" in {x["name"] for x in auto.param_groups()}
    again = Gaussians.from_state_dict(auto.state_dict())
    torch.testing.assert_close(again.params["motion_coefs"], auto.params["motion_coefs"])


def test_gaussians_follow_gsplat_default_strategy_ops():
    strategy = pytest.importorskip("gsplat.strategy")
    ops = pytest.importorskip("gsplat.strategy.ops")
    pts = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    fg = torch.tensor([True, False, True, True, False, False])
    g = Gaussians.from_points(pts, torch.rand(6, 3), fg, scale=0.1, motion_coefs=torch.rand(6, 4))
    opts = g.make_optimizers()
    strategy.DefaultStrategy().check_sanity(g.params, opts)
    state: dict = {}
    ops.split(g.params, opts, state, torch.tensor([False, True, False, False, False, False]))
    assert g.foreground.tolist() == [True, True, True, False, False, False, False]
    ops.remove(g.params, opts, state, torch.tensor([False] * 5 + [True, True]))
    assert g.foreground.tolist() == fg.tolist()[:1] + fg.tolist()[2:]
    ops.duplicate(g.params, opts, state, torch.tensor([False, True, False, False, False]))
    assert g.foreground.tolist() == fg.tolist()[:1] + fg.tolist()[2:] + [True]
    assert (
        g.motion_coefs.shape == (6, 4)
        and opts["motion_coefs"].param_groups[0]["params"][0] is g.motion_coefs
    )
    g = Gaussians.from_points(pts, torch.rand(6, 3), fg, scale=0.1)
    opts = g.make_optimizers()
    ops.duplicate(g.params, opts, state, torch.tensor([True, False, False, False, True, False]))
    assert g.foreground.tolist() == fg.tolist() + [True, False]
    ops.remove(g.params, opts, state, torch.tensor([True] + [False] * 7))
    assert g.foreground.tolist() == fg.tolist()[1:] + [True, False]
    assert all(p.shape[0] == 7 for p in g.params.values())


# --- losses ------------------------------------------------------------------------------


def test_loss_weights_defaults_and_level_schedule():
    w = L.LossWeights()
    assert (w.rgb_mse, w.rgb_dssim, w.rgb_lpips, w.mask, w.depth, w.depth_grad) == (
        0.8,
        0.2,
        0.01,
        1.0,
        0.5,
        1.0,
    )
    assert (w.track_2d, w.track_depth, w.accel_bases, w.accel_tracks, w.scale, w.node_radius) == (
        2.0,
        0.1,
        0.1,
        0.2,
        0.01,
        1e-4,
    )
    assert w.rigidity_weights(1) == [0.05]
    assert w.rigidity_weights(2) == [0.25, 0.05]


def test_weighted_sum_skips_zero_weights():
    called = []

    def term(name: str, value: float):
        def fn():
            called.append(name)
            return torch.tensor(value)

        return fn

    total, values = L.weighted_sum(
        {"mask": term("mask", 2.0), "depth": term("depth", 3.0)}, L.LossWeights(depth=0.0)
    )
    assert called == ["mask"] and total.item() == 2.0 and set(values) == {"mask"}
    assert L.weighted_sum({"depth": term("depth", 1.0)}, {"depth": 0.0})[0] is None


def test_ssim_matches_skimage_in_the_interior():
    skm = pytest.importorskip("skimage.metrics")
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(32, 40, 3, dtype=D, generator=gen)
    b = (a + 0.1 * torch.randn(32, 40, 3, dtype=D, generator=gen)).clamp(0, 1)
    ours = L.ssim_map(a, b)
    _, ref = skm.structural_similarity(
        a.numpy(),
        b.numpy(),
        channel_axis=-1,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        full=True,
    )
    torch.testing.assert_close(
        ours[5:-5, 5:-5], torch.from_numpy(ref)[5:-5, 5:-5], atol=1e-8, rtol=0
    )
    assert L.dssim(a, a).abs().item() < 1e-12


def _check_grad(loss: torch.Tensor, *tensors: torch.Tensor) -> None:
    assert torch.isfinite(loss)
    grads = torch.autograd.grad(loss, tensors)
    for g in grads:
        assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_image_losses_have_finite_nonzero_gradients():
    gen = torch.Generator().manual_seed(0)
    pred = torch.rand(2, 16, 20, 3, dtype=D, generator=gen).requires_grad_()
    target = torch.rand(2, 16, 20, 3, dtype=D, generator=gen)
    _check_grad(L.rgb_loss(pred, target), pred)
    _check_grad(L.rgb_loss(pred, target, lpips=lambda x, y: (x - y).abs().mean()), pred)
    assert L.rgb_loss(target, target).item() == pytest.approx(0.0, abs=1e-12)
    alpha = torch.rand(16, 20, 1, dtype=D, generator=gen).requires_grad_()
    _check_grad(L.mask_loss(alpha, torch.ones(16, 20, 1, dtype=D)), alpha)
    depth = (1 + torch.rand(16, 20, 1, dtype=D, generator=gen)).requires_grad_()
    tdepth = 1 + torch.rand(16, 20, 1, dtype=D, generator=gen)
    tdepth[:8] = 0.0
    _check_grad(L.depth_loss(depth, tdepth), depth)
    g = torch.autograd.grad(L.depth_loss(depth, tdepth), depth)[0]
    assert (g[:8] == 0).all()  # unknown target depth contributes nothing
    _check_grad(L.depth_gradient_loss(depth, tdepth), depth)
    assert L.depth_gradient_loss(tdepth, tdepth).item() == 0.0


def test_depth_losses_known_values_on_disparity():
    pred = torch.tensor([[1.0, 0.5, 0.25]], dtype=D)  # disparities 1, 2, 4: diffs 1, 2
    target = torch.tensor([[1.0, 1.0, 0.5]], dtype=D)  # disparities 1, 1, 2: diffs 0, 1
    assert L.depth_gradient_loss(pred, target, quantile=1.0).item() == pytest.approx(1.0, rel=1e-4)
    # 99 pixels off by 0.5 in disparity and one far outlier that the 0.98 quantile drops
    pred = torch.full((100,), 2.0, dtype=D)
    pred[0] = 1e-3
    target = torch.ones(100, dtype=D)
    assert L.depth_loss(pred, target).item() == pytest.approx(0.5, rel=1e-4)
    assert L.depth_loss(pred, target, quantile=1.0).item() > 10.0


def test_track_losses():
    pred = torch.tensor([[10.0, 20.0], [30.0, 40.0]], dtype=D, requires_grad=True)
    target = torch.tensor([[10.0, 28.0], [0.0, 0.0]], dtype=D)
    loss = L.track_2d_loss(pred, target, torch.tensor([True, False]), width=80, height=60)
    assert loss.item() == pytest.approx((8 / 80) ** 2)
    _check_grad(loss, pred)
    z = torch.tensor([1.0, 2.0, 3.0], dtype=D, requires_grad=True)
    tz = torch.tensor([2.0, 0.0, 1.0], dtype=D)
    dl = L.track_depth_loss(z, tz, torch.tensor([True, True, False]))
    assert dl.item() == pytest.approx(1.0)
    _check_grad(dl, z)


def test_rigidity_loss_is_zero_for_rigid_and_positive_otherwise():
    T = 4
    rigid = _motion(T, [1, 1, 0], 0.3, [0.2, 0.1, 0.0])
    other = _motion(T, [0, 0, 1], -0.5, [0.0, 0.3, 0.1])
    gen = torch.Generator().manual_seed(0)
    pos = torch.randn(6, 3, dtype=D, generator=gen)
    tree = _tree(torch.stack([rigid, other]), pos, torch.tensor([[1.0, 0.0]] * 6, dtype=D))
    knn = knn_curve(tree.node_trajectories().detach(), 3)
    t = torch.arange(T)
    zero = L.rigidity_loss(pos, tree.level_transforms(t)[0], knn)
    assert zero.item() < 1e-12
    with torch.no_grad():
        tree.levels[0].coefficients[0] = torch.tensor([0.0, 1.0], dtype=D)
    loss = L.rigidity_loss(tree.levels[0].positions, tree.level_transforms(t)[0], knn)
    assert loss.item() > 1e-3
    _check_grad(
        loss, tree.levels[0].bases_rot6d, tree.levels[0].bases_trans, tree.levels[0].coefficients
    )
    assert L.rigidity_loss(pos, tree.level_transforms([0])[0], knn).item() == 0.0


def test_regularisers():
    T = 5
    r6, tr = _rot6d_trans(_motion(T, [0, 0, 1], 0.0, [1.0, 0, 0])[None])  # constant velocity
    assert L.bases_acceleration_loss([(r6, tr)]).item() == pytest.approx(0.0, abs=1e-12)
    tr2 = tr.clone()
    tr2[0, 2, 0] += 1.0
    tr2.requires_grad_()
    _check_grad(L.bases_acceleration_loss([(r6, tr2)]), tr2)
    x = torch.zeros(4, 3, dtype=D, requires_grad=True)
    acc = L.track_acceleration_loss(
        torch.full((4, 3), -1.0, dtype=D), x, torch.full((4, 3), 3.0, dtype=D)
    )
    assert acc.item() == pytest.approx(2 * math.sqrt(3))
    _check_grad(acc, x)
    ls = torch.log(torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]], dtype=D)).requires_grad_()
    s = L.scale_loss(ls)
    assert s.item() == pytest.approx(0.5)  # var(1,2,3) = 1, var(1,1,1) = 0
    _check_grad(s, ls)
    pos = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [2.0, 0, 0], [3.0, 0, 0]], dtype=D)
    radii = torch.tensor([3.0, 0.1, 0.1, 0.1], dtype=D, requires_grad=True)
    r = L.node_radius_loss(pos, radii)
    assert r.item() == pytest.approx((3.0 - 2.0) / 4)
    _check_grad(r, radii)


def test_curve_neighbours_follow_motion_not_canonical_distance():
    """Two limbs touching in the canonical frame (t = 0) and moving apart: a point on limb A
    takes A's leaves although B's are nearer at t = 0; HiMoR's canonical choice takes B's."""
    T = 5
    still = torch.eye(4, dtype=D).expand(T, 4, 4)
    away = torch.stack([make_transform(torch.eye(3, dtype=D), torch.tensor([0.0, 0.0, 0.5 * t], dtype=D))
                        for t in range(T)])
    # leaves 0, 1 on limb A (still), 2, 3 on limb B (moves up); the point is on A at x = 0.5
    pos = torch.tensor([[0.0, 0, 0], [-0.1, 0, 0], [0.55, 0, 0], [0.6, 0, 0]], dtype=D)
    leaves = torch.stack([still, still, away, away], dim=1)  # [T, 4, 4, 4]
    point = torch.tensor([[0.3, 0.0, 0.0]], dtype=D)
    point_on_a = torch.tensor([[0.05, 0.0, 0.0]], dtype=D)
    idx = curve_neighbours(point_on_a, pos, leaves, k=2, candidates=4)
    assert set(idx[0].tolist()) == {0, 1}
    # nearest leaf of ``point`` is 2 (0.25 away) so it moves with B; its curve neighbours are B's
    assert set(curve_neighbours(point, pos, leaves, k=2, candidates=4)[0].tolist()) == {2, 3}


def test_tree_skin_by_curve_and_canonical():
    T = 4
    bases = torch.stack([_motion(T, [0, 0, 1], 0.0, [0, 0, 0]), _motion(T, [0, 0, 1], 0.0, [0, 0, 0.5])])
    positions = torch.tensor([[0.0, 0, 0], [-0.1, 0, 0], [0.3, 0, 0], [0.4, 0, 0]], dtype=D)
    coef = torch.tensor([[1.0, 0], [1.0, 0], [0, 1.0], [0, 1.0]], dtype=D)
    point = torch.tensor([[0.16, 0.0, 0.0]], dtype=D)  # nearest leaf 2 (0.14) -> moves with basis 1
    curve = _tree(bases, positions, coef, skin_k=2, skin_candidates=4)
    canon = _tree(bases, positions, coef, skin_k=2, skin_by="canonical")
    assert set(curve.skin(point)[0][0].tolist()) == {2, 3}
    assert set(canon.skin(point)[0][0].tolist()) == {0, 2}
    with pytest.raises(ValueError, match="skin_by"):
        _tree(bases, positions, coef, skin_by="nope").skin(point)
