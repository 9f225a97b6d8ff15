"""Point-track metrics: PCK-T, 3D end-point error, temporal jitter, motion smoothness and
the warp-based (camera-independent) temporal consistency of rendered frames.

Tracks are ``[N, T, D]`` (N points, T frames; D = 2 for pixels with centres at +0.5, D = 3
for scene units), with a boolean validity / visibility mask ``[N, T]`` (None = all valid).
Keypoints stored as ``[T, J, 2]`` are passed as ``kp.transpose(1, 0, 2)``.

``reduction="mean"`` pools over every valid (point, frame) sample; ``"none"`` returns one
value per frame (NaN where a frame has no valid sample). Formulas, with x_t a point's
position in frame t (see docs/metrics.md):

* PCK-T = fraction of visible ground-truth points with ``|x_pred - x_gt| < 0.05 max(H, W)``.
* EPE-3D = mean ``|X_pred - X_gt|`` (scene units).
* keypoint error = mean ``|x_pred - x_gt|`` of 2D points (pixels) over visible samples.
* motion smoothness = mean acceleration magnitude ``|x_{t+1} - 2 x_t + x_{t-1}|``
  (units / frame^2), over t with t-1, t, t+1 valid; 0 for constant-velocity motion.
* temporal jitter = mean distance to a local quadratic fit, i.e. the residual of a
  5-frame, order-2 Savitzky-Golay smoother:
  ``|x_t - SG(x)_t| = (3/35) |x_{t-2} - 4 x_{t-1} + 6 x_t - 4 x_{t+1} + x_{t+2}|``
  (units), over t with t-2..t+2 valid; 0 for any motion with constant acceleration.
* warp error (temporal consistency) = mean over channels of ``|I_{t+1}(x_{t+1}) - I_t(x_t)|``
  along tracks visible in both frames (bilinear sampling; intensity units in [0, 1]).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from dynrec.metrics.base import ArrayLike, MetricNotComputable, Reduction, to_numpy, to_tensor


def _tracks(x: ArrayLike, metric: str, dim: int | None = None) -> np.ndarray:
    a = to_numpy(x)
    if a.ndim != 3 or (dim is not None and a.shape[-1] != dim):
        want = f"[N, T, {dim}]" if dim else "[N, T, D]"
        raise ValueError(f"{metric}: tracks must be {want}, got {a.shape}")
    return a


def _valid(valid: ArrayLike | None, n: int, t: int, metric: str) -> np.ndarray:
    if valid is None:
        return np.ones((n, t), bool)
    raw = valid.detach().cpu().numpy() if isinstance(valid, torch.Tensor) else np.asarray(valid)
    v = raw if raw.dtype == bool else raw.astype(np.float64) > 0.5
    if v.shape != (n, t):
        raise ValueError(f"{metric}: validity mask must be [N, T] = ({n}, {t}), got {v.shape}")
    return np.asarray(v, bool)


def _pool(
    values: np.ndarray, valid: np.ndarray, reduction: Reduction, metric: str
) -> float | np.ndarray:
    """values / valid [N, T] -> pooled mean or per-frame means [T] (NaN where none valid)."""
    if reduction == "none":
        counts = valid.sum(axis=0)
        sums = np.where(valid, values, 0.0).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    if reduction != "mean":
        raise ValueError(f"{metric}: reduction must be 'mean' or 'none', got {reduction!r}")
    if not valid.any():
        raise MetricNotComputable(metric, "no valid point in any frame")
    return float(values[valid].mean())


def pck_t(
    pred: ArrayLike,
    gt: ArrayLike,
    image_size: tuple[int, int],
    visible: ArrayLike | None = None,
    ratio: float = 0.05,
    reduction: Reduction = "mean",
) -> float | np.ndarray:
    """Percentage of correct keypoints over time (DyCheck PCK-T), as a fraction in [0, 1].

    Args:
        pred, gt: 2D tracks ``[N, T, 2]`` in pixels.
        image_size: ``(H, W)``; the threshold is ``ratio * max(H, W)`` pixels (strict <).
        visible: ground-truth visibility ``[N, T]``; only visible points count.
        ratio: threshold ratio (0.05).
        reduction: pooled fraction (``"mean"``) or per-frame fractions ``[T]``.
    """
    p, g = _tracks(pred, "pck_t", 2), _tracks(gt, "pck_t", 2)
    if p.shape != g.shape:
        raise ValueError(
            f"pck_t: predicted {p.shape} and ground-truth {g.shape} tracks differ in shape"
        )
    v = _valid(visible, g.shape[0], g.shape[1], "pck_t")
    thr = ratio * max(image_size)
    correct = (np.linalg.norm(p - g, axis=-1) < thr).astype(np.float64)
    return _pool(correct, v, reduction, "pck_t")  # NaN predictions count as wrong


def epe_3d(
    pred: ArrayLike, gt: ArrayLike, valid: ArrayLike | None = None, reduction: Reduction = "mean"
) -> float | np.ndarray:
    """3D track end-point error: mean Euclidean distance ``[N, T, 3]`` vs ``[N, T, 3]`` over
    valid samples, in scene units; lower is better."""
    p, g = _tracks(pred, "epe_3d", 3), _tracks(gt, "epe_3d", 3)
    if p.shape != g.shape:
        raise ValueError(
            f"epe_3d: predicted {p.shape} and ground-truth {g.shape} tracks differ in shape"
        )
    v = _valid(valid, g.shape[0], g.shape[1], "epe_3d")
    return _pool(np.linalg.norm(p - g, axis=-1), v, reduction, "epe_3d")


def epe_2d(
    pred: ArrayLike, gt: ArrayLike, visible: ArrayLike | None = None, reduction: Reduction = "mean"
) -> float | np.ndarray:
    """2D end-point error: mean pixel distance of ``[N, T, 2]`` vs ``[N, T, 2]`` over visible
    ground-truth samples (e.g. keypoints ``[T, J, 2]`` passed as ``kp.transpose(1, 0, 2)``);
    lower is better. A NaN prediction at a visible sample makes the result NaN."""
    p, g = _tracks(pred, "epe_2d", 2), _tracks(gt, "epe_2d", 2)
    if p.shape != g.shape:
        raise ValueError(
            f"epe_2d: predicted {p.shape} and ground-truth {g.shape} points differ in shape"
        )
    v = _valid(visible, g.shape[0], g.shape[1], "epe_2d")
    return _pool(np.linalg.norm(p - g, axis=-1), v, reduction, "epe_2d")


def within_3d(
    pred: ArrayLike,
    gt: ArrayLike,
    threshold: float,
    valid: ArrayLike | None = None,
    reduction: Reduction = "mean",
) -> float | np.ndarray:
    """Fraction of valid 3D track samples within ``threshold`` scene units of the ground
    truth (Shape of Motion's delta-3D at 0.05 / 0.10); higher is better."""
    p, g = _tracks(pred, "within_3d", 3), _tracks(gt, "within_3d", 3)
    v = _valid(valid, g.shape[0], g.shape[1], "within_3d")
    return _pool(
        (np.linalg.norm(p - g, axis=-1) < threshold).astype(np.float64), v, reduction, "within_3d"
    )


def _stencil(x: np.ndarray, valid: np.ndarray, coeffs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply a centred temporal stencil; returns |result| [N, T] and its validity [N, T]."""
    n, t, _ = x.shape
    k = len(coeffs)
    h = k // 2
    out = np.zeros((n, t))
    ok = np.zeros((n, t), bool)
    if t < k:
        return out, ok
    xs = np.where(valid[..., None], x, 0.0)
    acc = np.zeros((n, t - 2 * h, x.shape[2]))
    okc = np.ones((n, t - 2 * h), bool)
    for j, c in enumerate(coeffs):
        acc += c * xs[:, j : t - 2 * h + j]
        okc &= valid[:, j : t - 2 * h + j]
    out[:, h : t - h] = np.linalg.norm(acc, axis=-1)
    ok[:, h : t - h] = okc
    return out, ok


def motion_smoothness(
    tracks: ArrayLike, valid: ArrayLike | None = None, reduction: Reduction = "mean"
) -> float | np.ndarray:
    """Mean acceleration magnitude ``|x_{t+1} - 2 x_t + x_{t-1}|`` of tracked points
    ``[N, T, D]`` (units of the tracks per frame^2); lower is smoother. Per-frame values
    are indexed by the middle frame t (NaN at t = 0 and T-1)."""
    x = _tracks(tracks, "smoothness")
    v = _valid(valid, x.shape[0], x.shape[1], "smoothness")
    if x.shape[1] < 3:
        raise MetricNotComputable("smoothness", f"{x.shape[1]} frame(s); needs at least 3")
    a, ok = _stencil(x, v, np.array([1.0, -2.0, 1.0]))
    return _pool(a, ok, reduction, "smoothness")


def temporal_jitter(
    tracks: ArrayLike, valid: ArrayLike | None = None, reduction: Reduction = "mean"
) -> float | np.ndarray:
    """Mean distance of tracked points ``[N, T, D]`` to their local quadratic fit (5-frame,
    order-2 Savitzky-Golay residual, ``(3/35) |4th difference|``), in track units; lower
    is better. Per-frame values are indexed by the centre frame (NaN at the 2 first/last)."""
    x = _tracks(tracks, "jitter")
    v = _valid(valid, x.shape[0], x.shape[1], "jitter")
    if x.shape[1] < 5:
        raise MetricNotComputable("jitter", f"{x.shape[1]} frame(s); needs at least 5")
    r, ok = _stencil(x, v, np.array([1.0, -4.0, 6.0, -4.0, 1.0]) * (3.0 / 35.0))
    return _pool(r, ok, reduction, "jitter")


def sample_colors(frames: ArrayLike, xy: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinearly sample frames ``[T, H, W, 3]`` at tracks ``[N, T, 2]`` (pixels, centres at
    +0.5). Returns colours ``[N, T, 3]`` (float64) and in-image flags ``[N, T]``."""
    f = to_tensor(frames)
    p = to_tensor(xy, device=f.device)
    if f.ndim != 4 or p.ndim != 3 or p.shape[1] != f.shape[0] or p.shape[2] != 2:
        raise ValueError(
            f"frames [T, H, W, C] and tracks [N, T, 2] expected, got {tuple(f.shape)}, {tuple(p.shape)}"
        )
    _, h, w, _ = f.shape
    grid = torch.stack([2 * p[..., 0] / w - 1, 2 * p[..., 1] / h - 1], dim=-1)  # [N, T, 2]
    grid = torch.nan_to_num(grid, nan=-2.0)
    img = f.permute(0, 3, 1, 2)  # [T, C, H, W]
    out = F.grid_sample(
        img,
        grid.permute(1, 0, 2)[:, :, None, :],
        mode="bilinear",
        padding_mode="border",
        align_corners=False,
    )  # [T, C, N, 1]
    colors = out[..., 0].permute(2, 0, 1)  # [N, T, C]
    inside = (p[..., 0] >= 0) & (p[..., 0] <= w) & (p[..., 1] >= 0) & (p[..., 1] <= h)
    return colors, inside


def warp_error(
    frames: ArrayLike,
    tracks: ArrayLike,
    visible: ArrayLike | None = None,
    reduction: Reduction = "mean",
) -> float | np.ndarray:
    """Camera-independent temporal consistency of a video as the photometric error along
    point tracks between consecutive frames: mean over channels of
    ``|I_{t+1}(x_{t+1}) - I_t(x_t)|`` for tracks visible (and inside the image) in both
    frames. Intensity units (frames in [0, 1]); lower is more consistent. Per-frame
    values ``[T-1]``, entry t for the pair (t, t+1).

    Args:
        frames: rendered video ``[T, H, W, 3]`` in [0, 1].
        tracks: 2D tracks ``[N, T, 2]`` of the same views (e.g. the input video's tracks for
            renders at the training cameras), pixels with centres at +0.5.
        visible: ``[N, T]`` visibility of the tracks.
    """
    x = _tracks(tracks, "tc_warp", 2)
    v = _valid(visible, x.shape[0], x.shape[1], "tc_warp")
    if x.shape[1] < 2:
        raise MetricNotComputable("tc_warp", "needs at least 2 frames")
    colors, inside = sample_colors(frames, x)
    ok = v & inside.cpu().numpy() & np.isfinite(x).all(-1)
    diff = (colors[:, 1:] - colors[:, :-1]).abs().mean(dim=-1).cpu().numpy()
    pair_ok = ok[:, 1:] & ok[:, :-1]
    return _pool(diff, pair_ok, reduction, "tc_warp")
