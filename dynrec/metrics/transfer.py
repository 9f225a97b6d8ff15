"""Keypoint transfer between annotated frames: the tracking metrics of DyCheck and Shape of Motion.

Ground truth: keypoints ``gt_xy`` [T, J, 2] visible where ``visible`` [T, J] (annotated frames
only). Every visible ``(s, j)`` is a *query*: the model carries keypoint j from frame s to every
frame; ``pred_xy`` / ``pred_xyz`` [Q, T, .] are the carried positions of the queries, in the
order of :func:`keypoint_queries`. Pairs ``(s, k)`` run over the annotated frames.

* **PCK-T** (DyCheck ``KeypointTransfer``, ``compute_pck``): ordered pairs s != k; keypoints
  visible in both; correct when ``|pred - gt_k| < 0.05 max(W, H)`` (strict); the mean over pairs
  (that share a keypoint) of each pair's fraction correct.
* **3D EPE / PCK-3D at 5 and 10 cm** (Shape of Motion ``evaluate_3d_tracking``): all ordered
  pairs *including* s = k; keypoints whose depth-lifted 3D position is valid in both frames;
  per pair the mean distance (and the fraction under each threshold), then the mean over pairs.
* **APCK** (Shape of Motion ``evaluate_2d_tracking``): pairs s != k, source keypoint visible;
  for thresholds 4, 8, 16, 32, 64 pixels (of the 1x images) the fraction of target-visible
  samples within the threshold, pooled over all pairs; APCK is the mean over thresholds.

A NaN prediction (the model had nothing at the query) counts as wrong in PCK-T and APCK and is
left out of the 3D metrics (and counted in ``skipped``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dynrec.metrics.base import MetricNotComputable

APCK_THRESHOLDS_PX = (4.0, 8.0, 16.0, 32.0, 64.0)
PCK_3D_THRESHOLDS = (0.05, 0.10)


def keypoint_queries(visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frame [Q], keypoint [Q]) of every visible annotation, frame-major."""
    frame, joint = np.nonzero(np.asarray(visible, bool))
    return frame, joint


def _query_index(visible: np.ndarray) -> np.ndarray:
    """[T, J] -> the query row of each visible (frame, keypoint), -1 elsewhere."""
    index = np.full(visible.shape, -1, dtype=np.int64)
    frame, joint = keypoint_queries(visible)
    index[frame, joint] = np.arange(len(frame))
    return index


def _frames(visible: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.asarray(visible, bool).any(axis=1))


def pck_transfer(pred_xy: np.ndarray, gt_xy: np.ndarray, visible: np.ndarray, image_size: tuple[int, int],
                 ratio: float = 0.05) -> tuple[float, int]:
    """DyCheck's PCK-T over ordered pairs of annotated frames -> (mean over pairs, number of pairs).

    Args:
        pred_xy: [Q, T, 2] carried queries (see the module docstring).
        gt_xy: [T, J, 2]; visible: [T, J]; image_size: (H, W), threshold ``ratio * max(H, W)``.
    """
    vis = np.asarray(visible, bool)
    qi = _query_index(vis)
    thr = ratio * max(image_size)
    scores = []
    for s in _frames(vis):
        for k in _frames(vis):
            common = np.flatnonzero(vis[s] & vis[k]) if s != k else np.zeros(0, int)
            if len(common) == 0:
                continue
            err = np.linalg.norm(pred_xy[qi[s, common], k] - gt_xy[k, common], axis=-1)
            scores.append(float((err < thr).mean()))  # NaN compares False: wrong
    if not scores:
        raise MetricNotComputable("pck_t_kp", "no pair of annotated frames shares a visible keypoint")
    return float(np.mean(scores)), len(scores)


@dataclass(frozen=True)
class Transfer3D:
    """Shape of Motion's 3D tracking numbers: ``epe`` (scene units), ``within`` {threshold:
    fraction}, ``pairs`` averaged over, ``skipped`` samples without a prediction."""

    epe: float
    within: dict[float, float]
    pairs: int
    skipped: int


def epe_transfer(pred_xyz: np.ndarray, visible: np.ndarray, gt_xyz: np.ndarray, valid_3d: np.ndarray,
                 thresholds: tuple[float, ...] = PCK_3D_THRESHOLDS) -> Transfer3D:
    """3D end-point error and PCK-3D over all ordered pairs (s = k included) of annotated frames.

    Args:
        pred_xyz: [Q, T, 3] carried queries in the ground truth's world (aligned).
        visible: [T, J] the annotations (defines the queries); gt_xyz: [T, J, 3];
        valid_3d: [T, J] where ``gt_xyz`` was lifted from valid depth.
    """
    vis = np.asarray(visible, bool)
    ok3 = np.asarray(valid_3d, bool) & vis
    qi = _query_index(vis)
    epes, within = [], {t: [] for t in thresholds}
    skipped = 0
    for s in _frames(vis):
        for k in _frames(vis):
            common = np.flatnonzero(ok3[s] & ok3[k])
            if len(common) == 0:
                continue
            err = np.linalg.norm(pred_xyz[qi[s, common], k] - gt_xyz[k, common], axis=-1)
            skipped += int(np.isnan(err).sum())
            err = err[~np.isnan(err)]
            if len(err) == 0:
                continue
            epes.append(float(err.mean()))
            for t in thresholds:
                within[t].append(float((err < t).mean()))
    if not epes:
        raise MetricNotComputable("epe_3d_kp", "no pair of annotated frames shares a keypoint with valid depth")
    return Transfer3D(float(np.mean(epes)), {t: float(np.mean(v)) for t, v in within.items()}, len(epes), skipped)


def apck_transfer(pred_xy: np.ndarray, gt_xy: np.ndarray, visible: np.ndarray, scale: float = 1.0,
                  thresholds: tuple[float, ...] = APCK_THRESHOLDS_PX) -> tuple[float, int]:
    """Shape of Motion's average PCK -> (APCK, number of (pair, keypoint) samples).

    ``scale`` converts the thresholds (pixels of the 1x images) to the images evaluated
    (0.5 at 2x)."""
    vis = np.asarray(visible, bool)
    qi = _query_index(vis)
    errs = []
    for s in _frames(vis):
        for k in _frames(vis):
            if s == k:
                continue
            common = np.flatnonzero(vis[s] & vis[k])
            errs.append(np.linalg.norm(pred_xy[qi[s, common], k] - gt_xy[k, common], axis=-1))
    err = np.concatenate(errs) if errs else np.zeros(0)
    if len(err) == 0:
        raise MetricNotComputable("apck_kp", "no pair of annotated frames shares a visible keypoint")
    return float(np.mean([(err < t * scale).mean() for t in thresholds])), len(err)
