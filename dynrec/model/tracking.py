"""Where a pixel of a trained scene goes: 3D trajectories of query points (Shape of Motion's
evaluation protocol, ``evaluate_iphone.py``).

A query ``(t_q, x, y)`` is answered by rendering the scene at frame ``t_q`` from camera
``t_q`` with each Gaussian's *position at frame t* as its colour: the alpha-normalised
feature at ``(x, y)`` is where the surface seen there is at t. This lifts the query with
the model's own rendered depth and carries it with the model's own motion, so it needs no
correspondence between the query points and anything the reconstruction was given.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dynrec.model.scene import DynamicScene


def sample_image(image: Tensor, xy: Tensor) -> Tensor:
    """Bilinear samples [P, D] of ``image`` [H, W, D] at pixel positions ``xy`` [P, 2]
    (pixel centres at +0.5, border values repeated outside)."""
    H, W = image.shape[:2]
    grid = torch.stack([2.0 * xy[:, 0] / W - 1.0, 2.0 * xy[:, 1] / H - 1.0], dim=-1).to(image.dtype)
    out = F.grid_sample(image.permute(2, 0, 1)[None], grid[None, None], mode="bilinear",
                        padding_mode="border", align_corners=False)
    return out[0, :, 0].T


@torch.no_grad()
def query_trajectories(scene: DynamicScene, K: Tensor, w2c: Tensor, width: int, height: int,
                       query_frame: Tensor, query_xy: Tensor, frames_per_pass: int = 16,
                       min_alpha: float = 0.5, foreground_only: bool = False) -> tuple[Tensor, Tensor]:
    """World trajectories of query pixels under the scene's motion.

    ``K`` [T, 3, 3], ``w2c`` [T, 4, 4] the training cameras; ``query_frame`` [N] long,
    ``query_xy`` [N, 2] pixels at that frame. Renders once per distinct query frame and
    ``frames_per_pass`` target frames (3 feature channels each). Returns ``(xyz [N, T, 3],
    ok [N])``: ``ok`` is False where the rendered opacity at the query is below ``min_alpha``
    (nothing there to follow). ``foreground_only``: render the deformed Gaussians alone, for
    queries known to lie on the moving subject (a silhouette pixel then follows the subject,
    not a blend of it and the wall behind).
    """
    T = w2c.shape[0]
    g = scene.gaussians
    fg = g.foreground
    bg_pos = g.means[~fg]
    xyz = query_xy.new_zeros(query_xy.shape[0], T, 3)
    ok = torch.zeros(query_xy.shape[0], dtype=torch.bool, device=query_xy.device)
    for q in torch.unique(query_frame).tolist():
        rows = torch.nonzero(query_frame == q)[:, 0]
        means_q, quats_q = scene.deform_foreground(torch.tensor([q]))
        for s in range(0, T, frames_per_pass):
            ts = torch.arange(s, min(s + frames_per_pass, T))
            fg_pos = scene.deform_foreground(ts)[0]  # [B, Gf, 3]
            feats_fg = fg_pos.permute(1, 0, 2).reshape(fg_pos.shape[1], -1)
            feats_bg = None if foreground_only else bg_pos.repeat(1, len(ts))
            image, alpha = scene.render_features(means_q[0], quats_q[0], feats_bg, feats_fg, K[q], w2c[q],
                                                 width, height)
            a = sample_image(alpha, query_xy[rows])  # [n, 1]
            f = sample_image(image, query_xy[rows]) / a.clamp_min(1e-6)
            xyz[rows, s:s + len(ts)] = f.reshape(len(rows), len(ts), 3).to(xyz.dtype)
            ok[rows] = a[:, 0] >= min_alpha
    return xyz, ok
