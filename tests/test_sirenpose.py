"""SirenPose maths (issue 6): L_geo, SIREN initialisation, keypoint anchors, camera refinement."""

from __future__ import annotations

import math

import torch

from dynrec.artifacts import Cameras, Tracks
from dynrec.geometry.lift import project_points
from dynrec.geometry.se3 import make_transform, rotation_angle, se3_exp, so3_exp, so3_log
from dynrec.metrics.pose import ate, rpe
from dynrec.model.camera_refine import CameraRefiner
from dynrec.model.himor import MotionTree, TreeConfig
from dynrec.model.sirenpose import (
    KeypointAnchors,
    Siren,
    SirenResidual,
    deform_with_residual,
    geo_loss,
    lift_anchors,
    residual_deform_fn,
)

W, H = 64, 48


def _geo_grad(
    pred: torch.Tensor, target: torch.Tensor, skeleton: torch.Tensor, **kw
) -> torch.Tensor:
    """d L_geo / d pred, [1, J, 2] keypoint sets with unit confidence."""
    p = pred.clone().requires_grad_(True)
    conf = torch.ones(p.shape[:2], dtype=p.dtype)
    geo_loss(p, target, conf, None, skeleton, W, H, **kw).backward()
    return p.grad


def test_geo_loss_zero_at_truth_and_gradient_points_to_truth_below_pi_over_w0():
    torch.manual_seed(0)
    w0 = 30.0
    s = float(max(W, H))  # pixels per normalised unit
    target = torch.rand(1, 5, 2, dtype=torch.float64) * torch.tensor([W, H])
    star = torch.tensor([[0, 1], [0, 2], [0, 3], [0, 4]])  # keypoint 0 is in every edge
    conf = torch.ones(1, 5, dtype=torch.float64)
    for quad in (False, True):
        for freqs in ((1.0,), (1.0, 0.25)):
            kw = {"w0": w0, "freqs": freqs, "quadrature": quad}
            assert float(geo_loss(target, target, conf, None, star, W, H, **kw)) == 0.0
            # only differences enter: a global shift of every keypoint changes nothing
            shifted = target + torch.tensor([7.3, -2.1], dtype=torch.float64)
            assert float(geo_loss(shifted, target, conf, None, star, W, H, **kw)) < 1e-20

    # Quadrature (phase) form: for every edge and every offset |δ| < π/w0 (per coordinate)
    # the gradient on the perturbed keypoint points back to the truth; just past π/w0 it
    # points away (towards the alias at 2π/w0, where the loss is 0 again).
    for frac in (0.05, 0.3, 0.6, 0.9, 0.99):
        for sign in (1.0, -1.0):
            delta = sign * frac * math.pi / w0 * s * torch.tensor([1.0, -0.7], dtype=torch.float64)
            pred = target.clone()
            pred[0, 0] += delta
            g = _geo_grad(pred, target, star, w0=w0, quadrature=True)[0, 0]
            assert torch.all(torch.sign(g) == torch.sign(delta)), (frac, sign, g)
    pred = target.clone()
    pred[0, 0, 0] += 1.1 * math.pi / w0 * s
    g = _geo_grad(pred, target, star, w0=w0, quadrature=True)[0, 0]
    assert g[0] < 0  # attracted by the alias, away from the truth
    pred = target.clone()
    pred[0, 0] += 2 * math.pi / w0 * s
    conf1 = torch.ones(1, 5, dtype=torch.float64)
    assert float(geo_loss(pred, target, conf1, None, star, W, H, w0=w0, quadrature=True)) < 1e-20

    # A lower frequency widens the basin: at 1.5 π/w0 the single frequency pushes away,
    # frequencies (w0, w0/4) (each term divided by w^2) pull towards the truth.
    pred = target.clone()
    pred[0, 0, 0] += 1.5 * math.pi / w0 * s
    assert _geo_grad(pred, target, star, w0=w0, quadrature=True)[0, 0, 0] < 0
    assert _geo_grad(pred, target, star, w0=w0, freqs=(1.0, 0.25), quadrature=True)[0, 0, 0] > 0

    # Paper's sine-only form (Eq. 6), one edge: the gradient points to the truth for every
    # offset that keeps w0 Δ̂ on the monotone branch of the sine holding w0 Δ (a window
    # π/w0 wide), and the loss has a spurious zero at the mirror offset (π - 2 w0 Δ)/w0.
    edge = torch.tensor([[0, 1]])
    two = torch.tensor([[[10.0, 20.0], [10.0, 20.0]]], dtype=torch.float64)
    for phase in (0.0, 0.7, -1.2):  # w0 Δ_x of the truth, on the branch (-π/2, π/2)
        tgt = two.clone()
        tgt[0, 0, 0] += phase / w0 * s
        lo, hi = (-math.pi / 2 - phase) / w0 * s, (math.pi / 2 - phase) / w0 * s
        assert math.isclose(hi - lo, math.pi / w0 * s)
        for frac in (0.02, 0.25, 0.5, 0.75, 0.98):
            for off in (frac * lo, frac * hi):
                pred = tgt.clone()
                pred[0, 0, 0] += off
                g = _geo_grad(pred, tgt, edge, w0=w0)[0, 0, 0]
                assert torch.sign(g) == math.copysign(1.0, off), (phase, off, g)
        if phase != 0.0:
            pred = tgt.clone()
            pred[0, 0, 0] += (math.pi - 2 * phase) / w0 * s
            conf2 = torch.ones(1, 2, dtype=torch.float64)
            assert float(geo_loss(pred, tgt, conf2, None, edge, W, H, w0=w0)) < 1e-20

    # Weights: an edge with an invisible or zero-confidence endpoint does not count.
    pred = target.clone()
    pred[0, 4] += 3.0
    vis = torch.ones(1, 5, dtype=torch.bool)
    vis[0, 4] = False
    assert float(geo_loss(pred, target, conf, vis, star, W, H)) == 0.0
    c = conf.clone()
    c[0, 4] = 0.0
    assert float(geo_loss(pred, target, c, None, star, W, H)) == 0.0


def _arcsine_ks(h: torch.Tensor) -> float:
    """Kolmogorov-Smirnov distance of samples in [-1, 1] to the arcsine distribution."""
    s, _ = h.flatten().double().sort()
    cdf = 0.5 + torch.asin(s.clamp(-1, 1)) / math.pi
    emp = torch.arange(1, len(s) + 1, dtype=torch.float64) / len(s)
    return float((cdf - emp).abs().max())


def test_siren_initialisation_keeps_activation_statistics_across_layers():
    torch.manual_seed(0)
    w0, n = 30.0, 256
    net = Siren(4, n, layers=6, out_features=6, w0=w0)
    x = torch.rand(4096, 4) * 2 - 1  # coordinates in [-1, 1], as SirenResidual feeds it
    with torch.no_grad():
        acts = net.activations(x)
        out = net(x)
    # First layer: W ~ U(-1/n, 1/n), w0 spreads the phase over several periods, so the
    # activation is arcsine-distributed (mean 0, variance 1/2).
    _, h1 = acts[0]
    assert _arcsine_ks(h1) < 0.02
    assert abs(float(h1.var()) - 0.5) < 0.02
    # The 5 hidden layers: pre-activations ≈ N(0, 1), activations ≈ arcsine, and the
    # statistics do not drift with depth (no vanishing or exploding).
    stds = []
    for z, h in acts[1:]:
        stds.append(float(z.std()))
        assert 0.8 < stds[-1] < 1.15
        assert abs(float(h.mean())) < 0.05
        assert 0.35 < float(h.var()) < 0.5
        assert _arcsine_ks(h[:, :64]) < 0.1
        # Gaussian shape: the N(0, 1) mass within one and two standard deviations.
        assert abs(float((z.abs() < z.std()).double().mean()) - 0.6827) < 0.02
        assert abs(float((z.abs() < 2 * z.std()).double().mean()) - 0.9545) < 0.01
    assert len(stds) == 5
    assert max(stds) / min(stds) < 1.15
    assert _arcsine_ks(acts[-1][1][:, :64]) - _arcsine_ks(acts[1][1][:, :64]) < 0.04
    # SirenPose's Eq. 4 without the 1/w0: pre-activations would have std ≈ w0 instead of 1.
    lin = net.hidden[1]
    z_paper = w0 * (w0 * lin.weight) @ acts[0][1].T
    assert 0.8 * w0 < float(z_paper.detach().std()) < 1.15 * w0
    # The output layer starts small: the residual is ≈ 0 before training, and exactly the
    # identity at λ = 0 (the tree's motion is unchanged).
    assert float(out.abs().max()) < 0.02
    T = 6
    tree, cA, _ = _rigid_tree(T, so3_exp(0.1 * torch.randn(T, 3)), 0.1 * torch.randn(T, 3))
    nodes, ts = tree.leaf_positions(), torch.arange(T)
    with torch.no_grad():
        for lam, tol in ((0.0, 0.0), (1.0, 0.05)):
            res = SirenResidual(T, cA, 2.0, lam=lam)
            assert float((res(nodes, ts) - torch.eye(4)).abs().max()) <= tol
        means = nodes + 0.05
        quats = torch.eye(1, 4).expand(len(means), 4)
        still = deform_with_residual(tree, SirenResidual(T, cA, 2.0, lam=0.0), means, quats, ts)
        assert torch.equal(still[0], tree.deform(means, quats, ts)[0])


def _rigid_tree(T: int, R: torch.Tensor, trans: torch.Tensor, seed: int = 0):
    """Two parts, 12 leaf nodes each: part A static, part B moving by ``[R_t, trans_t]``."""
    gen = torch.Generator().manual_seed(seed)
    cA, cB = torch.tensor([-1.2, 0.0, 4.0]), torch.tensor([1.0, 0.0, 4.0])
    ball = lambda c: c + 0.3 * (torch.rand(12, 3, generator=gen) * 2 - 1)
    positions = torch.cat([ball(cA), ball(cB)])
    coef = torch.cat(
        [torch.tensor([[1.0, 0.0]]).expand(12, 2), torch.tensor([[0.0, 1.0]]).expand(12, 2)]
    )
    bases = torch.stack([torch.eye(4).expand(T, 4, 4), make_transform(R, trans)])
    tree = MotionTree.from_bases(
        bases, positions, coef, torch.full((24,), 0.2), TreeConfig(skin_k=8)
    )
    return tree, cA, cB


def test_anchors_follow_a_rigidly_moving_part_exactly():
    T, J = 8, 4
    t = torch.arange(T, dtype=torch.float32)
    axis = torch.tensor([0.3, 0.5, 0.8]) / torch.tensor([0.3, 0.5, 0.8]).norm()
    R = so3_exp(0.1 * t[:, None] * axis)  # up to 40 degrees about the part's centre
    d = t[:, None] * torch.tensor([0.02, -0.01, 0.03])
    cB = torch.tensor([1.0, 0.0, 4.0])
    trans = cB - (R @ cB) + d
    tree, cA, cB = _rigid_tree(T, R, trans)
    truth = torch.stack(
        [
            cB + torch.tensor([0.3, 0.1, 0.0]),
            cB + torch.tensor([-0.1, 0.3, 0.1]),
            cB + torch.tensor([0.0, -0.3, -0.2]),
            cA + torch.tensor([0.1, 0.2, 0.0]),  # on the static part
        ]
    )
    moving = torch.tensor([True, True, True, False])
    world = torch.where(
        moving[None, :, None],
        (R[:, None] @ truth[None, :, :, None])[..., 0] + trans[:, None],
        truth,
    )
    # A camera that drifts and turns a little, 64x48 pixels.
    K = torch.tensor([[60.0, 0, 32], [0, 60.0, 24], [0, 0, 1]]).expand(T, 3, 3)
    w2c = make_transform(
        so3_exp(0.01 * t[:, None] * torch.tensor([0.0, 1.0, 0.0])),
        t[:, None] * torch.tensor([0.01, 0.0, 0.0]),
    )
    xy, z = project_points(world, K[:, None], w2c[:, None])  # [T, J, 2], [T, J]
    # Depth maps know the keypoints' z on a 3x3 patch around each (all else unknown).
    depth = torch.zeros(T, H, W)
    for ti in range(T):
        for j in range(J):
            c, r = int(xy[ti, j, 0]), int(xy[ti, j, 1])
            depth[ti, r - 1 : r + 2, c - 1 : c + 2] = z[ti, j]
    # Confidence peaks away from the canonical frame, where the motion must be inverted.
    conf = torch.full((T, J), 0.5)
    best = torch.tensor([6, 7, 5, 3])
    conf[best, torch.arange(J)] = 0.95
    conf[2, 0] = 0.0

    anchors_world, frame = lift_anchors(xy, conf, depth, K, w2c, prefer_frame=0)
    assert torch.equal(frame, best)
    assert torch.allclose(anchors_world, world[best, torch.arange(J)], atol=1e-5)

    deform = residual_deform_fn(tree, None)  # points skinned like Gaussians on the tree
    anchors = KeypointAnchors.from_keypoints(xy, conf, depth, K, w2c, deform, prefer_frame=0)
    assert torch.allclose(anchors.canonical, truth, atol=1e-5)
    ts = torch.arange(T)
    # R_t x + t_t on the moving part, x on the static one, at every frame
    assert torch.allclose(anchors.positions(deform, ts), world, atol=1e-5)
    kp, kz = anchors.project(deform, ts, K, w2c)
    assert torch.allclose(kp, xy, atol=1e-3) and bool((kz > 0).all())


def test_camera_refinement_recovers_a_known_perturbation(scene):
    torch.manual_seed(0)
    tracks = Tracks.load(scene / "gt" / "tracks")
    cams = Cameras.load(scene / "gt" / "cameras")
    xyz = torch.from_numpy(tracks.xyz).double()  # [N, T, 3]
    xy = torch.from_numpy(tracks.xy).double()
    vis = torch.from_numpy(tracks.visible)
    K = torch.from_numpy(cams.K).double()
    w2c_true = torch.from_numpy(cams.w2c).double()
    T = w2c_true.shape[0]
    centres = torch.linalg.inv(w2c_true)[:, :3, 3]
    dist = float((centres - xyz[vis].mean(0)).norm(dim=-1).mean())
    # Known perturbation: 1 degree about a random axis, 2 % of the viewing distance.
    axis = torch.nn.functional.normalize(torch.randn(T, 3, dtype=torch.float64), dim=-1)
    shift = torch.nn.functional.normalize(torch.randn(T, 3, dtype=torch.float64), dim=-1)
    xi = torch.cat([math.radians(1.0) * axis, 0.02 * dist * shift], dim=-1)
    w2c_noisy = se3_exp(xi) @ w2c_true

    refiner = CameraRefiner(w2c_noisy, scene_scale=dist)
    opt = torch.optim.Adam([refiner.param_group(3e-3)])
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.995)
    ts = torch.arange(T)
    s = float(max(cams.width, cams.height))
    target = xy.transpose(0, 1)  # [T, N, 2]
    mask = vis.T.double()
    for _ in range(400):
        opt.zero_grad()
        p, zc = project_points(xyz.transpose(0, 1), K[:, None], refiner.w2c(ts)[:, None])
        m = mask * (zc > 0)
        reproj = (((p - target) / s).square().sum(-1) * m).sum() / m.sum()
        (reproj + 1e-6 * refiner.regulariser()).backward()
        opt.step()
        sched.step()
    refined = refiner.refined_all()

    def errors(w2c: torch.Tensor) -> tuple[float, float]:
        rel = w2c @ torch.linalg.inv(w2c_true)
        return (
            math.degrees(float(rotation_angle(rel[:, :3, :3]).max())),
            float((torch.linalg.inv(w2c)[:, :3, 3] - centres).norm(dim=-1).max()),
        )

    rot0, pos0 = errors(w2c_noisy)
    rot1, pos1 = errors(refined)
    assert rot0 > 0.9 and pos0 > 0.01 * dist
    assert rot1 < rot0 / 10 and pos1 < pos0 / 10, (rot0, rot1, pos0, pos1)
    # The pose metrics of SirenPose Table II improve by the same clear factor.
    gt = w2c_true.numpy()
    assert (
        ate(refined.numpy(), gt, convention="w2c")
        < ate(w2c_noisy.numpy(), gt, convention="w2c") / 10
    )
    rt0, rr0 = rpe(w2c_noisy.numpy(), gt, convention="w2c")
    rt1, rr1 = rpe(refined.numpy(), gt, convention="w2c")
    assert rt1 < rt0 / 10 and rr1 < rr0 / 10
    # The learnt corrections are the inverse perturbation: ω of 1 degree, u = v / scene_scale.
    inv = torch.linalg.inv(se3_exp(xi))
    expected = (
        so3_log(inv[:, :3, :3]).square().sum(-1) + (inv[:, :3, 3] / dist).square().sum(-1)
    ).mean()
    assert abs(float(refiner.regulariser().detach()) / float(expected) - 1) < 0.05
