"""Keypoints from clustered foreground tracks (the ``offline`` keypoints backend).

The foreground tracks are lifted to 3D with the aligned depth and the cameras
(:func:`dynrec.geometry.lift.lift_tracks`) and gap-filled; K-Means on the whole 3D
trajectories ([N, T*3], as HiMoR clusters motion) groups points that stay together, i.e.
body parts. Keypoint j at frame t is the projection of the mean 3D position of cluster j;
its confidence is the fraction of the cluster's tracks visible at t. The skeleton is the
minimum spanning tree of the cluster centres in the canonical frame (the frame with the
most lifted tracks), so it has J - 1 edges and connects every keypoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse.csgraph import minimum_spanning_tree
from scipy.spatial.distance import cdist

from dynrec.geometry.kmeans import kmeans
from dynrec.geometry.lift import canonical_frame, fill_gaps, lift_tracks, project_points


@dataclass
class ClusteredKeypoints:
    """``xy`` [T, J, 2], ``confidence`` [T, J], ``skeleton`` [J-1, 2], ``labels`` [N] cluster of
    each lifted track, ``centres`` [J, 3] canonical-frame centres, ``canonical`` frame."""

    xy: np.ndarray
    confidence: np.ndarray
    skeleton: np.ndarray
    labels: np.ndarray
    centres: np.ndarray
    canonical: int


def spanning_tree(points: np.ndarray) -> np.ndarray:
    """Edges [P-1, 2] (i < j) of the Euclidean minimum spanning tree of ``points`` [P, D].

    Every spanning tree has P - 1 edges, so adding a constant to all distances keeps the
    minimum one; it also keeps coincident points joined (scipy reads 0 as "no edge").
    """
    P = len(points)
    if P < 2:
        return np.zeros((0, 2), np.int64)
    d = cdist(points, points)
    d = d + (d.max() + 1.0) * (1 - np.eye(P))
    tree = minimum_spanning_tree(d).tocoo()
    edges = np.sort(np.stack([tree.row, tree.col], axis=1), axis=1)
    return edges[np.lexsort((edges[:, 1], edges[:, 0]))].astype(np.int64)


def cluster_keypoints(xy: np.ndarray, visible: np.ndarray, depth: np.ndarray, K: np.ndarray, w2c: np.ndarray,
                      count: int, min_valid: int = 2, seed: int = 0) -> ClusteredKeypoints:
    """Keypoints from foreground tracks.

    Args:
        xy: [N, T, 2] foreground tracks (pixels, +0.5 centres); visible: [N, T] bool (e.g.
            visible and on the mask).
        depth: [T, H, W] z-depth in the cameras' units (0 = unknown); K: [T, 3, 3]; w2c: [T, 4, 4].
        count: J, clipped to the number of lifted tracks.
        min_valid: frames with depth a track needs to be used.

    Raises:
        ValueError: when fewer than 2 tracks can be lifted.
    """
    f64 = torch.float64
    xyz, valid = lift_tracks(torch.from_numpy(xy).to(f64), torch.from_numpy(visible),
                             torch.from_numpy(depth).to(f64), torch.from_numpy(K).to(f64), torch.from_numpy(w2c).to(f64))
    keep = (valid.sum(1) >= min_valid).numpy()
    if keep.sum() < 2:
        raise ValueError(f"only {int(keep.sum())} foreground tracks have depth in {min_valid}+ frames")
    rows = torch.from_numpy(np.flatnonzero(keep))
    valid = valid[rows]
    xyz = fill_gaps(xyz[rows], valid)
    N, T, _ = xyz.shape
    J = min(count, N)
    result = kmeans(xyz.reshape(N, T * 3), J, seed=seed)
    labels = result.labels.numpy()
    canonical = canonical_frame(valid)
    onehot = torch.from_numpy(np.eye(J)[labels])  # [N, J]
    centres = (onehot.T @ xyz.reshape(N, -1)).reshape(J, T, 3) / onehot.sum(0)[:, None, None]
    pix, z = project_points(centres.transpose(0, 1), torch.from_numpy(K).to(f64)[:, None],
                            torch.from_numpy(w2c).to(f64)[:, None])  # [T, J, 2]
    seen = torch.from_numpy(visible[keep]).to(f64)  # [N, T]
    confidence = (seen.T @ onehot) / onehot.sum(0)[None]  # [T, J]
    confidence = torch.where(z > 0, confidence, torch.zeros_like(confidence))
    canon = centres[:, canonical].numpy()
    return ClusteredKeypoints(pix.numpy().astype(np.float32), confidence.numpy().astype(np.float32),
                              spanning_tree(canon), labels, canon, canonical)
