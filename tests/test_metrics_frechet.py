"""Fréchet distance (vs scipy sqrtm), FID and FVD through scripted stand-in extractors with
the real TorchScript call signatures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from dynrec.errors import DynrecError
from dynrec.metrics import (
    MetricNotComputable,
    WeightsMissing,
    feature_stats,
    fid,
    frechet_distance,
    frechet_distance_from_stats,
    fvd,
    i3d_features,
    inception_features,
    load_i3d,
    load_inception,
    video_clips,
)
from dynrec.metrics.frechet import I3D_FILE, INCEPTION_FILE

pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning"
)


@pytest.fixture(autouse=True)
def _no_env_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DYNREC_WEIGHTS", raising=False)


def _scipy_frechet(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """pytorch-fid's calculate_frechet_distance (scipy sqrtm)."""
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(s1.dot(s2))
    covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("seed,d", [(0, 8), (1, 32), (2, 64)])
def test_frechet_matches_scipy_sqrtm(seed: int, d: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((4 * d, d)) @ rng.standard_normal((d, d))
    b = rng.standard_normal((4 * d, d)) @ rng.standard_normal((d, d)) * 0.7 + 0.3
    mu1, s1 = feature_stats(a)
    mu2, s2 = feature_stats(b)
    ref = _scipy_frechet(mu1, s1, mu2, s2)
    assert frechet_distance_from_stats(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-7, abs=1e-6)
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-7, abs=1e-6)
    np.testing.assert_allclose(s1, np.cov(a, rowvar=False), rtol=1e-12)


def test_frechet_known_answers() -> None:
    # diagonal Gaussians: |mu1 - mu2|^2 + sum (sigma1 - sigma2)^2
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    sd1, sd2 = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 1.0])
    expected = 1 + 0 + 4 + (1 + 0 + 4)
    assert frechet_distance_from_stats(mu1, np.diag(sd1**2), mu2, np.diag(sd2**2)) == pytest.approx(
        expected
    )
    rng = np.random.default_rng(3)
    f = rng.standard_normal((50, 10))
    assert frechet_distance(f, f) == pytest.approx(0.0, abs=1e-9)
    # rank-deficient covariances (fewer samples than dimensions) stay finite and >= 0
    g = rng.standard_normal((5, 40))
    h = rng.standard_normal((6, 40)) + 0.5
    d = frechet_distance(g, h)  # exact sample-space path
    assert np.isfinite(d) and d > 0
    stats = (*feature_stats(g), *feature_stats(h))
    assert frechet_distance_from_stats(*stats) == pytest.approx(d, rel=1e-9)  # eigen path
    assert _scipy_frechet(*stats) == pytest.approx(d, rel=1e-5)
    assert frechet_distance(g, g) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(MetricNotComputable):
        feature_stats(f[:1])


# ------------------------------------------------------------------ stand-in extractors


class InceptionStandIn(nn.Module):
    """Same call as StyleGAN2-ADA's inception-2015-12-05.pt: uint8 NCHW in, [B, 2048] out."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3 * 16, 2048)

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        torch._assert(img.dtype == torch.uint8, "expects uint8 images")
        torch._assert(img.shape[1] == 3, "expects NCHW")
        x = img.to(torch.float32) / 255.0
        x = torch.nn.functional.adaptive_avg_pool2d(x, (4, 4)).flatten(1)
        feats = torch.tanh(self.proj(x))
        if return_features:
            return feats
        return feats[:, :1008]


class I3DStandIn(nn.Module):
    """Same call as StyleGAN-V's i3d_torchscript.pt: [B, 3, T, H, W] in [-1, 1] -> [B, 400]."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3 * 16 * 4, 400)

    def forward(
        self,
        x: torch.Tensor,
        rescale: bool = True,
        resize: bool = False,
        return_features: bool = False,
    ) -> torch.Tensor:
        torch._assert(x.shape[1] == 3 and x.shape[2] == 16, "expects [B, 3, 16, H, W]")
        torch._assert(bool(x.min() >= -1.0) and bool(x.max() <= 1.0), "expects [-1, 1]")
        torch._assert(not rescale and resize and return_features, "StyleGAN-V FVD flags")
        pooled = torch.nn.functional.adaptive_avg_pool3d(x, (16, 2, 2)).flatten(1)
        return self.proj(pooled)


def _script(module: nn.Module, path: Path) -> None:
    torch.manual_seed(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(module).save(str(path))


def _video(seed: int, t: int = 20, h: int = 24, w: int = 32, speed: float = 1.0) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w] / 8.0
    frames = [
        np.stack([np.sin(xs + speed * k * 0.3 + c) * np.cos(ys - c) for c in range(3)], -1)
        for k in range(t)
    ]
    rng = np.random.default_rng(seed)
    return np.clip(np.stack(frames) * 0.4 + 0.5 + 0.02 * rng.standard_normal((t, h, w, 3)), 0, 1)


def test_fid_with_scripted_inception(tmp_path: Path) -> None:
    torch.manual_seed(0)
    _script(InceptionStandIn(), tmp_path / INCEPTION_FILE)
    model = load_inception(tmp_path)
    imgs = _video(0, t=12)
    feats = inception_features(imgs, model, batch_size=5)
    assert feats.shape == (12, 2048)
    assert fid(imgs, imgs, model) == pytest.approx(0.0, abs=1e-6)
    other = np.clip(imgs * 0.5 + 0.3, 0, 1)
    expected = frechet_distance(feats, inception_features(other, model), ddof=1)
    assert fid(other, imgs, model) == pytest.approx(expected, rel=1e-6)
    assert expected > 0
    with pytest.raises(MetricNotComputable):
        fid(imgs[:1], imgs, model)


def test_fvd_with_scripted_i3d(tmp_path: Path) -> None:
    torch.manual_seed(0)
    _script(I3DStandIn(), tmp_path / I3D_FILE)
    model = load_i3d(tmp_path)
    video = _video(1, t=20)
    clips = video_clips(video)
    assert clips.shape == (5, 3, 16, 24, 32) and clips.min() >= -1 and clips.max() <= 1
    feats = i3d_features(video, model)
    assert feats.shape == (5, 400)
    assert fvd(video, video, model) == pytest.approx(0.0, abs=1e-6)
    fast = _video(2, t=20, speed=3.0)
    d = fvd(fast, video, model)
    assert d > 0
    assert d == pytest.approx(frechet_distance(i3d_features(fast, model), feats, ddof=0), rel=1e-9)
    # several videos pool their clips; stride thins them
    assert i3d_features([video, fast], model, stride=4).shape == (4, 400)
    with pytest.raises(MetricNotComputable, match="16"):
        fvd(video[:10], video, model)
    with pytest.raises(MetricNotComputable):
        fvd(video[:16], video, model)  # one clip is not a distribution


def test_missing_torchscript_files(tmp_path: Path) -> None:
    for loader, name in ((load_inception, INCEPTION_FILE), (load_i3d, I3D_FILE)):
        with pytest.raises(WeightsMissing) as info:
            loader(tmp_path)
        assert name in str(info.value) and isinstance(info.value, DynrecError)
    (tmp_path / I3D_FILE).write_bytes(b"not a torchscript file")
    with pytest.raises(MetricNotComputable, match="cannot load"):
        load_i3d(tmp_path)
