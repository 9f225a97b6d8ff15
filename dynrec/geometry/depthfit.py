"""Robust scale/shift fit of monocular depth to sparse metric-consistent depths.

Monocular depth is known only up to a per-frame affine map: z-depth ``z ≈ s m + b`` for
depth-like predictions, or inverse depth ``1/z ≈ s m + b`` for disparity-like ones (Depth
Anything's relative models). :func:`fit_scale_shift` finds ``(s, b)`` from samples
``m`` (the prediction at sparse points) and targets ``y`` (their depth or inverse depth
from SfM / bundle adjustment) by RANSAC on point pairs followed by IRLS with Huber
weights on the **relative** residual ``(s m + b - y) / y`` (errors scale with depth).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AffineFit:
    """``y ≈ scale * m + shift``; ``inliers`` [n] bool; ``sigma`` robust std of the relative
    residual of the inliers."""

    scale: float
    shift: float
    inliers: np.ndarray
    sigma: float


def _weighted_ls(m: np.ndarray, y: np.ndarray, w: np.ndarray, shift: bool) -> tuple[float, float]:
    """Weighted least squares of ``(s m + b - y) / y``."""
    a = m / y
    c = 1.0 / y
    if not shift:
        s = float((w * a).sum() / max((w * a * a).sum(), 1e-300))
        return s, 0.0
    A = np.array([[(w * a * a).sum(), (w * a * c).sum()], [(w * a * c).sum(), (w * c * c).sum()]])
    rhs = np.array([(w * a).sum(), (w * c).sum()])  # normal equations of sum w (a s + c b - 1)^2
    try:
        s, b = np.linalg.solve(A + 1e-12 * np.eye(2) * np.trace(A), rhs)
    except np.linalg.LinAlgError:
        return _weighted_ls(m, y, w, False)
    return float(s), float(b)


def fit_scale_shift(m: np.ndarray, y: np.ndarray, *, shift: bool = True, trials: int = 200,
                    inlier_rel: float = 0.05, iterations: int = 15, seed: int = 0) -> AffineFit | None:
    """Robust fit of ``y ≈ s m + b`` (``b = 0`` when not ``shift``); ``y > 0``.

    RANSAC on random point pairs (or single points without shift) scores candidates by the
    number of samples with relative residual below ``inlier_rel``; the best candidate is
    refined by IRLS with Huber weights (threshold 1.345 robust sigmas). Returns None with
    fewer than 2 (1 without shift) usable samples or no candidate with a positive scale.
    """
    m = np.asarray(m, np.float64)
    y = np.asarray(y, np.float64)
    ok = np.isfinite(m) & np.isfinite(y) & (y > 0)
    m, y = m[ok], y[ok]
    need = 2 if shift else 1
    if len(m) < need:
        return None
    rng = np.random.default_rng(seed)
    if shift:
        i = rng.integers(0, len(m), trials)
        j = rng.integers(0, len(m), trials)
        dm = m[i] - m[j]
        good = np.abs(dm) > 1e-12 * (np.abs(m).max() + 1e-300)
        s = np.where(good, (y[i] - y[j]) / np.where(good, dm, 1.0), 0.0)
        b = y[i] - s * m[i]
    else:
        i = rng.integers(0, len(m), trials)
        s = y[i] / np.where(np.abs(m[i]) > 0, m[i], np.nan)
        b = np.zeros_like(s)
    # the median-ratio scale is always a candidate (it is right for b = 0)
    ratio = y / np.where(m != 0, m, np.nan)
    s = np.append(s, np.nanmedian(ratio) if np.isfinite(ratio).any() else 0.0)
    b = np.append(b, 0.0)
    valid = np.isfinite(s) & (s > 0)
    if not valid.any():
        return None
    s, b = s[valid], b[valid]
    rel = np.abs((s[:, None] * m[None] + b[:, None] - y[None]) / y[None])
    score = (rel < inlier_rel).sum(1) - 1e-9 * np.median(rel, axis=1)  # ties: smaller residuals
    best = int(np.argmax(score))
    sc, sh = float(s[best]), float(b[best])
    sigma = 1.0
    for _ in range(iterations):
        r = (sc * m + sh - y) / y
        sigma = max(1.4826 * float(np.median(np.abs(r - np.median(r)))), 1e-6)
        delta = 1.345 * sigma
        w = np.where(np.abs(r) <= delta, 1.0, delta / np.maximum(np.abs(r), 1e-300))
        w = np.where(np.abs(r) > 6 * max(sigma, inlier_rel / 3), 0.0, w)  # gross outliers out
        if w.sum() < need:
            break
        new_s, new_b = _weighted_ls(m, y, w, shift)
        if not (np.isfinite(new_s) and new_s > 0):
            break
        done = abs(new_s - sc) <= 1e-10 * abs(sc) and abs(new_b - sh) <= 1e-10 * (abs(sh) + abs(sc))
        sc, sh = new_s, new_b
        if done:
            break
    r = (sc * m + sh - y) / y
    inl = np.zeros(len(ok), bool)
    inl[np.flatnonzero(ok)] = np.abs(r) < max(3 * sigma, inlier_rel)
    return AffineFit(sc, sh, inl, sigma)


def fill_gaps(values: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Linear interpolation in time of ``values`` [T] where not ``ok`` (constant beyond the ends)."""
    t = np.arange(len(values))
    if ok.all() or not ok.any():
        return values.copy()
    return np.interp(t, t[ok], values[ok])


def densify(xy: np.ndarray, z: np.ndarray, width: int, height: int) -> np.ndarray:
    """Dense z-depth ``[height, width]`` interpolated from sparse samples.

    ``xy`` [n, 2] pixel positions (pixel centres at +0.5), ``z`` [n] > 0 their depths. The
    inverse depth is interpolated linearly over the samples' Delaunay triangulation (a
    piecewise-planar scene in disparity) and filled outside their convex hull with the
    nearest sample's; scipy does the triangulation.
    """
    from scipy.interpolate import griddata

    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    z = np.asarray(z, np.float64).reshape(-1)
    ok = np.isfinite(xy).all(1) & np.isfinite(z) & (z > 0)
    xy, inv = xy[ok], 1.0 / z[ok]
    if len(inv) == 0:
        raise ValueError("densify needs at least one sample with positive depth")
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    grid = np.stack([xs.ravel(), ys.ravel()], 1)
    near = griddata(xy, inv, grid, method="nearest")
    if len(inv) >= 3 and np.linalg.matrix_rank(xy - xy.mean(0)) == 2:
        lin = griddata(xy, inv, grid, method="linear")
        near = np.where(np.isfinite(lin), lin, near)
    return (1.0 / near).reshape(height, width)
