"""Bundle adjustment in pure torch: Levenberg-Marquardt with a Schur complement.

Unknowns: one w2c per frame (a twist ``δ`` applied on the left, ``w2c <- exp(δ) w2c``),
one shared focal length (``log f``; principal point fixed), and one 3D point per track.
Residuals: reprojection errors of the visible observations (pixels, +0.5 pixel centres,
OpenCV cameras: see :mod:`dynrec.geometry.camera`) under a robust Cauchy loss
(iteratively reweighted), plus a weak prior ``(log f - log f0) / sigma_focal``.

The normal equations are solved by eliminating the points (their 3x3 blocks are
independent) and solving the dense reduced camera system (6T + 1 unknowns). Frames in
``fixed`` keep their pose; whatever gauge freedom remains (scale, or the whole similarity
when no frame is fixed) is held by the Levenberg-Marquardt damping. Everything runs in
float64 on the CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from dynrec.geometry.se3 import hat, se3_exp


@dataclass
class BAResult:
    """``w2c`` [T, 4, 4], ``points`` [P, 3], ``focal``; ``errors`` [M] final reprojection
    error of each observation (pixels); ``iterations`` run; ``cost`` initial and final robust
    cost per observation."""

    w2c: np.ndarray
    points: np.ndarray
    focal: float
    errors: np.ndarray
    iterations: int
    cost: tuple[float, float]


def _project(w2c: Tensor, points: Tensor, focal: Tensor, centre: Tensor, frame: Tensor, point: Tensor):
    """Camera-frame points [M, 3] and pixels [M, 2] of each observation."""
    R, t = w2c[frame, :3, :3], w2c[frame, :3, 3]
    p = (R @ points[point][..., None])[..., 0] + t
    z = p[:, 2:3]
    uv = focal * p[:, :2] / z.clamp_min(1e-9) + centre
    return p, uv


def _outer(A: Tensor, B: Tensor) -> Tensor:
    """``A^T B`` for every observation: [M, 2, i] x [M, 2, j] -> [M, i, j] (no tiny bmm)."""
    return A[:, 0, :, None] * B[:, 0, None, :] + A[:, 1, :, None] * B[:, 1, None, :]


def _robust(r2: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """Cauchy loss ``s^2 log(1 + r^2/s^2)`` and its IRLS weight ``1 / (1 + r^2/s^2)``."""
    s2 = scale * scale
    return s2 * torch.log1p(r2 / s2), 1.0 / (1.0 + r2 / s2)


def bundle_adjust(w2c: np.ndarray, points: np.ndarray, focal: float, centre: tuple[float, float],
                  frame: np.ndarray, point: np.ndarray, xy: np.ndarray, *, weight: np.ndarray | None = None,
                  fixed: np.ndarray | None = None, refine_focal: bool = True, sigma_focal: float = 0.5,
                  robust_px: float = 2.0, iterations: int = 40, tol: float = 1e-7,
                  focal_bounds: tuple[float, float] | None = None, smooth: float = 0.0) -> BAResult:
    """Refine cameras, focal and points.

    Args:
        w2c: initial poses [T, 4, 4]; points: initial points [P, 3]; focal: initial focal (px);
        centre: principal point (cx, cy).
        frame, point: frame and point index of each of the M observations [M]; xy: [M, 2].
        weight: per-observation weights [M] (e.g. track confidence); None = 1.
        fixed: [T] bool, frames whose pose is not optimised; None = frame 0 only. With no
            fixed frame the gauge (a similarity of the whole scene) is held by the damping.
        sigma_focal: std of the prior on log focal around the initial value.
        robust_px: scale of the Cauchy loss in pixels.
        tol: stop when an accepted step lowers the cost by less than this fraction.
        focal_bounds: stop as soon as the focal leaves (lo, hi) (the caller checks ``focal``).
        smooth: weight of a prior on consecutive camera-centre steps, ``smooth * f / Z *
            (c_t - c_{t-1})`` in pixels (Z: median point depth at the start): the parallax the
            step would cause at a typical depth. It settles the directions the images leave
            free (a panning camera: rotation or translation of a distant scene) to the
            smaller motion, and barely moves well-constrained cameras.
    """
    dt = torch.float64
    T, P, M = len(w2c), len(points), len(frame)
    W = torch.as_tensor(np.asarray(w2c), dtype=dt).clone()
    X = torch.as_tensor(np.asarray(points), dtype=dt).clone()
    logf0 = math.log(focal)
    logf = torch.tensor(logf0, dtype=dt)
    c = torch.tensor(centre, dtype=dt)
    fr = torch.as_tensor(np.asarray(frame), dtype=torch.long)
    pt = torch.as_tensor(np.asarray(point), dtype=torch.long)
    obs = torch.as_tensor(np.asarray(xy), dtype=dt)
    wobs = torch.ones(M, dtype=dt) if weight is None else torch.as_tensor(np.asarray(weight), dtype=dt)
    fix = torch.zeros(T, dtype=torch.bool) if fixed is None else torch.as_tensor(np.asarray(fixed), dtype=torch.bool)
    if fixed is None:
        fix[0] = True
    D = 6 * T + 1

    p0, _ = _project(W, X, logf.exp(), c, fr, pt)
    zmed = float(p0[:, 2].clamp_min(1e-9).median()) if M else 1.0
    a_smooth = smooth * focal / max(zmed, 1e-9)

    def centres(W_: Tensor) -> Tensor:
        return -(W_[:, :3, :3].transpose(1, 2) @ W_[:, :3, 3:])[..., 0]

    def cost_of(W_, X_, logf_) -> tuple[Tensor, Tensor, Tensor]:
        p, uv = _project(W_, X_, logf_.exp(), c, fr, pt)
        r = uv - obs
        front = p[:, 2] > 1e-6
        r2 = torch.where(front, r.square().sum(-1), torch.full_like(r[:, 0], 1e6))
        rho, _ = _robust(r2, robust_px)
        total = (wobs * rho).sum() + ((logf_ - logf0) / sigma_focal) ** 2 * (1.0 if refine_focal else 0.0)
        if a_smooth > 0 and T > 1:
            total = total + (a_smooth * (centres(W_)[1:] - centres(W_)[:-1])).square().sum()
        return total, r, p

    lam = 1e-3
    cost, r, p = cost_of(W, X, logf)
    cost0 = float(cost)
    it = 0
    for it in range(1, iterations + 1):
        f = logf.exp()
        x, y, z = p.unbind(-1)
        z = z.clamp_min(1e-6)
        front = (p[:, 2] > 1e-6).to(dt)
        _, w_irls = _robust(r.square().sum(-1), robust_px)
        w = wobs * w_irls * front  # [M]
        Jp = torch.zeros(M, 2, 3, dtype=dt)
        Jp[:, 0, 0] = f / z
        Jp[:, 1, 1] = f / z
        Jp[:, 0, 2] = -f * x / z**2
        Jp[:, 1, 2] = -f * y / z**2
        Jc = torch.zeros(M, 2, 7, dtype=dt)
        Jc[:, :, :3] = -Jp @ hat(p)  # d p / d omega = -[p]_x (left perturbation)
        Jc[:, :, 3:6] = Jp
        Jc[:, :, :6] *= (~fix[fr]).to(dt)[:, None, None]
        if refine_focal:
            Jc[:, :, 6] = torch.stack([f * x / z, f * y / z], -1)
        Jl = Jp @ W[fr, :3, :3]  # [M, 2, 3]
        wr = w[:, None] * r
        # camera block: per frame 6x6, the focal row/column
        Bcc = (Jc * w[:, None, None]).transpose(1, 2) @ Jc  # [M, 7, 7]
        Hcc = torch.zeros(D, D, dtype=dt)
        pose_blocks = torch.zeros(T, 6, 6, dtype=dt).index_add_(0, fr, Bcc[:, :6, :6])
        idx = torch.arange(T)[:, None] * 6 + torch.arange(6)
        Hcc[idx[:, :, None], idx[:, None, :]] = pose_blocks
        pf = torch.zeros(T, 6, dtype=dt).index_add_(0, fr, Bcc[:, :6, 6])
        Hcc[idx, D - 1] = pf
        Hcc[D - 1, idx] = pf
        Hcc[D - 1, D - 1] = Bcc[:, 6, 6].sum()
        gc = torch.zeros(D, dtype=dt)
        gpose = (Jc * wr[:, :, None]).sum(1)  # [M, 7]
        gc[:6 * T] = torch.zeros(T, 6, dtype=dt).index_add_(0, fr, gpose[:, :6]).reshape(-1)
        gc[D - 1] = gpose[:, 6].sum()
        if refine_focal:
            Hcc[D - 1, D - 1] += 1.0 / sigma_focal**2
            gc[D - 1] += (logf - logf0) / sigma_focal**2
        Hll = torch.zeros(P, 3, 3, dtype=dt).index_add_(0, pt, (Jl * w[:, None, None]).transpose(1, 2) @ Jl)
        gl = torch.zeros(P, 3, dtype=dt).index_add_(0, pt, (Jl * wr[:, :, None]).sum(1))
        Bcl = _outer(Jc * w[:, None, None], Jl)  # [M, 7, 3]
        Hcl = torch.zeros(D, P, 3, dtype=dt)
        rows = (fr[:, None] * 6 + torch.arange(6))  # [M, 6]
        Hcl.index_put_((rows, pt[:, None].expand(-1, 6)), Bcl[:, :6], accumulate=True)
        Hcl[D - 1].index_add_(0, pt, Bcl[:, 6])
        if a_smooth > 0 and T > 1:
            # r_t = a (c_t - c_{t-1}), c = -R^T t; to first order dc/d rho = -R^T, dc/d omega = 0
            R = W[:, :3, :3]
            rs = a_smooth * (centres(W)[1:] - centres(W)[:-1])  # [T-1, 3]
            free = (~fix).to(dt)
            eye = torch.eye(3, dtype=dt)
            for k in range(1, T):
                i, j = 6 * k + 3, 6 * (k - 1) + 3  # rho blocks of frames k and k-1
                Ji, Jj = -a_smooth * R[k].T * free[k], a_smooth * R[k - 1].T * free[k - 1]
                Hcc[i:i + 3, i:i + 3] += a_smooth**2 * eye * free[k]
                Hcc[j:j + 3, j:j + 3] += a_smooth**2 * eye * free[k - 1]
                Hcc[i:i + 3, j:j + 3] += Ji.T @ Jj
                Hcc[j:j + 3, i:i + 3] += Jj.T @ Ji
                gc[i:i + 3] += Ji.T @ rs[k - 1]
                gc[j:j + 3] += Jj.T @ rs[k - 1]
        fixed_diag = torch.zeros(D, dtype=dt)
        fixed_diag[:6 * T] = fix.repeat_interleave(6).to(dt)
        if not refine_focal:
            fixed_diag[D - 1] = 1.0

        improved = False
        for _ in range(10):
            Hll_d = Hll + lam * torch.diag_embed(torch.diagonal(Hll, dim1=-2, dim2=-1).clamp_min(1e-9)) \
                + 1e-12 * torch.eye(3, dtype=dt)
            Hll_inv = torch.linalg.inv(Hll_d)
            Y = (Hcl.transpose(0, 1) @ Hll_inv).transpose(0, 1).reshape(D, 3 * P)
            Hd = Hcc + lam * torch.diag(torch.diagonal(Hcc).clamp_min(1e-9)) + torch.diag(fixed_diag)
            S = Hd - Y @ Hcl.reshape(D, 3 * P).T
            rhs = -gc + Y @ gl.reshape(-1)
            try:
                dc = torch.linalg.solve(S, rhs)
            except RuntimeError:
                lam *= 10
                continue
            dl = -(Hll_inv @ (gl + (dc @ Hcl.reshape(D, 3 * P)).reshape(P, 3))[..., None])[..., 0]
            W_new = se3_exp(dc[:6 * T].reshape(T, 6)) @ W
            X_new = X + dl
            logf_new = logf + dc[D - 1]
            cost_new, r_new, p_new = cost_of(W_new, X_new, logf_new)
            if float(cost_new) < float(cost):
                rel = (float(cost) - float(cost_new)) / max(float(cost), 1e-12)
                W, X, logf, cost, r, p = W_new, X_new, logf_new, cost_new, r_new, p_new
                lam = max(lam / 3, 1e-7)
                improved = True
                break
            lam *= 5
        if not improved or rel < tol:
            break
        if focal_bounds is not None and not focal_bounds[0] <= math.exp(float(logf)) <= focal_bounds[1]:
            break
    errors = r.norm(dim=-1).numpy()
    return BAResult(W.numpy(), X.numpy(), float(logf.exp()), errors, it, (cost0 / max(M, 1), float(cost) / max(M, 1)))
