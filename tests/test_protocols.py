"""Benchmark protocols: the keypoint-transfer metrics on hand-made predictions with known answers
(DyCheck's per-pair PCK-T, Shape of Motion's 3D EPE with s = k pairs, 5 / 10 cm, APCK in 1x
pixels), and ``evaluate --protocol`` end to end on an imported DyCheck scene and the synth scene."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from datasets_fixtures import write_dycheck
from test_evaluate import load_report, write_recon

from dynrec.metrics.transfer import apck_transfer, epe_transfer, keypoint_queries, pck_transfer


def carried(gt: np.ndarray, visible: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Queries carried exactly, plus ``offset`` at every frame other than their own: [Q, T, D]."""
    frame, joint = keypoint_queries(visible)
    T = gt.shape[0]
    pred = gt[:, joint].transpose(1, 0, 2).copy()  # [Q, T, D]: the keypoint's true position at every frame
    for q, s in enumerate(frame):
        pred[q, np.arange(T) != s] += offset
    return pred


def test_keypoint_transfer_known_answers():
    T, J = 4, 2
    visible = np.zeros((T, J), bool)
    visible[[0, 2, 3]] = True  # frame 1 is not annotated
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(T, J, 3))
    xy = rng.uniform(0, 100, size=(T, J, 2))
    # exact transfer
    assert pck_transfer(carried(xy, visible, np.zeros(2)), xy, visible, (60, 100)) == (1.0, 6)
    r = epe_transfer(carried(xyz, visible, np.zeros(3)), visible, xyz, visible)
    assert r.epe == 0.0 and r.pairs == 9 and r.within == {0.05: 1.0, 0.10: 1.0}
    # 7 cm off wherever carried to another frame: 6 of the 9 pairs (s = k counts, as in Shape of Motion)
    r = epe_transfer(carried(xyz, visible, np.array([0.07, 0.0, 0.0])), visible, xyz, visible)
    assert r.epe == pytest.approx(0.07 * 6 / 9) and r.within[0.05] == pytest.approx(3 / 9) and r.within[0.10] == 1.0
    # 3D validity: keypoint 1 has no valid depth at frame 3 -> pairs with 3 keep keypoint 0 only
    valid = visible.copy()
    valid[3, 1] = False
    pred = carried(xyz, visible, np.zeros(3))
    frame, joint = keypoint_queries(visible)
    pred[(joint == 1) & (frame != 2), 2] += [1.0, 0.0, 0.0]  # keypoint 1 carried to frame 2 from elsewhere is 1 m off
    r = epe_transfer(pred, visible, xyz, valid)
    # pairs (s, 2): s in {0, 2, 3}; keypoint 1 counts in (0, 2) only -> (0.5 + 0 + 0) / 9 pairs
    assert r.epe == pytest.approx(0.5 / 9)
    # DyCheck's PCK-T is the mean over pairs of each pair's fraction, threshold 0.05 * max(H, W) = 5 px
    pred = carried(xy, visible, np.zeros(2))
    q = np.flatnonzero((keypoint_queries(visible)[0] == 0) & (keypoint_queries(visible)[1] == 0))[0]
    pred[q, 2] += [5.0, 0.0]  # one keypoint of pair (0, 2) at exactly the threshold: wrong (strict)
    value, pairs = pck_transfer(pred, xy, visible, (60, 100))
    assert pairs == 6 and value == pytest.approx((5 + 0.5) / 6)
    pred[q, 2] = np.nan  # nothing carried: wrong as well
    assert pck_transfer(pred, xy, visible, (60, 100))[0] == pytest.approx((5 + 0.5) / 6)
    # APCK: 10 px off everywhere else; thresholds 4, 8 fail, 16, 32, 64 pass
    pred = carried(xy, visible, np.array([6.0, 8.0]))
    assert apck_transfer(pred, xy, visible) == (pytest.approx(3 / 5), 12)
    # at 2x (scale 0.5) the thresholds are 2 ... 32 px: only 16 and 32 pass
    assert apck_transfer(pred, xy, visible, scale=0.5)[0] == pytest.approx(2 / 5)


def test_protocol_pose_and_nvidia_on_synth(cli, gt_work, scene, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(gt_work, work)
    r = cli("evaluate", work, "--protocol", "pose", "--no-video")
    assert r.code == 0, r.err + r.out
    report, rows = load_report(work)
    assert report["requested"] == ["ate", "rpe_trans", "rpe_rot"] and rows["ate"]["value"] < 1e-6
    assert report["protocol"]["name"] == "pose" and report["protocol"]["deviations"] == []
    assert "SirenPose Table II" in report["protocol"]["reference"]
    out = " ".join(r.out.split())
    assert "dynrec evaluate (protocol pose)" in out and "Sim(3)" in out

    write_recon(work, scene)
    r = cli("evaluate", work, "--protocol", "nvidia", "--no-video")
    report, rows = load_report(work)
    assert rows["nv_psnr"]["value"] == "inf" and rows["nv_psnr"]["split"] == "heldout"
    assert rows["nv_ssim"]["value"] == pytest.approx(1.0) and rows["nv_psnr"]["n"] == 2 * 16
    assert "defined on nvidia" in report["protocol"]["deviations"][0]
    assert "deviation" in " ".join(r.out.split())

    r = cli("evaluate", work, "--protocol", "pose", "--metrics", "ate")
    assert r.code == 1 and "not both" in r.err
    r = cli("evaluate", work, "--protocol", "iphone")
    assert r.code == 1 and "unknown protocol 'iphone'" in r.err and "dycheck" in r.err


def test_protocols_on_an_imported_dycheck_scene(cli, scene, tmp_path):
    """Import a DyCheck-layout scene (2x), train briefly, evaluate with DyCheck's and Shape of
    Motion's protocols: every metric of the set is computed, over the expected pairs, and the
    report names the protocol and the resolution deviation (som is defined at 1x)."""
    import torch

    torch.set_num_threads(1)
    src = tmp_path / "iphone"
    write_dycheck(scene, src, n_keypoints=6)
    work = tmp_path / "work"
    r = cli("import", "dycheck", src, "-o", work, "--offline", "--preset", "tiny")
    assert r.code == 0, r.err
    r = cli("reconstruct", work, "--steps", "20", "--set", "recon.levels=1", "--set", "recon.node_densify=false",
            "--set", "recon.gaussian_densify=false")
    assert r.code == 0, r.err
    r = cli("evaluate", work, "--protocol", "dycheck", "--no-video")
    report, rows = load_report(work)
    assert report["protocol"]["name"] == "dycheck" and report["protocol"]["deviations"] == []
    assert report["dataset"] == {"dataset": "dycheck", "scene": "iphone", "split": "train", "resolution": "2x"}
    assert report["requested"] == ["mpsnr", "mssim", "mlpips", "pck_t_kp"]
    # 4 annotated frames -> 12 ordered pairs, each sharing keypoints
    assert rows["pck_t_kp"]["computed"] and rows["pck_t_kp"]["n"] == 12 and 0 <= rows["pck_t_kp"]["value"] <= 1
    assert rows["mpsnr"]["computed"] and set(rows["mpsnr"]["by_camera"]) == {"cam1"}
    assert rows["mpsnr"]["n"] == 15  # the 16 training times less the absent val frame (no co-visible pixel)

    r = cli("evaluate", work, "--protocol", "som", "--no-video")
    report, rows = load_report(work)
    assert "evaluates at 1x" in report["protocol"]["deviations"][0]
    for name in ("epe_3d_kp", "pck_3d_5cm", "pck_3d_10cm", "apck_kp"):
        assert rows[name]["computed"], rows[name].get("reason")
    assert rows["pck_3d_5cm"]["value"] <= rows["pck_3d_10cm"]["value"]
    assert rows["epe_3d_kp"]["n"] <= 16 and rows["epe_3d_kp"]["unit"] == "scene units"
    assert "thresholds scaled by 0.5" in rows["apck_kp"]["note"]  # 2x images, thresholds in 1x pixels
    metrics = json.loads((work / "eval" / "metrics.json").read_text())
    assert metrics["protocol"]["alignment"].startswith("Sim(3)")
