"""The lift stage on ground-truth inputs: lifted tracks match the true 3D trajectories and the
Procrustes bases explain the rigid parts' motion."""

from __future__ import annotations

import numpy as np

from dynrec.artifacts import Lift, Tracks


def test_lift_matches_ground_truth(gt_work):
    lift = Lift.load(gt_work / "lift")
    tracks = Tracks.load(gt_work / "tracks")
    truth = tracks.xyz[lift.track_index]
    err = np.linalg.norm(lift.xyz - truth, axis=-1)[lift.valid]
    extent = np.ptp(truth.reshape(-1, 3), axis=0).max()
    assert np.median(err) < 0.01 * extent, (np.median(err), extent)
    T = truth.shape[1]
    np.testing.assert_allclose(lift.bases[:, lift.canonical], np.tile(np.eye(4), (len(lift.bases), 1, 1)), atol=1e-4)
    # each cluster's basis carries its members from the canonical frame to every frame
    moved = np.einsum("nTij,nj->nTi", lift.bases[lift.labels][..., :3, :],
                      np.concatenate([truth[:, lift.canonical], np.ones((len(truth), 1))], axis=1))
    residual = np.linalg.norm(moved - truth, axis=-1)
    motion = np.linalg.norm(truth - truth[:, lift.canonical : lift.canonical + 1], axis=-1)
    assert np.median(residual) < 0.5 * np.median(motion[motion > 0]), (np.median(residual), np.median(motion))
    assert lift.node_coefficients.shape == (len(lift.node_positions), len(lift.bases))
    np.testing.assert_allclose(lift.node_coefficients.sum(1), 1, atol=1e-5)
    assert len(lift.fg_points) > 50 and len(lift.bg_points) > 500 and T == 16
