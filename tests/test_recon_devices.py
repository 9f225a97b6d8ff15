"""Device-dependent behaviour of recon that a CPU can check: the default schedule follows the
device (and the stage key with it), CUDA out of memory and a missing or broken gsplat give
one clear message."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from dynrec.errors import DynrecError
from dynrec.pipeline.registry import REGISTRY
from dynrec.pipeline.runner import Runner
from dynrec.pipeline.session import open_runner
from dynrec.render import gsplat_backend as GB
from dynrec.stages import recon as R
from dynrec.stages.base import StageContext

INPUTS = ("frames", "masks", "align", "tracks", "cameras", "keypoints", "lift")


def test_schedule_follows_the_device_and_explicit_values_win() -> None:
    cpu = R.resolve_schedule(R.ReconParams(), "cpu")
    gpu = R.resolve_schedule(R.ReconParams(), "cuda")
    assert (cpu.schedule, cpu.steps, cpu.lr_scale, cpu.lr_final, cpu.gaussian_densify) == ("cpu", 600, 5.0, 0.05, False)
    assert (gpu.schedule, gpu.steps, gpu.lr_scale, gpu.lr_final, gpu.gaussian_densify) == ("gpu", 3000, 1.0, 1.0, True)
    mine = R.resolve_schedule(R.ReconParams(steps=123, schedule="gpu"), "cpu")
    assert (mine.steps, mine.lr_scale, mine.batch_frames) == (123, 1.0, 4)
    assert R.resolve_schedule(cpu, "cuda") == cpu  # resolved params stay as they are
    with pytest.raises(DynrecError, match="recon.schedule"):
        R.resolve_schedule(R.ReconParams(schedule="fast"), "cpu")


def test_stage_key_hashes_the_schedule_of_the_device(gt_work: Path) -> None:
    runner = open_runner(gt_work, create=False, save=False)
    on_cuda = Runner(runner.work, REGISTRY, runner.config, device="cuda")
    cpu, gpu = runner.params("recon"), on_cuda.params("recon")
    assert (cpu.schedule, cpu.batch_frames, cpu.lr_final, cpu.gaussian_densify) == ("cpu", 2, 0.05, False)
    assert (gpu.schedule, gpu.batch_frames, gpu.lr_final, gpu.gaussian_densify) == ("gpu", 4, 1.0, True)
    assert cpu.steps == gpu.steps == 150  # the tiny preset's steps, set explicitly, win on both
    assert runner.key("recon") != on_cuda.key("recon")
    assert runner.key("lift") == on_cuda.key("lift")  # stages without a device default keep theirs
    typed = [f"recon.{k}={R.SCHEDULES['cpu'][k]}" for k in ("batch_frames", "lr_final", "gaussian_densify")]
    pinned = open_runner(gt_work, create=False, save=False, sets=typed)
    assert pinned.key("recon") == runner.key("recon")  # the same values typed out: the same result


def test_cuda_out_of_memory_names_the_knobs_and_keeps_the_checkpoint(gt_work, tmp_path, monkeypatch):
    ctx = StageContext(work=gt_work, out=tmp_path, inputs={k: gt_work / k for k in INPUTS})
    original = R.Trainer.losses

    def oom_at_6(self, ts):
        if self.step == 6:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(self, ts)

    monkeypatch.setattr(R.Trainer, "losses", oom_at_6)
    params = R.ReconParams(steps=10, checkpoint_every=4, levels=1, node_densify=False)
    with pytest.raises(DynrecError) as err:
        R.run(ctx, params)
    message = str(err.value)
    for knob in ("out of memory at step 6", "recon.batch_frames=1", "frames.long_side", "recon.max_gaussians",
                 "checkpoint (step 4) is kept"):
        assert knob in message, message
    assert torch.load(ctx.checkpoints / "state.pt", weights_only=True)["step"] == 4


@pytest.fixture
def fake_gsplat(tmp_path, monkeypatch):
    """Install a fake ``gsplat`` package whose ``cuda/_backend.py`` is the given source."""
    def install(backend_source: str | None) -> None:
        for name in [m for m in sys.modules if m == "gsplat" or m.startswith("gsplat.")]:
            monkeypatch.delitem(sys.modules, name)
        if backend_source is None:
            monkeypatch.setitem(sys.modules, "gsplat", None)  # import gsplat -> ImportError
            return
        pkg = tmp_path / "site" / "gsplat"
        (pkg / "cuda").mkdir(parents=True)
        (pkg / "__init__.py").write_text("__version__ = '1.5.3'\ndef rasterization(*args, **kwargs):\n    pass\n")
        (pkg / "cuda" / "__init__.py").write_text("")
        (pkg / "cuda" / "_backend.py").write_text(backend_source)
        monkeypatch.syspath_prepend(str(tmp_path / "site"))

    monkeypatch.setattr(GB, "_CHECKED", {})
    yield install
    for name in [m for m in sys.modules if m == "gsplat" or m.startswith("gsplat.")]:
        sys.modules.pop(name, None)


@pytest.mark.parametrize("backend, expected", [
    (None, "not installed"),
    ("_C = None\n", "no CUDA kernels and found no CUDA toolkit"),
    ("raise RuntimeError(\"Error building extension 'gsplat_cuda'\")\n",
     "could not compile its CUDA kernels \\(RuntimeError: Error building extension 'gsplat_cuda'\\)"),
])
def test_unusable_gsplat_names_the_gpu_extra_and_nvcc(fake_gsplat, backend, expected) -> None:
    fake_gsplat(backend)
    with pytest.raises(DynrecError, match=expected) as err:
        GB.check_gsplat()
    assert "dynrec[gpu]" in str(err.value) and "nvcc" in str(err.value) and "--device cpu" in str(err.value)


def test_recon_on_cuda_checks_gsplat_before_any_work(fake_gsplat, tmp_path) -> None:
    fake_gsplat(None)
    ctx = StageContext(work=tmp_path, out=tmp_path / "out", inputs={}, device="cuda")  # no inputs: never read
    with pytest.raises(DynrecError, match="not installed"):
        R.run(ctx, R.ReconParams())


def test_steps_and_batch_frames_below_one_are_refused_before_any_work() -> None:
    for field in ("steps", "batch_frames"):
        for value in (0, -5):
            with pytest.raises(DynrecError, match=f"recon.{field} must be >= 1, got {value}"):
                R.check_params(R.ReconParams(**{field: value}))
    R.check_params(R.ReconParams(steps=1, batch_frames=1))
