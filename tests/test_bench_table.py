"""`dynrec bench-table`: evaluated runs beside the published numbers, which are checked against
the papers' own means; runs of another protocol and missing methods are said, never filled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dynrec.evaluate.bench import LAYOUTS, build
from dynrec.evaluate.published import MEAN, PUBLISHED


def fake_run(runs: Path, name: str, protocol: str | None, dataset: dict, values: dict[str, float]) -> None:
    report = {"protocol": None if protocol is None else {"name": protocol, "deviations": []}, "dataset": dataset,
              "metrics": [{"metric": k, "value": v, "computed": True} for k, v in values.items()]}
    (runs / name / "eval").mkdir(parents=True)
    (runs / name / "eval" / "metrics.json").write_text(json.dumps(report))


@pytest.mark.parametrize("source", ["HiMoR Table 1", "HiMoR Table 4 (mean: Table 2)"])
def test_published_scenes_reproduce_the_printed_means(source):
    """The copied per-scene numbers average to the paper's printed mean (to its rounding)."""
    rows = [p for p in PUBLISHED if p.source == source]
    for method in {p.method for p in rows}:
        for metric in {p.metric for p in rows}:
            per_scene = [p.value for p in rows if (p.method, p.metric) == (method, metric) and p.scene != MEAN]
            (mean,) = [p.value for p in rows if (p.method, p.metric, p.scene) == (method, metric, MEAN)]
            assert sum(per_scene) / len(per_scene) == pytest.approx(mean, abs=6e-4), (method, metric)


def test_bench_table_dycheck(cli, tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs, "apple", "dycheck", {"dataset": "dycheck", "scene": "apple"},
             {"pck_t_kp": 0.5, "mlpips": 0.6, "mpsnr": 15.0})
    fake_run(runs, "spin", "dycheck", {"dataset": "dycheck", "scene": "spin"}, {"pck_t_kp": 0.7, "mpsnr": "inf"})
    fake_run(runs, "teddy-old", None, {"dataset": "dycheck", "scene": "teddy"}, {"psnr": 30.0})
    table = build(runs, "dycheck")
    assert table.cells["dynrec"][("apple", "pck_t_kp")] == 0.5
    assert table.cells["dynrec"][(MEAN, "pck_t_kp")] == pytest.approx(0.6)
    assert table.cells["HiMoR"][("apple", "pck_t_kp")] == 0.8540
    assert table.cells["Shape of Motion"][("teddy", "mlpips")] == 0.5630
    assert not table.cells["MoSca"] and not table.cells["SirenPose"] and not table.cells["MonST3R"]
    notes = " ".join(table.notes)
    assert "teddy-old: evaluated with protocol none, not dycheck" in notes
    assert "dynrec mean over 2 of the table's 5 scenes (apple, spin)" in notes
    assert "MoSca: HiMoR Table 1 leaves MoSca out" in notes and "HiMoR: HiMoR Table 1" in notes
    r = cli("bench-table", runs, "--protocol", "dycheck")
    assert r.code == 0, r.err
    md = (runs / "bench-dycheck.md").read_text()
    assert "| HiMoR | 0.8798 | 0.9747 | 0.5926 | 0.854 |" in md
    dynrec_row = next(line for line in md.splitlines() if line.startswith("| dynrec |"))
    assert "| 0.5 |" in dynrec_row and "inf" in dynrec_row
    assert json.loads((runs / "bench-dycheck.json").read_text())["protocol"] == "dycheck"


def test_bench_table_pose_averages_runs_per_dataset(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs, "b1", "pose", {"dataset": "bonn", "scene": "rgbd_bonn_balloon"}, {"ate": 0.1, "rpe_rot": 1.0})
    fake_run(runs, "b2", "pose", {"dataset": "bonn", "scene": "rgbd_bonn_crowd"}, {"ate": 0.3, "rpe_rot": 3.0})
    table = build(runs, "pose")
    assert LAYOUTS["pose"].per == "dataset"
    assert table.cells["dynrec"][("bonn", "ate")] == pytest.approx(0.2)
    assert table.cells["SirenPose"][("bonn", "ate")] == 0.084 and table.cells["MonST3R"][("davis", "rpe_rot")] == 0.824
    assert "dynrec bonn: mean of 2 runs (b1, b2)" in table.notes
    empty = build(tmp_path / "runs" / "b1" / "eval", "pose")
    assert any("no run under" in n for n in empty.notes)
    with pytest.raises(Exception, match="unknown protocol"):
        build(runs, "kitti")


def test_bench_table_nvidia_knows_nsff_scene_names(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs, "b", "nvidia", {"dataset": "nvidia", "scene": "Balloon1-2"}, {"nv_psnr": 20.0})
    table = build(runs, "nvidia")
    assert table.cells["dynrec"][("balloon1", "nv_psnr")] == 20.0
    assert table.cells["HiMoR"][("balloon1", "nv_psnr")] == 23.901
