"""Reconstruction on the tiny synth scene: the loss goes down, the motion beats its
initialisation on 3D track EPE, and an interrupted run resumes from its checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dynrec.artifacts import Frames, Tracks
from dynrec.errors import StageFailed
from dynrec.pipeline.session import open_runner
from dynrec.stages import recon as R
from dynrec.stages.base import StageContext


def _epe(scene, data, gt_xyz, valid) -> float:
    with torch.no_grad():
        traj = scene.deform_points(data.track_canonical, torch.arange(data.T)).transpose(0, 1).numpy()
    return float(np.linalg.norm(traj - gt_xyz, axis=-1)[valid].mean())


def test_tiny_reconstruction_lowers_loss_and_keeps_the_motion(gt_work, tmp_path):
    """The loss falls; the motion, which starts near exact (tracks carried by their bases,
    fitted coefficients, curve-distance skinning), stays within a few cm of the truth on a
    1.8 m figure."""
    ctx = StageContext(work=gt_work, out=tmp_path, inputs={k: gt_work / k for k in
                                                           ("frames", "masks", "align", "tracks", "cameras", "keypoints", "lift")})
    data = R.load_data(ctx)
    params = R.ReconParams(steps=80, levels=1, node_densify=False, seed=1, lr_scale=5.0)
    trainer = R.Trainer(R.build_scene(data.lift, params), data, params, tmp_path / "ck.pt")
    gt = Tracks.load(gt_work / "tracks").xyz[data.lift.track_index]
    valid = data.lift.valid[:, data.lift.canonical][:, None] & Tracks.load(gt_work / "tracks").visible[data.lift.track_index]
    ts = torch.arange(0, data.T, 4)
    with torch.no_grad():
        before = trainer.losses(ts)[0].item()
    epe_before = _epe(trainer.scene, data, gt, valid)
    trainer.run(lambda *a: None)
    with torch.no_grad():
        after = trainer.losses(ts)[0].item()
    epe_after = _epe(trainer.scene, data, gt, valid)
    assert after < 0.7 * before, (before, after)
    assert epe_before < 0.04 and epe_after < 0.05, (epe_before, epe_after)


def test_interrupted_reconstruction_resumes(scene, gt_work, tmp_path, monkeypatch):
    import shutil

    work = tmp_path / "work"
    shutil.copytree(gt_work, work)
    sets = ["recon.steps=30", "recon.checkpoint_every=10", "recon.levels=1", "recon.node_densify=false"]
    original = R.Trainer.structure_updates

    def crash_at_25(self):
        if self.step == 25:
            raise RuntimeError("power cut")
        original(self)

    monkeypatch.setattr(R.Trainer, "structure_updates", crash_at_25)
    with pytest.raises(StageFailed, match="power cut"):
        open_runner(work, create=False, sets=sets).run(["recon"], only="recon")
    assert (work / ".recon.tmp" / ".checkpoints" / "state.pt").exists()
    assert not (work / "recon").exists()
    monkeypatch.setattr(R.Trainer, "structure_updates", original)
    runner = open_runner(work, create=False, sets=sets)
    assert runner.state("recon").state == "failed"
    runner.run(["recon"], only="recon")
    info = json.loads((work / "recon" / "manifest.json").read_text())["info"]
    assert info["resumed_at"] == 20
    assert (work / "recon" / "model.pt").exists() and (work / "recon" / "renders" / "train" / "frames.json").exists()
    state = torch.load(work / "recon" / "model.pt", weights_only=True)
    assert any(k.startswith("gaussians.") for k in state["scene"])
    # the reconstruction knows nothing about the ground truth: held-out cameras are rendered
    # by evaluate and `dynrec render --path heldout`, not by the stage
    assert "heldout" not in info and not (work / "recon" / "renders" / "heldout").exists()
    assert Frames.load(work / "recon" / "renders" / "train").images.shape == Frames.load(work / "frames").images.shape


def test_nan_loss_stops_at_the_next_log_point_naming_the_term(gt_work, tmp_path):
    from dynrec.errors import DynrecError

    ctx = StageContext(work=gt_work, out=tmp_path, inputs={k: gt_work / k for k in
                                                           ("frames", "masks", "align", "tracks", "cameras", "keypoints", "lift")})
    data = R.load_data(ctx)
    params = R.ReconParams(steps=20, levels=1, node_densify=False, gaussian_densify=False, checkpoint_every=4,
                           log_every=2)
    trainer = R.Trainer(R.build_scene(data.lift, params), data, params, tmp_path / "ck.pt")
    original = trainer.losses

    def poisoned(ts):
        total, values = original(ts)
        if trainer.step == 5:
            values = values | {"depth": torch.tensor(float("nan"))}
        return total, values

    trainer.losses = poisoned
    with pytest.raises(DynrecError, match=r"depth became NaN/inf between steps 4 and 6.*checkpoint \(step 4\)"):
        trainer.run(lambda *a: None)
    assert torch.load(tmp_path / "ck.pt", weights_only=True)["step"] == 4
