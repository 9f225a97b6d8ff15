"""PSNR / SSIM (plain and DyCheck-masked): known answers and cross-checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from dynrec.metrics import MetricNotComputable, psnr, ssim

skm = pytest.importorskip("skimage.metrics")

SK_SSIM = {
    "channel_axis": -1,
    "gaussian_weights": True,
    "sigma": 1.5,
    "use_sample_covariance": False,
    "data_range": 1.0,
}


def _pair(
    rng: np.random.Generator, h: int = 40, w: int = 52, noise: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    a = rng.random((h, w, 3))
    b = np.clip(a + noise * rng.standard_normal(a.shape), 0, 1)
    return a, b


def test_psnr_known_answer() -> None:
    a = np.full((8, 9, 3), 0.5)
    assert psnr(a + 0.1, a) == pytest.approx(20.0, abs=1e-9)  # MSE 0.01
    assert psnr(a, a) == math.inf


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_psnr_matches_skimage(seed: int) -> None:
    a, b = _pair(np.random.default_rng(seed))
    assert psnr(b, a) == pytest.approx(skm.peak_signal_noise_ratio(a, b, data_range=1.0), abs=1e-9)


@pytest.mark.parametrize("seed,shape", [(0, (40, 52)), (1, (11, 11)), (2, (64, 48))])
def test_ssim_matches_skimage(seed: int, shape: tuple[int, int]) -> None:
    a, b = _pair(np.random.default_rng(seed), *shape)
    ref = skm.structural_similarity(a, b, **SK_SSIM)
    assert ssim(b, a) == pytest.approx(ref, abs=1e-4)
    assert ssim(torch.from_numpy(b).float(), torch.from_numpy(a).float()) == pytest.approx(
        ref, abs=1e-4
    )


def test_ssim_known_answers() -> None:
    a = np.full((16, 16, 3), 0.3)
    b = np.full((16, 16, 3), 0.7)
    c1 = 0.01**2
    expected = (2 * 0.3 * 0.7 + c1) / (0.3**2 + 0.7**2 + c1)  # constant images: luminance term only
    assert ssim(a, b) == pytest.approx(expected, abs=1e-10)
    rng = np.random.default_rng(3)
    x = rng.random((20, 20, 3))
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(MetricNotComputable):
        ssim(x[:10], x[:10])


def test_batch_and_reduction() -> None:
    rng = np.random.default_rng(4)
    pairs = [_pair(rng, 24, 30, n) for n in (0.05, 0.1, 0.2)]
    pred = np.stack([p[1] for p in pairs])
    gt = np.stack([p[0] for p in pairs])
    per = psnr(pred, gt, reduction="none")
    assert per.shape == (3,) and np.all(np.diff(per) < 0)  # more noise, lower PSNR
    assert psnr(pred, gt) == pytest.approx(per.mean())
    s = ssim(pred, gt, reduction="none")
    assert s.shape == (3,) and np.all(np.diff(s) < 0)
    for i in range(3):
        assert s[i] == pytest.approx(skm.structural_similarity(gt[i], pred[i], **SK_SSIM), abs=1e-4)


# ---------------------------------------------------------------- masked (DyCheck)


def _dycheck_psnr(img0: np.ndarray, img1: np.ndarray, mask: np.ndarray) -> float:
    """DyCheck compute_psnr (masked_mean with the mask broadcast over channels)."""
    m = np.broadcast_to(mask[..., None], img0.shape)
    mse = ((img0 - img1) ** 2 * m).sum() / max(m.sum(), 1e-6)
    return float(-10.0 / np.log(10.0) * np.log(mse))


def _dycheck_ssim(img0: np.ndarray, img1: np.ndarray, mask: np.ndarray) -> float:
    """DyCheck compute_ssim, transcribed from its jax code with scipy's convolve2d."""
    filter_size, filter_sigma, k1, k2 = 11, 1.5, 0.01, 0.03
    hw = filter_size // 2
    shift = (2 * hw - filter_size + 1) / 2
    filt = np.exp(-0.5 * ((np.arange(filter_size) - hw + shift) / filter_sigma) ** 2)
    filt /= filt.sum()

    def conv(z, m, f):
        z_ = convolve2d(z * m, f, mode="valid")
        m_ = convolve2d(m, np.ones_like(f), mode="valid")
        return np.where(m_ != 0, z_ * np.ones_like(f).sum() / np.where(m_ != 0, m_, 1), 0), (
            m_ != 0
        ).astype(z.dtype)

    def filt_fn(z, m):
        outs = []
        for c in range(z.shape[2]):
            zc, mc = conv(z[..., c], m, filt[None, :])
            zc, _ = conv(zc, mc, filt[:, None])
            outs.append(zc)
        return np.stack(outs, -1)

    mu0, mu1 = filt_fn(img0, mask), filt_fn(img1, mask)
    mu00, mu11, mu01 = mu0 * mu0, mu1 * mu1, mu0 * mu1
    s00 = np.maximum(0.0, filt_fn(img0**2, mask) - mu00)
    s11 = np.maximum(0.0, filt_fn(img1**2, mask) - mu11)
    s01 = filt_fn(img0 * img1, mask) - mu01
    s01 = np.sign(s01) * np.minimum(np.sqrt(s00 * s11), np.abs(s01))
    c1, c2 = k1**2, k2**2
    smap = (2 * mu01 + c1) * (2 * s01 + c2) / ((mu00 + mu11 + c1) * (s00 + s11 + c2))
    return float(smap.mean())


def _blob_mask(h: int, w: int) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w]
    return (((ys - h * 0.4) / (h * 0.3)) ** 2 + ((xs - w * 0.55) / (w * 0.3)) ** 2 < 1).astype(
        np.float64
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_masked_metrics_match_dycheck(seed: int) -> None:
    a, b = _pair(np.random.default_rng(seed), 36, 44)
    mask = _blob_mask(36, 44)
    assert psnr(b, a, mask) == pytest.approx(_dycheck_psnr(b, a, mask), abs=1e-9)
    assert ssim(b, a, mask) == pytest.approx(_dycheck_ssim(b, a, mask), abs=1e-9)
    # an all-ones mask is the plain metric
    ones = np.ones((36, 44))
    assert ssim(b, a, ones) == pytest.approx(ssim(b, a), abs=1e-12)
    assert psnr(b, a, ones) == pytest.approx(psnr(b, a), abs=1e-12)


def test_masked_known_answers() -> None:
    rng = np.random.default_rng(5)
    gt = rng.random((32, 32, 3))
    pred = gt.copy()
    mask = np.zeros((32, 32), bool)
    mask[:, :16] = True
    pred[:, 16:] += 0.2  # errors only outside the mask
    pred[:, :16] += 0.1  # and exactly 0.1 inside
    assert psnr(pred, gt, mask) == pytest.approx(20.0, abs=1e-9)
    pred2 = gt.copy()
    pred2[:, 16:] = 0.0
    assert psnr(pred2, gt, mask) == math.inf
    # masked SSIM never sees the unmasked half: identical inside -> 1
    assert ssim(pred2, gt, mask) == pytest.approx(1.0, abs=1e-12)
    assert ssim(pred2, gt) < 0.9
    # an empty mask is undefined for that frame, skipped by the mean
    masks = np.stack([mask, np.zeros_like(mask)])
    per = psnr(np.stack([pred, pred]), np.stack([gt, gt]), masks, reduction="none")
    assert per[0] == pytest.approx(20.0) and np.isnan(per[1])
    assert psnr(np.stack([pred, pred]), np.stack([gt, gt]), masks) == pytest.approx(20.0)
    with pytest.raises(MetricNotComputable):
        ssim(pred, gt, np.zeros((32, 32)))
