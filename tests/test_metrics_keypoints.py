"""Pairing keypoint layouts: same names, names that mean one joint, and nearest on average."""

from __future__ import annotations

import numpy as np

from dynrec.metrics import epe_2d, joint_key, match_layouts

SYNTH = ["pelvis", "neck", "shoulder_r", "elbow_r", "shoulder_l", "elbow_l", "hip_r", "knee_r", "hip_l",
         "knee_l", "head_top", "hand_r", "hand_l", "foot_r", "foot_l"]
COCO = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
        "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
        "right_knee", "left_ankle", "right_ankle"]


def _tracks(J: int, T: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 100, (J, T, 2))


def test_joint_keys_reduce_sides_and_synonyms():
    assert joint_key("left_wrist") == joint_key("hand_l") == "wrist_l"
    assert joint_key("Right-Ankle") == joint_key("foot_r") == "ankle_r"
    assert joint_key("pelvis") == "pelvis" and joint_key("nose") == "nose"


def test_same_names_pair_one_by_one():
    xy = _tracks(15, 4, 0)
    vis = np.ones((15, 4), bool)
    m = match_layouts(SYNTH, SYNTH, xy, xy, vis, vis)
    assert m.how == "same" and (m.pred == np.arange(15)).all() and (m.gt == np.arange(15)).all()


def test_coco_names_pair_with_the_synth_joints_they_mean():
    gt = _tracks(15, 6, 1)
    vis_gt = np.ones((15, 6), bool)
    pred = _tracks(17, 6, 2)
    m = match_layouts(COCO, SYNTH, pred, gt, np.ones((17, 6), bool), vis_gt)
    assert m.how == "names"
    pairs = {COCO[p]: SYNTH[g] for p, g in zip(m.pred, m.gt, strict=True)}
    assert pairs == {"left_shoulder": "shoulder_l", "right_shoulder": "shoulder_r", "left_elbow": "elbow_l",
                     "right_elbow": "elbow_r", "left_wrist": "hand_l", "right_wrist": "hand_r",
                     "left_hip": "hip_l", "right_hip": "hip_r", "left_knee": "knee_l", "right_knee": "knee_r",
                     "left_ankle": "foot_l", "right_ankle": "foot_r"}


def test_unnamed_keypoints_pair_with_the_joints_they_follow():
    """Clusters that are a shuffled, noisy subset of the joints find their joints back, and the
    error after pairing is the noise, not the distance between unrelated joints."""
    rng = np.random.default_rng(3)
    gt = _tracks(15, 20, 4)
    gt_vis = rng.random((15, 20)) > 0.2
    picks = np.array([7, 2, 11, 0, 13, 4, 9, 5])
    noise = rng.normal(0, 0.5, (len(picks), 20, 2))
    pred = gt[picks] + noise
    names = [f"k{j}" for j in range(len(picks))]
    m = match_layouts(names, SYNTH, pred, gt, np.ones((len(picks), 20), bool), gt_vis)
    assert m.how == "position" and "not joint identity" in m.note
    order = np.argsort(m.pred)
    assert (m.gt[order] == picks).all()
    err = epe_2d(pred[m.pred], gt[m.gt], gt_vis[m.gt])
    assert err < 1.0


def test_keypoints_never_seen_with_a_joint_cannot_be_paired():
    gt = _tracks(3, 4, 5)
    m = match_layouts(["a", "b"], ["x", "y", "z"], _tracks(2, 4, 6), gt, np.zeros((2, 4), bool),
                      np.ones((3, 4), bool))
    assert len(m.pred) == 0 and "ever visible together" in m.note
