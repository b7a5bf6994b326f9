"""The papers' tables (utils/report/paper_tables.py) and the launcher that trains their grid
(scripts/reproduce.py): values as the seed documents print them, rows matched by method and setting,
and a cell-by-cell resumable try run on lite data."""
import os
import re

import pytest

from tests.helpers import ROOT, run_cli
from utils.report.paper_tables import PAPER_TABLES, compare, format_comparison

SEEDS = os.path.join(os.path.dirname(ROOT), "shared", "seeds")
T1 = PAPER_TABLES["orthohash-table1"]


def test_table1_spot_values():
    assert T1.value("HashNet", "imagenet", 16) == 0.343
    assert T1.value("OrthoCos+BN", "coco", 64) == 0.787
    assert T1.value("OrthoArc+BN", "nuswide", 128) == 0.856
    assert T1.value("CSQ", "coco", 32) == 0.762
    assert T1.value("CSQ", "coco", 48) is None
    assert len(T1.values) == 14
    assert all(len(v) == 3 and all(len(x) == 4 for x in v.values()) for v in T1.values.values())
    hn = PAPER_TABLES["hashnet-coco"]
    assert hn.value("HashNet (paper, PyTorch)", "coco", 48) == 0.715
    assert hn.value("HashNet (paddle_hashnet)", "coco", 64) == 0.734


@pytest.mark.skipif(not os.path.isdir(SEEDS), reason="the seed documents (shared/seeds) are not beside this clone")
def test_table1_equals_the_seed_document():
    """Every number of Table 1 as the OrthoHash slides print it (rows in the same order)."""
    text = open(os.path.join(SEEDS, "001_orthohash_slides.txt"), encoding="utf-8").read()
    rows = [line for line in text.splitlines() if len(re.findall(r"\b0\.\d{3}\b", line)) == 12]
    assert len(rows) == 14
    for line, (name, per_dataset) in zip(rows, T1.values.items()):
        numbers = [float(x) for x in re.findall(r"\b0\.\d{3}\b", line)]
        ours = [v for d in ("imagenet", "nuswide", "coco") for v in per_dataset[d]]
        assert numbers == ours, name


def test_rows_match_method_and_setting():
    assert T1.row_of("orthohash", {"loss": "cos"}) == "OrthoCos+BN"
    assert T1.row_of("orthohash", {"loss": "arc"}) == "OrthoArc+BN"
    assert T1.row_of("orthohash", {}) == "OrthoCos+BN"  # the default loss
    assert T1.row_of("hashnet", {"loss": "whatever"}) == "HashNet"
    assert T1.row_of("dsh", {}) is None
    grid = T1.grid("coco")
    assert len(grid) == 6 * 4
    assert {c.flags for c in grid if c.method == "orthohash"} == {("--loss", "cos"), ("--loss", "arc")}
    with pytest.raises(KeyError):
        T1.grid("lite_single")


def test_compare_and_format():
    runs = [("r1", {"method": "orthohash", "bit": 64, "dataset": "coco", "map": 0.8}, {"loss": "arc"}),
            ("r2", {"method": "hashnet", "bit": 16, "dataset": "imagenet", "map": 0.3}, {}),
            ("r3", {"method": "hashnet", "bit": 48, "dataset": "coco", "map": 0.7}, {}),  # no 48-bit column
            ("r4", {"method": "dsh", "bit": 16, "dataset": "coco", "map": 0.5}, {}),  # no row
            ("r5", {"method": "hashnet", "bit": 16, "dataset": "lite_single", "map": 0.5}, {})]  # no column
    got = compare(T1, runs)
    assert [(c.row, c.dataset, c.bit, c.run_dir) for c in got] == [("HashNet", "imagenet", 16, "r2"),
                                                                   ("OrthoArc+BN", "coco", 64, "r1")]
    assert got[1].diff == pytest.approx(0.8 - 0.785)
    text = format_comparison(T1, got)
    assert "| OrthoArc+BN | MS COCO (mAP@5000) | 64 | 0.785 | 0.800 | +0.015 |" in text
    assert "| HashNet | ImageNet-100 (mAP@1000) | 16 | 0.343 | 0.300 | -0.043 |" in text
    assert "no run matches" in format_comparison(T1, [])


def test_reproduce_errors_are_one_line():
    for args, what in ((["orthohash-table1", "lite_single"], "not a column"),
                       (["orthohash-table1", "coco", "--bits", "12"], "16, 32, 64, 128 bits only"),
                       (["orthohash-table1", "coco", "--methods", "dsh"], "dsh not in")):
        proc = run_cli(["scripts/reproduce.py", *args], check=False)
        assert proc.returncode == 2 and what in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.slow
def test_reproduce_try_run_on_lite_data_is_resumable(lite_single, tmp_path):
    """The coco column's HashNet and OrthoCos/OrthoArc cells at 16 bits, 1 epoch on lite data: trained once,
    kept when the command runs again, and continued from last.pdparams when a cell did not finish."""
    out = tmp_path / "grid"
    args = ["scripts/reproduce.py", "orthohash-table1", "lite_single", "--column", "coco", "--bits", "16",
            "--methods", "hashnet,orthohash", "--epochs", "1", "--out", out, "--",
            "--data-path", lite_single["root"], "--list-dir", lite_single["list_dir"], "-bs", "16",
            "--num-workers", "0", "--backbone", "resnet18", "--seed", "3"]
    dry = run_cli([*args[:1], *args[1:13], "--dry-run", *args[13:]])
    assert dry.stdout.count("] new: ") == 3 and not out.exists()
    first = run_cli(args, timeout=1500)
    assert first.stdout.count("] new: ") == 3, first.stdout
    cells = sorted(os.listdir(out))
    assert cells == ["hashnet_16", "orthohash_arc_16", "orthohash_cos_16"]
    for c in cells:
        assert "done: best" in (out / c / "train.log").read_text()
    # an interrupted cell: its log lost the final line, its last.pdparams is there
    log = out / "hashnet_16" / "train.log"
    log.write_text("".join(line for line in log.read_text().splitlines(True) if "done: best" not in line))
    again = run_cli(args, timeout=1500)
    assert again.stdout.count("] done: ") == 2 and "[HashNet, 16 bits] resume: " in again.stdout, again.stdout
    assert "done: best" in log.read_text()
    arc_cfg = (out / "orthohash_arc_16" / "run.json").read_text()
    assert '"loss": "arc"' in arc_cfg


def test_compare_runs_paper_flag(tmp_path):
    """compare_runs.py --paper reads each run's metrics.json and run.json (for the setting) and prints the
    matched cells beside the paper's."""
    import json

    for name, method, loss, value in (("a", "orthohash", "arc", 0.79), ("b", "orthohash", "cos", 0.70)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps(
            {"method": method, "bit": 32, "dataset": "coco", "map": value, "topk": 5000}))
        (tmp_path / name / "run.json").write_text(json.dumps({"method": method, "loss": loss, "bit": 32}))
    proc = run_cli(["scripts/compare_runs.py", tmp_path / "a", tmp_path / "b", "--paper", "orthohash-table1"])
    assert "| OrthoCos+BN | MS COCO (mAP@5000) | 32 | 0.762 | 0.700 | -0.062 |" in proc.stdout, proc.stdout
    assert "| OrthoArc+BN | MS COCO (mAP@5000) | 32 | 0.762 | 0.790 | +0.028 |" in proc.stdout, proc.stdout
