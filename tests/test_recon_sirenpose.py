"""SirenPose inside the reconstruction (issue 6) on the tiny synth scene: the full
configuration lowers the keypoint error, checkpoints carry its state (anchors, SIREN,
camera corrections), camera refinement brings perturbed cameras back toward the ground
truth."""

from __future__ import annotations

import math
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from dynrec.artifacts import Cameras, Keypoints
from dynrec.errors import DynrecError
from dynrec.geometry.se3 import so3_exp
from dynrec.metrics import ate
from dynrec.stages import recon as R
from dynrec.stages.base import StageContext


def _ctx(gt_work, out, **override) -> StageContext:
    inputs = {k: gt_work / k for k in R.STAGE.upstream} | override
    return StageContext(work=gt_work, out=out, inputs=inputs)


def _interrupted_then_resumed(ctx, params, monkeypatch, crash_at: int) -> tuple[dict, dict, dict]:
    """Run recon until it crashes at step ``crash_at``, then again: (checkpoint state at the
    crash, the Trainer's state right after resuming, the second run's info)."""
    original = R.Trainer.structure_updates

    def crash(self):
        if self.step == crash_at:
            raise RuntimeError("power cut")
        original(self)

    monkeypatch.setattr(R.Trainer, "structure_updates", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        R.run(ctx, params)
    state = torch.load(ctx.out / ".checkpoints" / "state.pt", weights_only=True)
    restored: dict[str, torch.Tensor] = {}
    resume = R.Trainer.resume

    def spy(self):
        ok = resume(self)
        if self.anchors is not None:
            restored["anchors"] = self.anchors.canonical.detach().clone()
        if self.refiner is not None:
            restored["delta"] = self.refiner.delta.detach().clone()
        if self.scene.residual is not None:
            restored["siren"] = self.scene.residual.siren.out.weight.detach().clone()
        return ok

    monkeypatch.setattr(R.Trainer, "structure_updates", original)
    monkeypatch.setattr(R.Trainer, "resume", spy)
    info = R.run(ctx, params)
    return state, restored, info


def test_sirenpose_full_recon_lowers_keypoint_error_and_resumes(gt_work, tmp_path, monkeypatch):
    params = R.ReconParams(steps=30, levels=1, node_densify=False, gaussian_densify=False, lr_scale=5.0, lr_final=1.0, seed=1,
                           checkpoint_every=10, sirenpose="full")
    out = tmp_path / "recon"
    out.mkdir()
    state, restored, info = _interrupted_then_resumed(_ctx(gt_work, out), params, monkeypatch, crash_at=15)
    assert state["step"] == 10 and info["resumed_at"] == 10
    assert state["anchors"]["canonical"].shape[1] == 3 and "refiner" not in state
    assert any(k.startswith("residual.siren.") for k in state["scene"])
    assert torch.equal(restored["anchors"], state["anchors"]["canonical"])
    assert torch.equal(restored["siren"], state["scene"]["residual.siren.out.weight"])

    err = info["kp_input_error_px"]  # the input keypoints are the ground truth's here
    off = replace(params, sirenpose="off")
    data = R.load_data(_ctx(gt_work, tmp_path))
    torch.manual_seed(off.seed)
    baseline = R.Trainer(R.build_scene(data.lift, off), data, off, tmp_path / "off.pt")
    baseline.run(lambda *a: None)
    assert baseline.kp_error_init == pytest.approx(err["init"], rel=1e-2)  # (the SIREN starts ≈ 0)
    # 1.15 -> 1.01 px; the baseline's anchors only follow the motion: 1.15 -> 1.14 px
    # the keypoint loss lowers the error by more than 5% against its start and the baseline (the
    # motion initialisation of docs/motion.md starts both below 0.8 px on this scene)
    assert err["final"] < 0.95 * err["init"] and err["final"] < 0.95 * baseline.keypoint_error(), err
    assert {"sirenpose", "kp_pos", "kp_geo"} <= set(info["final_losses"])
    kp, gt = Keypoints.load(out / "keypoints"), Keypoints.load(gt_work / "keypoints")
    assert kp.xy.shape == gt.xy.shape and kp.xyz is not None and kp.names == gt.names
    vis = gt.confidence > 0
    assert np.linalg.norm(kp.xy - gt.xy, axis=-1)[vis].mean() == pytest.approx(err["final"], rel=1e-4)
    assert not (out / "cameras").exists()  # no camera refinement
    model = torch.load(out / "model.pt", weights_only=True)
    assert {"scene", "anchors"} <= set(model) and any(k.startswith("residual.") for k in model["scene"])


def test_baseline_writes_untrained_keypoints_and_rejects_bad_modes(gt_work, tmp_path):
    data = R.load_data(_ctx(gt_work, tmp_path))
    params = R.ReconParams(steps=3, levels=1, node_densify=False, gaussian_densify=False, lr_scale=5.0)
    trainer = R.Trainer(R.build_scene(data.lift, params), data, params, tmp_path / "ck.pt")
    before = trainer.anchors.canonical.detach().clone()
    trainer.run(lambda *a: None)
    assert torch.equal(trainer.anchors.canonical, before)  # off: evaluated, not trained
    assert trainer.scene.residual is None and trainer.refiner is None
    assert all(g["name"] not in ("kp_anchors", "siren", "camera_delta") for g in trainer.opt.param_groups)
    with pytest.raises(DynrecError, match="sirenpose"):
        R.check_params(R.ReconParams(sirenpose="everything"))
    with pytest.raises(DynrecError, match="motion=himor"):
        R.check_params(R.ReconParams(sirenpose="full", motion="global-bases"))
    no_kp = R.load_data(StageContext(work=gt_work, out=tmp_path, inputs={
        k: gt_work / k for k in R.STAGE.upstream if k != "keypoints"}))
    assert no_kp.keypoints is None
    geo = R.ReconParams(sirenpose="geo")
    with pytest.raises(DynrecError, match="needs keypoints"):
        R.Trainer(R.build_scene(no_kp.lift, geo), no_kp, geo, tmp_path / "ck2.pt")


def _perturb(cams: Cameras, rot_deg: float, trans: float, seed: int) -> Cameras:
    rng = np.random.default_rng(seed)
    T = len(cams.w2c)
    c2w = cams.c2w.copy()
    c2w[:, :3, :3] = c2w[:, :3, :3] @ so3_exp(torch.from_numpy(
        rng.normal(0, math.radians(rot_deg) / math.sqrt(3), (T, 3)))).numpy()
    c2w[:, :3, 3] += rng.normal(0, trans / math.sqrt(3), (T, 3))
    return Cameras(cams.K, np.linalg.inv(c2w).astype(np.float32), cams.width, cams.height, "noisy")


def test_camera_refinement_reduces_ate_of_perturbed_cameras(gt_work, tmp_path, monkeypatch):
    gt = Cameras.load(gt_work / "cameras")
    folder = tmp_path / "cameras"
    shutil.copytree(gt_work / "cameras", folder)
    scale = R.scene_scale(R.load_data(_ctx(gt_work, tmp_path)))  # median camera-to-point distance
    noisy = _perturb(gt, 1.0, 0.02 * scale, seed=0)
    noisy.save(folder)
    out = tmp_path / "recon"
    out.mkdir()
    params = R.ReconParams(steps=30, levels=1, node_densify=False, gaussian_densify=False, lr_scale=5.0, lr_final=1.0,
                           camera_refine=True, checkpoint_every=10)
    state, restored, info = _interrupted_then_resumed(_ctx(gt_work, out, cameras=folder), params, monkeypatch, 15)
    assert info["resumed_at"] == 10 and state["refiner"]["delta"].abs().sum() > 0  # the cameras moved
    assert torch.equal(restored["delta"], state["refiner"]["delta"])
    assert "camera_reg" in info["final_losses"]
    assert "refiner" in torch.load(out / "model.pt", weights_only=True)
    refined = Cameras.load(out / "cameras")
    assert refined.method == "refined" and refined.w2c.shape == gt.w2c.shape
    before = ate(noisy.c2w, gt.c2w)
    after = ate(refined.c2w, gt.c2w)
    assert after < 0.8 * before, (before, after)
