"""A CPU-runnable check that the training step makes no tensor on the wrong device.

On a machine with CUDA, a factory call without ``device=`` inside the step makes a CPU
tensor that then meets CUDA tensors (``torch.zeros(n, 4) * quats``, noise from
``torch.randn`` in density control): a crash on the GPU that no CPU run shows. This test
runs training steps (level 2, node densification, density control, SirenPose) under a
``TorchFunctionMode`` that records every tensor factory called from dynrec's code without
an explicit ``device`` (CPU work on purpose, e.g. sampling with a CPU generator so that runs
are reproducible on any device, says ``device="cpu"``). It would have caught both defects
found by reading the code for CUDA: ``torch.zeros(len(sub), 4)`` in node densification and
``torch.randn(..., generator=...)`` in density control.
It cannot see ``.numpy()`` on a CUDA tensor: those live outside the step and are checked by
reading ``stages/recon.py``.
"""

from __future__ import annotations

import traceback
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

from dynrec.stages import recon as R
from dynrec.stages.base import StageContext

FACTORIES = {torch.zeros, torch.ones, torch.empty, torch.full, torch.arange, torch.randn, torch.rand,
             torch.randint, torch.randperm, torch.tensor, torch.as_tensor, torch.from_numpy, torch.eye,
             torch.linspace}
PACKAGE = str(Path(R.__file__).resolve().parents[1])


class FactoryAudit(TorchFunctionMode):
    """Records ``file:line`` of dynrec code that calls a tensor factory without a device."""

    def __init__(self) -> None:
        super().__init__()
        self.found: set[str] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in FACTORIES and "device" not in kwargs:
            for frame in reversed(traceback.extract_stack()[:-1]):
                if frame.filename.startswith(PACKAGE):
                    self.found.add(f"{Path(frame.filename).name}:{frame.lineno} {frame.line}")
                    break
        return func(*args, **kwargs)


def test_training_step_makes_every_tensor_on_the_data_device(gt_work, tmp_path):
    ctx = StageContext(work=gt_work, out=tmp_path, inputs={k: gt_work / k for k in
                                                           ("frames", "masks", "align", "tracks", "cameras", "keypoints", "lift")})
    data = R.load_data(ctx)
    params = R.ReconParams(steps=6, level2_at=0.3, densify_every=2, densify_threshold=0.0, gaussian_densify=True,
                           gaussian_densify_from=0.0, gaussian_densify_every=2, gaussian_grow_grad2d=0.0,
                           sirenpose="full", checkpoint_every=100)
    trainer = R.Trainer(R.build_scene(data.lift, params), data, params, tmp_path / "ck.pt")
    audit = FactoryAudit()
    with audit:
        trainer.run(lambda *a: None)
    assert trainer.scene.motion.num_levels == 2  # level 2 and densification ran under the audit
    assert audit.found == set(), "\n".join(sorted(audit.found))
