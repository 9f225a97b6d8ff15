"""The training step renders its B frames in one rasterizer call: the same loss, gradients
and density-control statistics as rendering them one call per frame."""

from __future__ import annotations

import torch

from dynrec.model.density import DensityConfig, DensityControl
from dynrec.stages import recon as R
from dynrec.stages.base import StageContext

INPUTS = ("frames", "masks", "align", "tracks", "cameras", "keypoints", "lift")


def _loop_step(trainer: R.Trainer, ts: torch.Tensor) -> tuple[torch.Tensor, list]:
    """The step as it was before batching: one ``scene.render`` per frame, stacked."""
    d, scene = trainer.data, trainer.scene
    W, H = d.size
    w2c = trainer.w2c(ts)
    fg_means, fg_quats = scene.deform_foreground(ts)
    pts = scene.deform_points(d.track_canonical, torch.cat([ts - 1, ts, ts + 1]).clamp(0, d.T - 1), "tracks")
    out = [scene.render(t, fg_means[b], fg_quats[b], d.K[t], w2c[b], W, H) for b, t in enumerate(ts.tolist())]
    for o in out:
        o.info["means2d"].retain_grad()
    rgb, fg, depth = (torch.stack([getattr(o, k) for o in out]) for k in ("rgb", "fg", "depth"))
    total, _ = trainer._loss_terms(ts, w2c, rgb, fg, depth, pts)
    return total, out


def test_batched_step_equals_one_render_per_frame(gt_work, tmp_path):
    ctx = StageContext(work=gt_work, out=tmp_path, inputs={k: gt_work / k for k in INPUTS})
    data = R.load_data(ctx)
    params = R.ReconParams(steps=10, batch_frames=3, levels=1, gaussian_densify=True, seed=3)
    trainer = R.Trainer(R.build_scene(data.lift, params), data, params, tmp_path / "ck.pt")
    ts = torch.tensor([1, 5, 9])
    params_list = [p for group in trainer.opt.param_groups for p in group["params"]]
    W, H = data.size
    n = len(trainer.scene.gaussians)

    trainer.opt.zero_grad(set_to_none=True)
    total_loop, out = _loop_step(trainer, ts)
    total_loop.backward()
    grads_loop = [None if p.grad is None else p.grad.clone() for p in params_list]
    loop_stats = DensityControl(DensityConfig(), 1.0)
    for o in out:
        loop_stats.accumulate(o.info["means2d"], o.info["radii"], o.ids, n, W, H, n_cameras=len(ts))

    trainer.opt.zero_grad(set_to_none=True)
    total, _ = trainer.losses(ts)
    total.backward()
    [(info, ids, n_views)] = trainer._views
    assert info["means2d"].shape[0] == 3 and n_views == 3  # one call rendered the three frames
    batched_stats = DensityControl(DensityConfig(), 1.0)
    batched_stats.accumulate(info["means2d"], info["radii"], ids, n, W, H, n_cameras=n_views)

    torch.testing.assert_close(total, total_loop, rtol=1e-6, atol=0)
    for p, g in zip(params_list, grads_loop):
        if g is None:
            assert p.grad is None
            continue
        # float32 noise of the largest entry (canonical rotations of round Gaussians have ~0 gradient)
        atol = 1e-5 * max(float(g.abs().max()), 1e-4)
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=atol)
    # per camera: a Gaussian seen by k of the frames is counted k times, with each view's gradient
    assert torch.equal(batched_stats.count, loop_stats.count)
    assert int(loop_stats.count.max()) == 3
    torch.testing.assert_close(batched_stats.grad2d, loop_stats.grad2d, rtol=1e-4,
                               atol=1e-5 * float(loop_stats.grad2d.max()))
