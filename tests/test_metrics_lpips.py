"""LPIPS: the plain-torch AlexNet + heads, the weights loader and (when the lpips wheel's
data is installed) a cross-check against the lpips package's own forward pass."""

from __future__ import annotations

import itertools
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from dynrec.errors import DynrecError
from dynrec.metrics import WeightsMissing, load_lpips, lpips
from dynrec.metrics.lpips import (
    ALEXNET_FILE,
    CHANNELS,
    LPIPS_HEADS_FILE,
    LPIPSModel,
    lpips_package_heads,
)


@pytest.fixture(autouse=True)
def _isolated_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DYNREC_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


def _random_model(seed: int = 0) -> LPIPSModel:
    torch.manual_seed(seed)
    model = LPIPSModel()
    for lin in model.lins:  # the real heads are non-negative
        lin.weight.data = torch.rand_like(lin.weight) * 0.1
    return model


def _images(seed: int, n: int = 2, h: int = 64, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(6 * xs + k) * np.cos(4 * ys - k) for k in range(3)], -1) * 0.4 + 0.5
    return np.clip(base[None] + 0.05 * rng.standard_normal((n, h, w, 3)), 0, 1)


def _save_weights(model: LPIPSModel, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    backbone = {f"features.{k}": v for k, v in model.net.features.state_dict().items()}
    backbone["classifier.1.weight"] = torch.zeros(4, 9216)  # ignored, as in torchvision's file
    torch.save(backbone, folder / ALEXNET_FILE)
    torch.save(
        {f"lin{k}.model.1.weight": lin.weight.data.clone() for k, lin in enumerate(model.lins)},
        folder / LPIPS_HEADS_FILE,
    )


def test_identical_is_zero_and_grows_with_noise() -> None:
    model = _random_model()
    x = _images(0, n=3)
    assert lpips(x, x, model) == pytest.approx(0.0, abs=1e-7)
    rng = np.random.default_rng(1)
    noise = rng.standard_normal(x.shape)
    values = [lpips(np.clip(x + s * noise, 0, 1), x, model) for s in (0.01, 0.03, 0.1, 0.3)]
    assert all(v > 0 for v in values)
    assert all(b > a for a, b in itertools.pairwise(values)), values
    per = lpips(np.clip(x + 0.1 * noise, 0, 1), x, model, reduction="none")
    assert per.shape == (3,) and np.mean(per) == pytest.approx(values[2], rel=1e-5)


def test_masked_lpips_ignores_outside_mask() -> None:
    model = _random_model()
    x = _images(2, n=1)[0]
    mask = np.zeros((64, 64), bool)
    mask[8:56, 4:40] = True
    y = x.copy()
    y[~mask] = 1.0 - y[~mask]  # changes only outside the mask
    assert lpips(y, x, model, mask=mask) == pytest.approx(0.0, abs=1e-7)
    assert lpips(y, x, model) > 0
    z = np.clip(x + 0.2 * np.random.default_rng(3).standard_normal(x.shape), 0, 1)
    assert lpips(z, x, model, mask=mask) > 0


def test_load_round_trip(tmp_path: Path) -> None:
    model = _random_model(5)
    _save_weights(model, tmp_path / "w")
    loaded = load_lpips(tmp_path / "w")
    x, y = _images(6), _images(7)
    assert lpips(x, y, loaded) == pytest.approx(lpips(x, y, model), rel=1e-6)
    # the torch-hub cache is searched for the backbone too
    hub = tmp_path / "torch_home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (tmp_path / "w" / ALEXNET_FILE).rename(hub / ALEXNET_FILE)
    assert lpips(x, y, load_lpips(tmp_path / "w")) == pytest.approx(lpips(x, y, model), rel=1e-6)


def test_missing_weights_named(tmp_path: Path) -> None:
    with pytest.raises(WeightsMissing) as info:
        load_lpips(tmp_path / "empty")
    assert isinstance(info.value, DynrecError)
    assert ALEXNET_FILE in str(info.value) and str(tmp_path / "empty") in str(info.value)
    assert info.value.filename == ALEXNET_FILE


def test_bad_heads_file(tmp_path: Path) -> None:
    model = _random_model()
    _save_weights(model, tmp_path)
    torch.save({"lin0.model.1.weight": torch.zeros(1, 3, 1, 1)}, tmp_path / LPIPS_HEADS_FILE)
    with pytest.raises(DynrecError, match="lin0"):
        load_lpips(tmp_path)


def test_too_small_images() -> None:
    x = np.zeros((16, 16, 3))
    with pytest.raises(DynrecError):
        lpips(x, x, _random_model())


# ------------------------------------------------------- the lpips wheel's data (optional)


def _package_heads() -> Path:
    p = lpips_package_heads()
    if p is None:
        pytest.skip("the lpips package (pip install --no-deps lpips) is not installed")
    return p


def test_lpips_package_heads_load(tmp_path: Path) -> None:
    path = _package_heads()
    state = torch.load(path, map_location="cpu", weights_only=True)
    for k, c in enumerate(CHANNELS):
        assert tuple(state[f"lin{k}.model.1.weight"].shape) == (1, c, 1, 1)
    model = _random_model()
    model.load_heads(state)
    assert all((lin.weight >= 0).all() for lin in model.lins)
    # with only the backbone in the weights folder, the package's heads are used
    torch.save(
        {f"features.{k}": v for k, v in model.net.features.state_dict().items()},
        tmp_path / ALEXNET_FILE,
    )
    loaded = load_lpips(tmp_path)
    for a, b in zip(loaded.lins, model.lins):
        assert torch.equal(a.weight, b.weight)


def test_matches_lpips_package_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the lpips package's own LPIPS.forward (torchvision replaced by a stub that hands
    it our AlexNet) and compare with ours, spatial and masked variants included."""
    _package_heads()
    pytest.importorskip("tqdm")  # imported by lpips.trainer
    ours = _random_model(11)
    ours.load_heads(torch.load(lpips_package_heads(), map_location="cpu", weights_only=True))

    class _TV:
        @staticmethod
        def alexnet(pretrained: bool = False, **_: object) -> object:
            return types.SimpleNamespace(features=ours.net.features)

    fake = types.ModuleType("torchvision")
    fake.models = _TV  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    monkeypatch.setitem(sys.modules, "torchvision.models", _TV)  # type: ignore[arg-type]
    before = set(sys.modules)
    try:
        import lpips as lpips_pkg

        ref = lpips_pkg.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
        ref_spatial = lpips_pkg.LPIPS(
            net="alex", version="0.1", pnet_rand=True, spatial=True, verbose=False
        )
        x, y = _images(12, n=2), _images(13, n=2)
        tx = torch.from_numpy(x).float().permute(0, 3, 1, 2)
        ty = torch.from_numpy(y).float().permute(0, 3, 1, 2)
        with torch.no_grad():
            expected = ref(tx, ty, normalize=True).flatten().numpy()
        np.testing.assert_allclose(lpips(x, y, ours, reduction="none"), expected, rtol=1e-5)
        # DyCheck's masked LPIPS: images multiplied by the mask, spatial map averaged on it
        mask = np.zeros((64, 64), np.float32)
        mask[10:50, 20:60] = 1
        m = torch.from_numpy(mask)
        with torch.no_grad():
            smap = ref_spatial(tx * m, ty * m, normalize=True)[:, 0]
        expected_m = ((smap * m).sum(dim=(1, 2)) / m.sum()).numpy()
        np.testing.assert_allclose(
            lpips(x, y, ours, mask=mask, reduction="none"), expected_m, rtol=1e-5
        )
    finally:
        for name in set(sys.modules) - before:
            if name == "lpips" or name.startswith("lpips."):
                del sys.modules[name]
