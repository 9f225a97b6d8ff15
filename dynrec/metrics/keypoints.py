"""Pairing a model's keypoints with ground-truth joints when the two layouts differ.

Keypoint metrics (``kp_err``, ``kp_pck``) compare keypoint j of the model with joint j of the
ground truth, which needs one layout. :func:`match_layouts` pairs them:

1. **Same names** (the keypoints stage copied the ground truth's layout): j with j.
2. **By name** when the names mean body joints: both sides are reduced to
   ``<joint>_<side>`` (``left_wrist`` and ``wrist_l`` are one joint; ``hand`` counts as
   ``wrist`` and ``foot`` as ``ankle``, as COCO labels the end of those limbs), and joints with
   the same reduced name are paired. Used when at least ``min_named`` joints pair up.
3. **By position** otherwise (e.g. the offline backend's clusters ``k0..k11``, which name no
   joint): the Hungarian assignment minimising the mean 2D distance over the frames where
   both are visible. Each model keypoint then stands for the joint it stays nearest to, so
   the metric measures how well the keypoints follow the body, not whether they are the
   joints a pose model would name; the note says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

#: words that name the same joint in the layouts dynrec meets (COCO / ViTPose, synth figures)
SYNONYMS = {"hand": "wrist", "foot": "ankle", "head_top": "head", "headtop": "head"}


@dataclass(frozen=True)
class LayoutMatch:
    """``pred`` [P] and ``gt`` [P] indices of paired keypoints; ``how`` is ``same``, ``names`` or
    ``position``; ``note`` says it in words (empty for ``same``)."""

    pred: np.ndarray
    gt: np.ndarray
    how: str
    note: str


def joint_key(name: str) -> str:
    """``left_wrist`` / ``wrist_l`` / ``L-Wrist`` -> ``wrist_l``; names without a side keep none."""
    words = [w for w in re.split(r"[\s_\-.]+", name.strip().lower()) if w]
    side = ""
    rest = []
    for w in words:
        if w in ("left", "l"):
            side = "l"
        elif w in ("right", "r"):
            side = "r"
        else:
            rest.append(w)
    joint = "_".join(rest)
    joint = SYNONYMS.get(joint, joint)
    return f"{joint}_{side}" if side else joint


def match_layouts(pred_names: list[str], gt_names: list[str], pred_xy: np.ndarray, gt_xy: np.ndarray,
                  pred_vis: np.ndarray, gt_vis: np.ndarray, min_named: int = 4, min_frames: int = 1
                  ) -> LayoutMatch:
    """Pair the model's keypoints with ground-truth joints.

    Args:
        pred_names: [J] model keypoint names; gt_names: [G] ground-truth joint names.
        pred_xy: [J, T, 2], gt_xy: [G, T, 2] pixels; pred_vis: [J, T], gt_vis: [G, T] bool.
        min_named: joints that must pair by name for rule 2 to be used.
        min_frames: co-visible frames a pair needs to be considered by position.
    """
    J, G = len(pred_names), len(gt_names)
    if list(pred_names) == list(gt_names):
        idx = np.arange(J)
        return LayoutMatch(idx, idx, "same", "")
    gt_keys = {joint_key(n): g for g, n in enumerate(gt_names)}
    pairs = [(j, gt_keys[joint_key(n)]) for j, n in enumerate(pred_names) if joint_key(n) in gt_keys]
    if len({g for _, g in pairs}) >= min_named and len(pairs) == len({g for _, g in pairs}):
        p, g = np.array(pairs).T
        return LayoutMatch(p, g, "names", f"{len(pairs)} of {G} ground-truth joints paired with the model's "
                           f"keypoints by name ({', '.join(gt_names[k] for k in g)})")
    both = pred_vis[:, None, :] & gt_vis[None, :, :]  # [J, G, T]
    dist = np.linalg.norm(pred_xy[:, None] - gt_xy[None, :], axis=-1)  # [J, G, T]
    count = both.sum(-1)
    mean = np.where(count >= min_frames, np.where(both, dist, 0).sum(-1) / np.maximum(count, 1), np.inf)
    finite = np.isfinite(mean)
    if not finite.any():
        return LayoutMatch(np.zeros(0, int), np.zeros(0, int), "position", "no model keypoint is ever visible "
                           "together with a ground-truth joint")
    cost = np.where(finite, mean, 1e12)
    p, g = linear_sum_assignment(cost)
    keep = finite[p, g]
    p, g = p[keep], g[keep]
    return LayoutMatch(p, g, "position", f"the model's {J} keypoints name no ground-truth joint: each of {len(p)} "
                       f"was paired with the one of the {G} joints it stays nearest on average (Hungarian "
                       "assignment), so this measures how well they follow the body, not joint identity")
