"""--visualdl DIR: the log VisualDL writes is read back with its own LogReader; the PR curve's counts
equal a brute-force count over every pair; a missing visualdl package is a one-line error."""
import os
import sys

import numpy as np
import pytest

from tests.helpers import lite_flags, run_cli


def test_pr_counts_equal_brute_force():
    from utils.train.visualdl import hamming_pr_counts

    rng = np.random.default_rng(0)
    q, d = rng.standard_normal((7, 12)), rng.standard_normal((30, 12))
    ql, dl = rng.integers(0, 2, (7, 4)), rng.integers(0, 2, (30, 4))
    tp, fp, tn, fn = hamming_pr_counts(q, d, ql, dl)
    dist = ((q[:, None, :] > 0) != (d[None, :, :] > 0)).sum(-1)
    rel = (ql @ dl.T) > 0
    for i in range(13):  # index i: distance <= 12 - i
        retrieved = dist <= 12 - i
        assert (tp[i], fp[i], tn[i], fn[i]) == ((retrieved & rel).sum(), (retrieved & ~rel).sum(),
                                                (~retrieved & ~rel).sum(), (~retrieved & rel).sum())


def test_visualdl_log_reads_back(lite_single, tmp_path):
    pytest.importorskip("visualdl")
    from visualdl import LogReader

    logdir = tmp_path / "vdl"
    run_cli(["main_single_gpu.py", *lite_flags(lite_single, "orthohash", tmp_path / "run", epochs=2,
                                               extra=["-ee", 1, "--visualdl", logdir])])
    files = os.listdir(logdir)
    assert len(files) == 1
    reader = LogReader(file_path=str(logdir / files[0]))
    tags = reader.get_tags()
    assert set(tags["scalar"]) == {"train/loss", "train/lr", "eval/mAP", "eval/mAP_tie_aware"}
    assert set(tags["histogram"]) == {"codes/continuous", "codes/bit_mean"}
    assert tags["pr_curve"] == ["eval/pr_hamming"]
    metrics = [line.split(",") for line in (tmp_path / "run" / "train_log.csv").read_text().splitlines()[1:]]
    loss = reader.get_data("scalar", "train/loss")
    assert [r.id for r in loss] == [1, 2]
    np.testing.assert_allclose([r.value for r in loss], [float(m[2]) for m in metrics], rtol=1e-6)
    maps = reader.get_data("scalar", "eval/mAP")
    np.testing.assert_allclose([r.value for r in maps], [float(m[3]) for m in metrics], rtol=1e-6)
    curves = reader.get_data("pr_curve", "eval/pr_hamming")
    assert [r.id for r in curves] == [1, 2]
    pr = curves[-1].pr_curve
    assert len(pr.precision) == 17  # 16 bits: distances 0..16
    assert pr.TP[0] + pr.FP[0] == 12 * 48  # at distance <= 16 every query-database pair is retrieved
    assert pr.recall[0] == pytest.approx(1.0)


def test_missing_visualdl_is_a_clear_error(monkeypatch):
    from utils.errors import UserError
    from utils.train.visualdl import VisualDLLog

    monkeypatch.setitem(sys.modules, "visualdl", None)  # import visualdl now raises ImportError
    with pytest.raises(UserError, match="--visualdl out/vdl: the visualdl package is not installed; pip install"):
        VisualDLLog("out/vdl")
    assert VisualDLLog(None).writer is None
