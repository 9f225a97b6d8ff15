"""Fréchet distances: FID (Inception-v3 pool features) and FVD (I3D logits).

``d^2 = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^{1/2})`` between Gaussians fitted to
two feature sets. The trace of the matrix square root is computed from eigenvalues
(``tr (S_a S_b)^{1/2} = sum sqrt(eig(S_a^{1/2} S_b S_a^{1/2}))``, symmetric, float64),
which equals ``scipy.linalg.sqrtm`` (pytorch-fid / StyleGAN) without its complex round-off.

Feature extractors are TorchScript files, loaded with ``torch.jit.load`` (no torchvision):

* FID: ``inception-2015-12-05.pt`` (StyleGAN2-ADA's port of the TF FID Inception):
  ``model(images uint8 [B, 3, H, W], return_features=True) -> [B, 2048]``; it resizes to
  299 internally. Covariance with ``ddof=1`` (pytorch-fid / clean-fid).
* FVD: ``i3d_torchscript.pt`` (StyleGAN-V): ``model(videos [B, 3, T, H, W] in [-1, 1],
  rescale=False, resize=True, return_features=True) -> [B, 400]``, clips of 16 frames.
  Covariance with ``ddof=0`` (StyleGAN-V's ``FeatureStats``).

Both are unreliable with few samples (a single short video gives far fewer clips than
feature dimensions); compare values only between runs with the same frame counts.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from dynrec.metrics.base import ArrayLike, MetricNotComputable, to_numpy, to_tensor
from dynrec.metrics.weights import find_weights

INCEPTION_FILE = "inception-2015-12-05.pt"
I3D_FILE = "i3d_torchscript.pt"
FVD_CLIP_LEN = 16


def feature_stats(features: ArrayLike, ddof: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and covariance ``[D, D]`` (float64) of features ``[N, D]``; N > ddof."""
    f = to_numpy(features)
    if f.ndim != 2:
        raise ValueError(f"features must be [N, D], got {f.shape}")
    if f.shape[0] <= ddof:
        raise MetricNotComputable(
            "frechet", f"{f.shape[0]} feature vector(s) are too few for a covariance"
        )
    mu = f.mean(axis=0)
    x = f - mu
    sigma = x.T @ x / (f.shape[0] - ddof)
    return mu, sigma


def _clip_eigenvalues(w: np.ndarray) -> np.ndarray:
    """Zero eigenvalues that are numerically indistinguishable from 0 (numpy's rank tolerance).

    Their square roots would otherwise add ``sqrt(round-off)`` per dimension, which matters
    for the rank-deficient covariances of small sample sets.
    """
    tol = max(float(np.abs(w).max(initial=0.0)), 0.0) * w.size * np.finfo(np.float64).eps
    return np.where(w > tol, w, 0.0)


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(_clip_eigenvalues(w))) @ v.T


def frechet_distance_from_stats(
    mu_a: ArrayLike, sigma_a: ArrayLike, mu_b: ArrayLike, sigma_b: ArrayLike
) -> float:
    """Fréchet distance (squared 2-Wasserstein) between N(mu_a, sigma_a) and N(mu_b, sigma_b).

    Means ``[D]``, covariances ``[D, D]`` symmetric PSD. Units: squared feature units.
    """
    ma, mb = to_numpy(mu_a), to_numpy(mu_b)
    sa, sb = to_numpy(sigma_a), to_numpy(sigma_b)
    if ma.shape != mb.shape or sa.shape != sb.shape or sa.shape != (ma.size, ma.size):
        raise ValueError(
            f"inconsistent shapes: mu {ma.shape} / {mb.shape}, sigma {sa.shape} / {sb.shape}"
        )
    root_a = _sqrt_psd(sa)
    inner = root_a @ sb @ root_a
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    tr_covmean = float(np.sqrt(_clip_eigenvalues(eig)).sum())
    diff = ma - mb
    return float(diff @ diff + np.trace(sa) + np.trace(sb) - 2.0 * tr_covmean)


def frechet_distance(features_a: ArrayLike, features_b: ArrayLike, ddof: int = 1) -> float:
    """Fréchet distance between Gaussians fitted to features ``[N_a, D]`` and ``[N_b, D]``
    (covariances with ``ddof``).

    With fewer samples than dimensions the covariances are rank-deficient; the trace term
    is then computed exactly from the samples: with centred features A, B,
    ``tr (S_a S_b)^{1/2} = ||B A^T||_* / sqrt((N_a - ddof)(N_b - ddof))`` (nuclear norm),
    which avoids square roots of round-off eigenvalues.
    """
    mu_a, s_a = feature_stats(features_a, ddof)
    mu_b, s_b = feature_stats(features_b, ddof)
    a, b = to_numpy(features_a), to_numpy(features_b)
    n, m, d = a.shape[0], b.shape[0], a.shape[1]
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    if min(n, m) >= d:
        return frechet_distance_from_stats(mu_a, s_a, mu_b, s_b)
    ac, bc = a - mu_a, b - mu_b
    tr_covmean = float(np.linalg.svd(bc @ ac.T, compute_uv=False).sum()) / np.sqrt(
        (n - ddof) * (m - ddof)
    )
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(s_a) + np.trace(s_b) - 2.0 * tr_covmean)


def _load_torchscript(
    filename: str,
    weights_dir: Path | str | None,
    metric: str,
    device: torch.device | str,
    hint: str,
) -> torch.jit.ScriptModule:
    path = find_weights(filename, weights_dir, metric, hint=hint)
    try:
        with (
            warnings.catch_warnings()
        ):  # torch >= 2.10 deprecates TorchScript; these files are TorchScript
            warnings.simplefilter("ignore", DeprecationWarning)
            model = torch.jit.load(str(path), map_location=device)
    except (RuntimeError, ValueError, OSError) as e:
        raise MetricNotComputable(metric, f"cannot load TorchScript model {path}: {e}") from e
    model.eval()
    return model


def load_inception(
    weights_dir: Path | str | None = None, device: torch.device | str = "cpu"
) -> torch.jit.ScriptModule:
    """The FID Inception TorchScript ``inception-2015-12-05.pt`` from ``weights_dir`` /
    ``$DYNREC_WEIGHTS``. Raises :class:`~dynrec.metrics.weights.WeightsMissing`."""
    return _load_torchscript(
        INCEPTION_FILE,
        weights_dir,
        "fid",
        device,
        "StyleGAN2-ADA's FID Inception (inception-2015-12-05.pt)",
    )


def load_i3d(
    weights_dir: Path | str | None = None, device: torch.device | str = "cpu"
) -> torch.jit.ScriptModule:
    """The FVD I3D TorchScript ``i3d_torchscript.pt`` (StyleGAN-V) from ``weights_dir`` /
    ``$DYNREC_WEIGHTS``. Raises :class:`~dynrec.metrics.weights.WeightsMissing`."""
    return _load_torchscript(
        I3D_FILE, weights_dir, "fvd", device, "StyleGAN-V's FVD I3D (i3d_torchscript.pt)"
    )


def _model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def _quantise(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] float -> uint8 levels (as saved frames), float32 0..255."""
    return (x.clamp(0, 1) * 255).round()


def inception_features(
    images: ArrayLike, model: torch.nn.Module, batch_size: int = 16
) -> np.ndarray:
    """Inception pool features ``[N, 2048]`` of images ``[N, H, W, 3]`` in [0, 1].

    Images are quantised to uint8 and passed NCHW, as StyleGAN2-ADA's FID does.
    """
    x = to_tensor(images, torch.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"fid: images must be [N, H, W, 3], got {tuple(x.shape)}")
    device = _model_device(model)
    feats = []
    with torch.no_grad():
        for s in range(0, x.shape[0], batch_size):
            b = (
                _quantise(x[s : s + batch_size])
                .to(torch.uint8)
                .permute(0, 3, 1, 2)
                .contiguous()
                .to(device)
            )
            feats.append(model(b, return_features=True).float().cpu())
    return torch.cat(feats).numpy().astype(np.float64)


def fid(
    pred_images: ArrayLike, ref_images: ArrayLike, model: torch.nn.Module, batch_size: int = 16
) -> float:
    """Fréchet Inception Distance between two image sets ``[N, H, W, 3]`` in [0, 1]
    (lower is better; N >= 2 each). ``model`` from :func:`load_inception`."""
    fa = inception_features(pred_images, model, batch_size)
    fb = inception_features(ref_images, model, batch_size)
    if min(fa.shape[0], fb.shape[0]) < 2:
        raise MetricNotComputable("fid", "need at least 2 images per side")
    return frechet_distance(fa, fb, ddof=1)


def video_clips(video: ArrayLike, clip_len: int = FVD_CLIP_LEN, stride: int = 1) -> torch.Tensor:
    """Cut a video ``[T, H, W, 3]`` in [0, 1] into clips ``[K, 3, clip_len, H, W]`` in
    [-1, 1] (quantised to uint8 levels first), windows starting every ``stride`` frames."""
    v = to_tensor(video, torch.float32)
    if v.ndim != 4 or v.shape[-1] != 3:
        raise ValueError(f"fvd: a video must be [T, H, W, 3], got {tuple(v.shape)}")
    t = v.shape[0]
    if t < clip_len:
        raise MetricNotComputable(
            "fvd", f"a video of {t} frames is shorter than one {clip_len}-frame clip"
        )
    starts = range(0, t - clip_len + 1, stride)
    v = _quantise(v) / 127.5 - 1.0
    return torch.stack([v[s : s + clip_len].permute(3, 0, 1, 2) for s in starts])


def i3d_features(
    videos: ArrayLike | Sequence[ArrayLike],
    model: torch.nn.Module,
    clip_len: int = FVD_CLIP_LEN,
    stride: int = 1,
    batch_size: int = 4,
) -> np.ndarray:
    """I3D logits ``[K, 400]`` of all ``clip_len``-frame clips (every ``stride`` frames) of
    one video ``[T, H, W, 3]`` or a list of videos, in [0, 1]."""
    if isinstance(videos, (np.ndarray, torch.Tensor)) and videos.ndim == 4:
        videos = [videos]
    clips = torch.cat([video_clips(v, clip_len, stride) for v in videos])
    device = _model_device(model)
    feats = []
    with torch.no_grad():
        for s in range(0, clips.shape[0], batch_size):
            b = clips[s : s + batch_size].to(device)
            feats.append(model(b, rescale=False, resize=True, return_features=True).float().cpu())
    return torch.cat(feats).numpy().astype(np.float64)


def fvd(
    pred_videos: ArrayLike | Sequence[ArrayLike],
    ref_videos: ArrayLike | Sequence[ArrayLike],
    model: torch.nn.Module,
    clip_len: int = FVD_CLIP_LEN,
    stride: int = 1,
    batch_size: int = 4,
) -> float:
    """Fréchet Video Distance (lower is better) between the 16-frame clips of predicted and
    reference videos (each ``[T, H, W, 3]`` in [0, 1], or lists of them). Every window of
    ``clip_len`` frames starting every ``stride`` frames is a sample; at least 2 clips per
    side (T >= 17 with stride 1). ``model`` from :func:`load_i3d`."""
    fa = i3d_features(pred_videos, model, clip_len, stride, batch_size)
    fb = i3d_features(ref_videos, model, clip_len, stride, batch_size)
    if min(fa.shape[0], fb.shape[0]) < 2:
        raise MetricNotComputable(
            "fvd",
            f"{min(fa.shape[0], fb.shape[0])} clip(s) of {clip_len} frames; "
            "need at least 2 per side",
        )
    return frechet_distance(fa, fb, ddof=0)
