"""Gaussian density control: clone / split / prune keep the Gaussians and a shared Adam in step."""

from __future__ import annotations

import math

import pytest
import torch

from dynrec.model.density import DensityConfig, DensityControl
from dynrec.model.gaussians import Gaussians
from dynrec.render import rasterize


def _gaussians() -> Gaussians:
    points = torch.tensor([[0.0, 0.0, 3.0], [0.5, 0.0, 3.0], [-0.5, 0.2, 3.0], [0.0, -0.4, 3.0]])
    g = Gaussians.from_points(points, torch.full((4, 3), 0.5), torch.tensor([False, True, False, True]),
                              scale=0.01, opacity=0.5)
    with torch.no_grad():
        g.params["scales"][2] = math.log(0.2)
        g.params["opacities"][3] = -10.0
    return g


def _stepped_adam(g: Gaussians) -> torch.optim.Adam:
    opt = torch.optim.Adam(g.param_groups(), eps=1e-15)
    loss = sum((p ** 2).sum() for p in g.params.values() if p.requires_grad)
    loss.backward()
    opt.step()
    return opt


def _grads(control: DensityControl, g: Gaussians, values: list[float], W: int = 100, H: int = 50) -> None:
    """Feed one view whose screen-space gradient norms (NDC units) are ``values``."""
    means2d = torch.zeros(1, len(g), 2, requires_grad=True)
    (means2d[0, :, 0] * torch.tensor(values) / (W / 2)).sum().backward()
    control.accumulate(means2d, torch.ones(1, len(g), 2, dtype=torch.int32), torch.arange(len(g)), len(g), W, H)


def test_accumulated_gradient_is_in_ndc_units_and_averaged() -> None:
    g = _gaussians()
    control = DensityControl(DensityConfig(), scene_scale=1.0)
    _grads(control, g, [1.0, 2.0, 3.0, 4.0])
    _grads(control, g, [3.0, 2.0, 1.0, 0.0])
    torch.testing.assert_close(control.grad2d / control.count, torch.tensor([2.0, 2.0, 2.0, 2.0]))


def test_clone_split_prune_with_known_outcome() -> None:
    g = _gaussians()
    opt = _stepped_adam(g)
    before = {k: p.detach().clone() for k, p in g.params.items()}
    old_moment = opt.state[g.params["means"]]["exp_avg"].clone()
    control = DensityControl(DensityConfig(grow_grad2d=1e-3, grow_scale3d=0.05), scene_scale=1.0)
    # Gaussian 0: high gradient, small -> cloned; 1: low gradient -> kept; 2: high, large ->
    # split in two; 3: faint -> pruned.
    _grads(control, g, [1.0, 1e-5, 1.0, 0.0])
    counts = control.refine(g, opt, step=600, generator=torch.Generator().manual_seed(0))
    assert counts == {"cloned": 1, "split": 1, "pruned": 1}
    # kept: 0, 1 (original order), then the clone of 0, then the two halves of 2
    assert len(g) == 5
    torch.testing.assert_close(g.means[:2], before["means"][:2])
    torch.testing.assert_close(g.means[2], before["means"][0])
    torch.testing.assert_close(g.scales[3:], before["scales"][2].exp().expand(2, 3) / 1.6)
    assert ((g.means[3:] - before["means"][2]).norm(dim=-1) < 5 * 0.2).all()
    assert g.foreground.tolist() == [False, True, False, False, False]
    # Adam moments follow their rows: kept rows unchanged, new rows zero
    moment = opt.state[g.params["means"]]["exp_avg"]
    torch.testing.assert_close(moment[:2], old_moment[:2])
    assert (moment[2:] == 0).all()
    # and the optimizer keeps working on the new tensors
    opt.zero_grad()
    sum((p ** 2).sum() for p in g.params.values() if p.requires_grad).backward()
    opt.step()
    assert all(torch.isfinite(p).all() for p in g.params.values())


def test_max_gaussians_caps_growth() -> None:
    g = _gaussians()
    opt = _stepped_adam(g)
    control = DensityControl(DensityConfig(grow_grad2d=1e-3, grow_scale3d=0.05, max_gaussians=5), scene_scale=1.0)
    _grads(control, g, [1.0, 1.0, 1.0, 0.0])
    counts = control.refine(g, opt, step=600)
    assert counts["cloned"] == 1 and counts["split"] == 0


def test_render_gradient_densifies_where_the_image_is_wrong() -> None:
    """Two Gaussians, one of them the wrong colour: only that one gets a gradient above the
    threshold, from a real render."""
    K = torch.tensor([[60.0, 0, 32], [0, 60.0, 24], [0, 0, 1]])
    points = torch.tensor([[-0.5, 0.0, 3.0], [0.5, 0.0, 3.0]])
    g = Gaussians.from_points(points, torch.tensor([[0.2, 0.2, 0.2], [0.8, 0.8, 0.8]]),
                              torch.tensor([False, False]), scale=0.1, opacity=0.9)
    target_g = Gaussians.from_points(points + torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0]]),
                                     torch.tensor([[0.2, 0.2, 0.2], [0.8, 0.8, 0.8]]),
                                     torch.tensor([False, False]), scale=0.1, opacity=0.9)

    def render(gs: Gaussians):
        return rasterize(gs.means, gs.quats, gs.scales, gs.opacities, gs.colors, torch.eye(4), K, 64, 48)

    target = render(target_g).rgb.detach()
    out = render(g)
    out.info["means2d"].retain_grad()
    ((out.rgb - target) ** 2).mean().backward()
    control = DensityControl(DensityConfig(), scene_scale=1.0)
    control.accumulate(out.info["means2d"], out.info["radii"], torch.arange(2), 2, 64, 48)
    grad = control.grad2d / control.count
    assert grad[1] > 10 * grad[0]


def test_views_averaged_in_the_loss_count_as_gsplat_cameras() -> None:
    """Two views rendered apart with the loss averaged over them (gradient halved) give the
    statistics of one gsplat call with n_cameras = 2 (DefaultStrategy: x width/2 * n_cameras)."""
    g = _gaussians()
    control = DensityControl(DensityConfig(), scene_scale=1.0)
    W, H = 100, 50
    for values in ([1.0, 2.0, 3.0, 4.0], [3.0, 2.0, 1.0, 0.0]):
        means2d = torch.zeros(1, len(g), 2, requires_grad=True)
        (0.5 * means2d[0, :, 0] * torch.tensor(values) / (W / 2)).sum().backward()  # mean over 2 views
        control.accumulate(means2d, torch.ones(1, len(g), 2, dtype=torch.int32), torch.arange(len(g)), len(g),
                           W, H, n_cameras=2)
    torch.testing.assert_close(control.grad2d / control.count, torch.tensor([2.0, 2.0, 2.0, 2.0]))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batched_gsplat_render_statistics_match_default_strategy() -> None:
    """One gsplat call with 3 cameras: ``accumulate`` gives gsplat DefaultStrategy's own
    ``grad2d`` / ``count`` (its ``_update_state`` on the same ``meta``)."""
    strategy_mod = pytest.importorskip("gsplat.strategy")
    g = Gaussians.from_points(torch.randn(500, 3, generator=torch.Generator().manual_seed(0)) * 0.5
                              + torch.tensor([0.0, 0.0, 4.0]), torch.rand(500, 3), torch.zeros(500, dtype=torch.bool),
                              scale=0.05, opacity=0.7).cuda()
    K = torch.tensor([[60.0, 0, 32], [0, 60.0, 24], [0, 0, 1]], device="cuda").expand(3, 3, 3)
    views = torch.eye(4, device="cuda").repeat(3, 1, 1)
    views[:, 0, 3] = torch.tensor([-0.2, 0.0, 0.2], device="cuda")
    out = rasterize(g.means, g.quats, g.scales, g.opacities, g.colors, views, K, 64, 48)
    out.info["means2d"].retain_grad()
    (out.rgb - 0.5).square().mean().backward()
    ours = DensityControl(DensityConfig(), scene_scale=1.0)
    ours.accumulate(out.info["means2d"], out.info["radii"], torch.arange(500, device="cuda"), 500, 64, 48,
                    n_cameras=3)
    strategy = strategy_mod.DefaultStrategy()
    state = strategy.initialize_state()
    strategy._update_state(g.params, state, out.info, packed=False)
    torch.testing.assert_close(ours.count, state["count"])
    torch.testing.assert_close(ours.grad2d, state["grad2d"])
    assert int(ours.count.max()) == 3
